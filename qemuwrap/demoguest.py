"""Build a tiny bootable guest that prints its VM Generation ID on the serial console.

It exists so qemuwrap's ``<genid/>`` support can be shown and tested end to end: the guest prints
``genid: GUID`` at boot, again whenever a restore changes the GUID under it, and powers off on
the ACPI power button or after ``qemuwrap.poweroff=N`` seconds. It also proves the companions
from inside: it reports EFI, the TPM, a virtiofs mount, a DHCP lease and pings, and runs
Debian's real ``qemu-ga`` on the guest agent port (the report lines and the kernel command line
switches are documented in ``demoguest_init.sh``'s header).

The image is Debian's cloud kernel (it has no vmgenid driver, so the GUID memory is free to
read from user space) with the modules virtio devices need (and their dependencies, from a
``modules.dep`` that busybox's depmod writes), Debian's static busybox, ``qemu-ga`` with the
shared libraries ``ldd`` names, and an initramfs this module writes itself (newc cpio, so no
root and no cpio binary are needed). Stdlib only, so it imports fast.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.resources
import io
import os
import re
import shutil
import stat
import struct
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DIR = Path("/var/tmp/qemuwrap-demo")
KERNEL_METAPACKAGE = "linux-image-cloud-amd64"
BUSYBOX = Path("/bin/busybox")
BUSYBOX_PACKAGE = "busybox-static"
QEMU_GA = Path("/usr/sbin/qemu-ga")
QEMU_GA_PACKAGE = "qemu-guest-agent"
# Modules (by name) the init loads: the ACPI power button as an input event, always; the
# drivers of the virtio devices a guest may be given, when it has a virtio PCI device.
POWER_MODULES = ("evdev", "button")
VIRTIO_MODULES = (
    "virtio_pci", "virtio_net", "virtio_blk", "virtio_console", "virtio_scsi", "fuse",
    "virtiofs", "virtio_balloon", "virtio_rng", "vmw_vsock_virtio_transport",
)
# Applets the init script relies on; checked up front so a wrong busybox fails at build time.
REQUIRED_APPLETS = frozenset(
    {"sh", "mount", "mkdir", "cat", "chmod", "echo", "od", "tr", "printf", "head"}
    | {"dmesg", "devmem", "insmod", "acpid", "usleep", "sleep", "poweroff", "reboot"}
    | {"ip", "udhcpc", "ping", "depmod", "grep"}
)
# Bump when the archive layout changes, so existing initrds are rebuilt.
_LAYOUT_VERSION = b"qemuwrap-demo-initrd-3"
# Bump when the kernel files kept in DEST change, so an older DEST fetches them again.
_KERNEL_LAYOUT = "2"


class DemoBuildError(Exception):
    """The demo image could not be built; the message is one line saying what to do."""


@dataclass(frozen=True)
class DemoImage:
    """Paths to hand to QEMU's ``-kernel`` and ``-initrd`` (or a domain's ``<os>``)."""

    kernel: Path
    initrd: Path
    agent: bool = False  # qemu-ga is in the image
    notes: tuple[str, ...] = ()  # what the build left out, and why


def init_script() -> bytes:
    """The guest's /init, shipped as package data next to this module."""
    return importlib.resources.files("qemuwrap").joinpath("demoguest_init.sh").read_bytes()


# --- kernel -----------------------------------------------------------------------------------


def _run(argv: list[str], what: str, cwd: Path | None = None) -> str:
    """Run a helper tool; any failure becomes a one-line DemoBuildError."""
    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise DemoBuildError(f"{what}: {argv[0]} not found (is this Debian?)") from None
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        detail = lines[-1].strip() if lines else f"exit status {proc.returncode}"
        raise DemoBuildError(f"{what}: {' '.join(argv)}: {detail}")
    return proc.stdout


