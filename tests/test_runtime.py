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
from test_statedir import two_users  # noqa: F401 - a fixture

from qemuwrap.runtime import control
from qemuwrap.runtime.loop import Loop
from qemuwrap.runtime.qmp import QMP, CommandError, MonitorError
from qemuwrap.runtime.record import VERSION, Companion, GuestRecord, Proc, RecordError


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
    with pytest.raises(MonitorError, match="did not answer 'hang' within 0.3 s"):
        qmp.execute("hang", timeout=0.3)
    qmp.close()


def test_qmp_calls_from_the_loop_have_deadlines(tmp_path):
    """The supervisor's exchanges: the reply, a refusal or the deadline, each once."""
    path = str(tmp_path / "qmp.sock")
    FakeQEMU(path)
    qmp = QMP.connect(path, timeout=5)
    loop = Loop()
    loop.add_reader(qmp.fileno(), qmp.poll)
    got: dict[str, list] = {"query-status": [], "bad": [], "hang": []}
    for command in got:
        qmp.call(command, later=loop.call_later, timeout=0.3,
                 done=lambda result, error, c=command: got[c].append((result, error)))
    assert loop.run_until(lambda: all(got.values()), timeout=30)  # a hang guard
    assert got["query-status"] == [({"status": "running"}, None)]
    (_none, refused), = got["bad"]
    assert isinstance(refused, CommandError) and refused.desc == "no such thing"
    (_none, late), = got["hang"]
    assert isinstance(late, MonitorError) and "did not answer 'hang' within 0.3 s" in str(late)
    loop.run_until(lambda: False, timeout=0.4)
    assert [len(v) for v in got.values()] == [1, 1, 1]  # never twice
    qmp.close()
    failed = []
    qmp.call("query-status", later=loop.call_later, timeout=5,
             done=lambda result, error: failed.append(error))
    assert isinstance(failed[0], MonitorError)  # a closed monitor: at once
    loop.close()


def test_a_monitor_that_never_greets_is_a_deadline(tmp_path):
    path = str(tmp_path / "qmp.sock")
    FakeQEMU(path, greet=False)
    with pytest.raises(MonitorError, match="no greeting"):
        QMP.connect(path, timeout=0.5)


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


def test_guest_record_round_trip_and_version():
    record = GuestRecord(
        "demo", "c7a5fdbd-edaf-9455-926a-d65c16db1809", "/run/qemuwrap/demo", 1700000000.5,
        qemu=Proc(12, 1700000000.25, ["qemu-system-x86_64", "-name", "demo"]),
        genid="e9392370-2917-565e-692b-d057f46512d6", source="/etc/demo.xml",
        env={"LC_ALL": "C"}, supervisor=Proc(11, 1700000000.0), console="/dev/pts/3",
        vnc="127.0.0.1:5900",
        companions=[Companion("swtpm", "tpm0", Proc(13, 1700000000.1, ["swtpm"]),
                              ["/run/qemuwrap/demo/tpm0.sock"]),
                    Companion("tap", "vnet0")])
    data = record.dumps()
    assert json.loads(data)["version"] == VERSION
    assert GuestRecord.loads(data, "state.json") == record  # every field, nested ones too
    assert GuestRecord.loads(GuestRecord("x", "u", "/d", 1).dumps(), "s") == \
        GuestRecord("x", "u", "/d", 1.0)  # the defaults
    for version, shown in ((VERSION + 1, str(VERSION + 1)), (None, "None"), ("1", "'1'")):
        raw = {**json.loads(data), "version": version}
        with pytest.raises(RecordError, match=rf"^/x/state.json: guest record version "
                                              rf"{shown}; this qemuwrap reads version "
                                              rf"{VERSION}$"):
            GuestRecord.loads(json.dumps(raw).encode(), "/x/state.json")
    raw = json.loads(data)
    del raw["started"]
    with pytest.raises(RecordError, match="guest record lacks 'started'"):
        GuestRecord.loads(json.dumps(raw).encode(), "s")
    raw = json.loads(data)
    raw["companions"][0]["proc"]["pid"] = -1
    with pytest.raises(RecordError, match=r"'companions\[0\].proc.pid' is not a positive"):
        GuestRecord.loads(json.dumps(raw).encode(), "s")


