"""The few rtnetlink requests a guest's tap needs, over a plain ``AF_NETLINK`` socket:
look a link up, set its MAC, MTU, bridge, alias and up flag in one request, delete it
by index.

A hand-written stand-in for pyroute2 (which brings up networks: ``networks.py``,
``companions/network.py``), used where it runs in every guest's supervisor and in every
``start``: importing pyroute2 0.9 costs ~110 ms and adds ~18 MiB of unique memory to a
process, for the four messages below.  Measured with ``benchmarks/bench_taps.py``
(medians of 7, demo guest on a NAT network against no NIC): through pyroute2 a tap
made the idle supervisor 27.0 MiB (5.0 without) and a start 312 ms slower; through
this module 7.7 MiB (5.1) and 15 ms.  The message layouts are the kernel's
(``linux/netlink.h``, ``linux/rtnetlink.h``, ``linux/if_link.h``); every request waits
for the kernel's acknowledgement, with a deadline, and a refusal is an ``OSError`` with
the kernel's errno.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator
from typing import Any

#: Every exchange with the kernel ends by then (seconds).
TIMEOUT = 10.0

_NLMSG_HDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_RTATTR = struct.Struct("=HH")  # len, type
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_RTM_NEWLINK, _RTM_DELLINK, _RTM_GETLINK = 16, 17, 18
_NLM_F_REQUEST, _NLM_F_ACK = 1, 4
_IFLA_ADDRESS, _IFLA_IFNAME, _IFLA_MTU, _IFLA_MASTER = 1, 3, 4, 10
_IFLA_LINKINFO, _IFLA_IFALIAS, _IFLA_INFO_KIND = 18, 20, 1
IFF_UP = 1


def _align(n: int) -> int:
    return (n + 3) & ~3


def _attr(kind: int, payload: bytes) -> bytes:
    size = _RTATTR.size + len(payload)
    return _RTATTR.pack(size, kind) + payload + b"\0" * (_align(size) - size)


def _attrs(data: bytes) -> Iterator[tuple[int, bytes]]:
    offset = 0
    while offset + _RTATTR.size <= len(data):
        size, kind = _RTATTR.unpack_from(data, offset)
        if size < _RTATTR.size:
            return
        yield kind & 0x3FFF, data[offset + _RTATTR.size:offset + size]  # less NLA_F_*
        offset += _align(size)


def _request(kind: int, index: int, attrs: bytes = b"", flags: int = 0,
             change: int = 0) -> list[tuple[int, bytes]]:
    """Send one request about link ``index``; the replies (type, payload) up to the
    kernel's acknowledgement.  A negative acknowledgement raises OSError."""
    body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, change) + attrs
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.settimeout(TIMEOUT)
        sock.bind((0, 0))
        sock.send(_NLMSG_HDR.pack(_NLMSG_HDR.size + len(body), kind,
                                  _NLM_F_REQUEST | _NLM_F_ACK, 1, 0) + body)
        replies: list[tuple[int, bytes]] = []
        while True:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                raise OSError(errno.ETIMEDOUT, "no answer from the kernel") from None
            offset = 0
            while offset + _NLMSG_HDR.size <= len(data):
                size, rtype, _flags, _seq, _pid = _NLMSG_HDR.unpack_from(data, offset)
                payload = data[offset + _NLMSG_HDR.size:offset + size]
                if rtype == _NLMSG_ERROR:
                    code = struct.unpack_from("=i", payload)[0]
                    if code:
                        raise OSError(-code, os.strerror(-code))
                    return replies
                if rtype == _NLMSG_DONE:
                    return replies
                replies.append((rtype, payload))
                offset += _align(size) if size else len(data)


def index(name: str) -> int | None:
    """The index of link ``name`` in this network namespace (None: no such link)."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None


def link(ifindex: int) -> dict[str, Any]:
    """``name``, ``kind`` (``bridge``, ``tun``, ... or None), ``mtu``, ``master`` of a
    link."""
    for rtype, payload in _request(_RTM_GETLINK, ifindex):
        if rtype != _RTM_NEWLINK:
            continue
        out: dict[str, Any] = {"name": None, "kind": None, "mtu": None, "master": None}
        for kind, value in _attrs(payload[_IFINFOMSG.size:]):
            if kind == _IFLA_IFNAME:
                out["name"] = value.rstrip(b"\0").decode()
            elif kind == _IFLA_MTU:
                out["mtu"] = struct.unpack_from("=I", value)[0]
            elif kind == _IFLA_MASTER:
                out["master"] = struct.unpack_from("=I", value)[0]
            elif kind == _IFLA_LINKINFO:
                for sub, data in _attrs(value):
                    if sub == _IFLA_INFO_KIND:
                        out["kind"] = data.rstrip(b"\0").decode()
        return out
    raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))


def set_up(ifindex: int, *, address: str | None = None, mtu: int | None = None,
           master: int | None = None, alias: str | None = None) -> None:
    """Give link ``ifindex`` these settings and bring it up, in one request."""
    attrs = b""
    if address is not None:
        attrs += _attr(_IFLA_ADDRESS, bytes.fromhex(address.replace(":", "")))
    if mtu is not None:
        attrs += _attr(_IFLA_MTU, struct.pack("=I", mtu))
    if master is not None:
        attrs += _attr(_IFLA_MASTER, struct.pack("=I", master))
    if alias is not None:
        attrs += _attr(_IFLA_IFALIAS, alias.encode() + b"\0")
    _request(_RTM_NEWLINK, ifindex, attrs, flags=IFF_UP, change=IFF_UP)


def delete(ifindex: int) -> None:
    """Delete link ``ifindex`` (by index: a later link of the same name is another)."""
    _request(_RTM_DELLINK, ifindex)
