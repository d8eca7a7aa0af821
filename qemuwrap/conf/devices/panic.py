"""``<panic>``: how the guest tells the host it crashed (an ISA pvpanic port, Hyper-V's
crash MSRs, a PCI pvpanic device)."""

from __future__ import annotations

from qemuwrap.conf.devices.address import ISAAddress, PCIDevice
from qemuwrap.conf.valueset import ValueSet
from qemuwrap.conf.xmlmodel import ParseContext, attr


class PanicModel(ValueSet):
    ISA = "isa"
    PSERIES = "pseries"
    HYPERV = "hyperv"
    S390 = "s390"
    PVPANIC = "pvpanic"


class Panic(PCIDevice):
    TAG = "panic"
    model: PanicModel | None = attr(PanicModel)

    def check(self, ctx: ParseContext) -> None:
        if self.model is None:
            self.model = PanicModel.ISA  # libvirt's default on x86 (qemuDomainPanicDefPostParse)
        addr = self.address
        if addr is None:
            return
        if self.model == PanicModel.ISA and not isinstance(addr, ISAAddress):
            raise addr.error("an isa panic device takes an 'isa' address")
        if self.model == PanicModel.PVPANIC and addr.VARIANT != "pci":
            raise addr.error("a pvpanic device takes a 'pci' address")
        if self.model in (PanicModel.HYPERV, PanicModel.PSERIES, PanicModel.S390):
            raise addr.error(f"a '{self.model}' panic device takes no address")

    def address_types(self) -> tuple[str, ...] | None:
        return None  # by model (check)

    @property
    def iobase(self) -> int | None:
        return self.address.iobase if isinstance(self.address, ISAAddress) else None
