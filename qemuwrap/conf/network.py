"""libvirt's ``<network>`` definition (what qemuwrap can bring up), read and written.

``parse_network`` turns XML into a :class:`Network`, refusing anything it does not
support with one line naming the element; ``Network.format`` writes it back in
libvirt's order (name, uuid, forward, bridge, mtu, mac, domain, dns, ip).
``complete`` fills in what ``net-define`` adds (uuid, bridge name, bridge MAC), so a
stored definition says exactly what will be brought up.

The second half reads the host end of a guest's ``<interface>`` (source, target,
driver, link, mtu, bandwidth) for the types qemuwrap connects with a tap device:
``bridge``, ``network`` and ``ethernet``.  Nothing here touches the host.
"""

from __future__ import annotations

import ipaddress
import re
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from qemuwrap.conf import guid
from qemuwrap.conf.xmlreader import Node, parse_bytes, read_file
from qemuwrap.conf.xmlwriter import Writer
from qemuwrap.errors import XMLError
from qemuwrap.record import Factory, Record

FORWARD_MODES = ("nat", "route", "bridge")
#: A network's name is a file name, a directory name and part of an nftables table name
#: (``qemuwrap-NAME``: nft identifiers cannot be quoted), so it is kept to these.
_NETWORK_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}", re.ASCII)
#: Linux interface names: at most 15 bytes, no '/', ':' or white space (dev_valid_name).
IFNAMSIZ = 15
_IFNAME = re.compile(r"[^/:\s]{1,15}", re.ASCII)
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*",
                       re.ASCII)
#: libvirt's bridge names for networks that do not name one: virbr0, virbr1, ...
BRIDGE_TEMPLATE = "virbr{}"
#: dnsmasq's lease time units, as libvirt's <lease unit>.
LEASE_UNITS = {"seconds": 1, "minutes": 60, "hours": 3600}


def valid_ifname(name: str) -> bool:
    return bool(_IFNAME.fullmatch(name)) and name not in (".", "..")


def check_network_name(name: str) -> str:
    """A network name usable as a file name and nft table name, else XMLError."""
    if not _NETWORK_NAME.fullmatch(name) or ".." in name:
        raise XMLError(f"network name '{name}' is not supported (up to 64 letters, digits, "
                       "'_', '.' and '-', not starting with '.' or '-')")
    return name


def _mac(node: Node, attr: str = "address") -> str:
    mac = node.require(attr).lower()
    if not _MAC.fullmatch(mac):
        raise node.error(f"malformed MAC address '{mac}'")
    if int(mac[:2], 16) & 1:
        raise node.error(f"MAC address '{mac}' is a multicast address")
    return mac


def _ipv4(node: Node, attr: str, *, required: bool = True) -> IPv4Address | None:
    raw = node.require(attr) if required else node.get(attr)
    if raw is None:
        return None
    try:
        return IPv4Address(raw)
    except ValueError:
        try:
            ipaddress.ip_address(raw)
        except ValueError:
            raise node.error(f"invalid {attr} '{raw}'") from None
        raise node.error(f"{attr} '{raw}': only IPv4 is supported") from None


def _yes_no(node: Node, attr: str) -> bool | None:
    value = node.get(attr, choices=("yes", "no"))
    return None if value is None else value == "yes"


def _on_off(value: bool) -> str:
    return "on" if value else "off"


def _lease_seconds(parent: Node) -> int | None:
    """``<lease expiry='N' unit='...'/>`` inside a range or host: seconds, 0 = infinite."""
    lease = parent.take_one("lease")
    if lease is None:
        return None
    unit = lease.get("unit", choices=tuple(LEASE_UNITS)) or "minutes"
    expiry = lease.require_int("expiry", maximum=4294967295)
    lease.finish()
    return expiry * LEASE_UNITS[unit]


