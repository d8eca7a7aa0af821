"""Start one QEMU paused, read its machine over QMP, stop it: bounded in time.

A TPM emulator gets its ``swtpm`` first (as either tool would start it), stopped
with QEMU. Each QEMU runs in a network namespace of its own when the harness runs as root
(``unshare --net``, loopback up), so two definitions that both ask for VNC display 0
or a fixed TCP port can boot side by side under ``--jobs``. QEMU is killed (its
whole session) however the boot ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qemu.qmp import QMPClient

from qemuwrap.testing.collect import collect

NETNS_WRAPPER = ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$@"',
                 "qwdiff-netns"]


def netns_available() -> bool:
    """A private network namespace needs root, ``unshare`` and ``ip``."""
    return os.geteuid() == 0 and bool(shutil.which("unshare")) and bool(shutil.which("ip"))


@dataclass
class BootResult:
    """The raw machine report, or why there is none."""

    raw: dict[str, Any] | None = None
    error: str | None = None
    output: str = ""  # QEMU's stdout+stderr
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.raw is not None


_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z ")


def last_line(text: str) -> str:
    """QEMU's own error: the last non-empty line of its output (no ``-msg timestamp``)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return _TIMESTAMP.sub("", lines[-1]) if lines else "no output"


async def _start_swtpm(sock: str, state: Path, log: Path,
                       deadline: float) -> asyncio.subprocess.Process | None:
    """``swtpm`` listening on ``sock`` (TPM 2.0, state in ``state``), once it listens."""
    if shutil.which("swtpm") is None:
        return None
    state.mkdir(parents=True, exist_ok=True)
    os.makedirs(os.path.dirname(sock), exist_ok=True)
    with open(log, "ab") as out:
        proc = await asyncio.create_subprocess_exec(
            "swtpm", "socket", "--tpm2", "--tpmstate", f"dir={state}", "--ctrl",
            f"type=unixio,path={sock}", "--terminate", stdin=asyncio.subprocess.DEVNULL,
            stdout=out, stderr=asyncio.subprocess.STDOUT, start_new_session=True)
    loop = asyncio.get_running_loop()
    while not os.path.exists(sock) and proc.returncode is None and loop.time() < deadline:
        await asyncio.sleep(0.01)
    return proc


async def boot(argv: list[str], env: dict[str, str], *, monitor: Path, log: Path,
               timeout: float, netns: bool, tpm_sockets: Sequence[str] = ()) -> BootResult:
    """Run ``argv`` (already made bootable, with the harness monitor at ``monitor``),
    with an ``swtpm`` on each of ``tpm_sockets``; collect its report within
    ``timeout`` seconds, then quit or kill it (and the swtpms)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadline = start + timeout
    result = BootResult()
    wrapper = NETNS_WRAPPER if netns else []
    companions = []
    try:
        for n, sock in enumerate(tpm_sockets):
            tpm = await _start_swtpm(sock, log.with_name(f"{log.stem}.tpm{n}"),
                                     log.with_name(f"{log.stem}.swtpm.log"), deadline)
            if tpm is not None:
                companions.append(tpm)
        return await _boot_qemu(argv, env, monitor, log, deadline, wrapper, result)
    finally:
        for tpm in companions:
            await _stop(tpm, grace=0)


async def _connect(path: str, alive) -> QMPClient:
    """QEMU's QMP socket, retried while QEMU starts (the socket file appears a moment
    before QEMU listens); the caller bounds the wait."""
    from qemu.qmp import ConnectError

    delay = 0.002
    while True:
        if not alive():
            raise ConnectionError("QEMU exited before its QMP monitor came up")
        if os.path.exists(path):
            client = QMPClient("qwdiff")
            try:
                await client.connect(path)
                return client
            except ConnectError:
                pass
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)


async def _boot_qemu(argv: list[str], env: dict[str, str], monitor: Path, log: Path,
                     deadline: float, wrapper: list[str], result: BootResult) -> BootResult:
    loop = asyncio.get_running_loop()
    start = loop.time()
    timeout = deadline - start
    with open(log, "wb") as out:
        try:
            proc = await asyncio.create_subprocess_exec(
                *wrapper, *argv, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=out,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            return BootResult(error=f"cannot run {argv[0]}: {exc.strerror}")
    client: QMPClient | None = None
    grace = 0.0  # QEMU is waited for only once it was told to quit
    try:
        remaining = max(deadline - loop.time(), 0.1)
        # bounded as a whole: QEMU may accept, then block before its greeting (a
        # device waiting for a peer), where qmp.connect would wait for ever
        client = await asyncio.wait_for(_connect(
            str(monitor), alive=lambda: proc.returncode is None), remaining)
        result.raw = await asyncio.wait_for(collect(client), max(deadline - loop.time(), 0.1))
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.execute("quit"), 2)
            grace = 3.0
    except ConnectionError:
        if proc.returncode is None:  # no monitor within the deadline, QEMU alive
            result.error = f"no report within {timeout:.0f} s (QEMU killed)"
    except TimeoutError:
        result.error = f"no report within {timeout:.0f} s (QEMU killed)"
    except Exception as exc:  # noqa: BLE001 - any QMP failure is this boot's failure
        result.error = f"QMP: {type(exc).__name__}: {exc}"
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), 2)
        await _stop(proc, grace)
    result.output = log.read_text(errors="replace")
    if result.raw is None and result.error is None:
        result.error = last_line(result.output)
    result.warnings = [line for line in result.output.splitlines() if "warning" in line]
    result.seconds = round(loop.time() - start, 3)
    return result


async def _stop(proc: asyncio.subprocess.Process, grace: float) -> None:
    """Wait ``grace`` seconds for a process told to quit, then kill its session (at
    once when the harness is being cancelled)."""
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), grace)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    await proc.wait()
