"""The domain definition: top-level elements of libvirt's ``<domain>``, read and written.

``parse_domain`` turns XML into a :class:`Domain`; ``Domain.format`` writes it back
the way libvirt does (``<genid>`` right after ``<uuid>``, memory in KiB, lifecycle
actions always present).
"""

from __future__ import annotations

import re

from qemuwrap.conf import guid
from qemuwrap.conf.devices import Devices
from qemuwrap.conf.xmlreader import Node, parse_bytes, read_file
from qemuwrap.conf.xmlwriter import Writer
from qemuwrap.errors import XMLError
from qemuwrap.record import Factory, Record

#: libvirt's memory units (virScaleInteger), in any ASCII case: b, byte, bytes; a prefix
#: k, m, g, t, p or e alone or with "iB" is a power of 1024, with "B" a power of 1000.
#: re.ASCII: with Unicode case folding, the Kelvin sign would pass for 'k'.
_MEMORY_UNIT = re.compile(r"b(?:ytes?)?|(?P<prefix>[kmgtpe])(?P<suffix>i?b)?",
                          re.ASCII | re.IGNORECASE)
_UNIT_NAMES = "b, byte, bytes, k, KiB, KB, M, MiB, MB, G, GiB, GB, T, TiB, TB, P, PiB, PB, " \
              "E, EiB, EB (any case)"
#: Spellings already read, and their bytes: the regex only for a new spelling.
_UNIT_BYTES: dict[str, int] = {}
#: libvirt's ceiling (virDomainParseMemory): at most LLONG_MAX bytes and, in KiB, below
#: 2**53; anything larger is "size value too large", not a number to pass to QEMU.
MAX_MEMORY_KIB = 2**53 - 1
LIFECYCLE_DEFAULTS = {"on_poweroff": "destroy", "on_reboot": "restart", "on_crash": "destroy"}
LIFECYCLE_CHOICES = {
    "on_poweroff": ("destroy", "restart", "preserve"),
    "on_reboot": ("destroy", "restart"),
    "on_crash": ("destroy", "restart", "preserve"),
}
BOOT_DEVS = ("hd", "cdrom", "network", "fd")


class OS(Record):
    """``<os>``: guest type, boot order, direct kernel boot."""

    arch: str = "x86_64"
    machine: str | None = None
    boot: list[str] = Factory(list)
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None
    node: Node | None = None

    @classmethod
    def parse(cls, node: Node) -> OS:
        type_node = node.take_one("type")
        if type_node is None:
            raise node.error("missing <type>")
        if type_node.stripped_text != "hvm":
            raise type_node.error(f"unsupported OS type '{type_node.stripped_text}' "
                                  "(supported: 'hvm')")
        arch = type_node.get("arch", "x86_64")
        machine = type_node.get("machine")
        type_node.finish(text_allowed=True)
        boot = []
        for b in node.take("boot"):
            dev = b.require("dev", choices=BOOT_DEVS)
            if dev in boot:
                raise b.error(f"boot device '{dev}' is listed twice")
            boot.append(dev)
            b.finish()
        paths = {}
        for tag in ("kernel", "initrd"):
            child = node.take_one(tag)
            if child is not None:
                value = child.stripped_text
                if not value.startswith("/"):
                    raise child.error(f"path '{value}' must be absolute")
                child.finish(text_allowed=True)
                paths[tag] = value
        cmd = node.take_one("cmdline")
        cmdline = None
        if cmd is not None:
            cmdline = cmd.text
            cmd.finish(text_allowed=True)
        node.finish()
        if (paths.get("initrd") or cmdline is not None) and not paths.get("kernel"):
            raise node.error("<initrd> and <cmdline> need a <kernel>")
        return cls(arch, machine, boot, paths.get("kernel"), paths.get("initrd"), cmdline,
                   node)

    def format(self, w: Writer) -> None:
        w.open("os")
        w.text("type", "hvm", ("arch", self.arch), ("machine", self.machine))
        w.text("kernel", self.kernel)
        w.text("initrd", self.initrd)
        w.text("cmdline", self.cmdline)
        for dev in self.boot:
            w.empty("boot", ("dev", dev))
        w.close("os")


class Topology(Record):
    """``<cpu><topology/></cpu>``: sockets x dies x cores x threads."""

    sockets: int
    dies: int
    cores: int
    threads: int
    node: Node | None = None

    @property
    def total(self) -> int:
        return self.sockets * self.dies * self.cores * self.threads


