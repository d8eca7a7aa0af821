"""What a QEMU binary can do (libvirt's qemu_capabilities.c), probed over QMP and cached.

The command builder must know the binary's version, devices (``vmgenid``),
machine types and their aliases before it writes a single option. Asking QEMU
costs ~100 ms, so :func:`load` keeps the answer on disk keyed by the binary's
path, size and mtime and its module directories' mtimes. Only trusted emulators are
probed (``emulators.py``). A cache hit must stay cheap: this module imports only
json and os at the top; asyncio, subprocess and qemu.qmp
are imported inside :func:`probe`, which a hit never calls.

Regenerate a shipped capabilities file (like libvirt's qemucapabilitiesdata)::

    python -m qemuwrap.qemu.capabilities /usr/bin/qemu-system-x86_64 > data/caps/FILE.json
"""

from __future__ import annotations

import contextlib
import json
import os

from qemuwrap.errors import QemuwrapError
from qemuwrap.record import Record

# The builtin SHA-256: hashlib would load OpenSSL (~3 ms) for one short digest per run.
try:
    from _sha2 import sha256  # Python 3.12+
except ImportError:
    try:
        from _sha256 import sha256  # Python 3.11
    except ImportError:
        from hashlib import sha256

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    import subprocess
    from pathlib import Path

#: Bump when the cached layout or the meaning of a field changes: old caches re-probe.
CACHE_FORMAT = 3
#: Lines of QEMU's stderr quoted in a probe error.
STDERR_TAIL_LINES = 3


class CapabilitiesError(QemuwrapError):
    """The binary could not be probed or a capabilities file is unusable (one-line message).

    A QemuwrapError, so the CLI prints it as one line without a traceback.
    """


class Machine(Record):
    """One machine type; the alias (``pc``, ``q35``) is what most XML names."""

    name: str
    alias: str | None
    is_default: bool


class Capabilities(Record):
    """The facts about one binary that decide which options the command may use."""

    emulator: str
    version: tuple[int, int, int]
    package: str
    arch: str
    devices: frozenset[str]
    machines: tuple[Machine, ...]
    accelerators: frozenset[str]
    #: CPU models (``query-cpu-definitions``) and the feature flags of ``max``; empty
    #: when unknown (an older capabilities file): qemu/cpumodels.py then has QEMU 7.2's.
    cpu_models: frozenset[str] = frozenset()
    cpu_features: frozenset[str] = frozenset()
    #: The flags ``max`` turns on under TCG: the "host CPU" libvirt checks an optional
    #: ``<feature>`` against for a TCG guest (its host-model is made from them).
    tcg_cpu_features: frozenset[str] = frozenset()

    def has_device(self, name: str) -> bool:
        return name in self.devices

    def resolve_machine(self, name: str) -> Machine | None:
        """The machine a name means: canonical names win over aliases, as in QEMU."""
        index = self.__dict__.get("_machine_index")
        if index is None:  # built once per capabilities object: every translation asks
            index = {m.alias: m for m in self.machines if m.alias}
            index.update((m.name, m) for m in self.machines)
            self.__dict__["_machine_index"] = index
        return index.get(name)

    def to_dict(self) -> dict:
        """JSON-ready, with sorted sets so files diff cleanly."""
        return {
            "emulator": self.emulator,
            "version": list(self.version),
            "package": self.package,
            "arch": self.arch,
            "accelerators": sorted(self.accelerators),
            "machines": [{"name": m.name, "alias": m.alias, "is_default": m.is_default}
                         for m in self.machines],
            "devices": sorted(self.devices),
            "cpu_models": sorted(self.cpu_models),
            "cpu_features": sorted(self.cpu_features),
            "tcg_cpu_features": sorted(self.tcg_cpu_features),
        }

    @classmethod
    def from_dict(cls, d) -> Capabilities:
        """Checked strictly (a cache or hand-edited file may be anything); unknown keys ignored."""
        try:
            if not isinstance(d, dict):
                raise ValueError("not a JSON object")
            version = d["version"]
            if not (isinstance(version, list) and len(version) == 3
                    and all(type(v) is int for v in version)):
                raise ValueError("'version' must be three integers")
            machines = []
            for m in _list_of(d, "machines", dict):
                alias = m.get("alias")
                if not (isinstance(m.get("name"), str) and (alias is None or isinstance(alias, str))
                        and isinstance(m.get("is_default"), bool)):
                    raise ValueError(f"bad machine entry {m!r}")
                machines.append(Machine(m["name"], alias, m["is_default"]))
            return cls(
                emulator=_str(d, "emulator"),
                version=(version[0], version[1], version[2]),
                package=_str(d, "package"),
                arch=_str(d, "arch"),
                devices=frozenset(_list_of(d, "devices", str)),
                machines=tuple(machines),
                accelerators=frozenset(_list_of(d, "accelerators", str)),
                cpu_models=frozenset(_list_of(d, "cpu_models", str, optional=True)),
                cpu_features=frozenset(_list_of(d, "cpu_features", str, optional=True)),
                tcg_cpu_features=frozenset(_list_of(d, "tcg_cpu_features", str,
                                                    optional=True)),
            )
        except KeyError as exc:
            raise CapabilitiesError(f"bad capabilities data: missing {exc}") from None
        except ValueError as exc:
            raise CapabilitiesError(f"bad capabilities data: {exc}") from None

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> Capabilities:
        """Fixed capabilities (tests, --caps): no QEMU needed."""
        try:
            with open(path, "rb") as f:
                data = json.load(f)
        except OSError as exc:
            raise CapabilitiesError(f"cannot read capabilities file {os.fspath(path)}: "
                                    f"{exc.strerror}") from None
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            raise CapabilitiesError(f"capabilities file {os.fspath(path)} is not valid JSON: "
                                    f"{exc}") from None
        try:
            return cls.from_dict(data)
        except CapabilitiesError as exc:
            raise CapabilitiesError(f"capabilities file {os.fspath(path)}: {exc}") from None


