"""Build a tiny bootable guest that prints its VM Generation ID on the serial console.

It exists so qemuwrap's ``<genid/>`` support can be shown and tested end to end: the guest prints
``genid: GUID`` at boot, again whenever a restore changes the GUID under it, and powers off on
the ACPI power button or after ``qemuwrap.poweroff=N`` seconds.

The image is Debian's cloud kernel (it has no vmgenid driver, so the GUID memory is free to
read from user space), Debian's static busybox, and an initramfs this module writes itself
(newc cpio, so no root and no cpio binary are needed). Stdlib only, so it imports fast.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.resources
import io
import os
import re
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
# Modules the init loads so the ACPI power button reaches user space as an input event.
MODULES = {
    "button.ko": "kernel/drivers/acpi/button.ko",
    "evdev.ko": "kernel/drivers/input/evdev.ko",
}
# Applets the init script relies on; checked up front so a wrong busybox fails at build time.
REQUIRED_APPLETS = frozenset(
    {"sh", "mount", "mkdir", "cat", "chmod", "echo", "od", "tr", "printf"}
    | {"dmesg", "devmem", "insmod", "acpid", "usleep", "sleep", "poweroff"}
)
# Bump when the archive layout changes, so existing initrds are rebuilt.
_LAYOUT_VERSION = b"qemuwrap-demo-initrd-2"


class DemoBuildError(Exception):
    """The demo image could not be built; the message is one line saying what to do."""


@dataclass(frozen=True)
class DemoImage:
    """Paths to hand to QEMU's ``-kernel`` and ``-initrd`` (or a domain's ``<os>``)."""

    kernel: Path
    initrd: Path


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


def _fetch_kernel(dest: Path) -> None:
    """Download the cloud kernel .deb (no install, any user) and keep vmlinuz and two modules."""
    package = resolve_kernel_package()
    with tempfile.TemporaryDirectory(prefix=".kernel-", dir=dest) as tmp:
        _run(["apt-get", "download", package], f"cannot download {package}", cwd=Path(tmp))
        debs = sorted(Path(tmp).glob("*.deb"))
        if not debs:
            raise DemoBuildError(f"cannot download {package}: apt-get download left no .deb")
        # Stream the data tarball instead of `dpkg-deb -x`: 3 files wanted, 130 MB unpacked.
        wanted: dict[str, bytes] = {}
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
                        keep = re.fullmatch(r"boot/(vmlinuz|config)-.*", name) or (
                            name.startswith("lib/modules/")
                            and name.split("/", 3)[-1] in MODULES.values()
                        )
                        if keep and member.isfile():
                            f = tar.extractfile(member)
                            assert f is not None
                            wanted[name] = f.read()
            except tarfile.TarError as exc:
                proc.kill()  # else closing the pipe could leave dpkg-deb blocked on a write
                raise DemoBuildError(f"cannot unpack {debs[0].name}: {exc}") from None
            stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.returncode != 0:
            raise DemoBuildError(
                f"cannot unpack {debs[0].name}: {stderr.strip() or 'dpkg-deb failed'}"
            )

    def one(pattern: str) -> bytes:
        found = [data for name, data in wanted.items() if re.fullmatch(pattern, name)]
        if len(found) != 1:
            raise DemoBuildError(
                f"{package}: expected one file matching {pattern}, got {len(found)}"
            )
        return found[0]

    config = one(r"boot/config-.*").decode(errors="replace")
    if re.search(r"^CONFIG_VMGENID=[ym]$", config, re.MULTILINE):
        # Its driver would claim the GUID memory; the demo reads it from user space instead.
        raise DemoBuildError(f"{package} has a vmgenid driver; the demo needs a kernel without")
    moddir = dest / "modules"
    moddir.mkdir(exist_ok=True)
    for short, rel in MODULES.items():
        _atomic_write(moddir / short, one(r"lib/modules/[^/]+/" + re.escape(rel)))
    _atomic_write(dest / "kernel-package", package.encode() + b"\n")
    # vmlinuz last: its presence says the kernel and its modules are complete.
    _atomic_write(dest / "vmlinuz", one(r"boot/vmlinuz-.*"))


def _kernel_ready(dest: Path) -> bool:
    return (dest / "vmlinuz").is_file() and all(
        (dest / "modules" / short).is_file() for short in MODULES
    )


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


def initramfs_entries(init: bytes, busybox: bytes, modules: dict[str, bytes]) -> list[CpioEntry]:
    """The guest's whole file system: /init, busybox, the power-button modules and a console."""
    entries = [
        CpioEntry(d, stat.S_IFDIR | 0o755)
        for d in ("bin", "sbin", "proc", "sys", "dev", "tmp", "etc", "lib", "lib/modules")
    ]
    # The kernel opens /dev/console for init before anything is mounted: declare the node here.
    entries.append(CpioEntry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)))
    entries.append(CpioEntry("init", stat.S_IFREG | 0o755, init))
    entries.append(CpioEntry("bin/busybox", stat.S_IFREG | 0o755, busybox))
    # /init starts with #!/bin/sh, before busybox --install has made any links.
    entries.append(CpioEntry("bin/sh", stat.S_IFLNK | 0o777, b"busybox"))
    for name in sorted(modules):
        entries.append(CpioEntry(f"lib/modules/{name}", stat.S_IFREG | 0o644, modules[name]))
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


def _build(dest: Path) -> DemoImage:
    dest.mkdir(parents=True, exist_ok=True)
    if not _kernel_ready(dest):
        _fetch_kernel(dest)
    init = init_script()
    busybox = read_busybox()
    modules = {short: (dest / "modules" / short).read_bytes() for short in MODULES}
    digest = hashlib.sha256(_LAYOUT_VERSION)
    for part in (init, busybox, *(modules[k] for k in sorted(modules))):
        digest.update(hashlib.sha256(part).digest())
    stamp = dest / "initrd.sha256"
    initrd = dest / "initrd.img"
    try:
        current = stamp.read_text().strip() if initrd.is_file() else ""
    except OSError:
        current = ""
    if current != digest.hexdigest():
        write_initramfs(initrd, initramfs_entries(init, busybox, modules))
        _atomic_write(stamp, digest.hexdigest().encode() + b"\n")
    return DemoImage(kernel=dest / "vmlinuz", initrd=initrd)


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
    print(image.kernel)
    print(image.initrd)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
