"""QEMU capabilities: the shipped data files, probing a real binary, and the on-disk cache."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from qemuwrap.errors import QemuwrapError
from qemuwrap.qemu import capabilities, emulators
from qemuwrap.qemu.capabilities import (
    CACHE_FORMAT,
    Capabilities,
    CapabilitiesError,
    Machine,
    cache_path,
    load,
    probe,
)

from conftest import CAPS_DIR, DEFAULT_CAPS, QEMU, ROOT, needs_qemu

CAPS_2_11 = CAPS_DIR / "qemu-2.11.0.x86_64.json"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """No test may touch the user's real ~/.cache."""
    monkeypatch.setenv("QEMUWRAP_CACHE_DIR", str(tmp_path / "default-cache"))


@pytest.fixture(scope="module")
def shipped() -> Capabilities:
    return Capabilities.from_file(DEFAULT_CAPS)


@pytest.fixture(scope="module")
def probed() -> Capabilities:
    if QEMU is None:
        pytest.skip("qemu-system-x86_64 is not installed (Debian package qemu-system-x86)")
    return probe(QEMU)


@pytest.fixture
def trust(tmp_path, monkeypatch):
    """Add paths to a private $QEMUWRAP_CONFIG_DIR/emulators (load() runs only trusted
    emulators)."""
    config = tmp_path / "config"
    config.mkdir(mode=0o755)
    monkeypatch.setenv("QEMUWRAP_CONFIG_DIR", str(config))

    def add(path) -> str:
        with open(config / "emulators", "a") as f:
            f.write(f"{path}\n")
        return str(path)

    return add


@pytest.fixture
def fake_binary(tmp_path, trust):
    """A file standing in for QEMU when probe() is faked: only its stat() matters."""
    path = tmp_path / "bin" / "qemu-system-x86_64"
    path.parent.mkdir()
    path.write_bytes(b"not really qemu\n")
    return trust(path)


@pytest.fixture
def probe_calls(monkeypatch, shipped):
    """Replace probe() with one that counts its calls and answers the shipped 7.2 data."""
    calls: list[str] = []

    def fake_probe(emulator, *, timeout=10.0):
        calls.append(emulator)
        return capabilities.Capabilities.from_dict({**shipped.to_dict(), "emulator": emulator})

    monkeypatch.setattr(capabilities, "probe", fake_probe)
    return calls


def read(path) -> str:
    with open(path) as f:
        return f.read()


def script(tmp_path, body: str, name: str = "fake-qemu") -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return str(path)


# --------------------------------------------------------------------------- shipped files


def test_shipped_7_2(shipped):
    assert shipped.emulator == "/usr/bin/qemu-system-x86_64"
    assert shipped.version[:2] == (7, 2)
    assert shipped.arch == "x86_64"
    assert shipped.has_device("vmgenid")
    assert not shipped.has_device("no-such-device")
    assert {"tcg", "kvm"} <= shipped.accelerators
    assert shipped.resolve_machine("pc") == Machine("pc-i440fx-7.2", "pc", True)
    assert shipped.resolve_machine("q35") == Machine("pc-q35-7.2", "q35", False)
    assert shipped.resolve_machine("pc-q35-2.4").name == "pc-q35-2.4"
    assert shipped.resolve_machine("pc-i440fx-99.0") is None
    assert shipped.resolve_machine("") is None
    assert [m.name for m in shipped.machines if m.is_default] == ["pc-i440fx-7.2"]


def test_shipped_2_11_lacks_vmgenid():
    caps = Capabilities.from_file(CAPS_2_11)  # has a "comment" key, which must be ignored
    assert "comment" in json.loads(CAPS_2_11.read_text())
    assert caps.version == (2, 11, 0)
    assert not caps.has_device("vmgenid")
    assert caps.resolve_machine("pc").name == "pc-i440fx-2.11"
    assert caps.resolve_machine("q35").name == "pc-q35-2.11"
    assert caps.resolve_machine("pc-i440fx-2.12") is None
    assert caps.resolve_machine("microvm") is None
    assert [m.name for m in caps.machines if m.is_default] == ["pc-i440fx-2.11"]
    names = {m.name for m in caps.machines}
    assert {"isapc", "none", "pc-i440fx-1.4", "pc-q35-2.4"} <= names