def _serve_until(loop: Loop, proc) -> None:
    """Run the loop until ``proc`` (another user's client) ends (60 s: a hang guard)."""
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        loop.run_until(lambda: False, timeout=0.05)
    assert proc.poll() is not None


def test_control_socket_refuses_another_user(two_users):  # noqa: F811
    """Even where another user can reach the socket (the guest directory is 0700, so
    normally nobody can), the supervisor answers only its own uid (or root); and the
    tools refuse a socket another user serves (no fake supervisor)."""
    import shutil
    import subprocess
    import sys
    import tempfile

    _victim, attacker = two_users
    where = tempfile.mkdtemp(prefix="qemuwrap-uid-")  # reachable by the other user
    os.chmod(where, 0o1777)
    path = os.path.join(where, control.SOCKET)
    loop = Loop()
    seen = []
    server = control.Server(loop, path, lambda conn, msg: (seen.append(msg),
                                                           conn.send({"ok": True})))
    os.chmod(path, 0o666)  # what the mode normally forbids: the uid check must hold
    ask = ("import socket, sys\ns = socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\n"
           "print('connected', flush=True)\ns.settimeout(20)\n"
           "try:\n s.sendall(b'{\"request\": \"status\"}\\n')\n print(repr(s.recv(100)))\n"
           "except OSError as exc:\n print(type(exc).__name__)\n")
    try:
        proc = subprocess.Popen(["runuser", "-u", attacker, "--", sys.executable, "-c", ask,
                                 path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        _serve_until(loop, proc)
        out, err = proc.communicate()
        assert out.split("\n")[0] == "connected", (out, err)
        assert out.split("\n")[1] in ("b''", "BrokenPipeError", "ConnectionResetError")

        assert seen == []
        with control.Client(path) as mine:  # its owner is answered
            mine.send({"request": "status"})
            loop.run_until(lambda: bool(seen), timeout=30)
            assert mine.reply(5) == {"ok": True}
        server.close()
        loop.close()
        # The other way round: a socket another user serves is not our supervisor.
        fake = os.path.join(where, "fake.sock")
        listen = ("import socket, sys, time, os; s = socket.socket(socket.AF_UNIX); "
                  "s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o666); s.listen(1); "
                  "print('ready', flush=True); c, _ = s.accept(); time.sleep(5)")
        proc = subprocess.Popen(["runuser", "-u", attacker, "--", sys.executable, "-c",
                                 listen, fake], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "ready"
            with pytest.raises(control.ControlError, match="is served by another user; "
                                                           "refusing it"):
                control.Client(fake)
        finally:
            proc.kill()
            proc.wait()
    finally:
        shutil.rmtree(where, ignore_errors=True)


def test_a_qemu_that_cannot_be_run_fails_the_launch(tmp_path):
    """The binary vanished between the checks and the spawn: a one-line MachineError,
    no process recorded, the logs kept."""
    from qemuwrap.runtime.guestdir import GuestDir
    from qemuwrap.runtime.machine import Exe, Machine, MachineError

    gdir = GuestDir("demo", str(tmp_path / "state"))
    gdir.prepare()
    gone = str(tmp_path / "qemu-system-x86_64")
    changes = []
    machine = Machine(Exe(gone, [gone, "-S"], {}), gdir, on_change=lambda: changes.append(1))
    with pytest.raises(MachineError) as raised:
        machine.launch()
    assert str(raised.value) == (f"QEMU failed to start: cannot run {gone}: No such file "
                                 "or directory")
    assert machine.proc is None and changes == []
    assert os.listdir(gdir.path) == ["qemu.log"]