def _str(d: dict, key: str) -> str:
    value = d[key]
    if not isinstance(value, str):
        raise ValueError(f"{key!r} must be a string")
    return value


def _list_of(d: dict, key: str, kind: type, *, optional: bool = False) -> list:
    if optional and key not in d:
        return []
    value = d[key]
    if not (isinstance(value, list) and all(isinstance(v, kind) for v in value)):
        raise ValueError(f"{key!r} must be a list of {kind.__name__}")
    return value


def dumps(caps: Capabilities, **extra) -> str:
    """The text of a shipped capabilities file: one machine or device a line, so diffs
    between QEMU versions read as lists of what came and went. ``extra`` keys (such
    as "comment") go first; from_dict ignores them."""
    fields = []
    for key, value in {**extra, **caps.to_dict()}.items():
        if isinstance(value, list) and value and not all(type(v) is int for v in value):
            items = ",\n".join("  " + json.dumps(v) for v in value)
            text = f"[\n{items}\n ]"
        else:
            text = json.dumps(value)
        fields.append(f" {json.dumps(key)}: {text}")
    return "{\n" + ",\n".join(fields) + "\n}\n"


# --------------------------------------------------------------------------- probing


def probe(emulator: str, *, timeout: float = 10.0) -> Capabilities:
    """Ask the binary itself over QMP (help text is not a stable interface); ~100 ms.

    QEMU runs with no machine, TCG and -S, so it touches no guest resources and
    needs no /dev/kvm. The process never outlives this call.
    """
    emulator = os.fspath(emulator)
    if not os.path.exists(emulator):
        raise CapabilitiesError(f"cannot probe {emulator}: not found")
    if not os.path.isfile(emulator):
        raise CapabilitiesError(f"cannot probe {emulator}: not a regular file")
    if not os.access(emulator, os.X_OK):
        raise CapabilitiesError(f"cannot probe {emulator}: not executable")

    import asyncio
    import shutil
    import subprocess
    import tempfile

    tmpdir = tempfile.mkdtemp(prefix="qemuwrap-probe-")
    if len(tmpdir) > 90:  # sun_path holds 108 bytes; a long $TMPDIR would not fit
        os.rmdir(tmpdir)
        tmpdir = tempfile.mkdtemp(prefix="qemuwrap-probe-", dir="/tmp")
    sock = os.path.join(tmpdir, "qmp.sock")
    errlog = os.path.join(tmpdir, "stderr")
    argv = [emulator, "-S", "-no-user-config", "-nodefaults", "-display", "none",
            "-machine", "none,accel=tcg", "-qmp", f"unix:{sock},server=on,wait=off"]
    proc: subprocess.Popen | None = None
    try:
        with open(errlog, "wb") as err:  # a file, not a pipe: QEMU can never block on it
            try:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=err)
            except OSError as exc:
                raise CapabilitiesError(f"cannot probe {emulator}: {exc.strerror}") from None
        try:
            replies = _run(asyncio.wait_for(_converse(proc, sock), timeout))
            caps = _caps_from_replies(emulator, replies)
        except Exception as exc:
            if isinstance(exc, TimeoutError):
                reason = f"no QMP answer within {timeout:g} s"
            elif isinstance(exc, _Exited):
                reason = (f"QEMU exited with status {exc.status}" if exc.status >= 0
                          else f"QEMU was killed by signal {-exc.status}")
            else:
                reason = str(exc).replace("\n", " ") or type(exc).__name__
            _kill(proc)
            raise CapabilitiesError(f"cannot probe {emulator}: {reason}"
                                    f"{_stderr_tail(errlog)}") from exc
        # answered but slow to quit: the finally below kills it
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=min(timeout, 5.0))
        return caps
    finally:
        if proc is not None:
            _kill(proc)
        shutil.rmtree(tmpdir, ignore_errors=True)