def test_shipped_files_are_canonical(shipped):
    """Sorted and formatted as dumps() writes them, so regenerating gives no noise."""
    notes = {k: v for k, v in json.loads(DEFAULT_CAPS.read_text()).items()
             if k in ("comment", "optional_devices")}
    assert DEFAULT_CAPS.read_text() == capabilities.dumps(shipped, **notes)
    data = json.loads(DEFAULT_CAPS.read_text())
    assert data["devices"] == sorted(data["devices"])


def test_dict_round_trip(shipped):
    assert Capabilities.from_dict(shipped.to_dict()) == shipped
    assert Capabilities.from_dict(json.loads(capabilities.dumps(shipped, note="x"))) == shipped


@pytest.mark.parametrize("content, message", [
    (None, "cannot read"),
    ("{", "not valid JSON"),
    ("[]", "not a JSON object"),
    ('{"version": [7, 2, 0]}', "missing"),
])
def test_from_file_rejects_bad_files(tmp_path, content, message):
    path = tmp_path / "caps.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CapabilitiesError, match=message) as info:
        Capabilities.from_file(path)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, QemuwrapError)  # the CLI prints it as one line


@pytest.mark.parametrize("field, value", [
    ("version", "7.2.0"),
    ("version", [7, 2]),
    ("devices", "vmgenid"),
    ("machines", [{"name": "pc", "alias": None}]),
    ("machines", [{"name": 1, "alias": None, "is_default": False}]),
    ("emulator", None),
])
def test_from_dict_checks_types(shipped, field, value):
    with pytest.raises(CapabilitiesError, match="bad capabilities data"):
        Capabilities.from_dict({**shipped.to_dict(), field: value})


# --------------------------------------------------------------------------- probing


@needs_qemu
def test_probe_real_binary(probed):
    assert probed.emulator == QEMU
    assert probed.version[0] >= 7
    assert probed.arch == "x86_64"
    assert probed.has_device("vmgenid")
    assert "tcg" in probed.accelerators
    assert not any(a.endswith("-accel") for a in probed.accelerators)
    assert probed.resolve_machine("pc").name.startswith("pc-i440fx-")
    assert sum(m.is_default for m in probed.machines) == 1


#: Debian packages that only add QEMU modules, and that qemu-system-x86 merely recommends:
#: a machine may lack them, and with them the devices their modules provide.
OPTIONAL_MODULE_PACKAGES = ("qemu-system-gui", "qemu-block-extra",
                            "qemu-system-modules-opengl", "qemu-system-modules-spice")


def optional_modules() -> dict[str, str]:
    """{module file: package} for the installed modules of optional packages (dpkg's lists)."""
    found = {}
    for package in OPTIONAL_MODULE_PACKAGES:
        try:
            with open(f"/var/lib/dpkg/info/{package}.list") as f:
                found.update((line.strip(), package) for line in f if line.strip()
                             .endswith(".so"))
        except OSError:
            continue
    return found


def host_modules() -> list[str]:
    """The module files the host QEMU loads: by name, the first directory wins, as in
    QEMU's own search."""
    found: dict[str, str] = {}
    for directory in capabilities.module_dirs(QEMU):
        for name in sorted(os.listdir(directory)):
            if name.endswith(".so"):
                found.setdefault(name, os.path.join(directory, name))
    return list(found.values())


def probe_with_modules(modules: list[str], tmp_path) -> Capabilities:
    """Probe the host QEMU with exactly ``modules``: a copy of the binary finds no module
    directory of its own (QEMU relocates it), so $QEMU_MODULE_DIR is all it sees."""
    copy = tmp_path / "bin" / "qemu-system-x86_64"
    copy.parent.mkdir(exist_ok=True)
    shutil.copy2(QEMU, copy)
    moddir = tmp_path / "modules"
    moddir.mkdir(exist_ok=True)
    for module in modules:
        (moddir / os.path.basename(module)).symlink_to(module)
    old = os.environ.get("QEMU_MODULE_DIR")
    os.environ["QEMU_MODULE_DIR"] = str(moddir)
    try:
        return probe(str(copy))
    finally:
        if old is None:
            del os.environ["QEMU_MODULE_DIR"]
        else:
            os.environ["QEMU_MODULE_DIR"] = old


