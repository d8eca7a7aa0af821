"""Domain-level options libvirt puts among the devices or at the end: the
``vmcoreinfo`` device, the launch security object, ``-compat`` for
``<qemu:deprecation>``, and ``<qemu:commandline>`` passed through verbatim."""

from __future__ import annotations

from qemuwrap.conf.qemuns import DeprecationBehavior
from qemuwrap.conf.security import LaunchSecurityType
from qemuwrap.conf.xmlmodel import table
from qemuwrap.qemu.argv import Arg, optstr
from qemuwrap.qemu.build import BuildContext

#: <qemu:deprecation behavior> -> (deprecated-output, deprecated-input) of -compat.
COMPAT = table(DeprecationBehavior, {DeprecationBehavior.OMIT: ("hide", None),
                                     DeprecationBehavior.REJECT: ("hide", "reject"),
                                     DeprecationBehavior.CRASH: ("hide", "crash")},
               not_mapped={DeprecationBehavior.NONE: "QEMU's default: no -compat"})
#: Marks every option taken from <qemu:commandline> in --explain.
PASSTHROUGH_NOTE = "passed through from qemu:commandline, unchecked"


def build_compat(ctx: BuildContext) -> None:
    dep = ctx.dom.qemu_deprecation
    if dep is None or dep.behavior not in COMPAT:
        return
    output, inp = COMPAT[dep.behavior]
    ctx.cmd.add("-compat", optstr(deprecated_output=output, deprecated_input=inp), dep.node)


def build_vmcoreinfo(ctx: BuildContext) -> None:
    feats = ctx.dom.features
    if feats is not None and feats.vmcoreinfo is not None and feats.vmcoreinfo.on:
        ctx.cmd.add("-device", "vmcoreinfo", feats.vmcoreinfo.node)


def build_launch_security(ctx: BuildContext) -> None:
    sec = ctx.dom.launch_security
    if sec is None or sec.type != LaunchSecurityType.SEV:
        return
    policy = sec.policy or "0"
    ctx.cmd.add("-object", optstr("sev-guest", id="lsec0", cbitpos=sec.cbitpos,
                                  reduced_phys_bits=sec.reduced_phys_bits,
                                  policy=f"{int(policy, 16):#x}", handle=sec.handle,
                                  kernel_hashes="on" if sec.kernel_hashes else None),
                sec.node)


def build_passthrough(ctx: BuildContext) -> None:
    """``<qemu:commandline>``: each ``<qemu:arg>`` is one argv word, as written (the one
    place XML text becomes options unescaped), and ``<qemu:env>`` sets QEMU's
    environment."""
    cl = ctx.dom.qemu_commandline
    if cl is None:
        return
    for arg in cl.args:
        # One word each: an Arg whose option is the word itself and carries no value.
        ctx.cmd.args.append(Arg(arg.value, None, None, f"{PASSTHROUGH_NOTE} "
                                f"(line {arg.node.line})" if arg.node else PASSTHROUGH_NOTE))
    for env in cl.envs:
        ctx.cmd.env[env.name] = env.value or ""