class _Exited(Exception):
    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


def _run(coro):
    """asyncio.run, also from inside a running loop (then in a worker thread)."""
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _converse(proc: subprocess.Popen, sock: str) -> dict:
    import asyncio

    from qemu.qmp import QMPClient

    qmp = QMPClient("qemuwrap-probe")
    # QEMU creates the socket while starting up: retry until it accepts or QEMU dies.
    while True:
        if proc.poll() is not None:
            raise _Exited(proc.returncode)
        if os.path.exists(sock):
            try:
                await qmp.connect(sock)
                break
            except Exception:
                if proc.poll() is not None:
                    raise _Exited(proc.returncode) from None
        await asyncio.sleep(0.005)
    try:
        replies: dict[str, object] = {
            "version": await qmp.execute("query-version"),
            "target": await qmp.execute("query-target"),
            "machines": await qmp.execute("query-machines"),
            "devices": await qmp.execute("qom-list-types",
                                         {"implements": "device", "abstract": False}),
            "accel": await qmp.execute("qom-list-types",
                                       {"implements": "accel", "abstract": False}),
        }
        target = replies["target"]
        if isinstance(target, dict) and target.get("arch") in ("x86_64", "i386"):
            replies["cpus"] = await qmp.execute("query-cpu-definitions")
            replies["cpu_max"] = await qmp.execute(
                "query-cpu-model-expansion", {"type": "full", "model": {"name": "max"}})
        # QEMU has answered commands, so it is fully up and exits cleanly on quit; the
        # quit reply itself can lose the race with QEMU closing the socket.
        with contextlib.suppress(Exception):
            await qmp.execute("quit")
        return replies
    finally:
        with contextlib.suppress(EOFError):  # expected after quit
            await qmp.disconnect()


def _caps_from_replies(emulator: str, r: dict) -> Capabilities:
    import re

    def natural(name: str):
        return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]

    qemu = r["version"]["qemu"]
    # probed under TCG (-machine none,accel=tcg): max's flags are TCG's
    max_props = r["cpu_max"]["model"]["props"] if "cpu_max" in r else {}
    machines = sorted((Machine(m["name"], m.get("alias"), bool(m.get("is-default", False)))
                       for m in r["machines"]), key=lambda m: natural(m.name))
    return Capabilities(
        emulator=emulator,
        version=(qemu["major"], qemu["minor"], qemu["micro"]),
        package=r["version"].get("package", "").strip(),
        arch=r["target"]["arch"],
        devices=frozenset(t["name"] for t in r["devices"]),
        machines=tuple(machines),
        # the abstract base "accel" is listed too; real ones are "<name>-accel"
        accelerators=frozenset(t["name"].removesuffix("-accel") for t in r["accel"]
                               if t["name"].endswith("-accel")),
        cpu_models=frozenset(c["name"] for c in r.get("cpus", ())
                             if c["name"] not in ("host", "max", "base")),
        cpu_features=frozenset(k for k, v in max_props.items()
                               if isinstance(v, bool) and _is_cpu_flag(k)),
        tcg_cpu_features=frozenset(k for k, v in max_props.items()
                                   if v is True and _is_cpu_flag(k)),
    )


#: Boolean properties of an x86 CPU object that are QEMU's settings, not CPUID flags.
_CPU_SETTINGS = frozenset((
    "check", "cpuid-0xb", "enforce", "fill-mtrr-mask", "full-cpuid-auto-level",
    "host-cache-info", "host-phys-bits", "hv-enforce-cpuid", "hv-passthrough",
    "kvm-no-smi-migration", "kvm-pv-enforce-cpuid", "l3-cache", "legacy-cache",
    "kvm", "migratable", "pmu", "realized", "start-powered-off", "tcg-cpuid",
    "vmware-cpuid-freq"))


def _is_cpu_flag(name: str) -> bool:
    return name not in _CPU_SETTINGS and not name.startswith("x-")


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def _stderr_tail(path: str) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f" ({' / '.join(lines[-STDERR_TAIL_LINES:])})" if lines else ""


# --------------------------------------------------------------------------- caching


def default_cache_dir() -> str:
    """$QEMUWRAP_CACHE_DIR, else $XDG_CACHE_HOME/qemuwrap, else ~/.cache/qemuwrap."""
    if os.environ.get("QEMUWRAP_CACHE_DIR"):
        return os.environ["QEMUWRAP_CACHE_DIR"]
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):  # the XDG spec says to ignore relative paths
        return os.path.join(xdg, "qemuwrap")
    return os.path.join(os.path.expanduser("~"), ".cache", "qemuwrap")


