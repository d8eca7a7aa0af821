"""Supervisor behaviour that a real QEMU cannot be made to show on demand."""

from __future__ import annotations

import socket

import pytest

from qemuwrap.conf.domain import load
from qemuwrap.supervisor import Guest, LaunchError, Plan, Supervisor, sd_notify

from conftest import XML2ARGV


class FakeMachine:
    """Answers query-vm-generation-id with a given GUID, records what it was sent."""

    def __init__(self, guid: str):
        self.guid = guid
        self.sent: list[str] = []

    def execute(self, cmd, args=None, *, timeout=5.0):
        self.sent.append(cmd)
        return {"guid": self.guid}


def supervisor(guid: str) -> Supervisor:
    _data, dom = load(str(XML2ARGV / "genid.xml"))
    sup = Supervisor(Plan(dom, cmd=None), gdir=None)  # type: ignore[arg-type]
    sup.machine = FakeMachine(guid)  # type: ignore[assignment]
    return sup


def test_genid_mismatch_stops_before_the_guest_runs():
    sup = supervisor("43dc0cf8-809b-4adb-9bea-a9abb5f3d90e")
    with pytest.raises(LaunchError, match="QEMU reports genid 43dc0cf8-.* the definition says "
                                          "e9392370-2917-565e-692b-d057f46512d6"):
        sup._check_genid()
    assert "cont" not in sup.machine.sent  # type: ignore[union-attr]


def test_genid_match_passes_in_any_case():
    supervisor("E9392370-2917-565E-692B-D057F46512D6")._check_genid()


def test_sd_notify_sends_to_systemds_socket(tmp_path, monkeypatch):
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        sd_notify("READY=1\nSTATUS=running")
        assert s.recv(100) == b"READY=1\nSTATUS=running"
    monkeypatch.delenv("NOTIFY_SOCKET")
    sd_notify("READY=1")  # no systemd: nothing happens


def test_the_restart_command_is_the_start_command_less_its_start_state():
    """A restore or revert restarts (on_crash=restart) with its own command less
    -incoming/-loadvm, not a second build: the same words a plain start would have, for
    every golden definition."""
    from qemuwrap.launcher import _without_start_state
    from qemuwrap.qemu import capabilities
    from qemuwrap.qemu.command import build_command

    from conftest import DEFAULT_CAPS

    checked = 0
    for path in sorted(XML2ARGV.glob("*.xml")):
        if not path.with_suffix(".args").exists() or path.with_suffix(".caps").exists():
            continue
        _data, dom = load(str(path))
        caps = capabilities.for_domain(dom.devices.emulator, str(DEFAULT_CAPS))
        plain = build_command(dom, caps, "/run/qemuwrap/x")
        for start_state in ({"incoming": True}, {"loadvm": "s1"}):
            cmd = build_command(dom, caps, "/run/qemuwrap/x", **start_state)
            assert _without_start_state(cmd.argv) == plain.argv, path.name
            assert cmd.env == plain.env
        checked += 1
    assert checked > 100


class FakeQMP:
    """Records the supervisor's asynchronous calls; the test answers them."""

    closed = False

    def __init__(self):
        self.calls: list[tuple[str, dict | None, float, object]] = []

    def call(self, command, args=None, *, later, timeout, done, fds=None):
        self.calls.append((command, args, timeout, done))

    def answer(self, command: str, result=None, error=None) -> None:
        i = next(i for i, c in enumerate(self.calls) if c[0] == command)
        done = self.calls.pop(i)[3]
        done(None if error else result, error)


class FakeConn:
    def __init__(self):
        self.sent: list[dict] = []
        self.on_close: list = []

    def send(self, msg: dict) -> None:
        self.sent.append(msg)


def busy_supervisor() -> tuple[Supervisor, FakeQMP]:
    import os

    from qemuwrap.runtime.loop import Loop
    from qemuwrap.runtime.record import Proc

    _data, dom = load(str(XML2ARGV / "genid.xml"))
    sup = Supervisor(Plan(Guest.of(dom), cmd=None), gdir=None)  # type: ignore[arg-type]
    qmp = FakeQMP()
    machine = FakeMachine("")
    machine.qmp = qmp  # type: ignore[attr-defined]
    machine.proc = Proc(os.getpid(), 0.0)  # type: ignore[attr-defined]
    sup.machine = machine  # type: ignore[assignment]
    sup.loop = Loop()
    return sup, qmp


def test_a_snapshot_in_flight_leaves_the_supervisor_serving():
    """savevm takes QEMU's main loop for as long as it writes: the supervisor does not
    wait for it, answers status from what it knows, refuses a second long request, and
    replies to the snapshot's client when QEMU is done."""
    from qemuwrap.errors import QemuwrapError
    from qemuwrap.supervisor import SNAPSHOT_TIMEOUT

    sup, qmp = busy_supervisor()
    client = FakeConn()
    sup._on_request(client, {"request": "snapshot-create", "name": "s1"})  # type: ignore
    (command, args, timeout, _done), = qmp.calls
    assert (command, args, timeout) == ("human-monitor-command",
                                        {"command-line": "savevm s1"}, SNAPSHOT_TIMEOUT)
    assert client.sent == []  # not answered yet: QEMU is writing
    asker = FakeConn()
    sup._on_request(asker, {"request": "status"})  # type: ignore[arg-type]
    assert asker.sent == [{"ok": True, "state": "paused (snapshot)", "stopping": False,
                          "agent_socket": None}]
    for request in ({"request": "suspend"}, {"request": "resume"},
                    {"request": "snapshot-delete", "name": "s0"}):
        with pytest.raises(QemuwrapError, match=r"the guest is busy \(snapshot\)"):
            sup._on_request(FakeConn(), request)  # type: ignore[arg-type]
    qmp.answer("human-monitor-command", "")
    assert client.sent == [{"ok": True}]
    sup._on_request(asker, {"request": "status"})  # type: ignore[arg-type]
    qmp.answer("query-status", {"status": "running"})  # asked again: no job now
    assert asker.sent[-1] == {"ok": True, "state": "running", "stopping": False,
                            "agent_socket": None}
    # HMP says failures as text; and QEMU may end meanwhile.
    sup._on_request(client, {"request": "snapshot-delete", "name": "s9"})  # type: ignore
    qmp.answer("human-monitor-command", "Error: Snapshot 's9' not found\r\n")
    assert client.sent[-1] == {"error": "Error: Snapshot 's9' not found"}
    sup._on_request(client, {"request": "snapshot-create", "name": "s2"})  # type: ignore
    sup._job.qemu_ended()  # type: ignore[union-attr]
    assert client.sent[-1] == {"error": "QEMU ended during the snapshot"}
    qmp.answer("human-monitor-command", "")  # a reply after that changes nothing
    assert client.sent[-1] == {"error": "QEMU ended during the snapshot"}
    sup.loop.close()  # type: ignore[union-attr]


def test_status_when_qemu_does_not_answer():
    from qemuwrap.runtime.qmp import MonitorError
    from qemuwrap.supervisor import STATUS_TIMEOUT

    sup, qmp = busy_supervisor()
    asker = FakeConn()
    sup._on_request(asker, {"request": "status"})  # type: ignore[arg-type]
    assert qmp.calls[0][:3] == ("query-status", None, STATUS_TIMEOUT)
    qmp.answer("query-status", error=MonitorError("no answer"))
    assert asker.sent == [{"ok": True, "state": "not responding", "stopping": False,
                          "agent_socket": None}]
    sup.loop.close()  # type: ignore[union-attr]
