"""The host processes and resources a guest needs beside QEMU (issue 8), planned from the
definition: what ``dry-run`` shows (``--json``: ``companions``; ``--explain``: the element
each comes from) and what the supervisor starts, in this order, before QEMU and stops
after it: swtpm, virtiofsd, then a tap per tap NIC.  Pure: nothing here runs or touches
a file.  :func:`make` gives the object that does (``qemuwrap/companions/``);
``runtime/companions.py`` runs it for the supervisor."""

from __future__ import annotations

import os

from qemuwrap.conf.domain import Domain
from qemuwrap.conf.xmlreader import Node
from qemuwrap.hints import TYPE_CHECKING
from qemuwrap.qemu.build import Paths

if TYPE_CHECKING:  # the device models and builders are loaded for a definition using them
    from typing import Any

    from qemuwrap.conf.devices.filesystem import Filesystem
    from qemuwrap.conf.devices.net import Interface
    from qemuwrap.conf.devices.tpm import TPM


class Companion:
    """One planned companion: its kind (``swtpm``, ``virtiofsd``, ...), the device it
    serves, the command it runs, a line for ``--explain``, the element it comes from,
    and ``params``: what :func:`make` needs to build the object that runs it (plain
    JSON: the plan travels to the supervisor process)."""

    def __init__(self, kind: str, device: str, argv: list[str] | None, why: str,
                 source: Node | None, params: dict[str, Any],
                 setup: list[str] | None = None):
        self.kind = kind
        self.device = device
        self.argv = argv
        self.why = why
        self.source = source
        self.params = params
        self.setup = setup

    def headline(self) -> str:
        """One line for a dry run: what runs (its command line) or what is made."""
        if self.argv is not None:
            from qemuwrap.qemu.argv import shell_quote

            return (f"{self.kind} for {self.device}, started first: "
                    f"{' '.join(shell_quote(w) for w in self.argv)}")
        return f"{self.kind} for {self.device}, made first: {self.why}"

    def to_json(self) -> dict:
        out: dict[str, Any] = {"kind": self.kind, "device": self.device, "argv": self.argv,
                               "why": self.why, "params": self.params}
        if self.setup is not None:
            out["setup"] = self.setup
        return out


def make(spec: dict) -> Any:
    """The object that prepares, starts and stops a planned companion (``spec``: its
    ``to_json()``), from ``qemuwrap/companions``."""
    p = spec["params"]
    if spec["kind"] == "swtpm":
        from qemuwrap.companions import swtpm

        return swtpm.Swtpm(p["tpm_dir"], p["socket"], p["log"], p["pidfile"], p["vmid"],
                           version=p["version"], pcr_banks=p["pcr_banks"])
    if spec["kind"] == "virtiofsd":
        from qemuwrap.companions import virtiofsd

        return virtiofsd.Virtiofsd(p["source"], p["socket"], p["cache"], p["xattr"],
                                   p["thread_pool"])
    raise ValueError(f"unknown companion kind {spec['kind']!r}")


def _swtpm(dom: Domain, tpm: TPM, paths: Paths) -> Companion:
    from qemuwrap.companions import swtpm
    from qemuwrap.qemu.build.companion_devices import TPM_SOCKET_NAME

    version = str(tpm.backend.version)
    tpm_dir = swtpm.state_dir(dom.uuid_str, version=version)
    sock = os.path.join(paths.state_dir, TPM_SOCKET_NAME)
    log = os.path.join(paths.state_dir, "swtpm.log")
    pidfile = os.path.join(paths.state_dir, "swtpm.pid")
    vmid = f"{dom.name}:{dom.uuid_str}"
    banks = tpm.backend.active_pcr_banks.names if tpm.backend.active_pcr_banks else None
    return Companion(
        "swtpm", tpm.alias_name or "tpm0",
        swtpm.swtpm_argv(tpm_dir, sock, log, pidfile, version=version),
        f"swtpm emulates the TPM {version}; its state stays in {tpm_dir}", tpm.node,
        {"tpm_dir": tpm_dir, "socket": sock, "log": log, "pidfile": pidfile, "vmid": vmid,
         "version": version, "pcr_banks": banks},
        setup=swtpm.setup_argv(tpm_dir, vmid, log, version=version, pcr_banks=banks))