@needs_qemu
def test_probe_agrees_with_shipped_file(probed, shipped, tmp_path, record_property):
    """Machines, accelerators and devices agree, except the devices of optional module
    packages (the shipped file lists them; this host may or may not have them)."""
    if probed.version != shipped.version:
        pytest.skip(f"host QEMU is {probed.version}, the shipped file is {shipped.version}")
    optional = optional_modules()
    if optional:
        required = [m for m in host_modules() if m not in optional]
        core = probe_with_modules(required, tmp_path)
    else:
        core = probed
    seen = sorted(probed.devices - core.devices)
    names = ", ".join(sorted(f"{os.path.basename(m)} ({p})" for m, p in optional.items()))
    note = (f"optional modules on this host: {names or 'none'}; devices they add: "
            f"{', '.join(seen) or 'none'}")
    print(note)
    record_property("optional_modules", note)
    shipped_optional = set(json.loads(DEFAULT_CAPS.read_text())["optional_devices"])
    assert core.machines == shipped.machines
    assert core.accelerators == shipped.accelerators
    assert core.devices == shipped.devices - shipped_optional, note
    assert set(seen) <= shipped_optional, f"{note}: the shipped file does not list them"
    # CPU models and flags, and what TCG's max turns on (what an optional <feature> is
    # decided by): TCG's, so the same on every host
    assert probed.cpu_models == shipped.cpu_models
    assert probed.cpu_features == shipped.cpu_features
    assert probed.tcg_cpu_features == shipped.tcg_cpu_features
    assert "sse4a" in probed.tcg_cpu_features and "tm" not in probed.tcg_cpu_features


@needs_qemu
def test_module_directory_decides_the_device_list_and_the_cache(tmp_path, monkeypatch,
                                                                trust):
    """A module removed from QEMU's module directory (as removing qemu-system-gui does)
    takes its devices away, and the cache notices without the binary changing."""
    modules = host_modules()
    display = next((m for m in modules if "virtio-gpu-gl" in m), None) or \
        next((m for m in modules if "hw-display-qxl" in m), None)
    if display is None:
        pytest.skip("no display module to take away in "
                    + ", ".join(capabilities.module_dirs(QEMU)))
    first = probe_with_modules(modules, tmp_path)
    emulator = trust(tmp_path / "bin" / "qemu-system-x86_64")
    monkeypatch.setenv("QEMU_MODULE_DIR", str(tmp_path / "modules"))
    cache = tmp_path / "cache"
    assert load(emulator, cache_dir=cache).devices == first.devices
    (tmp_path / "modules" / os.path.basename(display)).unlink()
    without = load(emulator, cache_dir=cache)  # same binary: the module directory changed
    gone = first.devices - without.devices
    assert gone, f"removing {display} removed no device"
    assert gone <= {"qxl", "qxl-vga", "virtio-gpu-gl-device"}
    assert without.devices | gone == first.devices


@needs_qemu
def test_probe_from_running_event_loop():
    """asyncio.run refuses to nest; a caller that is itself async must still get an answer."""
    import asyncio

    async def caller():
        return probe(QEMU)

    assert asyncio.run(caller()).has_device("vmgenid")


def test_probe_quotes_qemu_stderr(tmp_path):
    emulator = script(tmp_path, """\
        echo "qemu: starting" >&2
        echo "qemu: boom" >&2
        exit 1
        """)
    with pytest.raises(CapabilitiesError) as info:
        probe(emulator)
    message = str(info.value)
    assert message.startswith(f"cannot probe {emulator}: ")
    assert "boom" in message and "status 1" in message
    assert "\n" not in message


def test_probe_quotes_only_the_last_lines(tmp_path):
    emulator = script(tmp_path, """\
        for i in 1 2 3 4 5 6 7 8 9; do echo "line $i" >&2; done
        exit 3
        """)
    with pytest.raises(CapabilitiesError, match=r"status 3 \(line 7 / line 8 / line 9\)$"):
        probe(emulator)


