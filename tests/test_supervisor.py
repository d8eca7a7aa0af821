"""Supervisor behaviour that a real QEMU cannot be made to show on demand."""

from __future__ import annotations

import socket

import pytest

from qemuwrap.conf.domain import load
from qemuwrap.supervisor import LaunchError, Plan, Supervisor, sd_notify

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
