"""Untrusted definition bytes: read them safely, decode the encoding they declare, hand
the parser UTF-8, and map the parser's byte offsets back to the file's own bytes.

Reading: only a regular file is read.  The path is checked with stat() before it is
opened, and opened with ``O_NONBLOCK|O_NOCTTY`` (a FIFO or a device swapped in between
can neither block us nor become our terminal), then fstat() must agree: same inode,
still a regular file.  Only ``limit + 1`` bytes are ever read.

Decoding follows XML 1.0 appendix F: a byte order mark or the first bytes give the
family (UTF-8/ASCII-compatible, UTF-16, UTF-32), then the declaration's
``encoding=`` names the codec.  Any name Python knows as a text encoding is decoded
(Shift_JIS, EUC-JP, ISO-8859-x, windows-125x, GB18030, ...), except UTF-7 and the
other codecs whose bytes can smuggle markup; anything else is one refusal naming it.
expat never sees the original encoding: it parses UTF-8 with the declaration
overridden, so its handlers never raise LookupError/ValueError from inside.

UTF-8 files (by far the most common) are handed over as they are: no copy, and the
parser's offsets are already file offsets.
"""

from __future__ import annotations

import codecs
import os
import re
import stat

from qemuwrap.errors import XMLError

MAX_BYTES = 1 << 20  # 1 MiB: a domain definition is a few KiB

#: Codecs Python decodes but that must never read a definition: UTF-7 hides markup in
#: base64 runs ("+ADw-" is "<"), the escape codecs turn text into other text.
_REFUSED = frozenset({"utf-7", "unicode-escape", "raw-unicode-escape", "idna", "punycode",
                      "undefined"})
#: Stateful codecs: bytes depend on what came before, so a splice cannot be checked
#: piece by piece (they are read, but never edited in place).
#: IANA names (as libxml2 and iconv know them) that Python's codec registry lacks.
_IANA = {"windows-31j": "cp932", "x-sjis": "shift_jis", "x-euc-jp": "euc_jp",
         "cseucpkdfmtjapanese": "euc_jp",
         "extended_unix_code_packed_format_for_japanese": "euc_jp",
         "iso-10646-ucs-2": "utf-16", "ucs-2": "utf-16", "csunicode": "utf-16",
         "iso-10646-ucs-4": "utf-32", "ucs-4": "utf-32", "csucs4": "utf-32",
         "windows-874": "cp874", "x-gbk": "gbk", "csutf8": "utf-8", "iso-8859-8-i": "iso8859-8",
         "x-mac-cyrillic": "mac-cyrillic"}
_STATEFUL = re.compile(r"iso2022_.*|hz|utf-7")
_DECLARATION = re.compile(
    r"<\?xml[ \t\r\n]+version[ \t\r\n]*=[ \t\r\n]*(['\"])[^'\"]*\1"
    r"(?:[ \t\r\n]+encoding[ \t\r\n]*=[ \t\r\n]*(['\"])(?P<name>[^'\"]*)\2)?")
#: (byte order mark, codec), XML 1.0 appendix F; longest first.
_BOMS = ((b"\x00\x00\xfe\xff", "utf-32-be"), (b"\xff\xfe\x00\x00", "utf-32-le"),
         (b"\xef\xbb\xbf", "utf-8"), (b"\xfe\xff", "utf-16-be"), (b"\xff\xfe", "utf-16-le"))
_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link"))


class Document:
    """A definition's bytes, what the parser reads, and how to map between the two."""

    __slots__ = ("data", "utf8", "codec", "declared", "bom", "_text")

    def __init__(self, data: bytes, utf8: bytes, codec: str, declared: str | None, bom: int,
                 text: str | None = None):
        self.data = data  # the file's own bytes
        self.utf8 = utf8  # what expat parses (``data`` itself for UTF-8 input)
        self.codec = codec  # Python's codec name: "utf-8", "utf-16-le", "shift_jis", ...
        self.declared = declared  # the name as the declaration spells it, if any
        self.bom = bom  # length of the byte order mark at the start of ``data``
        self._text = text

    @property
    def identity(self) -> bool:
        """True when parser offsets are file offsets (UTF-8 input)."""
        return self.utf8 is self.data

    @property
    def name(self) -> str:
        """The encoding as a user would call it, for messages."""
        return self.declared or self.codec.upper()

    @property
    def stateful(self) -> bool:
        return _STATEFUL.fullmatch(self.codec) is not None

    def file_offsets(self, offsets) -> dict[int, int]:
        """``{parser offset: file offset}`` for byte offsets into :attr:`utf8` that lie on
        character boundaries (where elements start and end)."""
        wanted = sorted(set(offsets))
        if self.identity:
            return {o: o for o in wanted}
        text = self._text if self._text is not None else self.utf8.decode("utf-8")
        body = self.data[self.bom:]
        if not self.stateful and text.encode(self.codec) == body:
            # Every character encodes on its own: sum the pieces' lengths.
            out, chars, pos, prev = {}, 0, self.bom, 0
            for o in wanted:
                piece = self.utf8[prev:o].decode("utf-8")
                pos += len(piece.encode(self.codec))
                chars += len(piece)
                out[o] = pos
                prev = o
            return out
        return self._offsets_by_decoding(wanted, text)

    def _offsets_by_decoding(self, wanted: list[int], text: str) -> dict[int, int]:
        """Exact for any codec (stateful ones, non-canonical byte sequences): feed the
        file to an incremental decoder a byte at a time.  Slow, so only the fallback."""
        char_at: dict[int, int] = {}  # character index -> parser offset
        count = 0
        prev = 0
        for o in wanted:
            count += len(self.utf8[prev:o].decode("utf-8"))
            char_at[count] = o
            prev = o
        decoder = codecs.getincrementaldecoder(self.codec)()
        out: dict[int, int] = {}
        done = 0  # characters decoded so far
        if 0 in char_at:
            out[char_at[0]] = self.bom
        for i in range(self.bom, len(self.data)):
            done += len(decoder.decode(self.data[i:i + 1]))
            if done in char_at and char_at[done] not in out:
                out[char_at[done]] = i + 1
        for o in wanted:
            out.setdefault(o, len(self.data))
        return out