class Domain(Record):
    """A guest definition: everything qemuwrap understands of libvirt's ``<domain>``."""

    _hidden = frozenset({"nodes"})

    type: str
    name: str
    uuid: bytes
    memory_kib: int
    vcpus: int = 1
    id: int | None = None
    genid: bytes | None = None
    genid_requested: bool = False
    genid_generated: bool = False
    uuid_generated: bool = False
    title: str | None = None
    description: str | None = None
    current_memory_kib: int | None = None
    vcpu_current: int | None = None
    topology: Topology | None = None
    os: OS = Factory(OS)
    acpi: bool = False
    apic: bool = False
    pae: bool = False
    clock_offset: str = "utc"
    on_poweroff: str = "destroy"
    on_reboot: str = "restart"
    on_crash: str = "destroy"
    devices: Devices = Factory(Devices)
    #: element name -> Node it was read from, for messages and ``--explain``.
    nodes: dict[str, Node] = Factory(dict)

    @property
    def genid_str(self) -> str | None:
        return guid.format(self.genid) if self.genid_requested and self.genid else None

    @property
    def uuid_str(self) -> str:
        return guid.format(self.uuid)

    def format(self, *, inactive: bool = False) -> str:
        """libvirt's XML for this domain; ``inactive`` leaves out the runtime ``id``."""
        w = Writer()
        w.open("domain", ("type", self.type), ("id", None if inactive else self.id))
        w.text("name", self.name)
        w.text("uuid", self.uuid_str)
        w.text("genid", self.genid_str)
        w.text("title", self.title)
        w.text("description", self.description)
        w.text("memory", self.memory_kib, ("unit", "KiB"))
        w.text("currentMemory", self.current_memory_kib or self.memory_kib, ("unit", "KiB"))
        w.text("vcpu", self.vcpus, ("placement", "static"), ("current", self.vcpu_current))
        self.os.format(w)
        if self.acpi or self.apic or self.pae:
            w.open("features")
            for name in ("acpi", "apic", "pae"):
                if getattr(self, name):
                    w.empty(name)
            w.close("features")
        if self.topology is not None:
            t = self.topology
            w.open("cpu")
            w.empty("topology", ("sockets", t.sockets), ("dies", t.dies), ("cores", t.cores),
                    ("threads", t.threads))
            w.close("cpu")
        w.empty("clock", ("offset", self.clock_offset))
        for tag in LIFECYCLE_DEFAULTS:
            w.text(tag, getattr(self, tag))
        self.devices.format(w)
        w.close("domain")
        return w.getvalue()


def memory_unit_bytes(unit: str) -> int | None:
    """Bytes in one ``unit`` as libvirt's virScaleInteger reads it; None if unknown."""
    scale = _UNIT_BYTES.get(unit)
    if scale is None:
        match = _MEMORY_UNIT.fullmatch(unit)
        if match is None:
            return None
        if match["prefix"] is None:
            scale = 1
        else:
            base = 1000 if (match["suffix"] or "").lower() == "b" else 1024
            scale = base ** ("kmgtpe".index(match["prefix"].lower()) + 1)
        _UNIT_BYTES[unit] = scale  # a few hundred spellings at most
    return scale


