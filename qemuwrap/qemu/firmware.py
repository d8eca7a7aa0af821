"""Firmware selection through QEMU's firmware descriptors, as libvirt does for
``<os firmware='efi'>``.

Distributions describe their firmware builds in JSON files (QEMU's
``docs/interop/firmware.json``): which interface (uefi, bios), which architecture and
machine types (globs), which features (``secure-boot``, ``enrolled-keys``,
``requires-smm``, ...), and how QEMU maps them (the code and a VARS template as pflash).
The files come from three directories, general to specific; a file in a more specific
directory replaces one of the same name, an empty one hides it; the first file, in
order of file name, that fits the request wins (libvirt's ``qemuFirmwareMatchDomain``).

Plain classes and ``str`` paths, no dataclasses or pathlib: a dry run of an EFI guest
reads the descriptors too, and those imports cost it ~14 ms (measured).
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Iterable, Mapping

from qemuwrap.errors import QemuwrapError

SYSTEM_DIR = "/usr/share/qemu/firmware"  # the distribution's descriptors
SYSCONF_DIR = "/etc/qemu/firmware"  # the administrator's additions and overrides
#: Block formats a pflash image may have (QEMU maps either; libvirt 9.0 takes raw only).
FLASH_FORMATS = ("raw", "qcow2")


class FirmwareError(QemuwrapError):
    """No firmware fits, or a descriptor cannot be read; one line naming what and where."""


def search_dirs(privileged: bool | None = None,
                environ: Mapping[str, str] | None = None) -> list[str]:
    """The descriptor directories, general to specific. The per-user one
    (``$XDG_CONFIG_HOME/qemu/firmware``) only for an unprivileged user, as libvirt does:
    root's guests do not depend on root's home directory."""
    env = os.environ if environ is None else environ
    if privileged is None:
        privileged = os.geteuid() == 0
    dirs = [SYSTEM_DIR, SYSCONF_DIR]
    if not privileged:
        config = env.get("XDG_CONFIG_HOME") or os.path.join(
            env.get("HOME") or os.path.expanduser("~"), ".config")
        dirs.append(os.path.join(config, "qemu", "firmware"))
    return dirs


def descriptor_files(dirs: Iterable[str]) -> list[str]:
    """The descriptors in effect, in the order they are tried: one per file name (the most
    specific directory's), sorted by file name; an empty file hides its name."""
    chosen: dict[str, str] = {}
    for directory in dirs:
        try:
            names = os.listdir(directory)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            raise FirmwareError(f"{directory}: {exc.strerror}") from None
        for name in names:
            if name.endswith(".json"):
                chosen[name] = os.path.join(directory, name)
    out = []
    for name in sorted(chosen):
        try:
            if os.path.getsize(chosen[name]) == 0:
                continue
        except OSError:
            continue  # a dangling link hides nothing and describes nothing
        out.append(chosen[name])
    return out


class Target:
    """An architecture and the machine type globs a firmware runs on."""

    __slots__ = ("architecture", "machines")

    def __init__(self, architecture: str, machines: tuple[str, ...]):
        self.architecture = architecture
        self.machines = machines

    def matches(self, arch: str, machine: str) -> bool:
        return arch == self.architecture and any(
            fnmatch.fnmatchcase(machine, glob) for glob in self.machines)


class Descriptor:
    """One firmware descriptor file, read and checked."""

    __slots__ = ("path", "description", "interfaces", "device", "executable",
                 "executable_format", "nvram_template", "nvram_format", "targets", "features")

    def __init__(self, path: str, description: str, interfaces: tuple[str, ...], device: str,
                 executable: str, executable_format: str, nvram_template: str | None,
                 nvram_format: str | None, targets: tuple[Target, ...],
                 features: frozenset[str]):
        self.path = path
        self.description = description
        self.interfaces = interfaces
        self.device = device
        self.executable = executable
        self.executable_format = executable_format
        self.nvram_template = nvram_template
        self.nvram_format = nvram_format
        self.targets = targets
        self.features = features

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    def summary(self) -> str:
        """``60-edk2-x86_64.json (uefi; x86_64 pc-i440fx-*,pc-q35-*; acpi-s3 ...)``"""
        targets = " ".join(f"{t.architecture} {','.join(t.machines)}" for t in self.targets)
        features = " ".join(sorted(self.features)) or "no features"
        return f"{self.name} ({','.join(self.interfaces)}; {targets}; {features})"


_KIND_NAMES: dict[type, str] = {str: "a string", list: "a list", dict: "an object"}


def _field(doc: Mapping, key: str, kind: type, path: str, where: str = ""):
    value = doc.get(key)
    if not isinstance(value, kind):
        what = _KIND_NAMES[kind]
        raise FirmwareError(f"{path}: '{where}{key}' is missing or not {what}")
    return value


def _strings(doc: Mapping, key: str, path: str, where: str = "") -> tuple[str, ...]:
    items = _field(doc, key, list, path, where)
    if not all(isinstance(i, str) for i in items):
        raise FirmwareError(f"{path}: '{where}{key}' must list strings")
    return tuple(items)


def _flash_file(mapping: Mapping, key: str, path: str) -> tuple[str, str]:
    entry = _field(mapping, key, dict, path, "mapping.")
    filename = _field(entry, "filename", str, path, f"mapping.{key}.")
    fmt = _field(entry, "format", str, path, f"mapping.{key}.")
    return filename, fmt


def read_descriptor(path: str) -> Descriptor:
    """Parse one descriptor; anything malformed is a one-line error naming the file.
    Unknown features and interface types are kept as text (newer QEMUs add some)."""
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read(1 << 20))
    except OSError as exc:
        raise FirmwareError(f"{path}: {exc.strerror}") from None
    except ValueError as exc:
        raise FirmwareError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise FirmwareError(f"{path}: not a firmware descriptor (a JSON object)")
    interfaces = _strings(doc, "interface-types", path)
    mapping = _field(doc, "mapping", dict, path)
    device = _field(mapping, "device", str, path, "mapping.")
    template: str | None = None
    template_format: str | None = None
    if device == "flash":
        executable, executable_format = _flash_file(mapping, "executable", path)
        mode = mapping.get("mode", "split")
        if mode == "split" or "nvram-template" in mapping:
            template, template_format = _flash_file(mapping, "nvram-template", path)
        elif mode not in ("stateless", "combined"):
            raise FirmwareError(f"{path}: unknown 'mapping.mode' {mode!r}")
    elif device in ("memory", "kernel"):
        executable = _field(mapping, "filename", str, path, "mapping.")
        executable_format = "raw"
    else:
        raise FirmwareError(f"{path}: unknown 'mapping.device' {device!r}")
    targets = []
    for i, target in enumerate(_field(doc, "targets", list, path)):
        if not isinstance(target, dict):
            raise FirmwareError(f"{path}: 'targets[{i}]' is not an object")
        targets.append(Target(_field(target, "architecture", str, path, f"targets[{i}]."),
                              _strings(target, "machines", path, f"targets[{i}].")))
    features = frozenset(_strings(doc, "features", path)) if "features" in doc else frozenset()
    description = doc.get("description") if isinstance(doc.get("description"), str) else ""
    return Descriptor(path, description or "", interfaces, device, executable,
                      executable_format, template, template_format, tuple(targets), features)


