"""The two translators, each as its user runs it: libvirt's ``virsh domxml-to-native``
(daemonless, ``qemu:///embed``) and ``qemuwrap dry-run --json``, both as subprocesses
with a deadline. qemuwrap is used through its command line only, so the harness
keeps working while its insides change.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import json
import os
import re
import signal
import stat
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from qemuwrap.testing.bootargv import ArgvError, Translation, parse_virsh

VIRSH_TIMEOUT = 180.0  # the first call in a fresh embed root probes QEMU (~4 s; 40 s
# per call when /dev/kvm is not group kvm)
DRY_RUN_TIMEOUT = 60.0


@dataclass
class Outcome:
    """One translator's answer: a command, or the lines it refused with."""

    ok: bool
    translation: Translation | None = None
    messages: list[str] = field(default_factory=list)
    crashed: bool = False  # a signal or a traceback, not a refusal
    seconds: float = 0.0

    def to_json(self) -> dict[str, object]:
        return {"ok": self.ok, "messages": self.messages, "crashed": self.crashed,
                "seconds": round(self.seconds, 3)}


async def _run(argv: list[str], timeout: float,
               env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        _kill(proc)
        await proc.wait()
        return -signal.SIGKILL, "", f"no answer within {timeout:.0f} s (killed)"
    except BaseException:  # cancelled (Ctrl-C): nothing outlives the harness
        _kill(proc)
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def virsh_errors(stderr: str) -> list[str]:
    """virsh's ``error: …`` lines, without its log lines and the generic first line."""
    lines = [line[len("error: "):].strip() for line in stderr.splitlines()
             if line.startswith("error: ")]
    specific = [line for line in lines if not line.startswith("Failed to ")]
    return specific or lines or [line for line in stderr.splitlines() if line.strip()][-1:]


async def libvirt(path: Path, root: Path, virsh: str = "virsh") -> Outcome:
    """libvirt's command line for the definition at ``path`` (embed root ``root``)."""
    start = time.monotonic()
    rc, out, err = await _run([virsh, "-q", "-c", f"qemu:///embed?root={root}",
                               "domxml-to-native", "qemu-argv", str(path)], VIRSH_TIMEOUT)
    seconds = time.monotonic() - start
    if rc < 0:
        return Outcome(False, messages=[f"virsh died of signal {-rc}"
                                        if rc != -signal.SIGKILL else err],
                       crashed=True, seconds=seconds)
    if rc != 0:
        return Outcome(False, messages=virsh_errors(err), seconds=seconds)
    try:
        return Outcome(True, parse_virsh(out), seconds=seconds)
    except ArgvError as exc:
        return Outcome(False, messages=[str(exc)], crashed=True, seconds=seconds)


def qemuwrap_lines(stderr: str, copy: Path, original: Path) -> list[str]:
    """qemuwrap's refusal lines, naming the user's file rather than the working copy;
    notes (``note:``) are not refusals."""
    return [line.replace(str(copy), str(original)) for line in stderr.splitlines()
            if line.strip() and ": note: " not in line]


async def qemuwrap(path: Path, state_dir: Path, original: Path,
                   data_dir: Path | None = None, *, host_check: bool = True) -> Outcome:
    """``qemuwrap dry-run --json`` of the definition at ``path``; ``data_dir``: its
    persistent directory (``$QEMUWRAP_DATA_DIR``: NVRAM, TPM state), a scratch one for
    the harness as libvirt's embed root is. ``host_check=False``: ``--no-host-check``,
    a translation as for another host (to tell refusals for this host only)."""
    start = time.monotonic()
    env = None if data_dir is None else {**os.environ, "QEMUWRAP_DATA_DIR": str(data_dir)}
    flags = [] if host_check else ["--no-host-check"]
    rc, out, err = await _run([sys.executable, "-m", "qemuwrap", "dry-run", "--json", *flags,
                               "--state-dir", str(state_dir), str(path)], DRY_RUN_TIMEOUT,
                              env)
    seconds = time.monotonic() - start
    lines = qemuwrap_lines(err, path, original)
    if rc == 0:
        try:
            data = json.loads(out)
            return Outcome(True, Translation(dict(data["env"]), list(data["argv"])),
                           seconds=seconds)
        except (ValueError, KeyError, TypeError) as exc:
            return Outcome(False, messages=[f"unreadable dry-run output: {exc}"],
                           crashed=True, seconds=seconds)
    crashed = rc != 1 or any(line.startswith("Traceback") for line in lines)
    if crashed:
        lines = [f"exit status {rc}: {lines[-1] if lines else 'no message'}"]
    return Outcome(False, messages=lines, crashed=crashed, seconds=seconds)


_LINE_NO = re.compile(r"(\bline \d+: | \(line \d+\))")
_INDEX = re.compile(r"\[\d+\]")


def refusal_group(line: str, original: Path) -> str:
    """A refusal line without what is particular to one file: its name, line numbers
    and element indices, so the same refusal in many files groups together."""
    text = line.removeprefix("qemuwrap: ").removeprefix(f"{original}: ")
    return _INDEX.sub("", _LINE_NO.sub(" ", text)).replace(" : ", ": ").strip()


def kvm_warning() -> str | None:
    """libvirt re-probes QEMU on every call (~40 s) unless /dev/kvm is group kvm, 0660."""
    try:
        st = os.stat("/dev/kvm")
    except OSError:
        return None
    try:
        kvm_gid = grp.getgrnam("kvm").gr_gid
    except KeyError:
        kvm_gid = None
    if st.st_gid == kvm_gid and stat.S_IMODE(st.st_mode) == 0o660:
        return None
    return ("/dev/kvm is not group 'kvm' with mode 0660: libvirt will re-probe QEMU on "
            "every call (~40 s each). Fix: chgrp kvm /dev/kvm && chmod 0660 /dev/kvm "
            "(what udev does on a normal host)")
