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
