"""libvirt's QEMU namespace (``xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'``):
``<qemu:commandline>`` (arguments and environment passed to QEMU verbatim: the one
escape hatch where XML text becomes options unchecked), ``<qemu:capabilities>``,
``<qemu:deprecation>`` and ``<qemu:override>``."""

from __future__ import annotations

from qemuwrap.conf.valueset import ValueSet
from qemuwrap.conf.xmlmodel import (
    QEMU_NS,
    Element,
    Str,
    attr,
    child,
    children,
)


class DeprecationBehavior(ValueSet):
    NONE = "none"
    OMIT = "omit"
    REJECT = "reject"
    CRASH = "crash"


class PropertyType(ValueSet):
    STRING = "string"
    SIGNED = "signed"
    UNSIGNED = "unsigned"
    BOOL = "bool"
    REMOVE = "remove"


class QemuArg(Element):
    TAG = "arg"
    NS = QEMU_NS
    value: str = attr(Str(strip=False), required=True)


class QemuEnv(Element):
    TAG = "env"
    NS = QEMU_NS
    name: str = attr(Str(r"[a-zA-Z_]+[a-zA-Z0-9_]*", what="environment variable name"),
                     required=True)
    value: str | None = attr(Str(strip=False))


class QemuCommandline(Element):
    """Extra QEMU arguments and environment, passed through after everything else."""

    TAG = "commandline"
    NS = QEMU_NS
    args: list[QemuArg] = children(QemuArg)
    envs: list[QemuEnv] = children(QemuEnv)


class QemuCapability(Element):
    NS = QEMU_NS
    capability: str = attr(Str(r"[a-z0-9\-_.]+", what="capability name"), required=True)


class QemuCapAdd(QemuCapability):
    TAG = "add"


class QemuCapDel(QemuCapability):
    TAG = "del"


class QemuCapabilities(Element):
    """libvirt's capability overrides: they steer libvirt's own probing, which qemuwrap
    does not share (refused when a command is built)."""

    TAG = "capabilities"
    NS = QEMU_NS
    adds: list[QemuCapAdd] = children(QemuCapAdd)
    dels: list[QemuCapDel] = children(QemuCapDel)


class QemuDeprecation(Element):
    TAG = "deprecation"
    NS = QEMU_NS
    behavior: DeprecationBehavior = attr(DeprecationBehavior, required=True)


class QemuProperty(Element):
    TAG = "property"
    NS = QEMU_NS
    name: str = attr(Str(r"[A-Za-z0-9_.\-]+", what="property name"), required=True)
    type: PropertyType = attr(PropertyType, required=True)
    value: str | None = attr(Str(strip=False))


class QemuFrontend(Element):
    TAG = "frontend"
    NS = QEMU_NS
    properties: list[QemuProperty] = children(QemuProperty)


class QemuDevice(Element):
    TAG = "device"
    NS = QEMU_NS
    alias: str = attr(Str(r"[A-Za-z0-9_.\-]+", what="alias"), required=True)
    frontend: QemuFrontend | None = child(QemuFrontend)


class QemuOverride(Element):
    """Device property overrides (``<qemu:override>``): refused when a command is built,
    since they rewrite libvirt's JSON device options property by property."""

    TAG = "override"
    NS = QEMU_NS
    devices: list[QemuDevice] = children(QemuDevice)