def resolve_kernel_package(metapackage: str = KERNEL_METAPACKAGE) -> str:
    """The real kernel package behind the metapackage (linux-image-6.1.0-NN-cloud-amd64)."""
    what = f"cannot resolve {metapackage} (apt-get update may help)"
    out = _run(["apt-cache", "depends", metapackage], what)
    for match in re.finditer(r"^\s*Depends:\s*(linux-image-\S+)\s*$", out, re.MULTILINE):
        return match.group(1)
    raise DemoBuildError(
        f"cannot resolve {metapackage}: no linux-image dependency (run apt-get update)"
    )


def _atomic_write(path: Path, data: bytes) -> None:
    """Write via a temp file in the same directory, so readers never see a partial file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _module_name(relpath: str) -> str:
    """The name the kernel knows a module by: file name without .ko, '-' read as '_'."""
    return relpath.rsplit("/", 1)[-1].removesuffix(".ko").replace("-", "_")


def parse_modules_dep(text: str) -> dict[str, list[str]]:
    """``modules.dep``: each module's path and the paths of every module it needs."""
    deps: dict[str, list[str]] = {}
    for line in text.splitlines():
        path, sep, needs = line.partition(":")
        if sep:
            deps[path.strip()] = needs.split()
    return deps


def load_order(deps: dict[str, list[str]], names: Iterable[str]) -> list[str]:
    """The paths of the named modules and all they need, each after everything it needs
    (modules.dep lists a module's whole closure, in no useful order)."""
    by_name = {_module_name(path): path for path in deps}
    order: list[str] = []
    visiting: set[str] = set()

    def visit(path: str) -> None:
        if path in order:
            return
        if path in visiting:
            raise DemoBuildError(f"modules.dep: dependency loop through {path}")
        visiting.add(path)
        for need in deps.get(path, []):
            visit(need)
        visiting.discard(path)
        order.append(path)

    for name in names:
        if name not in by_name:
            raise DemoBuildError(f"the kernel has no module {name}")
        visit(by_name[name])
    return order


def _fetch_kernel(dest: Path) -> None:
    """Download the cloud kernel .deb (no install, any user) and keep vmlinuz and the modules
    the init loads, with a modules.dep for just those."""
    package = resolve_kernel_package()
    with tempfile.TemporaryDirectory(prefix=".kernel-", dir=dest) as tmp:
        _run(["apt-get", "download", package], f"cannot download {package}", cwd=Path(tmp))
        debs = sorted(Path(tmp).glob("*.deb"))
        if not debs:
            raise DemoBuildError(f"cannot download {package}: apt-get download left no .deb")
        # Stream the data tarball instead of `dpkg-deb -x`: vmlinuz, the config and the module
        # tree (for depmod) are wanted, not the rest.
        boot: dict[str, bytes] = {}
        root = Path(tmp) / "root"
        with subprocess.Popen(
            ["dpkg-deb", "--fsys-tarfile", str(debs[0])],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        ) as proc:
            assert proc.stdout is not None
            try:
                with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                    for member in tar:
                        name = member.name.removeprefix("./")
                        if not member.isfile():
                            continue
                        if re.fullmatch(r"boot/(vmlinuz|config)-.*", name):
                            f = tar.extractfile(member)
                            assert f is not None
                            boot[name] = f.read()
                        elif re.fullmatch(r"lib/modules/[^/]+/(kernel/.*\.ko|modules\.builtin)",
                                          name) and ".." not in name.split("/"):
                            f = tar.extractfile(member)
                            assert f is not None
                            target = root / name
                            target.parent.mkdir(parents=True, exist_ok=True)
                            target.write_bytes(f.read())
            except tarfile.TarError as exc:
                proc.kill()  # else closing the pipe could leave dpkg-deb blocked on a write
                raise DemoBuildError(f"cannot unpack {debs[0].name}: {exc}") from None
            stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.returncode != 0:
            raise DemoBuildError(
                f"cannot unpack {debs[0].name}: {stderr.strip() or 'dpkg-deb failed'}"
            )

        def one(pattern: str) -> tuple[str, bytes]:
            found = [(name, data) for name, data in boot.items() if re.fullmatch(pattern, name)]
            if len(found) != 1:
                raise DemoBuildError(
                    f"{package}: expected one file matching {pattern}, got {len(found)}"
                )
            return found[0]

        config = one(r"boot/config-.*")[1].decode(errors="replace")
        if re.search(r"^CONFIG_VMGENID=[ym]$", config, re.MULTILINE):
            # Its driver would claim the GUID memory; the demo reads it from user space instead.
            raise DemoBuildError(f"{package} has a vmgenid driver; the demo needs a kernel without")
        versions = [p.name for p in (root / "lib" / "modules").iterdir()] if root.exists() else []
        if len(versions) != 1:
            raise DemoBuildError(f"{package}: expected one module tree, got {len(versions)}")
        version = versions[0]
        # busybox's depmod reads each module's own dependency list (.modinfo), like kmod's.
        _run([str(BUSYBOX), "depmod", "-b", str(root), version], f"cannot index {package}")
        tree = root / "lib" / "modules" / version
        deps = parse_modules_dep((tree / "modules.dep").read_text())
        keep = load_order(deps, (*POWER_MODULES, *VIRTIO_MODULES))
        moddir = dest / "modules"
        if moddir.exists():
            shutil.rmtree(moddir)
        for rel in keep:
            (moddir / rel).parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(moddir / rel, (tree / rel).read_bytes())
        kept = "".join(f"{rel}: {' '.join(deps[rel])}\n" for rel in keep)
        _atomic_write(moddir / "modules.dep", kept.encode())
        _atomic_write(moddir / "version", version.encode() + b"\n")
    _atomic_write(dest / "kernel-package", package.encode() + b"\n")
    # vmlinuz and the layout stamp last: together they say the kernel files are complete.
    _atomic_write(dest / "vmlinuz", one(r"boot/vmlinuz-.*")[1])
    _atomic_write(dest / "kernel-layout", _KERNEL_LAYOUT.encode() + b"\n")


