"""``<smartcard>``: a CCID smartcard reader for the guest."""

from __future__ import annotations

import enum

from qemuwrap.conf.devices.address import Device
from qemuwrap.conf.xmlmodel import attr


class SmartcardMode(enum.StrEnum):
    HOST = "host"
    HOST_CERTIFICATES = "host-certificates"
    PASSTHROUGH = "passthrough"


class Smartcard(Device):
    TAG = "smartcard"
    mode: SmartcardMode = attr(SmartcardMode, required=True)
