"""``-smbios`` tables from ``<sysinfo type='smbios'>`` (with ``<os><smbios
mode='sysinfo'>``) and ``-fw_cfg`` entries from ``<sysinfo type='fwcfg'>``
(qemuBuildSmbiosCommandLine, qemuBuildSysinfoCommandLine)."""

from __future__ import annotations

from qemuwrap.conf.os import SmbiosMode
from qemuwrap.conf.sysinfo import Sysinfo, SysinfoType
from qemuwrap.qemu.argv import optstr
from qemuwrap.qemu.build import BuildContext

#: The fields of each SMBIOS table, in libvirt's (and the table's) order.
TYPE0 = ("vendor", "version", "date", "release")
TYPE1 = ("manufacturer", "product", "version", "serial", "uuid", "sku", "family")
TYPE2 = ("manufacturer", "product", "version", "serial", "asset", "location")
TYPE3 = ("manufacturer", "version", "serial", "asset", "sku")


def _table(kind: int, group, names: tuple[str, ...], *, always: tuple[str, ...] = ()) -> str:
    props = {}
    for name in names:
        value = group.get(name)
        if value is None and name in always:
            value = ""
        props[name] = value
    return optstr(type=kind, **props)


def smbios_tables(info: Sysinfo) -> list[tuple[str, object]]:
    """(``-smbios`` value, source element) for each table the sysinfo fills."""
    out: list[tuple[str, object]] = []
    if info.bios is not None:
        out.append((_table(0, info.bios, TYPE0), info.bios))
    system = info.system
    if system is not None:
        given = {n: system.get(n) for n in TYPE1}
        # libvirt's qemuBuildSmbiosSystemStr leaves type 1 out in exactly this case
        skip = not any(given[n] for n in ("manufacturer", "product", "version", "serial",
                                          "uuid", "family")) and given["sku"] is not None
        if not skip:
            out.append((_table(1, system, TYPE1), system))
    for board in info.base_boards:
        out.append((_table(2, board, TYPE2, always=("manufacturer",)), board))
    if info.chassis is not None:
        out.append((_table(3, info.chassis, TYPE3, always=("manufacturer",)), info.chassis))
    if info.oem_strings is not None:
        values = ",".join(optstr(value=e.value) for e in info.oem_strings.entries)
        out.append((optstr(type=11) + "," + values, info.oem_strings))
    return out


def build_smbios(ctx: BuildContext) -> None:
    dom = ctx.dom
    smbios = dom.os.smbios
    if smbios is None or smbios.mode != SmbiosMode.SYSINFO:
        return  # emulate: QEMU's own tables; host: refused by validation
    info = dom.sysinfo_smbios
    if info is None:
        return  # refused by validation
    for value, source in smbios_tables(info):
        ctx.cmd.add("-smbios", value, getattr(source, "node", None))


def build_fw_cfg(ctx: BuildContext) -> None:
    for info in ctx.dom.sysinfos:
        if info.type != SysinfoType.FWCFG:
            continue
        for entry in info.fw_cfgs:
            value = (optstr(name=entry.name, string=entry.value) if entry.value is not None
                     else optstr(name=entry.name, file=entry.file))
            ctx.cmd.add("-fw_cfg", value, entry.node)
