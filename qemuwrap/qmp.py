"""QMP through QEMU's own library (qemu.qmp): connecting to a QEMU that is starting,
and one-shot commands for the tools (status, shutdown, destroy).

Imported only by commands that talk to a running QEMU, never by a dry run
(qemu.qmp brings asyncio: ~60 ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from qemu.qmp import ConnectError, QMPClient
from qemu.qmp.error import QMPError  # noqa: F401 - re-exported for callers

from qemuwrap.errors import QemuwrapError


class MonitorError(QemuwrapError):
    """QMP could not be reached or a command failed."""


async def connect(path: str, *, name: str = "qemuwrap", alive=None,
                  timeout: float = 30.0) -> QMPClient:
    """Connect to QEMU's QMP socket at ``path``, waiting while QEMU starts.

    ``alive()`` returning False (QEMU exited) ends the wait early. QEMU creates the
    socket file a moment before it listens, so a refused connection is retried.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.002
    while True:
        if alive is not None and not alive():
            raise MonitorError("QEMU exited before its QMP monitor came up")
        if os.path.exists(path):
            client = QMPClient(name)
            try:
                await client.connect(path)
                return client
            except ConnectError:
                pass
        if loop.time() > deadline:
            raise MonitorError(f"no QMP monitor at {path} after {timeout:.0f} s")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)


async def disconnect(client: QMPClient) -> None:
    """Close quietly: after ``quit`` QEMU may already have closed the socket."""
    with contextlib.suppress(EOFError, ConnectionError, OSError):
        await client.disconnect()


async def _one_shot(path: str, command: str, args: dict | None, timeout: float):
    try:
        client = await connect(path, name="qemuwrap-tool", timeout=timeout)
    except (MonitorError, OSError) as exc:
        raise MonitorError(f"cannot reach QEMU's monitor at {path}: {exc}") from None
    try:
        return await asyncio.wait_for(client.execute(command, args), timeout)
    except TimeoutError:
        raise MonitorError(f"QEMU did not answer '{command}' within {timeout:.0f} s") from None
    except (EOFError, ConnectionError) as exc:
        if command == "quit":
            return {}
        raise MonitorError(f"QEMU closed the monitor during '{command}': {exc}") from None
    finally:
        await disconnect(client)


def command(path: str, name: str, args: dict | None = None, *, timeout: float = 5.0):
    """Run one QMP command on the monitor socket ``path`` and return its result."""
    return asyncio.run(_one_shot(path, name, args, timeout))