def _kernel_ready(dest: Path) -> bool:
    try:
        layout = (dest / "kernel-layout").read_text().strip()
    except OSError:
        return False
    return layout == _KERNEL_LAYOUT and (dest / "vmlinuz").is_file() and (
        dest / "modules" / "modules.dep"
    ).is_file()


def read_modules(dest: Path) -> tuple[str, dict[str, bytes]]:
    """The kernel release and the kept modules (path under lib/modules/RELEASE -> bytes),
    modules.dep among them."""
    moddir = dest / "modules"
    version = (moddir / "version").read_text().strip()
    deps = parse_modules_dep((moddir / "modules.dep").read_text())
    files = {rel: (moddir / rel).read_bytes() for rel in deps}
    files["modules.dep"] = (moddir / "modules.dep").read_bytes()
    return version, files


# --- busybox ----------------------------------------------------------------------------------


def _is_static_x86_64_elf(data: bytes) -> bool:
    """True for an x86-64 ELF executable with no PT_INTERP (i.e. statically linked)."""
    if len(data) < 64 or data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return False
    (e_machine,) = struct.unpack_from("<H", data, 18)
    e_phoff, e_phentsize, e_phnum = (
        struct.unpack_from("<Q", data, 32)[0],
        *struct.unpack_from("<HH", data, 54),
    )
    if e_machine != 62 or e_phentsize < 4:
        return False
    for i in range(e_phnum):
        off = e_phoff + i * e_phentsize
        if off + 4 > len(data):
            return False
        (p_type,) = struct.unpack_from("<I", data, off)
        if p_type == 3:  # PT_INTERP: needs a dynamic loader the initramfs does not have
            return False
    return True


