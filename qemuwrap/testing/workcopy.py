"""The working copy of a definition that both libvirt and qemuwrap are given.

A corpus definition names host things that are not here (``/dev/HostVG/…``, sockets
of daemons that do not run) or that must not be touched (a user's real disks). The
copy points every such thing at a scratch file of the same kind, so both tools
translate, and both QEMUs open, exactly the same files. Rules (each applied to the
copy only, the same for both tools):

1. ``<domain type='kvm'>`` becomes ``qemu``: guests here run under TCG. With it,
   ``<cpu mode='host-passthrough'>`` (which needs KVM) becomes ``maximum``, TCG's
   analogue (``-cpu max``); other CPU modes stay.
2. Every disk ``<source file|dev>``, in ``<disk>`` and in its ``<backingStore>`` chain,
   becomes a new placeholder image (``qemu-img create``, the ``<driver type>`` format
   or raw; 16 MiB, a floppy 1440 KiB): a real image is never opened. A
   ``type='block'`` disk becomes ``type='file'`` (``source dev`` -> ``source file``),
   except ``device='lun'``, which needs a real block device; ``type='dir'`` gets an
   empty scratch directory. Network, volume, NVMe and vhost-user disks are left alone.
3. ``<os><kernel>`` becomes a real kernel of this machine (``$QEMUWRAP_DIFF_KERNEL``,
   the demo guest's, or ``/boot/vmlinuz``; QEMU refuses a fake one), ``<initrd>`` and
   ``<dtb>`` a 4 KiB placeholder.
4. ``<os><nvram>`` (its text or its ``<source file>``) becomes a scratch path (the
   variable store is created at boot from its template, as either tool would at
   start); ``<os><acpi><table>`` files and ``<sysinfo type='fwcfg'>`` entry files
   become placeholders (36 zero bytes: an empty ACPI header).
5. Character-device sources of type ``unix``, ``file`` or ``pipe`` (serial, parallel,
   console, channel, redirdev, smartcard, rng backend, vhost-user, shmem server, …)
   get scratch paths; a ``unix`` source in ``connect`` mode gets a listening socket
   the harness holds open while both QEMUs run, a ``pipe`` a FIFO. ``<log file>``
   goes to scratch too.
6. ``<filesystem>`` source directories become an empty scratch directory; graphics
   listening on a UNIX socket get a scratch socket path; an ivshmem ``<shmem><server>``
   gets a scratch path (written out even where libvirt would default it) where nothing
   listens (no ivshmem-server here: QEMU fails at once, where a silent listener would
   hang it).
"""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

#: Disk formats ``qemu-img create`` makes a placeholder of; others get raw.
PLACEHOLDER_FORMATS = frozenset({"raw", "qcow2", "qcow", "qed", "vmdk", "vdi", "vpc",
                                 "vhdx", "cloop", "parallels"})
DISK_SIZE = "16M"
FLOPPY_SIZE = "1440K"
KERNEL_CANDIDATES = ("/var/tmp/qemuwrap-demo/vmlinuz", "/boot/vmlinuz")
CHARDEV_TYPES = frozenset({"unix", "file", "pipe"})


class WorkCopyError(Exception):
    """The definition cannot be read (not XML) or a placeholder cannot be made."""


@dataclass
class WorkCopy:
    """The copy and what the comparison needs to know about the definition."""

    path: Path
    name: str
    macs: set[str] = field(default_factory=set)  # given in the XML (lower case)
    has_uuid: bool = False
    genid: str | None = None  # None: no <genid>; "": <genid/>; else the GUID given
    nvram_template: Path | None = None  # <nvram template=…>
    shared_transient: int = 0  # disks with <transient shareBacking='yes'/>
    vcpus: tuple[int, int] | None = None  # <vcpu current='N'>MAX</vcpu>, when readable
    placeholders: list[Path] = field(default_factory=list)
    listeners: list[socket.socket] = field(default_factory=list)

    def close(self) -> None:
        """Close the listening sockets held for ``connect``-mode chardevs."""
        for sock in self.listeners:
            sock.close()
        self.listeners.clear()


