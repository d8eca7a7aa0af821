"""The save file: the definition the guest was saved with, then QEMU's migration stream.

Layout: ``QEMUWRAP-SAVE 1\\n``, one line of JSON (the definition and where it came
from), zero padding to a 4 KiB boundary, then QEMU's own stream (it starts with
``QEVM``). One file, like libvirt's save images, so the state and the definition
it belongs to cannot be separated.
"""

from __future__ import annotations

import json
import os

from qemuwrap.errors import QemuwrapError

MAGIC = b"QEMUWRAP-SAVE 1\n"
ALIGN = 4096
QEMU_STREAM_MAGIC = b"QEVM"


class SaveFileError(QemuwrapError):
    """Not a qemuwrap save file, or a damaged one."""


_SIZE_PLACEHOLDER = "0" * 20


def header(meta: dict) -> tuple[bytes, int]:
    """The bytes before QEMU's stream (magic, JSON line, padding), and the offset of the
    stream size, a fixed-width field filled in by :func:`set_stream_size` once the
    stream is complete (so a truncated file is told from a whole one)."""
    body = MAGIC + json.dumps({**meta, "stream_size": _SIZE_PLACEHOLDER},
                              separators=(",", ":")).encode() + b"\n"
    at = body.index(f'"stream_size":"{_SIZE_PLACEHOLDER}"'.encode()) + len('"stream_size":"')
    return body + b"\0" * (-len(body) % ALIGN), at


def set_stream_size(fd: int, at: int, header_len: int) -> None:
    size = os.fstat(fd).st_size - header_len
    os.pwrite(fd, f"{size:020d}".encode(), at)


def read(path: str) -> tuple[dict, int]:
    """The metadata and the offset of QEMU's stream; refuses anything that is not whole."""
    try:
        with open(path, "rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                raise SaveFileError(f"{path} is not a qemuwrap save file")
            line = f.readline(1 << 20)
            try:
                meta = json.loads(line)
            except ValueError:
                raise SaveFileError(f"{path}: damaged header") from None
            offset = f.tell() + (-f.tell() % ALIGN)
            f.seek(offset)
            if f.read(len(QEMU_STREAM_MAGIC)) != QEMU_STREAM_MAGIC:
                raise SaveFileError(f"{path}: no QEMU state stream after the header "
                                    "(truncated or not a QEMU save)")
            size = os.fstat(f.fileno()).st_size
    except OSError as exc:
        raise SaveFileError(f"cannot read {path}: {exc.strerror}") from None
    expected = int(meta.get("stream_size") or 0)
    if size - offset != expected:
        raise SaveFileError(f"{path} is truncated: {size - offset} of {expected} bytes of "
                            "QEMU state")
    return meta, offset
