"""``<watchdog>``: a hardware watchdog and what QEMU does when it expires."""

from __future__ import annotations

from qemuwrap.conf.devices.address import PCIDevice
from qemuwrap.conf.valueset import ValueSet
from qemuwrap.conf.xmlmodel import ParseContext, attr


class WatchdogModel(ValueSet):
    I6300ESB = "i6300esb"
    IB700 = "ib700"
    DIAG288 = "diag288"
    ITCO = "itco"


class WatchdogAction(ValueSet):
    RESET = "reset"
    SHUTDOWN = "shutdown"
    POWEROFF = "poweroff"
    PAUSE = "pause"
    NONE = "none"
    DUMP = "dump"
    INJECT_NMI = "inject-nmi"


class Watchdog(PCIDevice):
    TAG = "watchdog"
    model: WatchdogModel = attr(WatchdogModel, required=True)
    action: WatchdogAction = attr(WatchdogAction, default=WatchdogAction.RESET)

    def check(self, ctx: ParseContext) -> None:
        if self.address is None:
            return
        if self.model == WatchdogModel.I6300ESB:
            if self.address.VARIANT != "pci":
                raise self.address.error("an i6300esb watchdog can go only on the PCI bus")
        else:
            raise self.address.error(f"a {self.model} watchdog takes no address")

    def address_types(self) -> tuple[str, ...] | None:
        return None  # by model (check)
