"""The machine as a whole: machine type, accelerator, memory, vCPUs, clock, lifecycle."""

from __future__ import annotations

from qemuwrap.conf.domain import CrashAction, PowerOffAction, RebootAction
from qemuwrap.conf.xmlmodel import table
from qemuwrap.qemu.argv import optstr
from qemuwrap.qemu.build import BuildContext

#: on_crash -> QEMU's -action panic=; "restart" is done by the supervisor on GUEST_PANICKED.
PANIC_ACTIONS = table(CrashAction, {CrashAction.DESTROY: "exit-failure",
                                    CrashAction.RESTART: "none",
                                    CrashAction.PRESERVE: "pause"})
#: A reboot turned into a shutdown follows the shutdown action; where that pauses
#: (on_poweroff restart/preserve) the supervisor sees SHUTDOWN's reason and ends QEMU.
SHUTDOWN_ACTIONS = table(PowerOffAction, {PowerOffAction.DESTROY: "poweroff",
                                          PowerOffAction.RESTART: "pause",
                                          PowerOffAction.PRESERVE: "pause"})
REBOOT_ACTIONS = table(RebootAction, {RebootAction.RESTART: "reset",
                                      RebootAction.DESTROY: "shutdown"})


def build_machine(ctx: BuildContext) -> None:
    dom = ctx.dom
    ctx.cmd.add("-machine", optstr(ctx.machine.name, usb="off", dump_guest_core="off",
                                   acpi="on" if dom.acpi else "off"),
                dom.nodes.get("os/type"))
    ctx.cmd.add("-accel", "kvm" if dom.type == "kvm" else "tcg", dom.node)


def build_memory(ctx: BuildContext) -> None:
    mib = -(-ctx.dom.memory_kib // 1024)  # whole MiB, rounded up as libvirt does
    ctx.cmd.add("-m", str(mib), ctx.dom.nodes.get("memory"))


def build_smp(ctx: BuildContext) -> None:
    dom = ctx.dom
    topo = dom.topology
    sockets, dies, cores, threads = ((topo.sockets, topo.dies, topo.cores, topo.threads)
                                     if topo else (dom.vcpus, 1, 1, 1))
    value = optstr(dom.vcpu_current or dom.vcpus,
                   maxcpus=dom.vcpus if dom.vcpu_current else None,
                   sockets=sockets, dies=dies if dies > 1 else None, cores=cores,
                   threads=threads)
    ctx.cmd.add("-smp", value, dom.nodes.get("vcpu") or dom.nodes.get("cpu"),
                why="default: one vCPU")


def build_clock(ctx: BuildContext) -> None:
    ctx.cmd.add("-rtc", optstr(base=ctx.dom.clock_offset), ctx.dom.nodes.get("clock"),
                why="default clock offset utc")


def build_actions(ctx: BuildContext) -> None:
    """on_poweroff/on_reboot/on_crash as QEMU's -action where QEMU has one; the rest
    (restart after poweroff or panic) is the supervisor's, on QMP events."""
    dom = ctx.dom
    value = optstr(reboot=REBOOT_ACTIONS[dom.on_reboot],
                   shutdown=SHUTDOWN_ACTIONS[dom.on_poweroff],
                   panic=PANIC_ACTIONS[dom.on_crash])
    nodes = dom.nodes
    source = nodes.get("on_poweroff") or nodes.get("on_reboot") or nodes.get("on_crash")
    ctx.cmd.add("-action", value, source, why="libvirt's default lifecycle actions")
