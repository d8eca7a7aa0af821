"""``<input>``: mice, keyboards and tablets (PS/2, USB, virtio), a host input device
passed through to a virtio-input device (``passthrough``) or grabbed by QEMU and shared
with the guest's PS/2 devices (``evdev``)."""

from __future__ import annotations

from qemuwrap.conf.devices.address import Device
from qemuwrap.conf.devices.virtio import VirtioDriver
from qemuwrap.conf.valueset import ValueSet
from qemuwrap.conf.xmlmodel import ON_OFF, Element, ParseContext, Path, attr, child


class InputType(ValueSet):
    MOUSE = "mouse"
    TABLET = "tablet"
    KEYBOARD = "keyboard"
    PASSTHROUGH = "passthrough"
    EVDEV = "evdev"


class InputBus(ValueSet):
    PS2 = "ps2"
    USB = "usb"
    VIRTIO = "virtio"
    XEN = "xen"
    PARALLELS = "parallels"
    NONE = "none"


class InputModel(ValueSet):
    VIRTIO = "virtio"
    VIRTIO_TRANSITIONAL = "virtio-transitional"
    VIRTIO_NON_TRANSITIONAL = "virtio-non-transitional"


class GrabMode(ValueSet):
    ALL = "all"


class GrabToggle(ValueSet):
    CTRL_CTRL = "ctrl-ctrl"
    ALT_ALT = "alt-alt"
    SHIFT_SHIFT = "shift-shift"
    META_META = "meta-meta"
    SCROLLLOCK = "scrolllock"
    CTRL_SCROLLLOCK = "ctrl-scrolllock"


class InputSource(Element):
    """``<source>``: the host's evdev node (``evdev=`` for passthrough, ``dev=`` for
    evdev) and how QEMU grabs it."""

    TAG = "source"
    evdev: str | None = attr(Path())
    dev: str | None = attr(Path())
    grab: GrabMode | None = attr(GrabMode)
    grab_toggle: GrabToggle | None = attr(GrabToggle, xml="grabToggle")
    repeat: bool | None = attr(ON_OFF)


class Input(Device):
    TAG = "input"
    type: InputType = attr(InputType, required=True)
    bus: InputBus | None = attr(InputBus)
    model: InputModel | None = attr(InputModel)
    source: InputSource | None = child(InputSource)
    driver: VirtioDriver | None = child(VirtioDriver)

    def address_types(self) -> tuple[str, ...]:
        if self.bus == InputBus.USB:
            return ("usb",)
        if self.bus == InputBus.VIRTIO:
            return ("pci",)
        return ()

    def check(self, ctx: ParseContext) -> None:
        if self.bus is None:  # libvirt's defaults for an x86 HVM guest
            if self.type in (InputType.MOUSE, InputType.KEYBOARD):
                self.bus = InputBus.PS2
            elif self.type == InputType.PASSTHROUGH:
                self.bus = InputBus.VIRTIO
            elif self.type == InputType.EVDEV:
                self.bus = InputBus.NONE
            else:
                self.bus = InputBus.USB
        if self.bus == InputBus.PS2 and self.type not in (InputType.MOUSE,
                                                          InputType.KEYBOARD):
            raise self.error(f"ps2 bus does not support {self.type} input device")
        src = self.source
        if src is not None:
            own = {InputType.PASSTHROUGH: "evdev", InputType.EVDEV: "dev"}.get(self.type)
            for name in ("evdev", "dev"):
                if name != own and getattr(src, name) is not None:
                    raise src.error(f"attribute '{name}' is not for an input of type "
                                    f"'{self.type}'")
            if self.type != InputType.EVDEV:
                for name, xml in (("grab", "grab"), ("grab_toggle", "grabToggle"),
                                  ("repeat", "repeat")):
                    if getattr(src, name) is not None:
                        raise src.error(f"attribute '{xml}' is only for type='evdev'")
            if own is not None and getattr(src, own) is None:
                raise src.error("Missing evdev path for input device")
        if self.driver is not None and self.bus != InputBus.VIRTIO and self.driver.virtio_set:
            raise self.driver.error(f"{self.driver.virtio_set[0]} driver option is only "
                                    "supported for virtio devices")

    @property
    def evdev(self) -> str | None:
        """The host device node (passthrough and evdev inputs)."""
        if self.source is None:
            return None
        return self.source.dev if self.type == InputType.EVDEV else self.source.evdev
