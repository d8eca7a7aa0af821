"""Where a device sits (``<address>``) and what every device carries besides
(libvirt's virDomainDeviceInfo: ``<alias>``, ``<boot>``, ``<acpi>``, ``<rom>``).

Address assignment (``qemuwrap/qemu/address.py``) fills these in for devices the XML
left unplaced, so the live definition shows where everything is.
"""

from __future__ import annotations

from qemuwrap.conf.xmlmodel import (
    ON_OFF,
    YES_NO,
    Element,
    Int,
    Str,
    Token,
    attr,
    child,
)

PCI_PART = {"domain": 0xFFFF, "bus": 0xFF, "slot": 0x1F, "function": 7}


class Address(Element):
    """``<address type=...>``: one variant class per type."""

    TAG = "address"
    VARIANT_ATTR = "type"


class PCIAddress(Address):
    VARIANT = "pci"
    domain: int = attr(Int(0, 0xFFFF, base=0, hex_format=4), default=0)
    bus: int = attr(Int(0, 0xFF, base=0, hex_format=2), default=0)
    slot: int = attr(Int(0, 0x1F, base=0, hex_format=2), default=0)
    function: int = attr(Int(0, 7, base=0, hex_format=1), default=0)
    multifunction: bool | None = attr(ON_OFF)

    def __str__(self) -> str:
        return f"{self.domain:04x}:{self.bus:02x}:{self.slot:02x}.{self.function}"


class DriveAddress(Address):
    VARIANT = "drive"
    controller: int = attr(Int(0, 255), default=0)
    bus: int = attr(Int(0, 255), default=0)
    target: int = attr(Int(0, 255), default=0)
    unit: int = attr(Int(0, 255), default=0)


class VirtioSerialAddress(Address):
    VARIANT = "virtio-serial"
    controller: int = attr(Int(0, 65535), default=0)
    bus: int = attr(Int(0, 65535), default=0)
    port: int | None = attr(Int(0, 65535))


class CCIDAddress(Address):
    VARIANT = "ccid"
    controller: int = attr(Int(0, 65535), default=0)
    slot: int = attr(Int(0, 65535), default=0)


class USBAddress(Address):
    VARIANT = "usb"
    bus: int = attr(Int(0, 65535), default=0)
    #: a hub path: "1", "1.2" (port 2 of the hub on port 1), at most 4 deep as libvirt
    port: str | None = attr(Str(r"[1-9][0-9]{0,2}(\.[1-9][0-9]{0,2}){0,3}", what="USB port"))


class ISAAddress(Address):
    VARIANT = "isa"
    iobase: int | None = attr(Int(0, 0xFFFF, base=0, hex_format=4))
    irq: int | None = attr(Int(0, 0xFF, base=0, hex_format=1))


class DIMMAddress(Address):
    VARIANT = "dimm"
    slot: int | None = attr(Int(0, 65535))
    base: int | None = attr(Int(0, 2**64 - 1, base=0, hex_format=8))


class UnassignedAddress(Address):
    VARIANT = "unassigned"


class Alias(Element):
    TAG = "alias"
    name: str = attr(Token(what="alias"), required=True)


class Boot(Element):
    """``<boot order='N'/>`` on a device: libvirt's per-device boot order."""

    TAG = "boot"
    order: int = attr(Int(1, 2**31 - 1), required=True)
    loadparm: str | None = attr(Str(r"[A-Za-z0-9. ]{1,8}", what="loadparm"))


class ACPIIndex(Element):
    TAG = "acpi"
    index: int = attr(Int(1, 16383), required=True)


class ROM(Element):
    TAG = "rom"
    bar: bool | None = attr(ON_OFF)
    file: str | None = attr(Str(r"(/.*)?", what="absolute path"))  # '': no ROM at all
    enabled: bool | None = attr(YES_NO)


class Device(Element):
    """What every device has: libvirt's device info. Its fields are written after the
    device's own (``FIELDS_LAST``), where libvirt writes them."""

    FIELDS_LAST = True
    boot: Boot | None = child(Boot)
    alias: Alias | None = child(Alias)
    acpi: ACPIIndex | None = child(ACPIIndex)
    address: Address | None = child(Address)

    def address_types(self) -> tuple[str, ...] | None:
        """The ``<address type>``s this device can have (None: any)."""
        return None

    @property
    def pci(self) -> PCIAddress | None:
        return self.address if isinstance(self.address, PCIAddress) else None

    @property
    def alias_name(self) -> str | None:
        return self.alias.name if self.alias is not None else None


class PCIDevice(Device):
    """A device that may sit on PCI (and so may carry a ``<rom>``)."""

    FIELDS_LAST = True
    rom: ROM | None = child(ROM)
