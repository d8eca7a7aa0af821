"""How the guest boots: boot order, direct kernel boot."""

from __future__ import annotations

from qemuwrap.conf.domain import BootDev
from qemuwrap.conf.xmlmodel import table
from qemuwrap.qemu.argv import optstr
from qemuwrap.qemu.build import BuildContext

BOOT_LETTERS = table(BootDev, {BootDev.FD: "a", BootDev.HD: "c", BootDev.CDROM: "d",
                               BootDev.NETWORK: "n"})


def build_boot(ctx: BuildContext) -> None:
    os = ctx.dom.os
    if os.kernel:
        ctx.cmd.add("-kernel", os.kernel, os.node_of("kernel"))
        if os.initrd:
            ctx.cmd.add("-initrd", os.initrd, os.node_of("initrd"))
        if os.cmdline is not None:
            ctx.cmd.add("-append", os.cmdline, os.node_of("cmdline"))
    if os.boot:
        order = "".join(BOOT_LETTERS[b] for b in os.boot)
        ctx.cmd.add("-boot", optstr(order=order), os.node)
