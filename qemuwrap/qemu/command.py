"""Domain model + QEMU capabilities -> the exact QEMU command (libvirt's qemu_command.c).

``build_command`` runs the passes in libvirt's order: implicit devices
(``qemu/defaults.py``), validation (``qemu/validate``, every refusal at once), address
and id assignment (``qemu/address.py``), then the builders, one per area
(``qemu/build/*``), called in the order their options appear.  The guest's VM
Generation ID device is built here, in :func:`build_vmgenid`, right after ``-uuid``.
"""

from __future__ import annotations

import os

from qemuwrap.conf import guid
from qemuwrap.conf.devices.audio import add_default_audio
from qemuwrap.conf.domain import Domain
from qemuwrap.qemu.address import assign_addresses
from qemuwrap.qemu.argv import Command, optstr
from qemuwrap.qemu.bootorder import assign_boot_order
from qemuwrap.qemu.build import (
    CONTROL_SOCKET,
    PIDFILE,
    QMP_SOCKET,
    BuildContext,
    Paths,
)
from qemuwrap.qemu.build.boot import (
    build_boot,
    build_loader,
    build_pflash,
    build_secure_pflash,
)
from qemuwrap.qemu.build.clock import build_clock
from qemuwrap.qemu.build.controller import (
    build_ccid_controllers,
    build_controllers,
    build_global_controllers,
)
from qemuwrap.qemu.build.cpu import build_cpu
from qemuwrap.qemu.build.machine import (
    build_accel,
    build_actions,
    build_iothreads,
    build_machine,
    build_memory,
    build_pm,
    build_smp,
    build_tseg,
)
from qemuwrap.qemu.build.memballoon import build_memballoon
from qemuwrap.qemu.capabilities import Capabilities
from qemuwrap.qemu.defaults import add_implicit_devices
from qemuwrap.qemu.firmware import fill_domain as fill_firmware
from qemuwrap.qemu.validate import MachineType, resolve_machine, validate

#: QEMU's environment: fixed, so a command is the same wherever it is built.
QEMU_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

__all__ = ["CONTROL_SOCKET", "PIDFILE", "QMP_SOCKET", "Paths", "build_command",
           "build_vmgenid", "complete_definition"]


def build_vmgenid(ctx: BuildContext) -> None:
    """``-device vmgenid,guid=GUID,id=vmgenid0``: the guest's VM Generation ID."""
    dom = ctx.dom
    if dom.genid_requested and dom.genid is not None:
        ctx.cmd.add("-device", optstr("vmgenid", guid=guid.format(dom.genid), id="vmgenid0"),
                    dom.nodes.get("genid"))


def build_monitors(ctx: BuildContext) -> None:
    cmd, paths = ctx.cmd, ctx.paths
    cmd.add("-chardev", optstr("socket", id="charmonitor", path=paths.qmp_socket,
                               server="on", wait="off"),
            why="QMP monitor socket in the state directory")
    cmd.add("-mon", optstr(chardev="charmonitor", id="monitor", mode="control"),
            why="QMP monitor")
    cmd.add("-chardev", optstr("socket", id="charcontrol", path=paths.control_socket,
                               server="on", wait="off"),
            why="second QMP socket, for shutdown/destroy/status beside the supervisor")
    cmd.add("-mon", optstr(chardev="charcontrol", id="control", mode="control"),
            why="QMP monitor for qemuwrap's other commands")
    cmd.add("-pidfile", paths.pidfile, why="QEMU's pid for status/adoption")


def complete_definition(dom: Domain, caps: Capabilities) -> MachineType:
    """What libvirt does to a definition before it starts it: implicit devices, every
    check (all refusals at once), addresses and ids, written into ``dom``. Idempotent; the
    machine type the guest gets."""
    machine, _ = resolve_machine(dom, caps)
    fill_firmware(dom, machine.name)
    add_implicit_devices(dom, machine, caps)
    add_default_audio(dom.devices.audios, [g.type for g in dom.devices.graphics])
    machine = validate(dom, caps)
    if dom.devices.memories:
        from qemuwrap.qemu.build.memdev import assign_memory_slots

        assign_memory_slots(dom)
    assign_addresses(dom, machine, caps)
    assign_boot_order(dom)
    return machine


