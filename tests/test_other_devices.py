"""The other devices: rng, watchdog, panic, memballoon, iommu, vsock, shmem: libvirt's
rules, the options built, and what QEMU shows the guest."""

from __future__ import annotations

import os
import re

import pytest
from goldenvm import build_checked, paused

from qemuwrap.conf import guid
from qemuwrap.conf.domain import loads
from qemuwrap.errors import QemuwrapError, XMLError
from qemuwrap.qemu.build.memballoon import balloon_qmp_after_start
from qemuwrap.qemu.build.panic import panic_cpu_flags
from qemuwrap.qemu.capabilities import Capabilities

from conftest import DEFAULT_CAPS, needs_qemu

CAPS = Capabilities.from_file(DEFAULT_CAPS)


def dom(devices: str, machine: str = "pc", features: str = "<acpi/>"):
    return loads(f"<domain type='qemu'><name>o</name><memory unit='MiB'>64</memory><os>"
                 f"<type arch='x86_64' machine='{machine}'>hvm</type></os><features>"
                 f"{features}</features><devices>{devices}</devices></domain>",
                 random=guid.counting_random)


def argv(devices: str, machine: str = "pc", features: str = "<acpi/>") -> list[str]:
    return build_checked(dom(devices, machine, features), CAPS, "/run/qemuwrap/o").argv


def test_rng_defaults_and_rate():
    d = dom("<rng model='virtio'><rate bytes='10'/><backend model='random'/></rng>")
    (rng,) = d.devices.rngs
    assert rng.backend.file == "/dev/random"  # libvirt's default source
    args = argv("<rng model='virtio'><rate bytes='10'/><backend model='random'/></rng>")
    assert "rng-random,id=objrng0,filename=/dev/random" in args
    assert any(a.startswith("virtio-rng-pci,rng=objrng0,id=rng0,max-bytes=10,period=1000")
               for a in args)


def test_vsock_when_the_host_has_vhost_vsock(tmp_path, monkeypatch):
    node = tmp_path / "vhost-vsock"
    node.touch()
    monkeypatch.setattr("qemuwrap.qemu.validate.misc.VHOST_VSOCK", str(node))
    args = argv("<vsock model='virtio-non-transitional'><cid auto='no' address='4'/>"
                "<driver iommu='on'/></vsock>")
    assert any(a.startswith("vhost-vsock-pci-non-transitional,iommu_platform=on,id=vsock0,"
                            "guest-cid=4") for a in args)


def test_panic_model_defaults_to_isa_and_hyperv_is_a_cpu_flag():
    d = dom("<panic/><panic model='hyperv'/>")
    assert [p.model for p in d.devices.panics] == ["isa", "hyperv"]
    assert panic_cpu_flags(d) == ["hv-crash"]
    assert "pvpanic" in argv("<panic/>")


@pytest.mark.parametrize(("devices", "message", "machine"), [
    ("<watchdog model='i6300esb'/><watchdog model='ib700'/>", "only a single watchdog",
     "pc"),
    ("<watchdog model='itco'/>", "built into q35's ICH9", "pc"),
    ("<watchdog model='diag288'/>", "s390 guests only", "pc"),
    ("<iommu model='virtio'/>", "only supported with q35", "pc"),
    ("<iommu model='smmuv3'/>", "ARM virt machines only", "q35"),
    ("<iommu model='intel'><driver intremap='on'/></iommu>", "split I/O APIC", "q35"),
    ("<vsock model='virtio'><cid auto='yes'/></vsock>", "does not pick a free guest CID",
     "pc"),
    ("<shmem name='s'/>", "removed in QEMU 4.0", "pc"),
    ("<memballoon model='virtio'><driver iommu='on'/></memballoon>", "modern-only", "pc"),
    ("<rng model='virtio'><backend model='egd' type='unix'><source mode='connect' "
     "path='/run/qemuwrap-none.sock'/></backend></rng>", "needs a listening peer", "pc"),
])
def test_refusals(devices, message, machine):
    with pytest.raises(QemuwrapError, match=re.escape(message)):
        argv(devices, machine)