def read_bytes(path: str | os.PathLike, *, limit: int = MAX_BYTES,
               follow_symlinks: bool = True) -> bytes:
    """The bytes of the regular file at ``path`` (at most ``limit``), or XMLError.

    Nothing but a regular file is opened for reading; ``follow_symlinks=False`` also
    refuses a symbolic link (for files in directories others could write)."""
    path = os.fspath(path)
    try:
        before = os.stat(path) if follow_symlinks else os.lstat(path)
    except OSError as exc:
        raise XMLError(f"cannot read: {exc.strerror}") from None
    _require_regular(before)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise XMLError(f"cannot read: {exc.strerror}") from None
    try:
        now = os.fstat(fd)
        _require_regular(now)
        if (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino):
            raise XMLError("cannot read: the file was replaced while it was being opened")
        if now.st_size > limit:
            raise XMLError(f"document is larger than {limit} bytes")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise XMLError(f"cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:  # it grew after fstat()
        raise XMLError(f"document is larger than {limit} bytes")
    return data


def _require_regular(st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _FILE_KINDS if test(st.st_mode)), "not a file")
        raise XMLError(f"cannot read: not a regular file ({kind})")


def decode(data: bytes) -> Document:
    """Detect and check the encoding of ``data``; raise XMLError (one line) if it cannot
    be read, naming the encoding."""
    if len(data) > MAX_BYTES:
        raise XMLError(f"document is larger than {MAX_BYTES} bytes")
    family, bom = _family(data[:4])
    wide = family != "utf-8"
    prologue = data[bom:bom + 512]
    head_text = prologue.decode(family, "ignore") if wide else prologue.decode("latin-1")
    match = _DECLARATION.match(head_text)
    declared = match["name"] if match else None
    codec = family
    if declared is not None:
        codec = _codec_for(declared, family, bom)
    if codec == "utf-8":  # expat reads it as it is (and checks it is UTF-8)
        return Document(data, data, "utf-8", declared, bom)
    try:
        text = data[bom:].decode(codec)
    except UnicodeDecodeError as exc:
        raise XMLError(f"the document is not valid {declared or codec.upper()}: "
                       f"{exc.reason} at byte {exc.start + bom}") from None
    if match is not None and declared is not None and not wide \
            and not text.startswith(match[0]):
        # an encoding that is not ASCII-compatible cannot have declared itself in ASCII
        raise XMLError(f"encoding '{_printable(declared)}' is not supported "
                       "(not compatible with ASCII; save the file as UTF-8)")
    try:
        utf8 = text.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates some codecs let through
        raise XMLError(f"the document is not valid {declared or codec.upper()}: "
                       f"{exc.reason}") from None
    return Document(data, utf8, codec, declared, bom, text)


def _family(head: bytes) -> tuple[str, int]:
    """(codec family, BOM length) from the first bytes, as expat itself reads them (it
    takes a first or second NUL byte for UTF-16 whatever it is told), so what we decode
    is what expat would have parsed."""
    for prefix, codec in _BOMS:
        if head.startswith(prefix):
            return codec, len(prefix)
    if head == b"\x4c\x6f\xa7\x94":
        raise XMLError("unsupported encoding: EBCDIC (save the file as UTF-8)")
    if head[:1] == b"\x00":
        return ("utf-32-be" if head[:3] == b"\x00\x00\x00" else "utf-16-be"), 0
    if head[1:2] == b"\x00":
        return ("utf-32-le" if head[1:4] == b"\x00\x00\x00" else "utf-16-le"), 0
    return "utf-8", 0


def _codec_for(declared: str, family: str, bom: int) -> str:
    """The Python codec for a declared encoding name, checked against the byte family."""
    shown = _printable(declared)
    try:
        info = codecs.lookup(_IANA.get(declared.lower(), declared))
    except (LookupError, ValueError):
        raise XMLError(f"unknown encoding '{shown}' in the XML declaration "
                       "(save the file as UTF-8)") from None
    name = info.name
    if not getattr(info, "_is_text_encoding", True) or name in _REFUSED:
        raise XMLError(f"encoding '{shown}' is not supported (save the file as UTF-8)")
    if name == "utf-8-sig":
        name = "utf-8"
    if family == "utf-8":
        if name.startswith(("utf-16", "utf-32")):
            raise XMLError(f"the XML declaration says '{shown}' but the document is not "
                           f"{name.upper()} (no byte order mark, ASCII text)")
        if bom and name != "utf-8":
            raise XMLError(f"the XML declaration says '{shown}' but the document starts "
                           "with a UTF-8 byte order mark")
        return name
    wide = family[:6]  # "utf-16" or "utf-32"
    if name == wide:
        return family  # "UTF-16": the byte order the BOM or first bytes showed
    if name == family or (not bom and name.startswith(wide)):
        return name
    raise XMLError(f"the XML declaration says '{shown}' but the document is "
                   f"{family.upper()}")


def _printable(text: str, limit: int = 40) -> str:
    text = text if len(text) <= limit else text[:limit] + "..."
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def encode_text(doc: Document, text: str) -> bytes:
    """``text`` in the file's encoding; characters it cannot hold become character
    references (valid in element content and attribute values)."""
    return text.encode(doc.codec, "xmlcharrefreplace")