class Firmware:
    """The firmware picked for a guest and what the pick implies for its command line."""

    __slots__ = ("descriptor", "interface")

    def __init__(self, descriptor: Descriptor, interface: str):
        self.descriptor = descriptor
        self.interface = interface

    def __repr__(self) -> str:
        return f"Firmware({self.descriptor.path!r}, {self.interface!r})"

    @property
    def loader(self) -> str:
        """The code image (libvirt's ``<loader>`` text)."""
        return self.descriptor.executable

    @property
    def loader_type(self) -> str:
        """libvirt's ``<loader type=...>``: pflash for a flash mapping, rom for memory."""
        return {"flash": "pflash", "memory": "rom"}.get(self.descriptor.device, "")

    @property
    def nvram_template(self) -> str | None:
        """The VARS template each guest's own NVRAM file is copied from (None: stateless)."""
        return self.descriptor.nvram_template

    @property
    def nvram_format(self) -> str:
        return self.descriptor.nvram_format or "raw"

    @property
    def requires_smm(self) -> bool:
        """The firmware needs ``-machine smm=on``."""
        return "requires-smm" in self.descriptor.features

    @property
    def secure(self) -> bool:
        """VARS writable only from SMM (``<loader secure='yes'>``): secure boot built with
        SMM, per firmware.json's ``requires-smm`` text."""
        features = self.descriptor.features
        return "secure-boot" in features and "requires-smm" in features

    @property
    def secure_boot(self) -> bool:
        return "secure-boot" in self.descriptor.features

    @property
    def enrolled_keys(self) -> bool:
        return "enrolled-keys" in self.descriptor.features


