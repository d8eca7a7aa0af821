"""Firmware selection from QEMU's firmware descriptors: the installed OVMF descriptors
(picked as libvirt 9.0 picks them, checked against libvirt itself when it is installed),
synthetic descriptors for the precedence rules and refusals, and ``qemuwrap start`` of
the demo guest with ``<os firmware='efi'>`` on q35, booting through the picked OVMF.
The options themselves are built in ``qemu/build/boot.py`` (golden cases
``data/xml2argv/*efi*``, ``*loader*``)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from qemuwrap.qemu import firmware
from qemuwrap.qemu.firmware import FirmwareError

from conftest import QEMU
from test_launcher import Env

INSTALLED = Path(firmware.SYSTEM_DIR) / "60-edk2-x86_64.json"
needs_ovmf = pytest.mark.skipif(
    not INSTALLED.is_file(), reason="OVMF's descriptors are not installed (Debian package ovmf)")
Q35 = "pc-q35-7.2"
PC = "pc-i440fx-7.2"


def write(directory: Path, name: str, *, interfaces=("uefi",), machines=("pc-q35-*",),
          features=(), code="/fw/CODE.fd", template: str | None = "/fw/VARS.fd",
          fmt="raw", device="flash", arch="x86_64") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    mapping: dict = {"device": device}
    if device == "flash":
        mapping["executable"] = {"filename": code, "format": fmt}
        if template is not None:
            mapping["nvram-template"] = {"filename": template, "format": fmt}
        else:
            mapping["mode"] = "stateless"
    else:
        mapping["filename"] = code
    doc = {"description": name, "interface-types": list(interfaces), "mapping": mapping,
           "targets": [{"architecture": arch, "machines": list(machines)}],
           "features": list(features), "tags": []}
    path = directory / name
    path.write_text(json.dumps(doc))
    return path


# --- the installed descriptors ------------------------------------------------------------------


@needs_ovmf
@pytest.mark.parametrize(("machine", "wishes", "expected"), [
    # libvirt's pick for a plain <os firmware='efi'> on q35: the first file, MS keys enrolled.
    (Q35, {}, "40-edk2-x86_64-secure-enrolled.json"),
    (Q35, {"secure_boot": False}, "60-edk2-x86_64.json"),
    (Q35, {"secure_boot": True, "enrolled_keys": False}, "50-edk2-x86_64-secure.json"),
    (Q35, {"enrolled_keys": True}, "40-edk2-x86_64-secure-enrolled.json"),
    (PC, {}, "60-edk2-x86_64.json"),  # the secure builds need q35 (SMM)
])
def test_installed_descriptors_pick_like_libvirt(machine, wishes, expected):
    fw = firmware.select("uefi", "x86_64", machine, dirs=[firmware.SYSTEM_DIR], **wishes)
    assert os.path.basename(fw.descriptor.path) == expected
    assert os.path.isfile(fw.loader) and fw.nvram_template and os.path.isfile(fw.nvram_template)
    secure = expected != "60-edk2-x86_64.json"
    assert fw.requires_smm is secure and fw.secure is secure


@needs_ovmf
def test_no_match_is_one_line_with_what_was_asked_and_what_exists():
    with pytest.raises(FirmwareError) as info:
        firmware.select("uefi", "x86_64", PC, secure_boot=True, dirs=[firmware.SYSTEM_DIR])
    text = str(info.value)
    assert "\n" not in text
    assert "uefi firmware for x86_64 machine pc-i440fx-7.2, secure-boot on" in text
    assert "60-edk2-x86_64.json (uefi; x86_64 pc-i440fx-*,pc-q35-*;" in text
    with pytest.raises(FirmwareError, match="bios firmware for x86_64"):
        firmware.select("bios", "x86_64", Q35, dirs=[firmware.SYSTEM_DIR])


VIRSH = shutil.which("virsh")


@needs_ovmf
@pytest.mark.skipif(VIRSH is None, reason="libvirt's virsh is not installed (libvirt-clients)")
@pytest.mark.parametrize("features", ["", "<feature enabled='no' name='secure-boot'/>",
                                      "<feature enabled='no' name='enrolled-keys'/>"])
def test_agrees_with_libvirt(tmp_path, features):
    """libvirt 9.0 (daemonless) picks the same code and template for the same request."""
    xml = tmp_path / "g.xml"
    xml.write_text(f"""<domain type='qemu'><name>g</name><memory>131072</memory>
      <os firmware='efi'><type arch='x86_64' machine='q35'>hvm</type>
      <firmware>{features}</firmware></os><features><acpi/></features></domain>""")
    root = tmp_path / "embed"
    out = subprocess.run([VIRSH, "-q", "-c", f"qemu:///embed?root={root}", "domxml-to-native",
                          "qemu-argv", str(xml)], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        pytest.skip(f"virsh failed here: {out.stderr.strip()}")
    files = re.findall(r'"filename":"([^"]+)","node-name":"libvirt-pflash0-storage"', out.stdout)
    wishes = {}
    if "secure-boot" in features:
        wishes["secure_boot"] = False
    if "enrolled-keys" in features:
        wishes["enrolled_keys"] = False
    fw = firmware.select("uefi", "x86_64", Q35, dirs=[firmware.SYSTEM_DIR], **wishes)
    assert files == [fw.loader]
    assert ("smm=on" in out.stdout) is fw.requires_smm
    assert ("property=secure,value=on" in out.stdout) is fw.secure


# --- synthetic descriptors --------------------------------------------------------------------


def test_precedence_override_hide_and_order(tmp_path):
    system, etc, user = tmp_path / "share", tmp_path / "etc", tmp_path / "user"
    write(system, "50-a.json", code="/sys/a")
    write(system, "60-b.json", code="/sys/b")
    write(system, "70-c.json", code="/sys/c")
    write(etc, "60-b.json", code="/etc/b")  # replaces the distribution's file of that name
    (etc / "50-a.json").write_text("")  # an empty file hides it
    write(user, "55-u.json", code="/user/u")  # sorted in by file name, not by directory
    (system / "README").write_text("not a descriptor")
    dirs = [str(system), str(etc), str(user)]
    assert firmware.descriptor_files(dirs) == [
        str(user / "55-u.json"), str(etc / "60-b.json"), str(system / "70-c.json")]
    assert firmware.select("uefi", "x86_64", Q35, dirs=dirs).loader == "/user/u"
    assert firmware.descriptor_files([str(tmp_path / "missing")]) == []


def test_search_dirs_user_dir_only_unprivileged():
    env = {"XDG_CONFIG_HOME": "/home/u/cfg", "HOME": "/home/u"}
    assert firmware.search_dirs(True, env) == [firmware.SYSTEM_DIR, firmware.SYSCONF_DIR]
    assert firmware.search_dirs(False, env)[-1] == "/home/u/cfg/qemu/firmware"
    assert firmware.search_dirs(False, {"HOME": "/home/u"})[-1] == "/home/u/.config/qemu/firmware"


def test_machine_glob_arch_and_interface(tmp_path):
    write(tmp_path, "10-arm.json", arch="aarch64", machines=("virt-*",), code="/arm")
    write(tmp_path, "20-bios.json", interfaces=("bios",), device="memory", code="/bios.bin",
          machines=("pc-*",))
    write(tmp_path, "30-pc.json", machines=("pc-i440fx-*",), code="/pc")
    dirs = [str(tmp_path)]
    assert firmware.select("uefi", "x86_64", PC, dirs=dirs).loader == "/pc"
    bios = firmware.select("bios", "x86_64", Q35, dirs=dirs)
    assert (bios.loader_type, bios.loader) == ("rom", "/bios.bin")
    assert firmware.select("uefi", "aarch64", "virt-7.2", dirs=dirs).loader == "/arm"
    with pytest.raises(FirmwareError, match="machine q35"):  # aliases are not machine types
        firmware.select("uefi", "x86_64", "q35", dirs=dirs)


def test_features_loader_and_smm(tmp_path):
    write(tmp_path, "10-secure.json", features=("secure-boot", "requires-smm"), code="/sec")
    write(tmp_path, "20-plain.json", code="/plain")
    dirs = [str(tmp_path)]
    assert firmware.select("uefi", "x86_64", Q35, dirs=dirs).loader == "/sec"
    assert firmware.select("uefi", "x86_64", Q35, secure_boot=False, dirs=dirs).loader == "/plain"
    # An explicit <loader> path picks the descriptor that maps it (for its template).
    picked = firmware.select("uefi", "x86_64", Q35, loader="/plain", dirs=dirs)
    assert picked.nvram_template == "/fw/VARS.fd"
    with pytest.raises(FirmwareError, match="secure loader"):
        firmware.select("uefi", "x86_64", Q35, loader="/plain", loader_secure=True, dirs=dirs)
    with pytest.raises(FirmwareError, match="requires SMM, which the domain turns off"):
        firmware.select("uefi", "x86_64", Q35, smm=False, dirs=dirs)


def test_formats_and_stateless(tmp_path):
    write(tmp_path, "10-vmdk.json", fmt="vmdk", code="/vmdk")
    write(tmp_path, "20-qcow2.json", fmt="qcow2", code="/q")
    write(tmp_path, "30-stateless.json", template=None, code="/s", machines=("pc-i440fx-*",))
    dirs = [str(tmp_path)]
    fw = firmware.select("uefi", "x86_64", Q35, dirs=dirs)
    assert fw.loader == "/q" and fw.nvram_format == "qcow2"
    stateless = firmware.select("uefi", "x86_64", PC, dirs=dirs)
    assert stateless.nvram_template is None and stateless.loader_type == "pflash"


@pytest.mark.parametrize(("text", "message"), [
    ("{", "not valid JSON"),
    ("[]", "not a firmware descriptor"),
    ('{"interface-types": "uefi"}', "'interface-types' is missing or not a list"),
    ('{"interface-types": ["uefi"], "mapping": {"device": "flash"}}',
     "'mapping.executable' is missing or not an object"),
    ('{"interface-types": ["uefi"], "mapping": {"device": "floppy"}}', "unknown 'mapping.device'"),
    ('{"interface-types": ["uefi"], "mapping": {"device": "memory", "filename": "/x"},'
     ' "targets": [{"architecture": "x86_64", "machines": [1]}]}',
     "'targets[0].machines' must list strings"),
])
def test_bad_descriptor_is_one_line_naming_the_file(tmp_path, text, message):
    (tmp_path / "10-bad.json").write_text(text)
    with pytest.raises(FirmwareError) as info:
        firmware.select("uefi", "x86_64", Q35, dirs=[str(tmp_path)])
    assert str(info.value).startswith(f"{tmp_path / '10-bad.json'}: ")
    assert message in str(info.value) and "\n" not in str(info.value)


# --- a real boot through OVMF, by qemuwrap -----------------------------------------------------


@pytest.fixture
def env(tmp_path, demo_image, monkeypatch):
    monkeypatch.setenv("QEMUWRAP_DATA_DIR", str(tmp_path / "data"))  # the VARS copies
    e = Env(tmp_path, demo_image)
    yield e
    e.cleanup()


def efi_demo(env: Env, features: str):
    """The demo guest on q35 with ``<os firmware='efi'>`` (direct kernel boot through
    OVMF). iomem=relaxed: under OVMF the vmgenid buffer is in ACPI NVS memory, which
    the guest reads through /dev/mem."""
    path = env.xml(cmdline="iomem=relaxed")
    text = re.sub(r"<type arch='x86_64' machine='[^']*'>",
                  "<type arch='x86_64' machine='q35'>", path.read_text())
    path.write_text(text.replace("<os>", f"<os firmware='efi'><firmware>{features}"
                                         "</firmware>", 1))
    return path


@needs_ovmf
@pytest.mark.slow
@pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 is not installed")
@pytest.mark.parametrize("features, secure", [
    # Secure boot off (60-edk2-x86_64.json). Enforced secure boot (the default pick:
    # Microsoft's keys enrolled) would put the guest kernel in lockdown, which closes
    # /dev/mem, and the demo guest reads its genid through /dev/mem.
    ("<feature enabled='no' name='secure-boot'/>", False),
    # The secure-boot build without keys (50-edk2-x86_64-secure.json): nothing is
    # enforced, but qemuwrap builds it differently (SMM on, the SMM-only VARS lock).
    ("<feature enabled='yes' name='secure-boot'/><feature enabled='no' "
     "name='enrolled-keys'/>", True),
], ids=["plain", "secure-boot-build"])
def test_demo_guest_boots_through_ovmf_and_reads_its_genid(env, tmp_path, features, secure):
    """``qemuwrap start`` of an ``<os firmware='efi'>`` guest: the firmware the
    descriptors pick, the guest's own VARS copy made on first start, recorded in the
    live definition as libvirt records it, written by OVMF and kept after ``destroy``;
    inside, the guest sees EFI and reads the genid qemuwrap gave it. An internal snapshot
    is refused in one line while it runs (its VARS are a raw pflash image)."""
    path = efi_demo(env, features)
    res = env.qw("start", str(path))
    assert res.returncode == 0, res.stderr
    out = env.wait_serial("demo", r"genid: [0-9a-f-]{36}", timeout=240)
    assert "efi: yes" in out
    genid = re.search(r"genid: ([0-9a-f-]{36})", out).group(1)
    assert genid == env.status("demo")["genid"]
    fw = firmware.select("uefi", "x86_64", Q35, dirs=[firmware.SYSTEM_DIR],
                         secure_boot=secure, **({"enrolled_keys": False} if secure else {}))
    argv = env.record("demo")["argv"]
    assert any(fw.loader in a for a in argv)
    assert any("smm=on" in a for a in argv) is secure
    assert ("driver=cfi.pflash01,property=secure,value=on" in argv) is secure
    vars_fd = tmp_path / "data" / "nvram" / "demo_VARS.fd"
    assert vars_fd.is_file()  # the guest's own copy, in the persistent place
    live = (env.gdir("demo") / "domain.xml").read_text()
    assert f"<nvram template='{fw.nvram_template}'>{vars_fd}</nvram>" in live
    assert f">{fw.loader}</loader>" in live

    res = env.qw("snapshot", "create", "demo", "s1")
    assert res.returncode == 1 and res.stderr.count("\n") == 1, res.stderr
    assert "internal snapshots of a UEFI guest are not supported" in res.stderr
    assert env.status("demo")["state"] == "running"  # QEMU was not asked

    res = env.qw("destroy", "demo")
    assert res.returncode == 0, res.stderr
    assert vars_fd.is_file()  # kept across starts
    # OVMF wrote its variables into the guest's own copy, never into the template.
    assert vars_fd.read_bytes() != Path(fw.nvram_template).read_bytes()


@pytest.mark.slow
@pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 is not installed")
def test_demo_guest_under_seabios_says_no_efi(env):
    res = env.qw("run", str(env.xml(genid=None, cmdline="qemuwrap.poweroff=1")))
    assert res.returncode == 0, res.stderr
    out = env.serial("demo")
    assert "genid: none\n" in out and "efi: no\n" in out
