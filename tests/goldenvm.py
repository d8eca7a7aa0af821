"""A golden case started in the real QEMU, paused, with a QMP connection: for the tests
that prove what the guest would see (``query-pci``, ``info qtree``, ``query-chardev``)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from test_xml2argv_qemu import _redirect_paths

from qemuwrap.conf import guid
from qemuwrap.conf.domain import load
from qemuwrap.qemu.command import build_command

from conftest import XML2ARGV
from test_xml2argv import caps_for


def build_checked(dom, caps, state_dir: str):
    """``build_command`` and then the host check of this area's devices, as dry-run,
    validate and start run them (``validate/host.py``): the command, or every refusal
    of either."""
    from qemuwrap.errors import Problems
    from qemuwrap.qemu.validate.host import check_host_hardware

    cmd = build_command(dom, caps, state_dir)
    problems = check_host_hardware(dom)
    if problems:
        raise Problems.of(problems)
    return cmd


#: How long QEMU may take to open its QMP socket (TCG start, a loaded machine).
START_DEADLINE = 20.0


class Guest:
    """A paused QEMU and its QMP monitor."""

    def __init__(self, dom, qmp):
        self.dom = dom
        self.qmp = qmp

    def cmd(self, command: str, /, **args: Any) -> Any:
        reply = self.qmp.cmd_raw(command, args or None)
        assert "return" in reply, reply
        return reply["return"]

    def hmp(self, line: str) -> str:
        return self.cmd("human-monitor-command", **{"command-line": line})

    def pci(self) -> dict[str, tuple[int, int]]:
        """qdev id -> (vendor, device) of every device on the root bus."""
        out = {}
        for bus in self.cmd("query-pci"):
            for dev in bus["devices"]:
                out[dev.get("qdev_id") or dev["id"]["device"]] = (dev["id"]["vendor"],
                                                                  dev["id"]["device"])
        return out


@contextmanager
def paused(name: str, tmp_path, request, *, edit=None) -> Iterator[Guest]:
    """Start golden case ``name`` (``edit(dom)`` first, if given) and yield it paused."""
    from qemu.qmp import ConnectError
    from qemu.qmp.legacy import QEMUMonitorProtocol

    _data, dom = load(str(XML2ARGV / f"{name}.xml"), random=guid.counting_random)
    cleanup: list[list[str]] = []
    state = tmp_path / "state"
    state.mkdir()
    _redirect_paths(dom, tmp_path, request, cleanup, state)
    if edit is not None:
        edit(dom)
    cmd = build_command(dom, caps_for(name), state)
    proc = subprocess.Popen(cmd.argv, env=cmd.env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    qmp = None
    try:
        sock = str(state / "qmp.sock")
        deadline = time.monotonic() + START_DEADLINE
        while not os.path.exists(sock):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"QEMU did not start: {proc.stderr.read().decode()}")
            time.sleep(0.02)
        while True:  # QEMU creates the socket file a moment before it listens
            qmp = QEMUMonitorProtocol(sock)
            try:
                qmp.connect()
                break
            except (OSError, ConnectError):
                qmp = None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        qmp.settimeout(START_DEADLINE)
        yield Guest(dom, qmp)
    finally:
        if qmp is not None:
            try:
                qmp.cmd("quit")
                qmp.close()
            except (OSError, EOFError):
                pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for argv in cleanup:
            subprocess.run(argv, capture_output=True)