def read_busybox(path: Path = BUSYBOX) -> bytes:
    """Debian's static busybox, checked to be static and to have the applets the init uses."""
    hint = f"install Debian's {BUSYBOX_PACKAGE} (apt-get install {BUSYBOX_PACKAGE})"
    try:
        data = path.read_bytes()
    except OSError:
        raise DemoBuildError(f"{path} not found: {hint}") from None
    if not _is_static_x86_64_elf(data):
        raise DemoBuildError(f"{path} is not a static x86-64 busybox: {hint}")
    try:
        listed = subprocess.run(
            [str(path), "--list"], capture_output=True, text=True, check=False
        ).stdout.split()
    except OSError:
        listed = []
    missing = sorted(REQUIRED_APPLETS - set(listed))
    if missing:
        raise DemoBuildError(f"{path} lacks applets {', '.join(missing)}: {hint}")
    return data


# --- initramfs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CpioEntry:
    """One newc member; ``rdev`` is (major, minor) for device nodes."""

    name: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def _pad4(n: int) -> bytes:
    return b"\0" * (-n % 4)


def cpio_newc(entries: Iterable[CpioEntry]) -> bytes:
    """A newc ("070701") cpio archive, owned by root, mtime 0, so the bytes are reproducible."""
    out = io.BytesIO()
    members = [*entries, CpioEntry("TRAILER!!!", 0)]
    for ino, entry in enumerate(members, start=1):
        name = entry.name.encode() + b"\0"
        is_dir = stat.S_ISDIR(entry.mode)
        fields = (
            ino if entry.name != "TRAILER!!!" else 0,
            entry.mode,
            0,  # uid
            0,  # gid
            2 if is_dir else 1,  # nlink
            0,  # mtime
            len(entry.data),
            0,  # devmajor
            0,  # devminor
            entry.rdev[0],
            entry.rdev[1],
            len(name),
            0,  # check
        )
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        out.write(header + name + _pad4(len(header) + len(name)))
        out.write(entry.data + _pad4(len(entry.data)))
    return out.getvalue()


def initramfs_entries(
    init: bytes,
    busybox: bytes,
    modules: dict[str, bytes],
    files: dict[str, bytes] | None = None,
    release: str = "demo",
) -> list[CpioEntry]:
    """The guest's whole file system: /init, busybox, a console node, the kernel modules (under
    lib/modules/RELEASE, with ``power.order`` and ``virtio.order``: what the init loads, in
    load order) and other ``files`` (path -> bytes, executable: the guest agent and its
    libraries). Every parent directory is declared before its contents."""
    files = dict(files or {})
    moddir = f"lib/modules/{release}"
    deps = parse_modules_dep(modules.get("modules.dep", b"").decode())
    for group, names in (("power", POWER_MODULES), ("virtio", VIRTIO_MODULES)):
        known = [n for n in names if n in {_module_name(p) for p in deps}]
        order = load_order(deps, known) if known else []
        files[f"lib/modules/{group}.order"] = "".join(f"{release}/{p}\n" for p in order).encode()
    modes = {}
    for rel, data in modules.items():
        files[f"{moddir}/{rel}"] = data
        modes[f"{moddir}/{rel}"] = 0o644
    dirs = {"bin", "sbin", "proc", "sys", "dev", "tmp", "etc", "lib", "lib/modules", "run", "mnt"}
    for path in files:
        parts = path.split("/")[:-1]
        dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    entries = [CpioEntry(d, stat.S_IFDIR | 0o755) for d in sorted(dirs)]
    # The kernel opens /dev/console for init before anything is mounted: declare the node here.
    entries.append(CpioEntry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)))
    entries.append(CpioEntry("init", stat.S_IFREG | 0o755, init))
    entries.append(CpioEntry("bin/busybox", stat.S_IFREG | 0o755, busybox))
    # /init starts with #!/bin/sh, before busybox --install has made any links.
    entries.append(CpioEntry("bin/sh", stat.S_IFLNK | 0o777, b"busybox"))
    for path in sorted(files):
        mode = modes.get(path, 0o644 if path.endswith(".order") else 0o755)
        entries.append(CpioEntry(path, stat.S_IFREG | mode, files[path]))
    return entries


def write_initramfs(path: Path, entries: Iterable[CpioEntry]) -> None:
    """Write a gzip'd newc archive atomically (temp file in the same directory, then rename)."""
    raw = cpio_newc(entries)
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=6, mtime=0) as gz:
        gz.write(raw)
    _atomic_write(path, buf.getvalue())


