"""What this host must have for a built command to run (dry-run, validate, start): disk
images that exist (those a startupPolicy lets go are dropped first), the host devices,
sockets, bridges and taps the other devices name (``validate/devhost.py``), UNIX socket
paths short enough for the kernel, a state directory that can hold the guest's sockets.
Kept apart from translation (``build_command`` never looks at the host's files), so
golden commands stay the same on every machine; the CLI and the launcher run these
checks, and a problem is one line, not a QEMU failure later."""

from __future__ import annotations

import os

from qemuwrap.conf.domain import Domain
from qemuwrap.errors import Problems, UnsupportedError
from qemuwrap.qemu.argv import Command
from qemuwrap.qemu.validate import refusal

#: sizeof(sockaddr_un.sun_path) is 108 bytes with the terminating NUL.
MAX_SOCKET_PATH = 107
#: The sockets qemuwrap itself makes in a guest's state directory.
STATE_SOCKETS = ("qmp.sock", "control.sock", "supervisor.sock")


def _chardev_socket_paths(cmd: Command) -> list[str]:
    """``path=`` of every ``-chardev socket`` (``,,`` is an escaped comma)."""
    out = []
    for arg in cmd.args:
        if arg.option != "-chardev" or arg.value is None or not arg.value.startswith("socket"):
            continue
        for part in arg.value.replace(",,", "\0").split(","):
            if part.startswith("path="):
                out.append(part[5:].replace("\0", ","))
    return out


def check_host_hardware(dom: Domain) -> list[UnsupportedError]:
    """What the definition names of this host besides storage: devices, sockets,
    bridges (``devhost.py``) and the CPUs threads are pinned to."""
    from qemuwrap.qemu.validate.devhost import check_host_devices

    problems = check_host_devices(dom)
    if dom.cputune is not None or (dom.vcpu is not None and dom.vcpu.cpuset is not None):
        from qemuwrap.qemu.validate.cpu import host_cpusets

        problems += host_cpusets(dom)
    return problems


def check_host(dom: Domain, cmd: Command, state_dir: str) -> list[UnsupportedError]:
    """Every problem this host has with running ``cmd`` (one refusal each)."""
    problems: list[UnsupportedError] = []
    if dom.devices.disks:
        from qemuwrap.qemu.validate.disk import check_host_storage

        problems += check_host_storage(dom)
    problems += check_host_hardware(dom)
    for path in [*(os.path.join(state_dir, s) for s in STATE_SOCKETS),
                 *_chardev_socket_paths(cmd)]:
        if len(os.fsencode(path)) > MAX_SOCKET_PATH:
            problems.append(refusal(dom, f"the socket path {path} is {len(os.fsencode(path))} "
                                         f"bytes, more than a UNIX socket can have "
                                         f"({MAX_SOCKET_PATH}): use a shorter --state-dir or "
                                         "guest name"))
    problems += _state_dir_problems(dom, state_dir)
    return problems


def _state_dir_problems(dom: Domain, state_dir: str) -> list[UnsupportedError]:
    """The state directory (or the nearest part of its path that exists) must be a
    directory this user can create files in."""
    path = state_dir
    while not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return []
        path = parent
    if not os.path.isdir(path):
        return [refusal(dom, f"the state directory {state_dir} cannot be made: {path} is not "
                             "a directory")]
    if not os.access(path, os.W_OK | os.X_OK):
        return [refusal(dom, f"the state directory {state_dir} cannot hold the guest's "
                             f"sockets: {path} is not writable by this user")]
    return []


def drop_missing_optional(dom: Domain, cold_boot: bool = True) -> list[str]:
    """libvirt's startup policies (qemuDomainCheckDiskStartupPolicy): a missing
    'optional' image, or a 'requisite' one when the guest resumes saved state, is
    dropped: a cdrom or floppy is left empty, a disk is left out.  One line per drop."""
    dropped: list[str] = []
    if not dom.devices.disks:
        return dropped
    from qemuwrap.conf.devices.disk import DiskDevice, StartupPolicy

    for disk in list(dom.devices.disks):
        policy = disk.src.startupPolicy if disk.src is not None else None
        if policy is None or policy == StartupPolicy.MANDATORY or disk.source is None:
            continue
        if policy == StartupPolicy.REQUISITE and cold_boot:
            continue  # requisite: a missing image fails a cold start
        if os.path.exists(disk.source):
            continue
        if disk.device in (DiskDevice.CDROM, DiskDevice.FLOPPY):
            dropped.append(f"disk '{disk.target_dev}': {disk.source} does not exist; the "
                           f"drive is left empty (startupPolicy='{policy}')")
            disk.source = None
        else:
            dropped.append(f"disk '{disk.target_dev}': {disk.source} does not exist; the "
                           f"disk is left out (startupPolicy='{policy}')")
            dom.devices.disks.remove(disk)
    return dropped


def require_host(dom: Domain, cmd: Command, state_dir: str) -> None:
    """Raise every problem at once (see :func:`check_host`)."""
    problems = check_host(dom, cmd, state_dir)
    if problems:
        raise Problems.of(problems)