def _parser() -> etree.XMLParser:
    # Corpus and user files are untrusted: no entities, no DTD, no network.
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           remove_comments=False, huge_tree=False)


class _Scratch:
    """Numbered scratch names in one directory (short: UNIX socket paths are limited)."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.count = 0

    def name(self, prefix: str, suffix: str = "") -> Path:
        self.count += 1
        return self.dir / f"{prefix}{self.count}{suffix}"


def make(src: Path, scratch_dir: Path) -> WorkCopy:
    """Write the working copy of ``src`` into ``scratch_dir`` (which must exist)."""
    try:
        tree = etree.parse(str(src), _parser())
    except (etree.XMLSyntaxError, OSError) as exc:
        raise WorkCopyError(f"{src}: cannot read: {exc}") from None
    root = tree.getroot()
    if not isinstance(root.tag, str) or etree.QName(root).localname != "domain":
        raise WorkCopyError(f"{src}: not a <domain> definition")
    scratch = _Scratch(scratch_dir)
    copy = WorkCopy(path=scratch_dir / "domain.xml", name=root.findtext("name") or "")
    copy.has_uuid = bool((root.findtext("uuid") or "").strip())
    genid = root.find("genid")
    if genid is not None:
        copy.genid = (genid.text or "").strip()
    copy.macs = {m.get("address", "").lower() for m in root.iterfind("devices/interface/mac")}
    copy.shared_transient = sum(1 for t in root.iterfind("devices/disk/transient")
                                if t.get("shareBacking") == "yes")
    copy.vcpus = _vcpus(root)

    if root.get("type") == "kvm":
        root.set("type", "qemu")
        cpu = root.find("cpu")
        if cpu is not None and cpu.get("mode") == "host-passthrough":
            cpu.set("mode", "maximum")
    try:
        for disk in root.iterfind("devices/disk"):
            _rewrite_disk(disk, scratch, copy)
        _rewrite_os(root, scratch, copy)
        _rewrite_chardevs(root, scratch, copy)
        _rewrite_other_paths(root, scratch)
        _rewrite_shmem(root, scratch)
    except Exception:
        copy.close()
        raise
    tree.write(str(copy.path), encoding="utf-8", xml_declaration=False)
    return copy


def _vcpus(root: etree._Element) -> tuple[int, int] | None:
    vcpu = root.find("vcpu")
    if vcpu is None:
        return None
    try:
        maximum = int((vcpu.text or "").strip())
        return int(vcpu.get("current", maximum)), maximum
    except ValueError:
        return None


def _rewrite_disk(disk: etree._Element, scratch: _Scratch, copy: WorkCopy) -> None:
    kind = disk.get("type", "file")
    device = disk.get("device", "disk")
    if kind == "block" and device == "lun":
        return
    if kind not in ("file", "block", "dir"):
        return
    if kind == "block":
        disk.set("type", "file")
    driver = disk.find("driver")
    fmt = driver.get("type") if driver is not None else None
    source = disk.find("source")
    if source is not None:
        _replace_disk_source(source, kind, fmt, device, scratch, copy)
    # a backing chain: every <backingStore> with a source of its own
    for store in disk.iter("backingStore"):
        store_kind = store.get("type", "file")
        if store_kind not in ("file", "block"):
            continue
        if store_kind == "block":
            store.set("type", "file")
        store_fmt = store.find("format")
        store_src = store.find("source")
        if store_src is not None:
            _replace_disk_source(store_src, store_kind,
                                 store_fmt.get("type") if store_fmt is not None else None,
                                 device, scratch, copy)


def _replace_disk_source(source: etree._Element, kind: str, fmt: str | None, device: str,
                         scratch: _Scratch, copy: WorkCopy) -> None:
    if kind == "dir":
        if source.get("dir") is not None:
            path = scratch.name("dir")
            path.mkdir()
            source.set("dir", str(path))
        return
    attr = "dev" if kind == "block" else "file"
    if not source.get(attr):
        return  # an empty cdrom or floppy
    del source.attrib[attr]
    fmt = fmt if fmt in PLACEHOLDER_FORMATS else "raw"
    path = scratch.name("disk", f".{fmt}")
    size = FLOPPY_SIZE if device == "floppy" else DISK_SIZE
    make_image(path, fmt, size)
    source.set("file", str(path))
    copy.placeholders.append(path)


def make_image(path: Path, fmt: str, size: str) -> None:
    """A placeholder image; raw if qemu-img cannot make ``fmt``."""
    for attempt in (fmt, "raw"):
        proc = subprocess.run(["qemu-img", "create", "-q", "-f", attempt, str(path), size],
                              capture_output=True, text=True, timeout=30)
        if proc.returncode == 0:
            return
    raise WorkCopyError(f"qemu-img create {path}: {proc.stderr.strip()}")


def placeholder_kernel() -> str | None:
    """A real kernel image of this machine, for definitions that boot a kernel."""
    for candidate in (os.environ.get("QEMUWRAP_DIFF_KERNEL"), *KERNEL_CANDIDATES):
        if candidate and os.path.isfile(candidate):
            return candidate
    return None


def _rewrite_os(root: etree._Element, scratch: _Scratch, copy: WorkCopy) -> None:
    os_el = root.find("os")
    if os_el is None:
        return
    kernel = os_el.find("kernel")
    if kernel is not None and (kernel.text or "").strip():
        real = placeholder_kernel()
        if real is not None:
            kernel.text = real
    for tag in ("initrd", "dtb"):
        el = os_el.find(tag)
        if el is not None and (el.text or "").strip():
            path = scratch.name(tag)
            path.write_bytes(bytes(4096))
            el.text = str(path)
    nvram = os_el.find("nvram")
    if nvram is not None:
        if nvram.get("template"):
            copy.nvram_template = Path(nvram.get("template", ""))
        source = nvram.find("source")
        if source is not None and source.get("file"):
            source.set("file", str(scratch.name("nvram", ".fd")))
        elif (nvram.text or "").strip():
            nvram.text = str(scratch.name("nvram", ".fd"))
    for table in os_el.iterfind("acpi/table"):
        if (table.text or "").strip():
            table.text = str(_placeholder_file(scratch, "acpi"))
    for entry in root.iterfind("sysinfo/entry"):
        if entry.get("file"):
            entry.set("file", str(_placeholder_file(scratch, "fwcfg")))


def _placeholder_file(scratch: _Scratch, prefix: str) -> Path:
    path = scratch.name(prefix)
    path.write_bytes(bytes(36))
    return path


def _rewrite_chardevs(root: etree._Element, scratch: _Scratch, copy: WorkCopy) -> None:
    devices = root.find("devices")
    if devices is None:
        return
    for source in devices.iter("source"):
        parent = source.getparent()
        kind = source.get("type") or (parent.get("type") if parent is not None else None)
        if kind not in CHARDEV_TYPES or source.get("path") is None:
            continue
        if parent is not None and parent.tag == "disk":
            continue
        path = scratch.name("c")
        source.set("path", str(path))
        if kind == "pipe":
            os.mkfifo(path)
        elif kind == "unix" and source.get("mode", "connect") == "connect":
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(str(path))
            listener.listen(8)
            copy.listeners.append(listener)
    for log in devices.iter("log"):
        if log.get("file") is not None:
            log.set("file", str(scratch.name("log")))


def _rewrite_other_paths(root: etree._Element, scratch: _Scratch) -> None:
    for fs in root.iterfind("devices/filesystem"):
        source = fs.find("source")
        if source is None:
            continue
        for attr in ("dir", "file"):
            if source.get(attr) is not None:
                path = scratch.name("fs")
                path.mkdir()
                source.set(attr, str(path))
    for listen in root.iterfind("devices/graphics/listen"):
        if listen.get("type") == "socket" and listen.get("socket"):
            listen.set("socket", str(scratch.name("g", ".sock")))
    for graphics in root.iterfind("devices/graphics"):
        if graphics.get("socket"):
            graphics.set("socket", str(scratch.name("g", ".sock")))


def _rewrite_shmem(root: etree._Element, scratch: _Scratch) -> None:
    for server in root.iterfind("devices/shmem/server"):
        server.set("path", str(scratch.name("shm", ".sock")))