# --- build ------------------------------------------------------------------------------------


def build(dest: Path = DEFAULT_DIR) -> DemoImage:
    """Build (or reuse) the demo kernel and initrd in dest; cheap when nothing changed."""
    dest = Path(dest)
    try:
        return _build(dest)
    except OSError as exc:  # disk full, permissions, ...: still a one-line message
        where = exc.filename or dest
        raise DemoBuildError(
            f"cannot build the demo image in {dest}: {where}: {exc.strerror}"
        ) from None


def agent_files(qemu_ga: Path | None = None) -> dict[str, bytes] | None:
    """Debian's qemu-ga and every shared library ``ldd`` names (the dynamic loader included),
    each at the path the binary looks for it; None when qemu-ga is not installed."""
    qemu_ga = QEMU_GA if qemu_ga is None else qemu_ga
    if not qemu_ga.is_file():
        return None
    out = _run(["ldd", str(qemu_ga)], f"cannot list the libraries of {qemu_ga}")
    files = {"sbin/qemu-ga": qemu_ga.read_bytes()}
    for line in out.splitlines():
        # "libglib-2.0.so.0 => /lib/x86_64-linux-gnu/libglib-2.0.so.0 (0x...)",
        # "/lib64/ld-linux-x86-64.so.2 (0x...)"; "linux-vdso.so.1 (0x...)" is the kernel's.
        match = re.match(r"\s*(?:\S+\s+=>\s+)?(/\S+)\s+\(0x[0-9a-f]+\)\s*$", line)
        if match is None:
            if "=>" in line and "not found" in line:
                raise DemoBuildError(f"{qemu_ga}: {line.strip()}")
            continue
        path = match.group(1)
        files[path.lstrip("/")] = Path(os.path.realpath(path)).read_bytes()
    return files


def _build(dest: Path) -> DemoImage:
    dest.mkdir(parents=True, exist_ok=True)
    if not _kernel_ready(dest):
        _fetch_kernel(dest)
    init = init_script()
    busybox = read_busybox()
    release, modules = read_modules(dest)
    agent = agent_files()
    notes: tuple[str, ...] = ()
    if agent is None:
        notes = (f"{QEMU_GA} not found: built without the guest agent "
                 f"(apt-get install {QEMU_GA_PACKAGE})",)
    files = agent or {}
    digest = hashlib.sha256(_LAYOUT_VERSION + release.encode())
    for part in (init, busybox):
        digest.update(hashlib.sha256(part).digest())
    for table in (modules, files):
        for key in sorted(table):
            digest.update(key.encode() + b"\0" + hashlib.sha256(table[key]).digest())
    stamp = dest / "initrd.sha256"
    initrd = dest / "initrd.img"
    try:
        current = stamp.read_text().strip() if initrd.is_file() else ""
    except OSError:
        current = ""
    if current != digest.hexdigest():
        write_initramfs(initrd, initramfs_entries(init, busybox, modules, files, release))
        _atomic_write(stamp, digest.hexdigest().encode() + b"\n")
    return DemoImage(kernel=dest / "vmlinuz", initrd=initrd, agent=agent is not None,
                     notes=notes)


def main(argv: list[str] | None = None) -> int:
    """``python -m qemuwrap.demoguest [DEST]``: build the demo image and print its two paths."""
    parser = argparse.ArgumentParser(
        prog="python -m qemuwrap.demoguest",
        description="Build the demo guest (kernel + initrd) that prints its VM Generation ID.",
    )
    parser.add_argument(
        "dest", nargs="?", type=Path, default=DEFAULT_DIR, help=f"output directory [{DEFAULT_DIR}]"
    )
    args = parser.parse_args(argv)
    try:
        image = build(args.dest)
    except DemoBuildError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 1
    for note in image.notes:
        print(f"{parser.prog}: note: {note}", file=sys.stderr)
    print(image.kernel)
    print(image.initrd)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
