"""Supervisor behaviour that a real QEMU cannot be made to show on demand."""

from __future__ import annotations

import asyncio
import socket

import pytest

from qemuwrap.conf.domain import load
from qemuwrap.supervisor import LaunchError, Supervisor, sd_notify

from conftest import XML2ARGV


class FakeQMP:
    """Answers query-vm-generation-id with a GUID other than the definition's."""

    def __init__(self, guid: str):
        self.guid = guid
        self.sent: list[str] = []

    async def execute(self, cmd, args=None):
        self.sent.append(cmd)
        return {"guid": self.guid}


def test_genid_mismatch_stops_before_the_guest_runs():
    _data, dom = load(str(XML2ARGV / "genid.xml"))
    sup = Supervisor(dom, gdir=None, cmd=None, source=None)
    sup.client = FakeQMP("43dc0cf8-809b-4adb-9bea-a9abb5f3d90e")
    with pytest.raises(LaunchError, match="QEMU reports genid 43dc0cf8-.* the definition says "
                                          "e9392370-2917-565e-692b-d057f46512d6"):
        asyncio.run(sup._check_genid())
    assert "cont" not in sup.client.sent


def test_genid_match_passes_in_any_case():
    _data, dom = load(str(XML2ARGV / "genid.xml"))
    sup = Supervisor(dom, gdir=None, cmd=None, source=None)
    sup.client = FakeQMP("E9392370-2917-565E-692B-D057F46512D6")
    asyncio.run(sup._check_genid())


def test_sd_notify_sends_to_systemds_socket(tmp_path, monkeypatch):
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        sd_notify("READY=1\nSTATUS=running")
        assert s.recv(100) == b"READY=1\nSTATUS=running"
    monkeypatch.delenv("NOTIFY_SOCKET")
    sd_notify("READY=1")  # no systemd: nothing happens
