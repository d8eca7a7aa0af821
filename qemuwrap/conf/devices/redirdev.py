"""``<redirdev>``: USB redirection (usbredir), and ``<redirfilter>``."""

from __future__ import annotations

import enum

from qemuwrap.conf.devices.address import Device
from qemuwrap.conf.xmlmodel import Element, attr


class RedirdevBus(enum.StrEnum):
    USB = "usb"


class RedirdevType(enum.StrEnum):
    SPICEVMC = "spicevmc"
    TCP = "tcp"
    UNIX = "unix"


class Redirdev(Device):
    TAG = "redirdev"
    bus: RedirdevBus = attr(RedirdevBus, required=True)
    type: RedirdevType = attr(RedirdevType, required=True)


class Redirfilter(Element):
    TAG = "redirfilter"