def _format_lease(w: Writer, seconds: int) -> None:
    if seconds == 0:
        w.empty("lease", ("expiry", 0))
        return
    unit = next(u for u in ("hours", "minutes", "seconds") if seconds % LEASE_UNITS[u] == 0)
    w.empty("lease", ("expiry", seconds // LEASE_UNITS[unit]), ("unit", unit))


class DHCPRange(Record):
    """``<range start end/>``: addresses dnsmasq hands out."""

    start: IPv4Address
    end: IPv4Address
    lease_seconds: int | None = None

    @property
    def size(self) -> int:
        return int(self.end) - int(self.start) + 1


class DHCPHost(Record):
    """``<host mac name ip/>``: a fixed lease (or a name) for one MAC."""

    mac: str | None = None
    name: str | None = None
    ip: IPv4Address | None = None
    lease_seconds: int | None = None


class IPDef(Record):
    """``<ip address netmask|prefix>``: the bridge's address, and DHCP on its subnet."""

    interface: IPv4Interface
    #: how the prefix was written: 'netmask', 'prefix' or None (classful default)
    spelled: str | None = None
    ranges: list[DHCPRange] = Factory(list)
    hosts: list[DHCPHost] = Factory(list)
    node: Node | None = None

    @property
    def address(self) -> IPv4Address:
        return self.interface.ip

    @property
    def network(self) -> IPv4Network:
        return self.interface.network

    @property
    def dhcp(self) -> bool:
        return bool(self.ranges or self.hosts)

    @classmethod
    def parse(cls, node: Node) -> IPDef:
        family = node.get("family", "ipv4", choices=("ipv4", "ipv6"))
        if family == "ipv6":
            raise node.error("IPv6 networks are not supported (only family='ipv4')")
        address = _ipv4(node, "address")
        assert address is not None
        netmask = node.get("netmask")
        prefix = node.get_int("prefix", maximum=32)
        if netmask is not None and prefix is not None:
            raise node.error("give netmask or prefix, not both")
        spelled = "netmask" if netmask is not None else "prefix" if prefix is not None else None
        if netmask is not None:
            try:
                prefix = IPv4Network(f"0.0.0.0/{netmask}").prefixlen
            except ValueError:
                raise node.error(f"invalid netmask '{netmask}'") from None
        if prefix is None:
            prefix = _classful_prefix(address)
        if prefix > 30:
            raise node.error(f"prefix /{prefix} leaves no room for guests (at most /30)")
        iface = IPv4Interface(f"{address}/{prefix}")
        if address in (iface.network.network_address, iface.network.broadcast_address):
            raise node.error(f"address {address} is the network or broadcast address of "
                             f"{iface.network}")
        ipdef = cls(iface, spelled, node=node)
        if node.take_one("tftp") is not None:
            raise node.children_named("tftp")[0].error("unsupported element 'tftp'")
        dhcp = node.take_one("dhcp")
        if dhcp is not None:
            for rnode in dhcp.take("range"):
                ipdef.ranges.append(ipdef._parse_range(rnode))
            for hnode in dhcp.take("host"):
                ipdef.hosts.append(ipdef._parse_host(hnode))
            dhcp.finish()
        node.finish()
        return ipdef

    def _inside(self, node: Node, attr: str, addr: IPv4Address) -> None:
        if addr not in self.network or addr in (self.network.network_address,
                                                  self.network.broadcast_address):
            raise node.error(f"{attr} {addr} is not a host address of {self.network}")

    def _parse_range(self, node: Node) -> DHCPRange:
        start, end = _ipv4(node, "start"), _ipv4(node, "end")
        assert start is not None and end is not None
        self._inside(node, "start", start)
        self._inside(node, "end", end)
        if int(end) < int(start):
            raise node.error(f"range end {end} is before its start {start}")
        if start <= self.address <= end:
            raise node.error(f"range {start}-{end} contains the network's own address "
                             f"{self.address}")
        lease = _lease_seconds(node)
        node.finish()
        return DHCPRange(start, end, lease)

    def _parse_host(self, node: Node) -> DHCPHost:
        if node.get("id") is not None:
            raise node.error("unsupported attribute 'id' (a DHCPv6 DUID)")
        mac = _mac(node, "mac") if node.get("mac") is not None else None
        name = node.get("name")
        if name is not None and not _HOSTNAME.fullmatch(name):
            raise node.error(f"invalid host name '{name}'")
        ip = _ipv4(node, "ip", required=False)
        if ip is not None:
            self._inside(node, "ip", ip)
            if ip == self.address:
                raise node.error(f"ip {ip} is the network's own address")
        if mac is None and name is None:
            raise node.error("a DHCP host needs a mac or a name")
        if ip is None:
            raise node.error("a DHCP host needs an ip")
        lease = _lease_seconds(node)
        node.finish()
        return DHCPHost(mac, name, ip, lease)

    def format(self, w: Writer) -> None:
        if self.spelled == "netmask":
            mask: tuple[str, object] = ("netmask", str(self.interface.netmask))
        elif self.spelled == "prefix":
            mask = ("prefix", self.interface.network.prefixlen)
        else:
            mask = ("prefix", None)
        w.open("ip", ("address", str(self.address)), mask)
        if self.dhcp:
            w.open("dhcp")
            for r in self.ranges:
                _format_with_lease(w, "range", r.lease_seconds,
                                   ("start", str(r.start)), ("end", str(r.end)))
            for h in self.hosts:
                _format_with_lease(w, "host", h.lease_seconds, ("mac", h.mac),
                                   ("name", h.name), ("ip", None if h.ip is None else str(h.ip)))
            w.close("dhcp")
        w.close("ip")


def _format_with_lease(w: Writer, tag: str, lease: int | None,
                       *attrs: tuple[str, object]) -> None:
    if lease is None:
        w.empty(tag, *attrs)
        return
    w.open(tag, *attrs)
    _format_lease(w, lease)
    w.close(tag)


def _classful_prefix(addr: IPv4Address) -> int:
    """libvirt's default when neither netmask nor prefix is given (class A, B or C)."""
    first = int(addr) >> 24
    if first < 128:
        return 8
    if first < 192:
        return 16
    if first < 224:
        return 24
    raise XMLError(f"address {addr} has no default prefix (give netmask or prefix)")


class DNSHost(Record):
    """``<dns><host ip><hostname/>...</host>``: names dnsmasq answers for."""

    ip: IPv4Address
    hostnames: list[str] = Factory(list)


class DNS(Record):
    """``<dns>``: on or off, upstream forwarders, and local host names."""

    enable: bool | None = None
    forward_plain_names: bool | None = None
    #: (domain or None, address or None): ``<forwarder domain addr/>``
    forwarders: list[tuple[str | None, IPv4Address | None]] = Factory(list)
    hosts: list[DNSHost] = Factory(list)

    @classmethod
    def parse(cls, node: Node) -> DNS:
        dns = cls(enable=_yes_no(node, "enable"),
                  forward_plain_names=_yes_no(node, "forwardPlainNames"))
        for fwd in node.take("forwarder"):
            domain = fwd.get("domain")
            addr = _ipv4(fwd, "addr", required=False)
            if domain is None and addr is None:
                raise fwd.error("a forwarder needs addr or domain")
            fwd.finish()
            dns.forwarders.append((domain, addr))
        for hnode in node.take("host"):
            ip = _ipv4(hnode, "ip")
            assert ip is not None
            names = []
            for name_node in hnode.take("hostname"):
                name = name_node.stripped_text
                if not _HOSTNAME.fullmatch(name):
                    raise name_node.error(f"invalid host name '{name}'")
                name_node.finish(text_allowed=True)
                names.append(name)
            if not names:
                raise hnode.error("a DNS host needs at least one <hostname>")
            hnode.finish()
            dns.hosts.append(DNSHost(ip, names))
        node.finish()
        if dns.enable is False and (dns.forwarders or dns.hosts):
            raise node.error("DNS is disabled (enable='no') but forwarders or hosts are given")
        return dns

    @property
    def empty(self) -> bool:
        return (self.enable is None and self.forward_plain_names is None
                and not self.forwarders and not self.hosts)

    def format(self, w: Writer) -> None:
        if self.empty:
            return
        attrs = (("enable", None if self.enable is None else "yes" if self.enable else "no"),
                 ("forwardPlainNames", None if self.forward_plain_names is None
                  else "yes" if self.forward_plain_names else "no"))
        if not (self.forwarders or self.hosts):
            w.empty("dns", *attrs)
            return
        w.open("dns", *attrs)
        for domain, addr in self.forwarders:
            w.empty("forwarder", ("domain", domain), ("addr", None if addr is None else str(addr)))
        for host in self.hosts:
            w.open("host", ("ip", str(host.ip)))
            for name in host.hostnames:
                w.text("hostname", name)
            w.close("host")
        w.close("dns")


class Network(Record):
    """A virtual network: everything qemuwrap understands of libvirt's ``<network>``."""

    name: str
    uuid: bytes
    uuid_generated: bool = False
    title: str | None = None
    description: str | None = None
    forward: str | None = None  # None: isolated; else one of FORWARD_MODES
    forward_dev: str | None = None
    nat_ports: tuple[int, int] | None = None
    bridge: str | None = None
    stp: bool = True
    delay: int = 0
    mtu: int | None = None
    mac: str | None = None
    domain: str | None = None
    domain_local_only: bool | None = None
    dns: DNS = Factory(DNS)
    ips: list[IPDef] = Factory(list)
    node: Node | None = None

    @property
    def uuid_str(self) -> str:
        return guid.format(self.uuid)

    @property
    def has_own_bridge(self) -> bool:
        """True when qemuwrap creates the bridge (nat, route, isolated); False when the
        network only names a host bridge that exists (forward mode='bridge')."""
        return self.forward != "bridge"

    @property
    def dhcp_ip(self) -> IPDef | None:
        return next((ip for ip in self.ips if ip.dhcp), None)

    @property
    def dns_enabled(self) -> bool:
        return self.has_own_bridge and self.dns.enable is not False and bool(self.ips)

    def format(self) -> str:
        """libvirt's XML for this network (as ``net-dumpxml --inactive`` writes it)."""
        w = Writer()
        w.open("network")
        w.text("name", self.name)
        w.text("uuid", self.uuid_str)
        w.text("title", self.title)
        w.text("description", self.description)
        if self.forward is not None:
            attrs = (("dev", self.forward_dev), ("mode", self.forward))
            if self.forward_dev is None and self.nat_ports is None:
                w.empty("forward", *attrs)
            else:
                w.open("forward", *attrs)
                if self.nat_ports is not None:
                    w.open("nat")
                    w.empty("port", ("start", self.nat_ports[0]), ("end", self.nat_ports[1]))
                    w.close("nat")
                if self.forward_dev is not None:
                    w.empty("interface", ("dev", self.forward_dev))
                w.close("forward")
        if self.has_own_bridge:
            w.empty("bridge", ("name", self.bridge), ("stp", _on_off(self.stp)),
                    ("delay", self.delay))
        elif self.bridge is not None:
            w.empty("bridge", ("name", self.bridge))
        if self.mtu is not None:
            w.empty("mtu", ("size", self.mtu))
        if self.mac is not None:
            w.empty("mac", ("address", self.mac))
        if self.domain is not None:
            local = self.domain_local_only
            w.empty("domain", ("name", self.domain),
                    ("localOnly", None if not local else "yes"))
        self.dns.format(w)
        for ip in self.ips:
            ip.format(w)
        w.close("network")
        return w.getvalue()


def _parse_forward(net: Network, node: Node) -> None:
    net.forward = node.get("mode", "nat", choices=FORWARD_MODES)
    dev = node.get("dev")
    for iface in node.take("interface"):
        name = iface.require("dev")
        iface.finish()
        if dev is not None and name != dev:
            raise iface.error(f"forward dev '{dev}' and interface dev '{name}' differ")
        if net.forward_dev is not None and net.forward_dev != name:
            raise iface.error("only one forward interface is supported")
        dev = name
    if dev is not None and not valid_ifname(dev):
        raise node.error(f"invalid forward dev '{dev}'")
    net.forward_dev = dev
    nat = node.take_one("nat")
    if nat is not None:
        if net.forward != "nat":
            raise nat.error(f"<nat> is only for forward mode='nat', not '{net.forward}'")
        port = nat.take_one("port")
        if port is not None:
            start = port.require_int("start", maximum=65535)
            end = port.require_int("end", maximum=65535)
            if not 0 < start <= end:
                raise port.error(f"invalid port range {start}-{end}")
            port.finish()
            net.nat_ports = (start, end)
        nat.finish()
    if net.forward == "bridge" and dev is not None:
        raise node.error("forward mode='bridge' with a dev is macvtap, which is not "
                         "supported: name a host bridge in <bridge name=.../>")
    node.finish()


def _parse_bridge(net: Network, node: Node) -> None:
    name = node.get("name")
    if name is not None and not valid_ifname(name):
        raise node.error(f"invalid bridge name '{name}' (at most {IFNAMSIZ} characters, "
                         "no '/', ':' or spaces)")
    net.bridge = name
    stp = node.get("stp", choices=("on", "off"))
    delay = node.get_int("delay", maximum=2**31 - 1)
    if net.forward == "bridge" and (stp is not None or delay is not None):
        raise node.error("bridge stp/delay are only allowed in route, nat and isolated mode, "
                         "not in bridge mode")
    net.stp = stp != "off"
    net.delay = delay or 0
    node.finish()


def parse_network(root: Node, *, random: guid.RandomSource = guid.system_random) -> Network:
    """Build a Network from a parsed ``<network>`` tree, refusing anything unsupported."""
    if root.tag != "network":
        raise root.error(f"expected root element 'network', not '{root.tag}'")
    name_node = root.take_one("name")
    name = name_node.stripped_text if name_node is not None else ""
    if name_node is None or not name:
        raise root.error("missing <name>")
    try:
        check_network_name(name)
    except XMLError as exc:
        raise name_node.error(str(exc)) from None
    name_node.finish(text_allowed=True)

    uuid_node = root.take_one("uuid")
    if uuid_node is None:
        net = Network(name, guid.generate_v4(random), uuid_generated=True, node=root)
    else:
        uuid = guid.parse(uuid_node.text)
        if uuid is None:
            raise uuid_node.error(f"malformed uuid element '{uuid_node.stripped_text}'")
        uuid_node.finish(text_allowed=True)
        net = Network(name, uuid, node=root)

    for tag in ("title", "description"):
        node = root.take_one(tag)
        if node is not None:
            if tag == "title" and "\n" in node.text:
                raise node.error("title can't contain newlines")
            node.finish(text_allowed=True)
            setattr(net, tag, node.text)

    forward = root.take_one("forward")
    if forward is not None:
        _parse_forward(net, forward)
    bridge = root.take_one("bridge")
    if bridge is not None:
        _parse_bridge(net, bridge)
    mtu = root.take_one("mtu")
    if mtu is not None:
        net.mtu = mtu.require_int("size", minimum=68, maximum=65535)
        mtu.finish()
    mac = root.take_one("mac")
    if mac is not None:
        net.mac = _mac(mac)
        mac.finish()
    domain = root.take_one("domain")
    if domain is not None:
        net.domain = domain.require("name")
        if not _HOSTNAME.fullmatch(net.domain):
            raise domain.error(f"invalid domain name '{net.domain}'")
        net.domain_local_only = _yes_no(domain, "localOnly")
        domain.finish()
    dns = root.take_one("dns")
    if dns is not None:
        net.dns = DNS.parse(dns)
    net.ips = [IPDef.parse(n) for n in root.take("ip")]
    root.finish()
    _check(net, root)
    return net


def _check(net: Network, root: Node) -> None:
    """What libvirt checks across elements, for the modes qemuwrap supports."""
    if net.forward == "bridge":
        if net.bridge is None:
            raise root.error("forward mode='bridge' needs <bridge name=.../> naming a host "
                             "bridge")
        for tag, present in (("ip", net.ips), ("mtu", net.mtu is not None),
                             ("mac", net.mac is not None), ("domain", net.domain is not None),
                             ("dns", not net.dns.empty)):
            if present:
                node = root.children_named(tag)[0]
                raise node.error(f"<{tag}> is not allowed with forward mode='bridge' (the "
                                 "host bridge is not managed by qemuwrap)")
        return
    if net.forward in ("nat", "route") and not net.ips:
        raise root.error(f"{net.forward} forwarding requested, but no IP address provided")
    with_dhcp = [ip for ip in net.ips if ip.dhcp]
    if len(with_dhcp) > 1:
        raise with_dhcp[1].node.error("DHCP is supported on one <ip> only")  # type: ignore
    subnets: list[IPv4Network] = []
    for ip in net.ips:
        if any(ip.network.overlaps(other) for other in subnets):
            raise ip.node.error(f"subnet {ip.network} overlaps another <ip> "  # type: ignore
                                "of this network")
        subnets.append(ip.network)
    macs: set[str] = set()
    for ip in with_dhcp:
        for h in ip.hosts:
            if h.mac is not None:
                if h.mac in macs:
                    raise ip.node.error(f"DHCP host MAC {h.mac} is listed twice")  # type: ignore
                macs.add(h.mac)


def complete(net: Network, *, used_bridges: set[str],
             random: guid.RandomSource = guid.system_random) -> Network:
    """What ``net-define`` adds: a bridge name (``virbrN``, the first not in
    ``used_bridges``) and a bridge MAC (52:54:00 and three random bytes) for networks
    whose bridge qemuwrap creates.  The uuid was generated by the parser."""
    if net.has_own_bridge:
        if net.bridge is None:
            n = 0
            while BRIDGE_TEMPLATE.format(n) in used_bridges:
                n += 1
            net.bridge = BRIDGE_TEMPLATE.format(n)
        if net.mac is None:
            net.mac = "52:54:00:" + ":".join(f"{b:02x}" for b in random(3))
    return net


def load(path: str, *, random: guid.RandomSource = guid.system_random) -> Network:
    """Read a network definition file; errors name the file."""
    try:
        _data, root = read_file(path)
        return parse_network(root, random=random)
    except XMLError as exc:
        raise XMLError(f"{path}: {exc}", exc.element, exc.line) from None


def loads(data: bytes | str, *, random: guid.RandomSource = guid.system_random) -> Network:
    if isinstance(data, str):
        data = data.encode()
    return parse_network(parse_bytes(data), random=random)


# --------------------------------------------------------------------------------------
# The host end of a guest's <interface>
# --------------------------------------------------------------------------------------

INTERFACE_TYPES = ("bridge", "network", "ethernet")
#: libvirt reserves these prefixes for names it generates; a <target dev> with one of
#: them is ignored on input (a new name is picked at start), as libvirt does.
GENERATED_PREFIXES = ("vnet", "vif", "macvtap", "macvlan")


class Bandwidth(Record):
    """``<bandwidth><inbound|outbound average peak burst floor/>``: kept so the refusal
    can say what was asked (QEMU 7.2 has no rate limit for a tap netdev)."""

    inbound: dict[str, int] | None = None
    outbound: dict[str, int] | None = None


class InterfaceHost(Record):
    """What an ``<interface type='bridge'|'network'|'ethernet'>`` says about its host end."""

    type: str
    source: str | None = None  # bridge name (bridge) or network name (network)
    target_dev: str | None = None
    managed: bool = True  # <target managed='no'>: an existing tap, used as it is
    driver_name: str | None = None  # 'vhost' | 'qemu' | None (vhost where available)
    queues: int = 1
    link_up: bool = True
    mtu: int | None = None
    bandwidth: Bandwidth | None = None
    node: Node | None = None

    @classmethod
    def parse(cls, node: Node) -> InterfaceHost:
        """Consume the host-side children of an ``<interface>``: ``source``, ``target``,
        ``driver``, ``link``, ``mtu``, ``bandwidth``.  The caller (the domain model) reads
        ``mac``, ``model`` and ``address`` and calls ``node.finish()``."""
        kind = node.require("type", choices=INTERFACE_TYPES)
        host = cls(kind, node=node)
        src = node.take_one("source")
        if kind in ("bridge", "network"):
            if src is None:
                raise node.error(f"an interface of type '{kind}' needs <source {kind}=.../>")
            value = src.require(kind)
            if kind == "bridge" and not valid_ifname(value):
                raise src.error(f"invalid bridge name '{value}'")
            if kind == "network":
                try:
                    check_network_name(value)
                except XMLError as exc:
                    raise src.error(str(exc)) from None
            if src.get("portgroup") is not None:
                raise src.error("unsupported attribute 'portgroup'")
            src.finish()
            host.source = value
        elif src is not None:
            raise src.error("an interface of type 'ethernet' takes no <source> "
                            "(name the tap in <target dev=.../>)")
        tgt = node.take_one("target")
        if tgt is not None:
            dev: str | None = tgt.require("dev")
            if dev is None or not valid_ifname(dev):
                raise tgt.error(f"invalid target dev '{dev}' (at most {IFNAMSIZ} characters, "
                                "no '/', ':' or spaces)")
            managed = tgt.get("managed", choices=("yes", "no"))
            tgt.finish()
            host.managed = managed != "no"
            if not host.managed and kind != "ethernet":
                raise tgt.error("managed='no' is only supported for type='ethernet'")
            if host.managed and dev.startswith(GENERATED_PREFIXES):
                dev = None  # libvirt's own names are re-chosen at every start
            host.target_dev = dev
        driver = node.take_one("driver")
        if driver is not None:
            host.driver_name = driver.get("name", choices=("vhost", "qemu"))
            host.queues = driver.get_int("queues", 1, minimum=1, maximum=256) or 1
            driver.finish()
        link = node.take_one("link")
        if link is not None:
            host.link_up = link.get("state", "up", choices=("up", "down")) == "up"
            link.finish()
        mtu = node.take_one("mtu")
        if mtu is not None:
            host.mtu = mtu.require_int("size", minimum=68, maximum=65535)
            mtu.finish()
        bw = node.take_one("bandwidth")
        if bw is not None:
            host.bandwidth = _parse_bandwidth(bw)
        return host

    def format(self, w: Writer, *, ifname: str | None = None) -> None:
        """The host-side children in libvirt's order (source, target, driver, bandwidth,
        link, mtu are written by libvirt around model/address; the domain model places
        them).  ``ifname``: the tap in use, for the live XML."""
        if self.source is not None:
            w.empty("source", (self.type, self.source))
        dev = ifname or self.target_dev
        if dev is not None:
            w.empty("target", ("dev", dev), ("managed", None if self.managed else "no"))


def _parse_bandwidth(node: Node) -> Bandwidth:
    bw = Bandwidth()
    for direction in ("inbound", "outbound"):
        child = node.take_one(direction)
        if child is None:
            continue
        values = {}
        for attr in ("average", "peak", "burst", "floor"):
            value = child.get_int(attr, maximum=2**32 - 1)
            if value is not None:
                values[attr] = value
        child.finish()
        setattr(bw, direction, values)
    node.finish()
    return bw