def test_probe_times_out_and_kills(tmp_path):
    pidfile = tmp_path / "pid"
    emulator = script(tmp_path, f"""\
        echo $$ > {pidfile}
        echo "qemu: hanging" >&2
        exec sleep 60
        """)
    with pytest.raises(CapabilitiesError, match=r"no QMP answer within 0.5 s.*hanging"):
        probe(emulator, timeout=0.5)  # the deadline's own message: it did not hang
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):  # killed and reaped, not left behind
        os.kill(pid, 0)


def test_probe_missing_binary(tmp_path):
    with pytest.raises(CapabilitiesError, match="not found"):
        probe(str(tmp_path / "nope"))


def test_probe_directory(tmp_path):
    with pytest.raises(CapabilitiesError, match="not a regular file"):
        probe(str(tmp_path))


def test_probe_qemu_killed_by_signal(tmp_path):
    with pytest.raises(CapabilitiesError, match="killed by signal 9"):
        probe(script(tmp_path, "kill -9 $$\n"))


def test_probe_non_executable(tmp_path):
    path = tmp_path / "qemu"
    path.write_text("")
    with pytest.raises(CapabilitiesError, match="not executable"):
        probe(str(path))


def test_probe_leaves_no_temp_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read $TMPDIR
    with pytest.raises(CapabilitiesError):
        probe(script(tmp_path, "exit 1\n"))
    assert list((tmp_path / "tmp").iterdir()) == []


# --------------------------------------------------------------------------- cache


def test_load_caches(fake_binary, probe_calls, tmp_path):
    cache = tmp_path / "cache"
    first = load(fake_binary, cache_dir=cache)
    assert probe_calls == [fake_binary]
    second = load(fake_binary, cache_dir=cache)
    assert probe_calls == [fake_binary]  # no second probe
    assert second == first
    data = json.loads((cache / os.path.basename(cache_path(fake_binary, cache))).read_text())
    st = os.stat(fake_binary)
    assert data["key"] == {"path": fake_binary, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                           "modules": capabilities._cache_key(fake_binary)["modules"]}
    assert data["format"] == CACHE_FORMAT
    assert Capabilities.from_dict(data["caps"]) == first


def test_cache_file_name(tmp_path):
    name = os.path.basename(cache_path("/usr/bin/qemu-system-x86_64", tmp_path))
    digest = hashlib.sha256(b"/usr/bin/qemu-system-x86_64").hexdigest()[:16]
    assert name == f"caps-{digest}.json"
    assert cache_path("/usr/bin/qemu-system-i386", tmp_path) != cache_path(
        "/usr/bin/qemu-system-x86_64", tmp_path)