def _virtiofsd(fs: Filesystem, paths: Paths) -> Companion:
    from qemuwrap.companions import virtiofsd
    from qemuwrap.qemu.build.companion_devices import VIRTIOFS_SOCKET_NAME, VIRTIOFSD_CACHE

    alias = fs.alias_name or "fs0"
    sock = os.path.join(paths.state_dir, VIRTIOFS_SOCKET_NAME.format(alias=alias))
    binary = fs.binary
    cache = VIRTIOFSD_CACHE[binary.cache.mode] if binary and binary.cache else "auto"
    xattr = bool(binary and binary.xattr)
    pool = binary.thread_pool.size if binary and binary.thread_pool else None
    source = fs.source.dir or ""
    return Companion(
        "virtiofsd", alias, virtiofsd.virtiofsd_argv(source, "FD", cache, xattr, pool),
        f"virtiofsd shares {source} as tag '{fs.target.dir}' (FD: its listening socket "
        f"{sock})", fs.node,
        {"source": source, "socket": sock, "cache": cache, "xattr": xattr,
         "thread_pool": pool})


def _tap(dom: Domain, nic: Interface, ifname: str, paths: Paths) -> Companion:
    """A tap for a ``bridge``/``network``/``ethernet`` NIC (``managed='no'``: one that
    exists, only looked up), made before QEMU opens it by name and deleted after."""
    from qemuwrap.conf.devices.net import InterfaceType

    src = nic.source
    network = src.network if src is not None and nic.type == InterfaceType.NETWORK else None
    bridge = src.bridge if src is not None and nic.type == InterfaceType.BRIDGE else None
    managed = nic.target is None or nic.target.managed is not False
    mtu = nic.mtu.size if nic.mtu is not None and nic.mtu.size else None
    if not managed:
        why = f"the existing tap {ifname} (managed='no'), looked up, left as it is"
    else:
        joins = (f"attached to the bridge of network '{network}'" if network
                 else f"attached to bridge '{bridge}'" if bridge else "attached to nothing")
        why = (f"tap {ifname} (MAC {'fe' + nic.mac[2:]}, "
               f"MTU {mtu if mtu else 'of the bridge' if network or bridge else 'default'}) "
               f"{joins}, deleted after QEMU ends")
    node = nic.node
    return Companion(
        "tap", nic.alias_name or ifname, None, why, node,
        {"ifname": ifname, "target_dev": nic.target.dev if nic.target is not None else None,
         "managed": managed, "type": nic.type.value, "network": network,
         "bridge": bridge, "mac": nic.mac, "mtu": mtu,
         "queues": nic.queues if nic.is_virtio else 1, "guest": dom.name,
         # Networks live under the guest's state root (net-start --state-dir).
         "state_root": os.path.dirname(paths.state_dir),
         "where": f"line {node.line}: {node.path}" if node is not None else None})


def plan(dom: Domain, paths: Paths) -> list[Companion]:
    """Every companion of a completed definition (ids assigned), in start order."""
    out: list[Companion] = []
    for tpm in dom.devices.tpms:
        from qemuwrap.conf.devices.tpm import TPMBackendType

        if tpm.backend.type == TPMBackendType.EMULATOR:
            out.append(_swtpm(dom, tpm, paths))
    for fs in dom.devices.filesystems:
        if fs.virtiofs and fs.source.socket is None:
            out.append(_virtiofsd(fs, paths))
    if not dom.devices.interfaces:
        return out  # the NIC model and the tap companion's module stay unloaded
    from qemuwrap.conf.devices.net import TAP_TYPES
    from qemuwrap.qemu.build.net import tap_names

    taps = [nic for nic in dom.devices.interfaces if nic.type in TAP_TYPES]
    names = tap_names(dom) if taps else {}
    for nic in taps:
        assert nic.alias_name is not None
        out.append(_tap(dom, nic, names[nic.alias_name], paths))
    return out
