"""Untrusted definition files: every encoding a declaration can name is read or refused in
one line, and nothing but a regular file is ever opened for reading."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from qemuwrap.conf import guid, schema, untrusted
from qemuwrap.conf.domain import load, loads
from qemuwrap.conf.xmlreader import MAX_XML_BYTES, parse_bytes
from qemuwrap.errors import XMLError

from conftest import DEFAULT_CAPS, GOLDEN_STATE_ROOT, XML2ARGV

BASE = ["--caps", str(DEFAULT_CAPS), "--state-dir", GOLDEN_STATE_ROOT]
#: A definition with text outside ASCII (a title) and an empty <genid/> to locate.
TEXT = (XML2ARGV / "genid.xml").read_text().replace(
    "<genid>e9392370-2917-565e-692b-d057f46512d6</genid>",
    "<genid/>\n  <title>caf\u00e9 \u65e5\u672c</title>")
#: (encoding as declared, Python codec, with a declaration, byte order mark)
ENCODINGS = [
    ("UTF-8", "utf-8", True, b""),
    ("UTF-8", "utf-8", False, b"\xef\xbb\xbf"),
    ("UTF-16", "utf-16-le", True, b"\xff\xfe"),
    ("UTF-16", "utf-16-be", True, b"\xfe\xff"),
    ("UTF-16", "utf-16-le", False, b"\xff\xfe"),
    ("UTF-16LE", "utf-16-le", True, b""),
    ("UTF-16BE", "utf-16-be", True, b""),
    ("UTF-16", "utf-16-be", True, b""),
    ("UTF-32", "utf-32-le", True, b"\xff\xfe\x00\x00"),
    ("UTF-32BE", "utf-32-be", True, b""),
    ("Shift_JIS", "shift_jis", True, b""),
    ("EUC-JP", "euc_jp", True, b""),
    ("GB18030", "gb18030", True, b""),
    ("Big5", "big5", True, b""),
    ("ISO-2022-JP", "iso2022_jp", True, b""),
    ("windows-31j", "cp932", True, b""),
]


NO_E_ACUTE = ("shift_jis", "cp932", "big5", "iso2022_jp")


def encoded(declared: str, codec: str, declaration: bool, bom: bytes,
            text: str = TEXT) -> bytes:
    head = f"<?xml version='1.0' encoding='{declared}'?>\n" if declaration else ""
    return bom + (head + text).encode(codec)


def qemuwrap(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qemuwrap", *args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def assert_one_line_refusal(res: subprocess.CompletedProcess, path, fragment: str) -> None:
    assert res.returncode == 1, res.stdout
    assert res.stderr.count("\n") == 1, res.stderr
    assert res.stderr.startswith(f"qemuwrap: {path}: "), res.stderr
    assert fragment in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


# --------------------------------------------------------------------------- encodings


@pytest.mark.parametrize("declared, codec, declaration, bom", ENCODINGS,
                         ids=[f"{e[0]}{'-decl' if e[2] else ''}{'-bom' if e[3] else ''}"
                              for e in ENCODINGS])
def test_every_encoding_reads_as_the_same_definition(declared, codec, declaration, bom):
    text = TEXT.replace("\u00e9", "e") if codec in NO_E_ACUTE else TEXT
    data = encoded(declared, codec, declaration, bom, text)
    dom = loads(data, random=guid.counting_random)
    assert dom == loads(text.encode(), random=guid.counting_random)
    assert dom.title == text.split("<title>")[1].split("</title>")[0]
    # parser offsets are offsets into the file's own bytes
    node = dom.nodes["genid"]
    assert data[node.start:node.end].decode(codec) == "<genid/>"
    root = dom.nodes["domain"]
    assert root.end == len(data) - len("\n".encode(codec))  # just past "</domain>"
    assert data[root.start:root.end].decode(codec).startswith("<domain ")
    schema.validate_bytes(data)  # the schema pass reads it the same way


@pytest.mark.parametrize("data, message", [
    (b"<?xml version='1.0' encoding='UTF-7'?><domain/>", "encoding 'UTF-7' is not supported"),
    (b"<?xml version='1.0' encoding='utf7'?><domain/>", "encoding 'utf7' is not supported"),
    (b"<?xml version='1.0' encoding='nonsense'?><domain/>", "unknown encoding 'nonsense'"),
    (b"<?xml version='1.0' encoding=''?><domain/>", "unknown encoding ''"),
    (b"<?xml version='1.0' encoding='hex'?><domain/>", "encoding 'hex' is not supported"),
    (b"<?xml version='1.0' encoding='rot13'?><domain/>", "is not supported"),
    (b"<?xml version='1.0' encoding='unicode_escape'?><domain/>", "is not supported"),
    (b"<?xml version='1.0' encoding='cp037'?><domain/>", "not compatible with ASCII"),
    (b"<?xml version='1.0' encoding='UTF-16'?><domain/>", "is not UTF-16"),
    (b"<?xml version='1.0' encoding='UTF-32'?><domain/>", "is not UTF-32"),
    (b"\xef\xbb\xbf<?xml version='1.0' encoding='latin-1'?><domain/>",
     "UTF-8 byte order mark"),
    ("<?xml version='1.0' encoding='ISO-8859-1'?><domain/>".encode("utf-16"),
     "the document is UTF-16-LE"),
    (b"<?xml version='1.0' encoding='Shift_JIS'?><domain>\x82</domain>",
     "not valid Shift_JIS"),
    (b"<?xml version='1.0' encoding='bad\x00name'?><domain/>", "unknown encoding"),
    (b"\x4c\x6f\xa7\x94", "EBCDIC"),
    (b"\xff\xfe<\x00d\x00\x00\xd8>\x00", "not valid UTF-16"),
])
def test_unreadable_encodings_are_one_line_refusals(data, message):
    with pytest.raises(XMLError, match=message) as exc:
        loads(data)
    assert "\n" not in str(exc.value) and str(exc.value).isprintable()
    with pytest.raises(XMLError, match=message):
        schema.validate_bytes(data)


def test_utf8_files_are_parsed_in_place():
    """The common case costs nothing: the parser reads the file's bytes themselves."""
    data = TEXT.encode()
    doc = untrusted.decode(data)
    assert doc.utf8 is data and doc.identity


