"""``<hub>``: a USB hub (more ports for USB devices)."""

from __future__ import annotations

from qemuwrap.conf.devices.address import Device
from qemuwrap.conf.valueset import ValueSet
from qemuwrap.conf.xmlmodel import attr


class HubType(ValueSet):
    USB = "usb"


class Hub(Device):
    TAG = "hub"
    type: HubType = attr(HubType, required=True)

    def address_types(self) -> tuple[str, ...]:
        return ("usb",)
