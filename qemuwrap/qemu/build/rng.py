"""Random number generators (libvirt's qemuBuildRNGCommandLine): the backend object
(``-object rng-random|rng-egd|rng-builtin``, an EGD one after its chardev) and the
virtio-rng device."""

from __future__ import annotations

from qemuwrap.conf.devices.rng import RNG, RNGBackendModel, RNGModel
from qemuwrap.conf.xmlmodel import table
from qemuwrap.qemu.argv import optstr
from qemuwrap.qemu.build import BuildContext
from qemuwrap.qemu.build.chardev import chardev
from qemuwrap.qemu.build.props import acpi_props, exact_opts, virtio_props

RNG_DEVICES = table(RNGModel, {
    RNGModel.VIRTIO: "virtio-rng-pci",
    RNGModel.VIRTIO_TRANSITIONAL: "virtio-rng-pci-transitional",
    RNGModel.VIRTIO_NON_TRANSITIONAL: "virtio-rng-pci-non-transitional"})
RNG_BACKENDS = table(RNGBackendModel, {RNGBackendModel.RANDOM: "rng-random",
                                       RNGBackendModel.EGD: "rng-egd",
                                       RNGBackendModel.BUILTIN: "rng-builtin"})


def rng_device(ctx: BuildContext, rng: RNG) -> str:
    rate = rng.rate
    return exact_opts(RNG_DEVICES[rng.model], [
        *virtio_props(rng.driver).items(), ("rng", f"obj{rng.alias_name}"),
        ("id", rng.alias_name), ("max-bytes", rate.bytes if rate else None),
        ("period", (rate.period or 1000) if rate else None),
        *ctx.pci_props(rng).items(), *acpi_props(rng)])


def build_rngs(ctx: BuildContext) -> None:
    for rng in ctx.dom.devices.rngs:
        backend = rng.backend
        obj = f"obj{rng.alias_name}"
        props: dict[str, object] = {}
        if backend.model == RNGBackendModel.EGD:
            chr_id = f"char{rng.alias_name}"
            chardev(ctx, chr_id, backend, backend.node)
            props["chardev"] = chr_id
        elif backend.model == RNGBackendModel.RANDOM:
            props["filename"] = backend.file
        ctx.cmd.add("-object", optstr(RNG_BACKENDS[backend.model], id=obj, **props),
                    backend.node)
        ctx.cmd.add("-device", rng_device(ctx, rng), rng.node)
