"""GUIDs (uuid, genid): libvirt's accepted spellings, canonical formatting, v4 generation.

The random source is injectable so tests get libvirt's deterministic value
(virrandommock fills bytes with 0, 1, 2, ...); production reads the OS CSPRNG.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

RandomSource = Callable[[int], bytes]
_HEX = frozenset("0123456789abcdefABCDEF")
_CANONICAL = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                        r"[0-9a-fA-F]{12}")

#: The production source: the kernel's CSPRNG (getrandom(2) behind os.urandom).
system_random: RandomSource = os.urandom


def counting_random(n: int) -> bytes:
    """libvirt's virrandommock: bytes 0, 1, 2, ... on every call."""
    return bytes(i & 0xFF for i in range(n))


def parse(text: str) -> bytes | None:
    """Parse a GUID the way libvirt's virUUIDParse does; None if malformed.

    Accepted: 32 hex digits in either case, leading spaces, dashes or spaces
    between byte pairs, trailing white space.
    """
    if _CANONICAL.fullmatch(text):  # the common case, fast
        return bytes.fromhex(text.replace("-", ""))
    s = text.lstrip(" ")
    pairs: list[str] = []
    i = 0
    while len(pairs) < 16:
        if i >= len(s):
            return None
        if s[i] in "- ":
            i += 1
            continue
        pair = s[i:i + 2]
        if len(pair) != 2 or not all(c in _HEX for c in pair):
            return None
        pairs.append(pair)
        i += 2
    if s[i:].strip():
        return None
    return bytes.fromhex("".join(pairs))


def format(raw: bytes) -> str:  # noqa: A001 - mirrors virUUIDFormat
    """Canonical form: lowercase, dashed 8-4-4-4-12."""
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def generate_v4(source: RandomSource = system_random) -> bytes:
    """A random (version 4, RFC 4122 variant) GUID from ``source``."""
    b = bytearray(source(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    return bytes(b)