def test_non_canonical_bytes_still_map_exactly():
    """Bytes that decode but would re-encode differently fall back to exact decoding."""
    text = "<domain><name>\u00e9</name><genid/></domain>"
    data = text.encode("utf-16-le")
    doc = untrusted.decode(b"\xff\xfe" + data)
    assert doc.file_offsets([0, 8]) == {0: 2, 8: 18}
    # cp932's NEC row 13 "\x87\x90" decodes to U+2252, which encodes back as "\x81\xe0"
    odd = b"<?xml version='1.0' encoding='cp932'?><a>\x87\x90</a>"
    assert odd.decode("cp932").encode("cp932") != odd
    root = parse_bytes(odd)
    assert odd[root.start:root.end].endswith(b"</a>") and root.start == odd.index(b"<a>")


# --------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("declared", ["UTF-7", "Shift_JIS-2004-nonsense", "EUC-JP"])
def test_cli_reads_or_refuses_encodings_in_one_line(tmp_path, declared):
    """issue 9: these gave expat's ValueError/LookupError tracebacks."""
    path = tmp_path / "enc.xml"
    path.write_bytes(f"<?xml version='1.0' encoding='{declared}'?>\n".encode()
                     + (XML2ARGV / "genid.xml").read_bytes())
    res = qemuwrap("dry-run", str(path), *BASE)
    if declared == "EUC-JP":
        assert res.returncode == 0, res.stderr
        assert res.stdout == (XML2ARGV / "genid.args").read_text()
        return
    assert_one_line_refusal(res, path, "encoding")
    assert_one_line_refusal(qemuwrap("validate", str(path), *BASE), path, "encoding")


def test_cli_explain_of_a_utf16_file(tmp_path):
    """--explain quotes each element as the file spells it, whatever its encoding."""
    path = tmp_path / "u16.xml"
    path.write_bytes(encoded("UTF-16", "utf-16-le", True, b"\xff\xfe",
                             (XML2ARGV / "genid.xml").read_text()))
    res = qemuwrap("dry-run", "--explain", str(path), *BASE)
    assert res.returncode == 0, res.stderr
    assert "line 5: <genid>e9392370-2917-565e-692b-d057f46512d6</genid>" in res.stdout
    assert "line 2: <domain type='qemu' id='1'>" in res.stdout  # a container: its start tag


