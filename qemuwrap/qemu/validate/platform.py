"""Checks of the platform around the guest: firmware and boot, SMBIOS, clock timers,
hypervisor features, lifecycle actions, launch security and libvirt-only extensions
(libvirt's qemuValidateDomainDef* for these, and what qemuwrap cannot do)."""

from __future__ import annotations

import os

from qemuwrap.conf.clock import ClockOffset, TickPolicy, TimerName, TimerTrack
from qemuwrap.conf.domain import CrashAction, RebootAction
from qemuwrap.conf.os import LoaderType, NvramProtocol, NvramType, SmbiosMode
from qemuwrap.hints import TYPE_CHECKING
from qemuwrap.qemu.build.boot import pflash_images

if TYPE_CHECKING:
    from qemuwrap.qemu.validate import Validation

#: Where the kernel offers AMD SEV to guests.
SEV_DEVICE = "/dev/sev"


def check_lifecycle(v: Validation) -> None:
    dom = v.dom
    nodes = dom.nodes
    for tag, value in (("on_poweroff", dom.on_poweroff), ("on_reboot", dom.on_reboot),
                       ("on_crash", dom.on_crash)):
        if value == "rename-restart":
            v.refuse(nodes.get(tag) or dom, "qemu driver doesn't support the "
                                            "'rename-restart' action for 'on_reboot'/"
                                            "'on_poweroff'/'on_crash'")
    if dom.on_reboot == RebootAction.PRESERVE:
        v.refuse(nodes.get("on_reboot") or dom, "qemu driver doesn't support the 'preserve' "
                                                "action for 'on_reboot'/'on_poweroff'")
    if dom.on_crash in (CrashAction.COREDUMP_DESTROY, CrashAction.COREDUMP_RESTART):
        v.refuse(nodes.get("on_crash") or dom,
                 f"on_crash '{dom.on_crash}' needs a guest memory dump, which qemuwrap's "
                 "supervisor does not write (use destroy, restart or preserve)")


def check_os(v: Validation) -> None:
    dom = v.dom
    os_el = dom.os
    loader = os_el.loader
    images = pflash_images(dom)
    if images or (loader is not None and os_el.loader_type == LoaderType.PFLASH):
        if not dom.acpi:
            v.refuse(loader or os_el, "UEFI requires ACPI on this architecture")
    nvram = os_el.nvram
    if nvram is not None and nvram.type == NvramType.NETWORK and nvram.source is not None \
            and nvram.source.protocol != NvramProtocol.NBD:
        v.refuse(nvram.source, f"an NVRAM over '{nvram.source.protocol}' is not supported "
                               "by qemuwrap (nbd is)")
    if loader is not None and loader.secure:
        smm = dom.features.smm if dom.features is not None else None
        if not v.q35:
            v.refuse(loader, "Secure boot is supported with q35 machine types only")
        elif smm is None or not smm.on:
            v.refuse(loader, "Secure boot requires SMM feature enabled")
    if os_el.bios is not None and os_el.bios.useserial and not dom.devices.serials:
        v.refuse(os_el.bios, "need at least one serial port to use BIOS serial output")
    smbios = os_el.smbios
    if smbios is not None:
        if smbios.mode == SmbiosMode.HOST:
            v.refuse(smbios, "smbios mode='host' copies the host's SMBIOS tables, which "
                             "qemuwrap does not read: use mode='sysinfo'")
        elif smbios.mode == SmbiosMode.SYSINFO and dom.sysinfo_smbios is None:
            v.refuse(smbios, f"Domain '{dom.name}' sysinfo are not available")
    info = dom.sysinfo_smbios
    if info is not None and len(info.base_boards) > 1:
        v.refuse(info.base_boards[1], "qemu does not support more than one entry to Type 2 "
                                      "in SMBIOS table")
    _check_boot_order(v)


def _check_boot_order(v: Validation) -> None:
    dom = v.dom
    if not dom.os.boots:
        return
    for dev in dom.devices.all():
        boot = getattr(dev, "boot", None)
        if boot is not None:
            v.refuse(boot, "per-device boot elements cannot be used together with os/boot "
                           "elements")
            return


def check_clock(v: Validation) -> None:
    dom = v.dom
    clock = dom.clock
    if clock is None:
        return
    for timer in clock.timers:
        name = timer.name
        if name == TimerName.PLATFORM:
            v.refuse(timer, "unsupported timer type (name) 'platform'")
        elif name == TimerName.ARMVTIMER:
            v.refuse(timer, f"Configuring the 'armvtimer' timer is not supported for "
                            f"virtType={dom.type} arch={dom.os.arch} "
                            f"machine={v.machine.name} guests")
        elif name == TimerName.RTC:
            if timer.tickpolicy in (TickPolicy.MERGE, TickPolicy.DISCARD):
                v.refuse(timer, f"unsupported rtc timer tickpolicy '{timer.tickpolicy}'")
            if timer.track == TimerTrack.BOOT:
                v.refuse(timer, "unsupported rtc timer track 'boot'")
        elif name == TimerName.PIT and timer.tickpolicy == TickPolicy.MERGE:
            v.refuse(timer, "unsupported pit tickpolicy 'merge'")
        elif name == TimerName.TSC and timer.tickpolicy is not None:
            v.refuse(timer, "unsupported tsc timer tickpolicy")
    if clock.offset == ClockOffset.TIMEZONE and clock.timezone is None:
        v.refuse(clock, "offset='timezone' needs a timezone attribute")


def check_features(v: Validation) -> None:
    dom = v.dom
    feats = dom.features
    if feats is None:
        return
    for name in ("gic", "htm", "nested_hv", "ccf_assist", "cfpc", "sbbc", "ibs", "hpt"):
        el = getattr(feats, name)
        if el is not None:
            v.refuse(el, f"The '{el.TAG}' feature is not supported for architecture "
                         f"'{dom.os.arch}' or machine type '{v.machine.name}'")
    smm = feats.smm
    if smm is not None and smm.tseg is not None:
        if not v.q35:
            v.refuse(smm.tseg, "SMM TSEG is only supported with q35 machine type")
        elif not smm.on:
            v.refuse(smm.tseg, "SMM TSEG needs SMM on")


def check_security(v: Validation) -> None:
    dom = v.dom
    if dom.keywrap is not None:
        v.refuse(dom.keywrap, "'aes-key-wrap'/'dea-key-wrap' is not available on this "
                              "architecture")
    sec = dom.launch_security
    if sec is not None:
        from qemuwrap.conf.security import LaunchSecurityType

        if sec.type == LaunchSecurityType.S390_PV:
            v.refuse(sec, "launch security type 's390-pv' is only for s390 guests")
        elif not os.path.exists(SEV_DEVICE):
            v.refuse(sec, f"launch security type 'sev' needs an AMD SEV host ({SEV_DEVICE} "
                          "does not exist)")
    if dom.qemu_capabilities is not None:
        v.refuse(dom.qemu_capabilities, "<qemu:capabilities> overrides libvirt's own "
                                        "capability probing, which qemuwrap does not share")
    if dom.qemu_override is not None:
        v.refuse(dom.qemu_override, "<qemu:override> rewrites libvirt's JSON device "
                                    "properties; qemuwrap does not support it")


CHECKS = [check_lifecycle, check_os, check_clock, check_features, check_security]
