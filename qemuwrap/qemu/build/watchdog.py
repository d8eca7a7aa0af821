"""The watchdog (libvirt's qemuBuildWatchdogCommandLine): the device and QEMU's action
when it expires (``-watchdog-action``)."""

from __future__ import annotations

from qemuwrap.conf.devices.watchdog import WatchdogAction, WatchdogModel
from qemuwrap.conf.xmlmodel import table
from qemuwrap.qemu.argv import optstr
from qemuwrap.qemu.build import BuildContext

WATCHDOG_DEVICES = table(WatchdogModel, {WatchdogModel.I6300ESB: "i6300esb",
                                         WatchdogModel.IB700: "ib700"},
                         not_mapped={WatchdogModel.DIAG288: "s390 only: refused",
                                     WatchdogModel.ITCO: "built into q35's ICH9: a -global"})
WATCHDOG_ACTIONS = table(WatchdogAction, {
    WatchdogAction.RESET: "reset", WatchdogAction.SHUTDOWN: "shutdown",
    WatchdogAction.POWEROFF: "poweroff", WatchdogAction.PAUSE: "pause",
    WatchdogAction.NONE: "none", WatchdogAction.INJECT_NMI: "inject-nmi"},
    not_mapped={WatchdogAction.DUMP: "libvirt pauses and dumps the guest itself: refused"})


def build_watchdogs(ctx: BuildContext) -> None:
    for dog in ctx.dom.devices.watchdogs[:1]:  # libvirt 9.0 has one watchdog
        if dog.model == WatchdogModel.ITCO:
            # The ICH9 LPC's TCO watchdog: only its reboot strap (newer libvirt's form).
            ctx.cmd.add("-global", "ICH9-LPC.noreboot=off", dog.node)
        else:
            ctx.cmd.add("-device", optstr(WATCHDOG_DEVICES[dog.model], id=dog.alias_name,
                                          **ctx.pci_props(dog)), dog.node)
        ctx.cmd.add("-watchdog-action", WATCHDOG_ACTIONS[dog.action], dog.node)