def _wanted(on: bool | None, name: str) -> str | None:
    return None if on is None else f"{name} {'on' if on else 'off'}"


def _mismatch(d: Descriptor, interface: str, arch: str, machine: str,
              secure_boot: bool | None, enrolled_keys: bool | None,
              loader: str | None, loader_secure: bool | None) -> str | None:
    """Why a descriptor does not fit (None: it fits). The order of libvirt's checks."""
    if loader is not None and (d.device != "flash" or d.executable != loader):
        return "another loader"
    if interface not in d.interfaces:
        return "another interface"
    if not any(t.matches(arch, machine) for t in d.targets):
        return "another machine"
    for wanted, feature in ((secure_boot, "secure-boot"), (enrolled_keys, "enrolled-keys")):
        if wanted is not None and wanted != (feature in d.features):
            return f"{feature} {'missing' if wanted else 'present'}"
    if loader_secure and "requires-smm" not in d.features:
        return "no SMM"
    if d.device == "flash":
        formats = [d.executable_format] + ([d.nvram_format] if d.nvram_format else [])
        bad = [f for f in formats if f not in FLASH_FORMATS]
        if bad:
            return f"flash format {bad[0]}"
    return None


def select(interface: str, arch: str, machine: str, *, secure_boot: bool | None = None,
           enrolled_keys: bool | None = None, loader: str | None = None,
           loader_secure: bool | None = None, smm: bool | None = None,
           dirs: Iterable[str] | None = None) -> Firmware:
    """The first descriptor that fits, as libvirt picks it.

    ``interface`` is ``uefi`` or ``bios`` (``<os firmware>``); ``machine`` the canonical
    machine type (``pc-q35-7.2``, not the alias ``q35``: descriptors list concrete
    types); ``secure_boot``/``enrolled_keys`` the ``<firmware><feature>`` wishes (None:
    either); ``loader`` an explicit ``<loader>`` path the descriptor must map (then only
    its template and features are taken from it); ``loader_secure`` is
    ``<loader secure='yes'>``; ``smm`` the ``<features><smm>`` state (False refuses a
    firmware that requires SMM, as libvirt does).
    """
    dirs = list(search_dirs() if dirs is None else dirs)
    descriptors = [read_descriptor(path) for path in descriptor_files(dirs)]
    for d in descriptors:
        if _mismatch(d, interface, arch, machine, secure_boot, enrolled_keys,
                     loader, loader_secure) is None:
            fw = Firmware(d, interface)
            if smm is False and fw.requires_smm:
                raise FirmwareError(f"firmware {d.path} requires SMM, which the domain turns "
                                    "off (<smm state='off'/>)")
            return fw
    asked = ", ".join(filter(None, [
        f"{interface} firmware for {arch} machine {machine}",
        _wanted(secure_boot, "secure-boot"), _wanted(enrolled_keys, "enrolled-keys"),
        f"loader {loader}" if loader else None, "secure loader (SMM)" if loader_secure else None,
    ]))
    exists = "; ".join(d.summary() for d in descriptors) or "no descriptors in " + ", ".join(dirs)
    raise FirmwareError(f"no firmware fits: asked for {asked}; available: {exists}")


