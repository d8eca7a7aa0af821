"""What the supervisor does once QEMU is up and before the guest runs, from the
definition: the threads' pinning and schedulers (``qemu/tuning.py``) and the QMP
commands libvirt runs at that point (qemuProcessLaunch: qemuProcessSetLinkStates for
``<link state='down'/>``, qemuProcessSetupBalloon for ``<stats period>``).

Plain JSON, computed by the launcher: the supervisor is a lean process without the
model, which applies it (``runtime/afterstart.py``).  Pure; ``dry-run --explain``
shows the same from :func:`describe`.
"""

from __future__ import annotations

import json

from qemuwrap.conf.domain import Domain
from qemuwrap.qemu import tuning
from qemuwrap.qemu.build.memballoon import balloon_qmp_after_start
from qemuwrap.qemu.build.net import qmp_after_start


def _where(node, text: str) -> str:
    return f"line {node.line}: {text}" if node is not None else text


def qmp_commands(dom: Domain) -> list[list]:
    """``[[command, arguments, element], ...]`` in libvirt's order (link states, then the
    balloon), for a definition whose device ids are assigned (the command is built)."""
    nics = {nic.alias_name: nic for nic in dom.devices.interfaces}
    out: list[list] = []
    for name, args in qmp_after_start(dom):
        nic = nics[args["name"]]
        out.append([name, args, _where(nic.link.node if nic.link else nic.node,
                                       f"<interface> {args['name']}: <link state='down'/>")])
    stats = dom.devices.memballoon.stats
    for name, args in balloon_qmp_after_start(dom):  # only with <stats>
        assert stats is not None
        out.append([name, args, _where(stats.node,
                                       f"<memballoon><stats period='{stats.period}'/>")])
    return out


def plan(dom: Domain) -> dict:
    """The supervisor's after-start work: ``{"pinning": [...], "qmp": [...]}``."""
    return {"pinning": tuning.pinning(dom), "qmp": qmp_commands(dom)}


def describe(after_start: dict) -> list[str]:
    """``--explain``'s comment lines: one per element the supervisor applies."""
    out = [f"# after start: {what}  # {source}"
           for what, source in tuning.describe(after_start["pinning"])]
    out += [f"# after start: QMP {name} {json.dumps(args, sort_keys=True)}  # {source}"
            for name, args, source in after_start["qmp"]]
    return out
