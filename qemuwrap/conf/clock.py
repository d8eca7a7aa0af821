"""``<clock>``: the guest's RTC offset and its timers (rtc, pit, hpet, kvmclock,
hypervclock, tsc, ...) with their tick policies."""

from __future__ import annotations

from qemuwrap.conf.valueset import ValueSet
from qemuwrap.conf.xmlmodel import (
    YES_NO,
    Element,
    Int,
    ParseContext,
    Str,
    attr,
    child,
    children,
)


class ClockOffset(ValueSet):
    UTC = "utc"
    LOCALTIME = "localtime"
    TIMEZONE = "timezone"
    VARIABLE = "variable"
    ABSOLUTE = "absolute"


class ClockBasis(ValueSet):
    UTC = "utc"
    LOCALTIME = "localtime"


class TimerName(ValueSet):
    PLATFORM = "platform"
    PIT = "pit"
    RTC = "rtc"
    HPET = "hpet"
    TSC = "tsc"
    KVMCLOCK = "kvmclock"
    HYPERVCLOCK = "hypervclock"
    ARMVTIMER = "armvtimer"


class TickPolicy(ValueSet):
    DELAY = "delay"
    CATCHUP = "catchup"
    MERGE = "merge"
    DISCARD = "discard"


class TimerTrack(ValueSet):
    BOOT = "boot"
    GUEST = "guest"
    WALL = "wall"
    REALTIME = "realtime"


class TSCMode(ValueSet):
    AUTO = "auto"
    NATIVE = "native"
    EMULATE = "emulate"
    PARAVIRT = "paravirt"
    SMPSAFE = "smpsafe"


UINT = Int(0, 2**32 - 1)


class Catchup(Element):
    TAG = "catchup"
    threshold: int | None = attr(UINT)
    slew: int | None = attr(UINT)
    limit: int | None = attr(UINT)


class Timer(Element):
    """One ``<timer name=...>`` with the attributes libvirt allows for that timer."""

    TAG = "timer"
    name: TimerName = attr(TimerName, required=True)
    present: bool | None = attr(YES_NO)
    tickpolicy: TickPolicy | None = attr(TickPolicy)
    track: TimerTrack | None = attr(TimerTrack)
    frequency: int | None = attr(Int(0, 2**64 - 1))
    mode: TSCMode | None = attr(TSCMode)
    catchup: Catchup | None = child(Catchup)

    def check(self, ctx: ParseContext) -> None:
        name = self.name
        if self.track is not None and name not in (TimerName.PLATFORM, TimerName.RTC):
            raise self.error(f"attribute 'track' is only for the rtc and platform timers, "
                             f"not '{name}'")
        if (self.frequency is not None or self.mode is not None) and name != TimerName.TSC:
            raise self.error(f"attributes 'frequency' and 'mode' are only for the tsc "
                             f"timer, not '{name}'")
        if self.tickpolicy is not None and name in (TimerName.KVMCLOCK,
                                                    TimerName.HYPERVCLOCK):
            raise self.error(f"the {name} timer takes no tickpolicy")
        if self.catchup is not None and self.tickpolicy != TickPolicy.CATCHUP:
            raise self.catchup.error("<catchup> needs tickpolicy='catchup'")


class Clock(Element):
    """``<clock offset=...>``: libvirt's offset kinds and the guest's timers."""

    TAG = "clock"
    offset: ClockOffset = attr(ClockOffset, default=ClockOffset.UTC)
    adjustment: str | None = attr(Str(r"[+\-]?[0-9]+|reset", what="clock adjustment"))
    basis: ClockBasis | None = attr(ClockBasis)
    timezone: str | None = attr(Str(r"[a-zA-Z0-9_.+\-/]+", what="time zone"))
    start: int | None = attr(Int(0, 2**64 - 1))
    timers: list[Timer] = children(Timer)

    def check(self, ctx: ParseContext) -> None:
        offset = self.offset
        allowed = {ClockOffset.UTC: {"adjustment"}, ClockOffset.LOCALTIME: {"adjustment"},
                   ClockOffset.TIMEZONE: {"timezone"},
                   ClockOffset.VARIABLE: {"adjustment", "basis"},
                   ClockOffset.ABSOLUTE: {"start"}}[offset]
        for name in ("adjustment", "basis", "timezone", "start"):
            if getattr(self, name) is not None and name not in allowed:
                ctx.record(self.error(f"attribute '{name}' does not go with "
                                      f"offset='{offset}'"))
        if offset == ClockOffset.ABSOLUTE and self.start is None:
            ctx.record(self.error("missing 'start' attribute with offset='absolute'"))
        if self.adjustment == "reset" and offset not in (ClockOffset.UTC,
                                                         ClockOffset.LOCALTIME):
            ctx.record(self.error("adjustment='reset' is only for offset utc or "
                                  "localtime"))
        seen: set[TimerName] = set()
        for t in self.timers:
            if t.name in seen:
                ctx.record(t.error(f"timer '{t.name}' is given twice"))
            seen.add(t.name)

    def timer(self, name: TimerName) -> Timer | None:
        return next((t for t in self.timers if t.name == name), None)

    @property
    def adjustment_seconds(self) -> int:
        """The variable offset in seconds (0 for none or 'reset')."""
        adj = self.adjustment
        return int(adj) if adj and adj != "reset" else 0