def _memory_kib(node: Node) -> int:
    unit = node.get("unit", "KiB")
    scale = memory_unit_bytes(unit)
    if scale is None:
        raise node.error(f"unsupported unit='{unit}' (supported: {_UNIT_NAMES})")
    amount = node.int_text(minimum=1, maximum=2**64 - 1)  # libvirt's unsigned long long
    node.finish(text_allowed=True)
    kib = -(-amount * scale // 1024)  # libvirt rounds up to whole KiB
    if kib > MAX_MEMORY_KIB:
        raise node.error(f"size {amount} {unit} is too large (at most {MAX_MEMORY_KIB} KiB)")
    return kib


def _parse_genid(root: Node, dom: Domain, random: guid.RandomSource) -> None:
    """The seed's semantics: at most once; empty means generate and keep."""
    nodes = root.take("genid")
    if not nodes:
        return
    if len(nodes) != 1:
        raise XMLError("element 'genid' can only appear once", "genid", nodes[1].line)
    node = nodes[0]
    node.finish(text_allowed=True)
    dom.nodes["genid"] = node
    dom.genid_requested = True
    if not node.text:  # <genid/>; white space alone is malformed, as in libvirt
        dom.genid = guid.generate_v4(random)
        dom.genid_generated = True
        return
    dom.genid = guid.parse(node.text)
    if dom.genid is None:
        raise XMLError("malformed genid element", "genid", node.line)


def parse_domain(root: Node, *, random: guid.RandomSource = guid.system_random) -> Domain:
    """Build a Domain from a parsed ``<domain>`` tree, refusing anything unsupported."""
    if root.tag != "domain":
        raise root.error(f"expected root element 'domain', not '{root.tag}'")
    virt_type = root.require("type", choices=("qemu", "kvm"))
    dom_id = root.get_int("id", minimum=-1, maximum=2**31 - 1)  # a C int in libvirt

    name_node = root.take_one("name")
    name = name_node.stripped_text if name_node is not None else ""
    if not name:
        raise root.error("missing <name>")
    if "\n" in name:
        raise name_node.error("name can't contain newlines")
    name_node.finish(text_allowed=True)

    uuid_node = root.take_one("uuid")
    uuid_generated = uuid_node is None
    if uuid_node is None:
        uuid = guid.generate_v4(random)
    else:
        uuid = guid.parse(uuid_node.text)
        if uuid is None:
            raise uuid_node.error(f"malformed uuid element '{uuid_node.stripped_text}'")
        uuid_node.finish(text_allowed=True)

    mem_node = root.take_one("memory")
    if mem_node is None:
        raise root.error("missing <memory>")
    dom = Domain(type=virt_type, name=name, uuid=uuid, memory_kib=_memory_kib(mem_node),
                 id=None if dom_id == -1 else dom_id, uuid_generated=uuid_generated)
    dom.nodes.update(domain=root, name=name_node, memory=mem_node)
    if uuid_node is not None:
        dom.nodes["uuid"] = uuid_node
    _parse_genid(root, dom, random)

    for tag in ("title", "description"):
        node = root.take_one(tag)
        if node is not None:
            node.finish(text_allowed=True)
            if tag == "title" and "\n" in node.text:
                raise node.error("title can't contain newlines")
            setattr(dom, tag, node.text)

    cur = root.take_one("currentMemory")
    if cur is not None:
        dom.current_memory_kib = _memory_kib(cur)
        if dom.current_memory_kib > dom.memory_kib:
            raise cur.error("currentMemory is larger than memory")
        dom.nodes["currentMemory"] = cur

    vcpu = root.take_one("vcpu")
    if vcpu is not None:
        vcpu.get("placement", choices=("static",))
        dom.vcpus = vcpu.int_text(minimum=1, maximum=255)
        dom.vcpu_current = vcpu.get_int("current", minimum=1, maximum=dom.vcpus)
        vcpu.finish(text_allowed=True)
        dom.nodes["vcpu"] = vcpu

    cpu = root.take_one("cpu")
    if cpu is not None:
        topo = cpu.take_one("topology")
        if topo is not None:
            # libvirt requires sockets, cores and threads; dies defaults to 1.
            dom.topology = Topology(
                *(topo.require_int(k, minimum=1, maximum=255) if k != "dies"
                  else topo.get_int(k, 1, minimum=1, maximum=255)
                  for k in ("sockets", "dies", "cores", "threads")),
                node=topo)
            topo.finish()
            if dom.topology.total != dom.vcpus:
                raise topo.error(f"topology gives {dom.topology.total} vCPUs but <vcpu> "
                                 f"says {dom.vcpus}")
        cpu.finish()
        dom.nodes["cpu"] = cpu

    os_node = root.take_one("os")
    if os_node is None:
        raise root.error("missing <os>")
    dom.os = OS.parse(os_node)
    dom.nodes["os"] = os_node
    dom.nodes["os/type"] = os_node.children_named("type")[0]

    features = root.take_one("features")
    if features is not None:
        dom.acpi = features.flag("acpi")
        dom.apic = features.flag("apic")
        dom.pae = features.flag("pae")
        features.finish()
        dom.nodes["features"] = features

    clock = root.take_one("clock")
    if clock is not None:
        dom.clock_offset = clock.get("offset", "utc", choices=("utc", "localtime"))
        clock.finish()
        dom.nodes["clock"] = clock

    for tag, default in LIFECYCLE_DEFAULTS.items():
        node = root.take_one(tag)
        value = default
        if node is not None:
            value = node.stripped_text
            if value not in LIFECYCLE_CHOICES[tag]:
                allowed = ", ".join(f"'{c}'" for c in LIFECYCLE_CHOICES[tag])
                raise node.error(f"unsupported action '{value}' (supported: {allowed})")
            node.finish(text_allowed=True)
            dom.nodes[tag] = node
        setattr(dom, tag, value)

    dev_node = root.take_one("devices")
    dom.devices = Devices.parse(dev_node, random)
    if dev_node is not None:
        dom.nodes["devices"] = dev_node
    root.finish()
    return dom


def load(path: str, *, random: guid.RandomSource = guid.system_random) -> tuple[bytes, Domain]:
    """Read a definition file: its raw bytes (for in-place edits) and the model."""
    data, root = read_file(path)
    return data, parse_domain(root, random=random)


def loads(data: bytes | str, *, random: guid.RandomSource = guid.system_random) -> Domain:
    if isinstance(data, str):
        data = data.encode()
    return parse_domain(parse_bytes(data), random=random)
