"""The runtime's pieces without QEMU: every QMP exchange has a deadline, the control
socket is owner-only and speaks its protocol, the loop runs timers and signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import threading
import time

import pytest

from qemuwrap.runtime import control
from qemuwrap.runtime.loop import Loop
from qemuwrap.runtime.qmp import QMP, CommandError, MonitorError


class FakeQEMU:
    """A QMP server that greets, negotiates, answers ``query-status``, and answers
    nothing to ``hang`` (as a stopped QEMU would)."""

    def __init__(self, path: str, *, greet: bool = True):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(1)
        self.greet = greet
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        conn, _ = self.sock.accept()
        if not self.greet:
            time.sleep(10)
            return
        conn.sendall(b'{"QMP": {"version": {}, "capabilities": []}}\n')
        buf = b""
        while True:
            data = conn.recv(4096)
            if not data:
                return
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                msg = json.loads(line)
                cmd, ident = msg["execute"], msg.get("id")
                if cmd == "hang":
                    continue
                if cmd == "bad":
                    reply = {"error": {"class": "GenericError", "desc": "no such thing"}}
                else:
                    reply = {"return": {"status": "running"} if cmd == "query-status" else {}}
                conn.sendall(json.dumps({"event": "STOP", "data": {}}).encode() + b"\n")
                conn.sendall(json.dumps({**reply, "id": ident}).encode() + b"\n")


def test_qmp_answers_errors_events_and_deadlines(tmp_path):
    path = str(tmp_path / "qmp.sock")
    FakeQEMU(path)
    qmp = QMP.connect(path, timeout=5)
    assert qmp.execute("query-status") == {"status": "running"}
    assert [e["event"] for e in qmp.events] == ["STOP", "STOP"]  # queued, not lost
    with pytest.raises(CommandError, match="no such thing"):
        qmp.execute("bad")
    t = time.monotonic()
    with pytest.raises(MonitorError, match="did not answer 'hang' within 0.3 s"):
        qmp.execute("hang", timeout=0.3)
    assert time.monotonic() - t < 2
    qmp.close()


def test_a_monitor_that_never_greets_is_a_deadline(tmp_path):
    path = str(tmp_path / "qmp.sock")
    FakeQEMU(path, greet=False)
    t = time.monotonic()
    with pytest.raises(MonitorError, match="no greeting"):
        QMP.connect(path, timeout=0.5)
    assert time.monotonic() - t < 3


def test_no_monitor_at_all(tmp_path):
    with pytest.raises(MonitorError, match="no QMP monitor"):
        QMP.connect(str(tmp_path / "nothing.sock"), timeout=0.2)
    with pytest.raises(MonitorError, match="QEMU exited"):
        QMP.connect(str(tmp_path / "nothing.sock"), timeout=5, alive=lambda: False)


def test_control_socket_protocol_and_mode(tmp_path):
    loop = Loop()
    path = str(tmp_path / control.SOCKET)
    seen = []

    def handler(conn, msg):
        seen.append(msg)
        if msg["request"] == "fail":
            raise control.ControlError("it failed")
        conn.send({"ok": True, "fds": len(conn.take_fds())})

    server = control.Server(loop, path, handler)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    done = []

    def client():
        r, w = os.pipe()
        with control.Client(path) as c:
            c.send({"request": "status"})
            done.append(c.reply(5))
            c.send({"request": "save"}, fds=[w])
            done.append(c.reply(5))
            c.send({"request": "fail"})
            with pytest.raises(control.ControlError, match="it failed"):
                c.reply(5)
            c.sock.sendall(b"not json\n")
            with pytest.raises(control.ControlError, match="not a request"):
                c.reply(5)
        os.close(r)
        os.close(w)
        done.append("end")

    t = threading.Thread(target=client)
    t.start()
    deadline = time.monotonic() + 10
    while "end" not in done and time.monotonic() < deadline:  # set by another thread
        loop.run_until(lambda: False, timeout=0.02)
    t.join()
    assert "end" in done
    server.close()
    loop.close()
    assert done[:2] == [{"ok": True, "fds": 0}, {"ok": True, "fds": 1}]
    assert [m["request"] for m in seen] == ["status", "save", "fail"]
    assert not os.path.exists(path)
    with pytest.raises(control.NoSupervisor):
        control.Client(path)


def test_loop_timers_and_signals():
    loop = Loop()
    fired = []
    loop.call_later(0.05, lambda: fired.append("late"))
    loop.call_later(0.01, lambda: fired.append("early"))
    loop.call_later(0.02, lambda: fired.append("cancelled")).cancel()
    loop.add_signal_handler(signal.SIGUSR1, lambda sig: fired.append(sig))
    os.kill(os.getpid(), signal.SIGUSR1)
    assert loop.run_until(lambda: len(fired) == 3, timeout=2)
    assert fired[:2] == [signal.SIGUSR1, "early"] or fired[:2] == ["early", signal.SIGUSR1]
    assert fired[2] == "late"
    assert not loop.run_until(lambda: False, timeout=0.05)
    loop.close()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_kill_hard_ends_a_stopped_process():
    """destroy's last resort works whatever state the process is in."""
    import subprocess

    from qemuwrap import process

    child = subprocess.Popen(["sleep", "60"])
    deadline = time.monotonic() + 5
    while process.cmdline(child.pid) != ["sleep", "60"] and time.monotonic() < deadline:
        time.sleep(0.01)  # the new program's argv shows once its exec is done
    os.kill(child.pid, signal.SIGSTOP)
    created = process.create_time(child.pid)
    assert process.is_alive(child.pid, created, ["sleep", "60"])
    assert not process.is_alive(child.pid, created, ["sleep", "61"])  # another argv
    assert not process.wait_gone(child.pid, created, 0.05)
    assert process.kill_hard(child.pid, created, timeout=5)
    assert child.poll() is not None or not process.is_alive(child.pid, created)