@pytest.mark.parametrize(("devices", "message"), [
    ("<watchdog model='ib700'><address type='isa'/></watchdog>", "takes no address"),
    ("<watchdog model='i6300esb'><address type='isa'/></watchdog>", "only on the PCI bus"),
    ("<panic model='isa'><address type='pci'/></panic>", "takes an 'isa' address"),
    ("<iommu model='virtio'><driver caching_mode='on'/></iommu>", "additional attributes"),
    ("<iommu model='intel'><driver eim='on'/></iommu>", "requires interrupt remapping"),
    ("<vsock><cid address='2'/></vsock>", "guest CIDs must be >= 3"),
    ("<shmem name='s'><model type='ivshmem-doorbell'/></shmem>", "only with <server>"),
    ("<shmem name='s'><model type='ivshmem-plain'/><size unit='K'>3</size></shmem>",
     "power of two"),
    ("<rng model='virtio'><backend model='egd'/></rng>", "needs a character device type"),
    ("<memballoon model='none' autodeflate='on'/>", "takes no settings"),
])
def test_parse_rules(devices, message):
    with pytest.raises(XMLError, match=re.escape(message)):
        dom(devices)


def test_doorbell_connects_to_its_server(tmp_path):
    import socket

    path = str(tmp_path / "ivshmem.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(1)
    try:
        args = argv(f"<shmem name='bell'><model type='ivshmem-doorbell'/><server path='{path}'/>"
                    "<msi vectors='4'/></shmem>")
    finally:
        server.close()
    assert any(a.startswith("ivshmem-doorbell,id=shmem0,chardev=charshmem0,vectors=4,"
                            "ioeventfd=on") for a in args)
    assert f"socket,id=charshmem0,path={path}" in args


@needs_qemu
def test_qemu_shows_the_guest_rngs_watchdog_and_panic(tmp_path, request):
    with paused("rng-backends", tmp_path, request) as guest:
        pci = guest.pci()
        assert pci["rng0"] == (0x1AF4, 0x1005) and pci["rng2"] == (0x1AF4, 0x1044)
        assert guest.cmd("qom-get", path="/machine/peripheral/rng0",
                         property="max-bytes") == 1234
    (tmp_path / "w").mkdir()
    with paused("watchdog-i6300esb", tmp_path / "w", request) as guest:
        assert guest.pci()["watchdog0"] == (0x8086, 0x25AB)
    (tmp_path / "p").mkdir()
    with paused("panic-isa-pci", tmp_path / "p", request) as guest:
        assert guest.pci()["panic1"] == (0x1B36, 0x0011)
        qtree = guest.hmp("info qtree")
        assert "dev: pvpanic, id" in qtree and "ioport = 1285" in qtree


@needs_qemu
def test_qemu_takes_the_balloon_options_and_stats_period(tmp_path, request):
    with paused("balloon-options", tmp_path, request) as guest:
        assert guest.pci()["balloon0"] == (0x1AF4, 0x1045)
        path = "/machine/peripheral/balloon0"
        assert guest.cmd("qom-get", path=path, property="deflate-on-oom") is True
        assert guest.cmd("qom-get", path=path, property="free-page-reporting") is True
        for name, args in balloon_qmp_after_start(guest.dom):
            guest.cmd(name, **args)
        assert guest.cmd("qom-get", path=path, property="guest-stats-polling-interval") == 10


@needs_qemu
def test_qemu_takes_the_iommus_and_shared_memory(tmp_path, request):
    with paused("iommu-intel", tmp_path, request) as guest:
        path = "/machine/peripheral/iommu0"
        assert guest.cmd("qom-get", path=path, property="caching-mode") is True
        assert guest.cmd("qom-get", path=path, property="aw-bits") == 48
    (tmp_path / "v").mkdir()
    with paused("iommu-virtio", tmp_path / "v", request) as guest:
        assert guest.pci()["iommu0"] == (0x1AF4, 0x1057)
    (tmp_path / "s").mkdir()
    with paused("shmem-plain", tmp_path / "s", request) as guest:
        assert guest.pci()["shmem0"] == (0x1AF4, 0x1110)
        assert os.path.getsize("/dev/shm/qemuwrap-golden-shm") == 8 << 20
