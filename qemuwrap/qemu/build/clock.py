"""The guest's clock: ``-rtc`` (base, clock source, drift fix), the PIT's lost tick
policy, ``-no-hpet``, and ``TZ`` for a time zone offset (qemuBuildClockCommandLine).
CPU clock flags (kvmclock, hypervclock, tsc frequency) are in ``-cpu`` (build/cpu.py)."""

from __future__ import annotations

import time

from qemuwrap.conf.clock import ClockBasis, ClockOffset, TickPolicy, TimerName, TimerTrack
from qemuwrap.conf.xmlmodel import table
from qemuwrap.qemu.argv import optstr
from qemuwrap.qemu.build import BuildContext

RTC_CLOCKS = table(TimerTrack, {TimerTrack.GUEST: "vm", TimerTrack.WALL: "host",
                                TimerTrack.REALTIME: "rt"},
                   not_mapped={TimerTrack.BOOT: "refused: QEMU has no such RTC clock"})
PIT_POLICIES = table(TickPolicy, {TickPolicy.DELAY: "delay", TickPolicy.DISCARD: "discard"},
                     not_mapped={TickPolicy.CATCHUP: "QEMU's default for the KVM PIT",
                                 TickPolicy.MERGE: "refused: QEMU's PIT cannot merge"})


def rtc_base(ctx: BuildContext) -> tuple[str, str | None]:
    """``base=`` and, for a moving offset, the note that it is computed at start."""
    clock = ctx.dom.clock
    moving = clock is not None and clock.adjustment not in (None, "reset")
    if clock is None or (clock.offset == ClockOffset.UTC and not moving):
        return "utc", None
    if clock.offset == ClockOffset.TIMEZONE or (clock.offset == ClockOffset.LOCALTIME
                                               and not moving):
        return "localtime", None
    import datetime  # for a clock that is not the host's: off the usual path

    if clock.offset == ClockOffset.ABSOLUTE:
        then = datetime.datetime.fromtimestamp(clock.start or 0, datetime.UTC)
        return then.strftime("%Y-%m-%dT%H:%M:%S"), None
    # variable (or utc/localtime with an adjustment): the offset from UTC, a localtime
    # basis adding the host's own offset now
    adjust = clock.adjustment_seconds
    if clock.basis == ClockBasis.LOCALTIME or clock.offset == ClockOffset.LOCALTIME:
        adjust += time.localtime().tm_gmtoff
    then = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=adjust)
    return then.strftime("%Y-%m-%dT%H:%M:%S"), \
        "the guest's clock at start (offset plus adjustment), computed when the command is built"


def build_clock(ctx: BuildContext) -> None:
    dom = ctx.dom
    clock = dom.clock
    base, why = rtc_base(ctx)
    props: dict[str, object] = {"base": base}
    rtc = clock.timer(TimerName.RTC) if clock is not None else None
    if rtc is not None:
        if rtc.track is not None:
            props["clock"] = RTC_CLOCKS.get(rtc.track)
        if rtc.tickpolicy == TickPolicy.CATCHUP:
            props["driftfix"] = "slew"
    ctx.cmd.add("-rtc", optstr(**props), clock.node if clock is not None else None,
                why=why or "default clock offset utc")
    if clock is None:
        return
    if clock.offset == ClockOffset.TIMEZONE and clock.timezone:
        ctx.cmd.env["TZ"] = clock.timezone
    for timer in clock.timers:
        if timer.name == TimerName.PIT:
            policy = timer.tickpolicy or TickPolicy.DELAY
            value = PIT_POLICIES.get(policy)
            if value is not None:
                ctx.cmd.add("-global", f"kvm-pit.lost_tick_policy={value}", timer.node)
        elif timer.name == TimerName.HPET and timer.present is False:
            ctx.cmd.add("-no-hpet", None, timer.node)
