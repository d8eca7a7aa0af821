"""``<watchdog>``: a hardware watchdog and what its expiry does."""

from __future__ import annotations

import enum

from qemuwrap.conf.devices.address import PCIDevice
from qemuwrap.conf.xmlmodel import attr


class WatchdogModel(enum.StrEnum):
    I6300ESB = "i6300esb"
    IB700 = "ib700"
    DIAG288 = "diag288"
    ITCO = "itco"


class WatchdogAction(enum.StrEnum):
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