def fill_domain(dom, machine: str) -> None:
    """libvirt's qemuFirmwareFillDomain: ``<os firmware='efi'>`` without a loader gets the
    firmware the descriptors pick, written into the definition as libvirt records it
    (``<loader readonly='yes' type='pflash' secure=...>CODE</loader>``, ``<nvram
    template=VARS>PER-GUEST COPY</nvram>``, ``<smm state='on'/>`` when it needs SMM); a
    pflash loader without an NVRAM file gets the guest's own (``companions/nvram.py``:
    copied from the template when the guest starts).  ``machine`` is the canonical
    machine type."""
    from qemuwrap.conf.features import SMM, Features
    from qemuwrap.conf.os import (
        Firmware as FirmwareKind,
    )
    from qemuwrap.conf.os import (
        Loader,
        LoaderType,
        Nvram,
    )
    from qemuwrap.qemu.validate import refusal

    os_el = dom.os
    loader = os_el.loader
    smm_el = dom.features.smm if dom.features is not None else None
    if os_el.firmware is not None and (loader is None or loader.path is None):
        # libvirt's refusals around autoselection (qemuFirmwareFillDomain)
        if loader is not None and loader.secure is False:
            raise refusal(loader, "loader attribute 'secure' cannot be specified when "
                                  "firmware autoselection is enabled")
        if os_el.firmware != FirmwareKind.EFI or (loader is not None and loader.stateless):
            # No descriptor here offers a BIOS or a stateless (combined code+vars) EFI.
            try:
                select("bios" if os_el.firmware != FirmwareKind.EFI else "uefi-stateless",
                       os_el.arch, machine)
            except FirmwareError:
                raise refusal(os_el, "Unable to find any firmware to satisfy "
                                     f"'{os_el.firmware}'") from None
            raise refusal(os_el, f"firmware autoselection of '{os_el.firmware}' "
                                 f"{'(stateless) ' if loader is not None else ''}is not "
                                 "supported by qemuwrap")
    if os_el.firmware == FirmwareKind.EFI and (loader is None or loader.path is None):
        wishes = os_el.firmware_el
        try:
            fw = _select_for(os_el, machine, wishes, loader, smm_el)
        except FirmwareError as exc:
            raise refusal(os_el, str(exc)) from None
        os_el.loader = Loader(
readonly=True, type=LoaderType(fw.loader_type),
                              secure=fw.requires_smm or None, path=fw.loader,
                              node=loader.node if loader is not None else None)
        if fw.requires_smm and smm_el is None:
            if dom.features is None:
                dom.features = Features()
            dom.features.smm = SMM(state=True)
        if fw.nvram_template is not None:
            if os_el.nvram is None:
                os_el.nvram = Nvram()
            if os_el.nvram.template is None:
                os_el.nvram.template = fw.nvram_template
    loader = os_el.loader
    nvram = os_el.nvram
    if (loader is not None and loader.path is not None and os_el.loader_type == LoaderType.PFLASH
            and loader.readonly and not loader.stateless
            and (nvram is None or (nvram.path is None and nvram.source is None))):
        if nvram is None:
            nvram = os_el.nvram = Nvram()
        if nvram.template is None:
            nvram.template = _template_for(loader.path, os_el.arch, machine)
        from qemuwrap.companions import nvram as nvram_store  # only for a UEFI guest

        nvram.path = nvram_store.default_path(dom.name)


def _select_for(os_el, machine: str, wishes, loader, smm_el) -> Firmware:
    from qemuwrap.conf.os import FirmwareFeatureName

    return select("uefi", os_el.arch, machine,
                  secure_boot=wishes.wants(FirmwareFeatureName.SECURE_BOOT) if wishes
                  else None,
                  enrolled_keys=wishes.wants(FirmwareFeatureName.ENROLLED_KEYS) if wishes
                  else None,
                  loader_secure=loader.secure if loader is not None else None,
                  smm=smm_el.on if smm_el is not None else None)


def _template_for(loader: str, arch: str, machine: str) -> str | None:
    """The VARS template of the descriptor that maps ``loader`` (libvirt finds it so)."""
    try:
        return select("uefi", arch, machine, loader=loader).nvram_template
    except FirmwareError:
        return None