@pytest.mark.parametrize("change", ["mtime", "size"])
def test_changed_binary_invalidates(fake_binary, probe_calls, tmp_path, change):
    cache = tmp_path / "cache"
    load(fake_binary, cache_dir=cache)
    if change == "mtime":
        st = os.stat(fake_binary)
        os.utime(fake_binary, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    else:
        with open(fake_binary, "ab") as f:
            f.write(b"x")
    load(fake_binary, cache_dir=cache)
    assert len(probe_calls) == 2
    load(fake_binary, cache_dir=cache)  # the rewritten cache is valid again
    assert len(probe_calls) == 2


@pytest.mark.parametrize("garbage", [
    b"", b"{", b"\xff\xfe", b"[]", b'{"key": 1}', b'{"format": 1, "key": {}, "caps": {}}',
])
def test_corrupt_cache_reprobes(fake_binary, probe_calls, tmp_path, garbage):
    cache = tmp_path / "cache"
    load(fake_binary, cache_dir=cache)
    path = cache_path(fake_binary, cache)
    with open(path, "wb") as f:
        f.write(garbage)
    assert load(fake_binary, cache_dir=cache).has_device("vmgenid")
    assert len(probe_calls) == 2
    assert json.loads(read(path))["format"] == CACHE_FORMAT


def test_corrupt_caps_with_valid_key_reprobes(fake_binary, probe_calls, tmp_path):
    cache = tmp_path / "cache"
    load(fake_binary, cache_dir=cache)
    path = cache_path(fake_binary, cache)
    data = json.loads(read(path))
    data["caps"]["version"] = "7.2"
    with open(path, "w") as f:
        json.dump(data, f)
    load(fake_binary, cache_dir=cache)
    assert len(probe_calls) == 2


def test_old_cache_format_reprobes(fake_binary, probe_calls, tmp_path):
    cache = tmp_path / "cache"
    load(fake_binary, cache_dir=cache)
    path = cache_path(fake_binary, cache)
    data = json.loads(read(path))
    data["format"] = CACHE_FORMAT - 1
    with open(path, "w") as f:
        json.dump(data, f)
    load(fake_binary, cache_dir=cache)
    assert len(probe_calls) == 2


def test_cache_is_replaced_atomically(fake_binary, probe_calls, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    load(fake_binary, cache_dir=cache)
    path = cache_path(fake_binary, cache)
    os.utime(fake_binary, ns=(0, 0))  # stale
    replaced = []
    real_replace = os.replace

    def spy(src, dst):
        # the complete new file already exists beside the old one when it is swapped in
        replaced.append((os.path.dirname(src), dst, json.loads(read(src))["key"]))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    load(fake_binary, cache_dir=cache)
    assert replaced == [(str(cache), path, capabilities._cache_key(fake_binary))]
    assert os.listdir(cache) == [os.path.basename(path)]  # no temp files left


def test_failed_replace_keeps_old_cache_and_no_temp(fake_binary, probe_calls, tmp_path,
                                                   monkeypatch):
    cache = tmp_path / "cache"
    load(fake_binary, cache_dir=cache)
    path = cache_path(fake_binary, cache)
    before = read(path)
    os.utime(fake_binary, ns=(0, 0))

    def broken(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken)
    assert load(fake_binary, cache_dir=cache).has_device("vmgenid")
    assert read(path) == before
    assert os.listdir(cache) == [os.path.basename(path)]


def test_unwritable_cache_dir_still_answers(fake_binary, probe_calls, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    cache = blocker / "cache"  # cannot be created, even by root
    assert load(fake_binary, cache_dir=cache).has_device("vmgenid")
    assert load(fake_binary, cache_dir=cache).has_device("vmgenid")
    assert len(probe_calls) == 2


def test_load_missing_binary(tmp_path, probe_calls, trust):
    with pytest.raises(CapabilitiesError, match="not found"):
        load(trust(tmp_path / "nope"), cache_dir=tmp_path)
    assert probe_calls == []


def test_load_reports_emulator_as_given(fake_binary, probe_calls, tmp_path, monkeypatch):
    """The same binary named two ways shares a cache but keeps the caller's spelling."""
    cache = tmp_path / "cache"
    load(fake_binary, cache_dir=cache)
    monkeypatch.chdir(os.path.dirname(fake_binary))
    caps = load("./qemu-system-x86_64", cache_dir=cache)
    assert caps.emulator == "./qemu-system-x86_64"
    assert len(probe_calls) == 1


def test_default_cache_dir(monkeypatch, tmp_path, fake_binary, probe_calls):
    monkeypatch.setenv("QEMUWRAP_CACHE_DIR", str(tmp_path / "q"))
    assert capabilities.default_cache_dir() == str(tmp_path / "q")
    load(fake_binary)
    assert os.path.exists(cache_path(fake_binary, tmp_path / "q"))
    monkeypatch.delenv("QEMUWRAP_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert capabilities.default_cache_dir() == str(tmp_path / "xdg" / "qemuwrap")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")  # the XDG spec says: ignore it
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert capabilities.default_cache_dir() == str(tmp_path / "home" / ".cache" / "qemuwrap")


@needs_qemu
def test_load_real_binary_copy(tmp_path, monkeypatch, trust):
    """End to end with a real QEMU whose mtime we may change: a copy of the host binary."""
    emulator = trust(tmp_path / "qemu-system-x86_64")
    shutil.copy2(QEMU, emulator)
    # QEMU finds its modules (Debian's TCG is one) relative to its own path: point the copy
    # at the installed ones.
    prefix = os.path.dirname(os.path.dirname(os.path.realpath(QEMU)))
    moddirs = glob.glob(os.path.join(prefix, "lib", "*", "qemu")) + [
        os.path.join(prefix, "lib", "qemu")]
    moddir = next((d for d in moddirs if glob.glob(os.path.join(d, "accel-*.so"))), None)
    if moddir and "QEMU_MODULE_DIR" not in os.environ:
        monkeypatch.setenv("QEMU_MODULE_DIR", moddir)
    cache = tmp_path / "cache"
    first = load(emulator, cache_dir=cache)
    assert first.has_device("vmgenid") and first.emulator == emulator

    def no_probe(*args, **kwargs):
        raise AssertionError("probed despite a valid cache")

    with monkeypatch.context() as m:
        m.setattr(capabilities, "probe", no_probe)
        assert load(emulator, cache_dir=cache) == first
        os.utime(emulator, ns=(0, 0))
        with pytest.raises(AssertionError, match="probed despite"):
            load(emulator, cache_dir=cache)
    assert load(emulator, cache_dir=cache) == first  # re-probed for real
    data = json.loads(read(cache_path(emulator, cache)))
    assert data["key"]["mtime_ns"] == 0


def test_cache_hit_imports_no_asyncio(fake_binary, probe_calls, tmp_path):
    """A dry run with a valid cache must not pay for asyncio / qemu.qmp (~60 ms)."""
    cache = tmp_path / "cache"
    load(fake_binary, cache_dir=cache)
    heavy = ["asyncio", "qemu.qmp", "subprocess", "tempfile", "concurrent.futures"]
    code = textwrap.dedent(f"""\
        import json, sys
        before = set(sys.modules)
        from qemuwrap.qemu.capabilities import load
        caps = load({fake_binary!r}, cache_dir={str(cache)!r})
        assert caps.has_device("vmgenid")
        print(json.dumps([m for m in {heavy!r} if m in sys.modules and m not in before]))
        """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert json.loads(out) == []


def test_cache_hit_speed(benchmark, fake_binary, probe_calls, tmp_path):
    cache = tmp_path / "cache"
    load(fake_binary, cache_dir=cache)
    caps = benchmark(load, fake_binary, cache_dir=cache)
    assert caps.has_device("vmgenid")
    assert len(probe_calls) == 1


def test_module_dirs_follow_debians_layout(tmp_path, monkeypatch):
    monkeypatch.delenv("QEMU_MODULE_DIR", raising=False)
    binary = tmp_path / "usr" / "bin" / "qemu-system-x86_64"
    binary.parent.mkdir(parents=True)
    binary.write_text("")
    moddir = tmp_path / "usr" / "lib" / "x86_64-linux-gnu" / "qemu"
    moddir.mkdir(parents=True)
    assert capabilities.module_dirs(str(binary)) == [str(moddir)]
    monkeypatch.setenv("QEMU_MODULE_DIR", str(tmp_path / "extra"))
    (tmp_path / "extra").mkdir()
    assert capabilities.module_dirs(str(binary)) == [str(tmp_path / "extra"), str(moddir)]


@pytest.mark.skipif(not os.path.isdir("/usr/lib/x86_64-linux-gnu/qemu"),
                    reason="no Debian QEMU module directory on this machine")
def test_module_dirs_of_the_installed_qemu(monkeypatch):
    monkeypatch.delenv("QEMU_MODULE_DIR", raising=False)
    assert "/usr/lib/x86_64-linux-gnu/qemu" in capabilities.module_dirs(
        "/usr/bin/qemu-system-x86_64")


def test_module_directory_change_invalidates(tmp_path, probe_calls, trust):
    """issue 10: installing or removing a module package left a stale device list."""
    binary = tmp_path / "usr" / "bin" / "qemu-system-x86_64"
    binary.parent.mkdir(parents=True)
    binary.write_text("")
    moddir = tmp_path / "usr" / "lib" / "x86_64-linux-gnu" / "qemu"
    moddir.mkdir(parents=True)
    emulator = trust(binary)
    cache = tmp_path / "cache"
    load(emulator, cache_dir=cache)
    load(emulator, cache_dir=cache)
    assert len(probe_calls) == 1
    (moddir / "hw-display-virtio-gpu-gl.so").write_text("")  # a package added a module
    os.utime(moddir, ns=(0, os.stat(moddir).st_mtime_ns + 1_000_000_000))
    load(emulator, cache_dir=cache)
    assert len(probe_calls) == 2


# --------------------------------------------------------------------------- trust


def evil_script(tmp_path) -> tuple[str, str]:
    """A program a hostile definition might name: it leaves a marker when run."""
    marker = tmp_path / "ran"
    return script(tmp_path, f"touch {marker}\nexit 1\n", name="evil-qemu"), str(marker)


def test_untrusted_emulator_is_never_run(tmp_path, probe_calls):
    """issue 9: dry-run and validate of an untrusted definition ran its <emulator>."""
    evil, marker = evil_script(tmp_path)
    for call in (lambda: load(evil, cache_dir=tmp_path),
                 lambda: capabilities.for_domain(evil)):
        with pytest.raises(emulators.UntrustedEmulatorError) as exc:
            call()
        message = str(exc.value)
        assert message.startswith(f"emulator {evil} is not trusted: it is not a QEMU binary "
                                  "of a Debian package; to run it, add its path to "
                                  "/etc/qemuwrap/emulators")
        assert "--caps FILE" in message and "\n" not in message
    assert probe_calls == [] and not os.path.exists(marker)
    assert capabilities.for_domain(evil, str(DEFAULT_CAPS)).has_device("vmgenid")  # no probe


def test_cli_refuses_an_untrusted_emulator(tmp_path):
    evil, marker = evil_script(tmp_path)
    xml = tmp_path / "evil.xml"
    xml.write_text((ROOT / "data" / "xml2argv" / "genid.xml").read_text().replace(
        "/usr/bin/qemu-system-x86_64", evil))
    env = {k: v for k, v in os.environ.items() if k != "QEMUWRAP_CONFIG_DIR"}
    env["QEMUWRAP_CACHE_DIR"] = str(tmp_path / "cache")
    for command in ("dry-run", "validate"):
        res = subprocess.run([sys.executable, "-m", "qemuwrap", command, str(xml)],
                             capture_output=True, text=True, env=env, timeout=60)
        assert res.returncode == 1
        assert res.stderr.startswith(f"qemuwrap: {xml}: emulator {evil} is not trusted")
        assert res.stderr.count("\n") == 1
    assert not os.path.exists(marker)


def test_configured_emulator_is_trusted(tmp_path, trust, probe_calls):
    evil, _marker = evil_script(tmp_path)
    trust("# my own build")
    trust(evil)
    assert load(evil, cache_dir=tmp_path / "cache").has_device("vmgenid")
    assert probe_calls == [evil]


@pytest.mark.parametrize("problem", ["group-writable", "world-writable-dir", "other-owner",
                                     "relative-line"])
def test_unsafe_configuration_is_refused(tmp_path, trust, probe_calls, problem):
    evil, _marker = evil_script(tmp_path)
    trust(evil)
    config = tmp_path / "config" / "emulators"
    if problem == "group-writable":
        os.chmod(config, 0o664)
        expected = f"not trusting {config}: others may write it (mode 0664)"
    elif problem == "world-writable-dir":
        os.chmod(config.parent, 0o777)
        expected = f"not trusting {config.parent}: others may write it (mode 0777)"
    elif problem == "other-owner":
        if os.geteuid() != 0:
            pytest.skip("giving the file away needs root")
        os.chown(config, 65534, 65534)
        expected = f"not trusting {config}: it belongs to uid 65534, not to root or you"
    else:
        trust("qemu-system-x86_64")
        expected = f"{config}: line 2: not an absolute path"
    with pytest.raises(emulators.UntrustedEmulatorError) as exc:
        load(evil, cache_dir=tmp_path / "cache")
    assert str(exc.value) == expected
    assert probe_calls == []


@pytest.mark.skipif(not os.path.exists("/var/lib/dpkg/info/qemu-system-x86.list"),
                    reason="Debian's qemu-system-x86 package is not installed")
def test_debian_binaries_are_trusted(monkeypatch):
    monkeypatch.delenv("QEMUWRAP_CONFIG_DIR", raising=False)
    assert "/usr/bin/qemu-system-x86_64" in emulators.debian_binaries()
    emulators.check("/usr/bin/qemu-system-x86_64")
    emulators.check("/usr/bin/../bin/qemu-system-x86_64")
    if os.path.islink("/bin"):
        emulators.check("/bin/qemu-system-x86_64")  # usrmerge: the same file
    with pytest.raises(emulators.UntrustedEmulatorError):
        emulators.check("/usr/bin/qemu-img")  # Debian's, but not an emulator