def cache_path(emulator: str, cache_dir: str | os.PathLike | None = None) -> str:
    """The cache file for one binary: one file per path, so binaries never evict each other."""
    directory = os.fspath(cache_dir) if cache_dir is not None else default_cache_dir()
    digest = sha256(os.fsencode(os.path.abspath(emulator))).hexdigest()[:16]
    return os.path.join(directory, f"caps-{digest}.json")


def module_dirs(emulator: str) -> list[str]:
    """Where this QEMU loads its modules from (devices, accelerators, displays): they come
    from other packages (qemu-system-gui, qemu-block-extra), so the device list depends
    on them.  $QEMU_MODULE_DIR first, as QEMU searches, then the module directory beside
    the binary's prefix: ``/usr/lib/<multiarch>/qemu`` in Debian's layout,
    ``<prefix>/lib/qemu`` or ``lib64/qemu`` in upstream's."""
    dirs = []
    env = os.environ.get("QEMU_MODULE_DIR")
    if env:
        dirs.append(os.path.abspath(env))
    prefix = os.path.dirname(os.path.dirname(os.path.realpath(emulator)))
    lib = os.path.join(prefix, "lib")
    candidates = [os.path.join(lib, "qemu"), os.path.join(prefix, "lib64", "qemu")]
    try:
        candidates += [os.path.join(lib, d, "qemu") for d in sorted(os.listdir(lib))
                       if "-linux-" in d]
    except OSError:
        pass
    dirs.extend(d for d in candidates if os.path.isdir(d) and d not in dirs)
    return dirs


def _cache_key(emulator: str) -> dict:
    """What the answer depends on: the binary (path, size, mtime) and its module
    directories (their mtimes change when a package adds or removes a module; libvirt
    keys its cache the same way)."""
    try:
        st = os.stat(emulator)
    except FileNotFoundError:
        raise CapabilitiesError(f"QEMU binary {emulator} not found") from None
    except OSError as exc:
        raise CapabilitiesError(f"cannot probe {emulator}: {exc.strerror}") from None
    modules = {}
    for directory in module_dirs(emulator):
        try:
            modules[directory] = os.stat(directory).st_mtime_ns
        except OSError:
            continue
    return {"path": os.path.abspath(emulator), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "modules": modules}


def _read_cache(path: str, key: dict) -> Capabilities | None:
    try:
        with open(path, "rb") as f:
            data = json.load(f)
        if data.get("format") != CACHE_FORMAT or data.get("key") != key:
            return None
        return Capabilities.from_dict(data["caps"])
    except (OSError, ValueError, AttributeError, KeyError, CapabilitiesError):
        return None  # missing, stale or corrupt: probe again


def _write_atomic(path: str, text: str) -> None:
    """Readers see the old file or the new one, never a torn one."""
    import tempfile

    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".caps-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable; best effort
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


DEFAULT_EMULATOR = "/usr/bin/qemu-system-x86_64"


def for_domain(emulator: str | None, caps_file: str | None = None) -> Capabilities:
    """The capabilities a domain is translated against: a fixed file when given (tests,
    offline use; nothing is probed), else the cached probe of its ``<emulator>`` (or
    QEMU's usual path), which must be a trusted emulator."""
    if caps_file:
        return Capabilities.from_file(caps_file)
    return load(emulator or DEFAULT_EMULATOR)


def load(emulator: str, *, cache_dir: Path | str | None = None) -> Capabilities:
    """The binary's capabilities, from the cache when the binary is unchanged, else probed.

    Only a trusted emulator (``emulators.check``) is probed, and a cached answer is
    only given for one: the caller is about to run it.  A cache that cannot be written
    only costs the next run a probe, so write errors are ignored.
    """
    from qemuwrap.qemu import emulators

    emulator = os.fspath(emulator)
    emulators.check(emulator)
    key = _cache_key(emulator)
    path = cache_path(emulator, cache_dir)
    caps = _read_cache(path, key)
    if caps is not None:
        if caps.emulator != emulator:
            caps.emulator = emulator
        return caps
    caps = probe(emulator)
    try:
        if _cache_key(emulator) == key:  # not replaced while we probed it
            _write_atomic(path, json.dumps({"key": key, "format": CACHE_FORMAT,
                                            "caps": caps.to_dict()}, separators=(",", ":")))
    except (OSError, CapabilitiesError):
        pass
    return caps


def main(argv: list[str] | None = None) -> int:
    """Print a binary's freshly probed capabilities as a data/caps file."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m qemuwrap.qemu.capabilities EMULATOR", file=sys.stderr)
        return 2
    try:
        sys.stdout.write(dumps(probe(args[0])))
    except CapabilitiesError as exc:
        print(f"qemuwrap: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
