"""How the guest boots: firmware (pflash images or a ``-bios`` ROM), ``-boot``
(menu, splash time, reboot timeout, strict), direct kernel boot and ACPI tables
(libvirt's qemuBuildPflashBlockdevCommandLine, qemuBuildDomainLoaderCommandLine and
qemuBuildBootCommandLine).

The boot order itself is given per device (``bootindex``, see ``qemu/bootorder.py``),
as libvirt 9.0 does; ``-boot`` only says ``strict=on``.
"""

from __future__ import annotations

from qemuwrap.conf.domain import Domain
from qemuwrap.conf.os import ACPITableType, LoaderType, NvramType
from qemuwrap.conf.xmlmodel import table
from qemuwrap.conf.xmlreader import Node
from qemuwrap.qemu.argv import optstr
from qemuwrap.qemu.build import BuildContext

#: libvirt's node names of the firmware code and variable store images.
PFLASH_CODE = "libvirt-pflash0"
PFLASH_VARS = "libvirt-pflash1"
ACPI_SIGNATURES = table(ACPITableType, {ACPITableType.SLIC: "SLIC"})


class PflashImage:
    """One pflash unit: where its image is and whether the guest may write it."""

    def __init__(self, node_name: str, readonly: bool, source: Node | None, *,
                 file: str | None = None, nvram=None):
        self.node_name = node_name
        self.readonly = readonly
        self.source = source
        self.file = file
        self.nvram = nvram  # the <nvram> element (network or block sources)


def pflash_images(dom: Domain) -> list[PflashImage]:
    """pflash0 (the firmware code) and pflash1 (its variables), when the loader is a
    pflash with a path; an NVRAM with only a template needs its copy made first
    (qemuwrap/qemu/firmware.py, issue 8): validation refuses that here."""
    os = dom.os
    loader = os.loader
    if loader is None or loader.path is None or os.loader_type != LoaderType.PFLASH:
        return []
    images = [PflashImage(PFLASH_CODE, loader.readonly is True, loader.node,
                          file=loader.path)]
    nvram = os.nvram
    if nvram is not None and not loader.stateless and (nvram.path or nvram.source):
        images.append(PflashImage(PFLASH_VARS, False, nvram.node, file=nvram.image,
                                  nvram=nvram))
    return images


def _storage(image: PflashImage) -> dict[str, object]:
    nvram = image.nvram
    if nvram is not None and nvram.type == NvramType.NETWORK and nvram.source is not None:
        src = nvram.source
        host = src.hosts[0]
        props: dict[str, object] = {"driver": str(src.protocol)}
        if str(src.protocol) == "nbd":
            props.update({"server.type": "inet", "server.host": host.name,
                          "server.port": host.port if host.port is not None else 10809,
                          "export": src.name})
        else:
            props.update({"server.host": host.name, "server.port": host.port,
                          "path": src.name})
        return props
    driver = "host_device" if nvram is not None and nvram.type == NvramType.BLOCK else "file"
    return {"driver": driver, "filename": image.file}


def build_pflash(ctx: BuildContext) -> None:
    """``-blockdev`` pairs (storage, raw format) for the pflash units, before -machine."""
    for image in pflash_images(ctx.dom):
        storage = f"{image.node_name}-storage"
        props = _storage(image)
        props.update({"node-name": storage, "auto-read-only": "on", "discard": "unmap"})
        ctx.cmd.add("-blockdev", optstr(**props), image.source)
        ctx.cmd.add("-blockdev", optstr(**{"node-name": f"{image.node_name}-format",
                                           "read-only": "on" if image.readonly else "off",
                                           "driver": "raw", "file": storage}),
                    image.source)


def build_loader(ctx: BuildContext) -> None:
    """A ROM loader: ``-bios``."""
    os = ctx.dom.os
    if os.loader is not None and os.loader.path is not None and \
            os.loader_type == LoaderType.ROM:
        ctx.cmd.add("-bios", os.loader.path, os.loader.node)


def build_secure_pflash(ctx: BuildContext) -> None:
    """``<loader secure='yes'>``: the variable store writable from SMM only."""
    loader = ctx.dom.os.loader
    if loader is not None and loader.secure and pflash_images(ctx.dom):
        ctx.cmd.add("-global", "driver=cfi.pflash01,property=secure,value=on", loader.node)


def build_boot(ctx: BuildContext) -> None:
    os = ctx.dom.os
    props: dict[str, object] = {}
    menu = os.bootmenu
    if menu is not None:
        props["menu"] = "on" if menu.enable else "off"
    if os.bios is not None and os.bios.reboot_timeout is not None:
        props["reboot_timeout"] = os.bios.reboot_timeout
    if menu is not None and menu.enable and menu.timeout is not None:
        props["splash_time"] = menu.timeout
    props["strict"] = "on"
    source = menu.node if menu is not None else (os.bios.node if os.bios is not None
                                                 else None)
    ctx.cmd.add("-boot", optstr(**props), source,
                why="boot only from the devices given a boot index (libvirt's strict=on)")
    if os.kernel:
        ctx.cmd.add("-kernel", os.kernel, os.node_of("kernel"))
        if os.initrd:
            ctx.cmd.add("-initrd", os.initrd, os.node_of("initrd"))
        if os.cmdline is not None:
            ctx.cmd.add("-append", os.cmdline, os.node_of("cmdline"))
    if os.dtb:
        ctx.cmd.add("-dtb", os.dtb, os.node_of("dtb"))
    for acpi_table in os.acpi.tables if os.acpi is not None else ():
        ctx.cmd.add("-acpitable", optstr(sig=ACPI_SIGNATURES[acpi_table.type],
                                         file=acpi_table.path), acpi_table.node)