# --------------------------------------------------------------------------- file kinds


def test_fifo_is_refused_without_blocking(tmp_path):
    """issue 9: a FIFO definition made dry-run, validate and start block forever."""
    fifo = tmp_path / "def.xml"
    os.mkfifo(fifo)
    for command in ("dry-run", "validate", "start"):
        res = qemuwrap(command, str(fifo), *BASE, timeout=20)
        assert_one_line_refusal(res, fifo, "not a regular file (a FIFO)")


@pytest.mark.parametrize("kind", ["directory", "char-device", "socket", "symlink-to-fifo"])
def test_other_non_regular_files_are_refused(tmp_path, kind):
    path = tmp_path / "def.xml"
    expected = {"directory": "a directory", "char-device": "a character device",
                "socket": "a socket", "symlink-to-fifo": "a FIFO"}[kind]
    if kind == "directory":
        path.mkdir()
    elif kind == "char-device":
        path = "/dev/null"
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        sock.close()
    else:
        os.mkfifo(tmp_path / "fifo")
        path.symlink_to(tmp_path / "fifo")
    with pytest.raises(XMLError, match=f"not a regular file \\({expected}\\)"):
        load(str(path))
    with pytest.raises(XMLError, match=f"not a regular file \\({expected}\\)"):
        schema.validate_file(path)


def test_symlink_is_refused_when_not_followed(tmp_path):
    (tmp_path / "real.xml").write_text(TEXT)
    (tmp_path / "link.xml").symlink_to(tmp_path / "real.xml")
    assert untrusted.read_bytes(tmp_path / "link.xml") == TEXT.encode()
    with pytest.raises(XMLError, match="a symbolic link"):
        untrusted.read_bytes(tmp_path / "link.xml", follow_symlinks=False)


def test_huge_sparse_file_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.xml"
    with open(path, "wb") as f:
        f.truncate(1 << 40)  # 1 TiB of holes: reading it whole would never end
    with pytest.raises(XMLError, match=f"larger than {MAX_XML_BYTES} bytes"):
        load(str(path))


def test_read_is_bounded_even_if_the_size_lies(tmp_path, monkeypatch):
    """A file that grows after fstat() (or a size a file system reports wrongly, as
    /proc does) is still read no further than the limit plus one byte."""
    path = tmp_path / "grows.xml"
    path.write_bytes(b"x" * 10)
    reads = []
    real_read = os.read

    def growing_read(fd, n):
        reads.append(n)
        return b"y" * n

    monkeypatch.setattr(os, "read", growing_read)
    with pytest.raises(XMLError, match="larger than 64 bytes"):
        untrusted.read_bytes(path, limit=64)
    monkeypatch.setattr(os, "read", real_read)
    assert sum(reads) == 65


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(XMLError, match="^cannot read: No such file or directory$"):
        load(str(tmp_path / "missing.xml"))


@pytest.mark.parametrize("codec", ["utf-16-be", "utf-16-le", "utf-32-be", "utf-32-le"])
def test_wide_encodings_without_bom_or_declaration(codec):
    """expat takes a NUL first or second byte for UTF-16 whatever it is told; qemuwrap
    must decide the same, or its offsets and write-back would be in the wrong encoding."""
    data = TEXT.encode(codec)
    doc = untrusted.decode(data)
    assert doc.codec == codec and not doc.identity
    dom = loads(data, random=guid.counting_random)
    node = dom.nodes["genid"]
    assert data[node.start:node.end].decode(codec) == "<genid/>"


def test_nesting_is_bounded():
    deep = TEXT.replace("<devices>", "<devices>" + "<x>" * 300 + "</x>" * 300)
    with pytest.raises(XMLError, match="nested deeper than 256"):
        loads(deep.encode())
    with pytest.raises(XMLError, match="Excessive depth"):
        schema.validate_bytes(deep.encode())


def test_read_file_can_refuse_symlinks(tmp_path):
    from qemuwrap.conf.xmlreader import read_file

    (tmp_path / "real.xml").write_text(TEXT)
    (tmp_path / "link.xml").symlink_to(tmp_path / "real.xml")
    assert read_file(tmp_path / "link.xml")[0] == TEXT.encode()
    with pytest.raises(XMLError, match="a symbolic link"):
        read_file(tmp_path / "link.xml", follow_symlinks=False)