def build_command(dom: Domain, caps: Capabilities, state_dir: os.PathLike | str, *,
                  incoming: bool = False, loadvm: str | None = None) -> Command:
    """Validate ``dom`` against ``caps`` and build its QEMU command.

    The model is completed in place (implicit devices, addresses, ids), as libvirt
    completes a definition when it starts a guest. ``incoming``: QEMU waits for a
    saved state (``-incoming defer``; the restore feeds it over QMP). ``loadvm``: QEMU
    starts from an internal snapshot of that name.

    The builders of an area a guest does not use (a kind of device, NUMA, SMBIOS,
    the qemu namespace) are not imported: each is called only when there is something
    for it to build, which is also when it would add options.
    """
    machine = complete_definition(dom, caps)
    cmd = Command(binary=dom.devices.emulator or caps.emulator)
    ctx = BuildContext(dom, caps, machine, Paths(os.fspath(state_dir)), cmd)
    devs = dom.devices
    cmd.env.update(LC_ALL="C", PATH=QEMU_PATH, HOME=ctx.paths.state_dir)
    cmd.add("-name", optstr(guest=dom.name, debug_threads="on"), dom.nodes.get("name"))
    if dom.qemu_deprecation is not None:
        from qemuwrap.qemu.build.extras import build_compat

        build_compat(ctx)
    cmd.add("-S", why="start paused: qemuwrap checks the genid over QMP, then resumes")
    build_pflash(ctx)
    build_machine(ctx)
    build_accel(ctx)
    build_tseg(ctx)
    build_cpu(ctx)
    build_loader(ctx)
    build_secure_pflash(ctx)
    build_memory(ctx)
    build_smp(ctx)
    build_iothreads(ctx)
    if dom.numa is not None:
        from qemuwrap.qemu.build.numa import build_numa

        build_numa(ctx)
    cmd.add("-uuid", dom.uuid_str, dom.nodes.get("uuid"), why="uuid generated (not in the XML)")
    if dom.sysinfos:
        from qemuwrap.qemu.build.sysinfo import build_fw_cfg, build_smbios

        build_smbios(ctx)
        build_fw_cfg(ctx)
    build_vmgenid(ctx)
    if not devs.graphics:
        cmd.add("-display", "none", why="no <graphics> in the XML")
    cmd.add("-no-user-config", why="only what the XML says")
    cmd.add("-nodefaults", why="only what the XML says")
    build_monitors(ctx)
    build_clock(ctx)
    build_actions(ctx)
    build_pm(ctx)
    build_boot(ctx)
    if devs.iommu is not None:
        from qemuwrap.qemu.build.iommu import build_iommu

        build_iommu(ctx)
    build_global_controllers(ctx)
    build_controllers(ctx)
    if devs.memories:
        from qemuwrap.qemu.build.memdev import build_memory_devices

        build_memory_devices(ctx)
    if devs.hubs:
        from qemuwrap.qemu.build.usb import build_hubs

        build_hubs(ctx)
    build_ccid_controllers(ctx)
    if devs.disks:
        from qemuwrap.qemu.build.disk import build_disks

        build_disks(ctx)
    if devs.filesystems:
        from qemuwrap.qemu.build.companion_devices import build_filesystems

        build_filesystems(ctx)
    if devs.interfaces:
        from qemuwrap.qemu.build.net import build_interfaces

        build_interfaces(ctx)
    if devs.smartcards:
        from qemuwrap.qemu.build.smartcard import build_smartcards

        build_smartcards(ctx)
    if devs.serials or devs.parallels or devs.channels or devs.consoles:
        from qemuwrap.qemu.build.chardev import build_chardevs

        build_chardevs(ctx)
    if devs.tpms:
        from qemuwrap.qemu.build.companion_devices import build_tpms

        build_tpms(ctx)
    if devs.inputs:
        from qemuwrap.qemu.build.input import build_inputs

        build_inputs(ctx)
    if devs.audios:
        from qemuwrap.qemu.build.audio import build_audios

        build_audios(ctx)
    if devs.graphics:
        from qemuwrap.qemu.build.graphics import build_graphics

        build_graphics(ctx)
    if devs.videos:
        from qemuwrap.qemu.build.video import build_video

        build_video(ctx)
    if devs.sounds:
        from qemuwrap.qemu.build.sound import build_sounds

        build_sounds(ctx)
    if devs.watchdogs:
        from qemuwrap.qemu.build.watchdog import build_watchdogs

        build_watchdogs(ctx)
    if devs.redirdevs:
        from qemuwrap.qemu.build.redirdev import build_redirdevs

        build_redirdevs(ctx)
    if devs.hostdevs or any(nic.type == "hostdev" for nic in devs.interfaces):
        from qemuwrap.qemu.build.hostdev import build_hostdevs

        build_hostdevs(ctx)
    if incoming:
        cmd.add("-incoming", "defer", why="restore: state comes over QMP")
    build_memballoon(ctx)
    if devs.rngs:
        from qemuwrap.qemu.build.rng import build_rngs

        build_rngs(ctx)
    if dom.features is not None and dom.features.vmcoreinfo is not None:
        from qemuwrap.qemu.build.extras import build_vmcoreinfo

        build_vmcoreinfo(ctx)
    if dom.launch_security is not None:
        from qemuwrap.qemu.build.extras import build_launch_security

        build_launch_security(ctx)
    if loadvm is not None:
        cmd.add("-loadvm", loadvm, why="revert: start from this snapshot")
    if devs.panics:
        from qemuwrap.qemu.build.panic import build_panics

        build_panics(ctx)
    if devs.shmems:
        from qemuwrap.qemu.build.shmem import build_shmems

        build_shmems(ctx)
    if devs.vsock is not None:
        from qemuwrap.qemu.build.vsock import build_vsock

        build_vsock(ctx)
    cmd.add("-msg", "timestamp=on", why="timestamps in QEMU's log")
    if dom.qemu_commandline is not None:
        from qemuwrap.qemu.build.extras import build_passthrough

        build_passthrough(ctx)
    return cmd
