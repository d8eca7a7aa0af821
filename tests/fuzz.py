"""A mutation fuzzer for untrusted definitions, seeded from data/xml2argv.

Each case is a seed definition changed by a few mutations (elements deleted, duplicated
or swapped; odd values; control characters, NUL, byte order marks; every encoding;
CDATA, comments, processing instructions, namespaces, DOCTYPEs; 10 MB; deep nesting;
truncation and flipped bytes), then put through what ``qemuwrap validate`` and
``qemuwrap dry-run`` do with it: the RelaxNG schema, the model, the command, its
``.args`` and ``--explain`` texts, and for a generated genid the write-back splice.
The outcome must be a success or one QemuwrapError whose message is one line as the
CLI prints it: anything else is a traceback, and a case that runs past its deadline
is a hang.

The default test run uses a fixed seed and budget (tests/test_fuzz.py); a longer run::

    .venv/bin/python tests/fuzz.py --cases 20000 --seed 7 --save data/fuzz-regressions

prints the figures and saves every failing input as a regression case.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "data" / "xml2argv"
REGRESSIONS = ROOT / "data" / "fuzz-regressions"
CAPS = ROOT / "data" / "caps" / "qemu-7.2.0.x86_64.json"
STATE_ROOT = "/run/qemuwrap"
#: Seconds one case may take before it counts as a hang.
DEADLINE = 10.0

ODD_VALUES = [
    "", " ", "\t\n", "0", "-1", "-0", "+1", "00", "0x10", "010", "1e3", "1.5", "NaN",
    "18446744073709551616", "9" * 400, "4294967295", "2147483648", "-9223372036854775809",
    "\u0661\u0662", "\uff11", "KiB", "kib", "EiB", "bytes", "b", "qemu", "kvm", "hvm", "pc",
    "q35", "pc-i440fx-2.4", "microvm", "isapc", "none", "virtio", "ide", "sata", "usb",
    "pci", "hda", "vdzz", "sdaa", "on", "off", "yes", "no", "destroy", "restart",
    "preserve", "utc", "localtime", "/", "//", "/../../etc/passwd", "relative/path",
    "a,b", "a,,b", ",id=x", "help", "?", "x=y", "websocket=0.0.0.0", "unix:/tmp/s",
    "[::1]", "::1", "0.0.0.0", "127.0.0.1", "52:54:00:12:34:56", "01:00:00:00:00:00",
    "ff:ff:ff:ff:ff:ff", "e9392370-2917-565e-692b-d057f46512d6",
    "E9392370291756 5E692BD057F46512D6", "00000000-0000-0000-0000-000000000000",
    "\u00e9\u65e5\u672c", "\u202e", "\u00a0", "\u2028", "&#133;", "&#x2028;", "&#13;",
    "&#10;", "&amp;", "&lt;", "x" * 5000, "-S", "--", "$(reboot)", "'", '"', "\\",
]
ENCODINGS = ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-be", "latin-1",
             "iso-8859-15", "windows-1252", "shift_jis", "euc-jp", "iso-2022-jp", "gb18030",
             "big5", "koi8-r", "utf-8-sig", "cp037"]
DECLARED = ["UTF-7", "utf7", "UTF-16", "UTF-32", "Shift_JIS", "EUC-JP", "ISO-2022-JP",
            "nonsense", "", "hex", "rot13", "unicode_escape", "ISO-8859-1", "US-ASCII",
            "x-user-defined", "UTF-8", "utf_8_sig", "cp037", "ebcdic-cp-us", "windows-31j"]


@dataclass
class Figures:
    cases: int = 0
    successes: int = 0
    errors: int = 0  # one-line refusals
    tracebacks: list = field(default_factory=list)  # (name, data, text)
    hangs: list = field(default_factory=list)  # (name, data)
    seconds: float = 0.0
    mutations: set = field(default_factory=set)  # the kinds drawn

    def line(self) -> str:
        return (f"{self.cases} cases: {self.errors} one-line errors, {self.successes} "
                f"successes, {len(self.tracebacks)} tracebacks, {len(self.hangs)} hangs "
                f"({self.seconds:.1f} s)")


class Hang(BaseException):
    """A case ran past its deadline (a BaseException: nothing may swallow it)."""


# --------------------------------------------------------------------------- running


def run_case(data: bytes, name: str = "<fuzz>") -> str:
    """What validate and dry-run do with ``data``: the schema pass and, on its own (a
    dry run has no schema pass), the model, the command, its texts and the write-back
    splice.  "ok", or the first one-line message; any other exception propagates (a
    traceback)."""
    from qemuwrap.conf import guid, schema
    from qemuwrap.conf.domain import loads
    from qemuwrap.definition import with_genid
    from qemuwrap.errors import QemuwrapError
    from qemuwrap.qemu.capabilities import Capabilities
    from qemuwrap.qemu.command import build_command
    from qemuwrap.statedir import guest_dir

    outcome = "ok"
    try:
        schema.validate_bytes(data, name)
    except QemuwrapError as exc:
        outcome = _one_line(exc)
    try:
        dom = loads(data, random=guid.counting_random)
        cmd = build_command(dom, Capabilities.from_file(CAPS), guest_dir(dom.name, STATE_ROOT))
        cmd.to_args()
        cmd.explain(data)
        if dom.genid_generated:
            new = with_genid(data, dom, dom.genid)  # may refuse (a stateful encoding)
            try:
                again = loads(new)
            except QemuwrapError as exc:
                raise AssertionError(f"the write-back broke the file: {exc}") from None
            assert again.genid == dom.genid and not again.genid_generated, "write-back"
    except QemuwrapError as exc:
        message = _one_line(exc)
        return outcome if outcome != "ok" else message
    return outcome


def _one_line(exc: Exception) -> str:
    """The error as qemuwrap.cli.main prints it: one line per problem (Problems joins
    them with newlines), each printable."""
    lines = str(exc).split("\n")
    if not lines or not all(line and line.isprintable() for line in lines):
        raise AssertionError(f"not one printable line per problem: {str(exc)!r}")
    return " | ".join(lines)


def run_bounded(data: bytes, name: str, deadline: float = DEADLINE) -> tuple[str, str]:
    """(outcome, text): outcome is "ok", "error", "traceback" or "hang"."""
    def expire(_signum, _frame):
        raise Hang()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, deadline)
    try:
        result = run_case(data, name)
        return ("ok", "") if result == "ok" else ("error", result)
    except Hang:
        return "hang", f"no outcome within {deadline:g} s"
    except Exception:  # noqa: BLE001 - a traceback is the finding
        return "traceback", traceback.format_exc()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# --------------------------------------------------------------------------- mutating


def seeds() -> list[tuple[str, bytes]]:
    return [(p.stem, p.read_bytes()) for p in sorted(SEEDS.glob("*.xml"))]


def _spans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of every element of a parseable UTF-8 seed."""
    from qemuwrap.conf.xmlreader import parse_bytes

    try:
        root = parse_bytes(data)
    except Exception:  # noqa: BLE001 - a mutated text: fall back to byte mutations
        return []
    out, stack = [], [root]
    while stack:
        node = stack.pop()
        out.append((node.start, node.end))
        stack.extend(node.children)
    return out


def _values(data: bytes) -> list[tuple[int, int]]:
    """Spans of attribute values and of text between tags."""
    out = []
    i = 0
    while True:
        q = data.find(b"='", i)
        q2 = data.find(b'="', i)
        if q < 0 or (0 <= q2 < q):
            q = q2
        if q < 0:
            break
        quote = data[q + 1:q + 2]
        end = data.find(quote, q + 2)
        if end < 0:
            break
        out.append((q + 2, end))
        i = end + 1
    i = 0
    while True:
        gt = data.find(b">", i)
        if gt < 0:
            break
        lt = data.find(b"<", gt)
        if lt < 0:
            break
        if lt > gt + 1:
            out.append((gt + 1, lt))
        i = lt
    return out


def mutate(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """One mutation; returns the new bytes and what was done."""
    kind = rng.choice(MUTATIONS)
    return kind(rng, data), kind.__name__.lstrip("_")


def _delete_element(rng, data):
    spans = _spans(data)[1:]
    if not spans:
        return _flip_bytes(rng, data)
    s, e = rng.choice(spans)
    return data[:s] + data[e:]


def _duplicate_element(rng, data):
    spans = _spans(data)[1:]
    if not spans:
        return _flip_bytes(rng, data)
    s, e = rng.choice(spans)
    return data[:e] + data[s:e] * rng.choice((1, 1, 2, 50)) + data[e:]


def _swap_elements(rng, data):
    spans = sorted(_spans(data)[1:])
    pairs = [(a, b) for a, b in zip(spans, spans[1:], strict=False) if a[1] <= b[0]]
    if not pairs:
        return _delete_element(rng, data)
    (s1, e1), (s2, e2) = rng.choice(pairs)
    return data[:s1] + data[s2:e2] + data[e1:s2] + data[s1:e1] + data[e2:]


def _move_element(rng, data):
    spans = _spans(data)[1:]
    if len(spans) < 2:
        return _delete_element(rng, data)
    s, e = rng.choice(spans)
    piece, rest = data[s:e], data[:s] + data[e:]
    t, _ = rng.choice(_spans(rest) or [(0, 0)])
    return rest[:t] + piece + rest[t:]


def _odd_value(rng, data):
    values = _values(data)
    if not values:
        return _flip_bytes(rng, data)
    s, e = rng.choice(values)
    odd = rng.choice(ODD_VALUES)
    if rng.random() < 0.3:
        odd = data[s:e].decode("utf-8", "replace") + odd
    return data[:s] + odd.replace("'", "&apos;").replace('"', "&quot;").encode() + data[e:]


def _control_characters(rng, data):
    pos = rng.randrange(len(data) + 1)
    junk = rng.choice([b"\x01", b"\x1b[31m", b"\x7f", b"\x0b", b"\x0c", b"\r", b"\r\n",
                       b"&#1;", b"&#x1b;", b"&#133;", b"&#x2028;", b"\xc2\x85",
                       b"\xe2\x80\xa8", b"\xff", b"\xc0\xaf", b"\xed\xa0\x80"])
    return data[:pos] + junk + data[pos:]


def _nul(rng, data):
    pos = rng.randrange(len(data) + 1)
    return data[:pos] + rng.choice([b"\x00", b"&#0;", b"&#x0;"]) + data[pos:]


def _bom(rng, data):
    return rng.choice([b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff",
                       b"\xff\xfe\x00\x00", b"\xef\xbb\xbf\xef\xbb\xbf"]) + data


def _encoding(rng, data):
    text = data.decode("utf-8", "replace")
    codec = rng.choice(ENCODINGS)
    declared = rng.choice([codec, rng.choice(DECLARED), None])
    decl = f"<?xml version='1.0' encoding='{declared}'?>\n" if declared else ""
    if text.startswith("<?xml"):
        text = text[text.index("?>") + 2:].lstrip()
    return (decl + text).encode(codec, "replace") if codec != "cp037" else \
        decl.encode() + text.encode(codec, "replace")


def _declaration(rng, data):
    name = rng.choice(DECLARED)
    return f"<?xml version='1.0' encoding='{name}'?>\n".encode() + data


def _cdata(rng, data):
    values = [v for v in _values(data) if data[v[0] - 1:v[0]] == b">"]
    if not values:
        return _comment(rng, data)
    s, e = rng.choice(values)
    return data[:s] + b"<![CDATA[" + data[s:e] + b"]]>" + data[e:]


def _comment(rng, data):
    spans = _spans(data)
    pos = rng.choice(spans)[rng.randrange(2)] if spans else 0
    junk = rng.choice([b"<!-- c -->", b"<!---->", b"<!-- -- -->", b"<?pi data?>",
                       b"<?xml version='1.0'?>", b"<?xml-stylesheet href='x'?>", b"<?pi"])
    return data[:pos] + junk + data[pos:]


def _namespace(rng, data):
    spans = _spans(data)
    if not spans:
        return _bom(rng, data)
    s, _e = rng.choice(spans)
    close = data.find(b">", s)
    if close < 0:
        return data
    attr = rng.choice([b" xmlns='urn:x'", b" xmlns:q='urn:x' q:a='1'", b" xml:lang='en'",
                       b" xmlns:xml='http://www.w3.org/XML/1998/namespace'", b" q:a='1'"])
    if data[close - 1:close] == b"/":
        close -= 1
    out = data[:close] + attr + data[close:]
    if rng.random() < 0.3:
        out = out.replace(b"<devices>", b"<q:devices xmlns:q='urn:x'>", 1)
    return out


def _doctype(rng, data):
    doctype = rng.choice([
        b"<!DOCTYPE domain>",
        b"<!DOCTYPE domain [<!ENTITY x 'y'>]>",
        b"<!DOCTYPE domain [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;&a;&a;&a;"
        b"&a;&a;&a;'><!ENTITY c '&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;'>]>",
        b"<!DOCTYPE domain SYSTEM 'http://127.0.0.1:9/x.dtd'>",
        b"<!DOCTYPE domain [<!ENTITY x SYSTEM 'file:///etc/passwd'>]>",
    ])
    out = doctype + b"\n" + data
    if b"ENTITY" in doctype and rng.random() < 0.7:
        name = b"&c;" if b"ENTITY c" in doctype else b"&x;"
        out = out.replace(b"</name>", name + b"</name>", 1)
    return out


def _huge(rng, data):
    size = rng.choice([(1 << 20) + 1, 10 * (1 << 20)])
    pad = b"<!--" + b"x" * size + b"-->"
    return data.replace(b"</domain>", pad + b"</domain>", 1)


def _deep(rng, data):
    depth = rng.choice([300, 5000, 100000])
    tag = rng.choice([b"x", b"devices", b"description"])
    inner = (b"<" + tag + b">") * depth + (b"</" + tag + b">") * depth
    spans = _spans(data)
    if not spans:
        return data + inner
    s, e = rng.choice(spans)
    close = data.find(b">", s)
    if close < 0 or data[close - 1:close] == b"/":
        return data.replace(b"</domain>", inner + b"</domain>", 1)
    return data[:close + 1] + inner + data[close + 1:]


def _truncate(rng, data):
    return data[:rng.randrange(len(data) + 1)]


def _flip_bytes(rng, data):
    if not data:
        return b"<"
    buf = bytearray(data)
    for _ in range(rng.choice((1, 2, 8))):
        buf[rng.randrange(len(buf))] = rng.randrange(256)
    return bytes(buf)


def _entity(rng, data):
    values = _values(data)
    if not values:
        return _nul(rng, data)
    s, e = rng.choice(values)
    ref = rng.choice([b"&amp;", b"&#x41;", b"&#65;", b"&unknown;", b"&", b"&#xFFFE;",
                      b"&#x110000;", b"&#99999999999;", b"&lt;", b"&#x10FFFF;"])
    return data[:s] + ref + data[e:]


def _duplicate_attribute(rng, data):
    values = [v for v in _values(data) if data[v[0] - 1:v[0]] in (b"'", b'"')]
    if not values:
        return _flip_bytes(rng, data)
    s, e = rng.choice(values)
    start = data.rfind(b" ", 0, s)
    if start < 0:
        return data
    attr = data[start:e + 1]
    return data[:e + 1] + attr + data[e + 1:]


MUTATIONS = [_delete_element, _duplicate_element, _swap_elements, _move_element, _odd_value,
             _odd_value, _odd_value, _control_characters, _nul, _bom, _encoding,
             _declaration, _cdata, _comment, _namespace, _doctype, _huge, _deep, _truncate,
             _flip_bytes, _entity, _duplicate_attribute]


def generate(seed: int, count: int):
    """``count`` cases, the same ones for the same seed: (name, bytes)."""
    rng = random.Random(seed)
    corpus = seeds()
    for i in range(count):
        seed_name, data = rng.choice(corpus)
        done = []
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            data, what = mutate(rng, data)
            done.append(what)
        yield f"{i:06d}-{seed_name}-{'+'.join(done)}", data


def campaign(seed: int, count: int, deadline: float = DEADLINE) -> Figures:
    figures = Figures()
    start = time.monotonic()
    for name, data in generate(seed, count):
        outcome, text = run_bounded(data, name, deadline)
        figures.cases += 1
        figures.mutations.update(name.rsplit("-", 1)[-1].split("+"))
        if outcome == "ok":
            figures.successes += 1
        elif outcome == "error":
            figures.errors += 1
        elif outcome == "hang":
            figures.hangs.append((name, data))
        else:
            figures.tracebacks.append((name, data, text))
    figures.seconds = time.monotonic() - start
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--deadline", type=float, default=DEADLINE)
    parser.add_argument("--save", metavar="DIR", help="save failing inputs here")
    parser.add_argument("--code", metavar="DIR", default=str(ROOT),
                        help="the checkout whose qemuwrap to fuzz (default: this one)")
    args = parser.parse_args(argv)
    sys.path.insert(0, args.code)
    figures = campaign(args.seed, args.cases, args.deadline)
    print(figures.line())
    for name, _data, text in figures.tracebacks[:20]:
        print(f"--- traceback: {name}\n{text.strip().splitlines()[-1]}")
    for name, _data in figures.hangs[:20]:
        print(f"--- hang: {name}")
    if args.save:
        os.makedirs(args.save, exist_ok=True)
        for name, data, *_ in figures.tracebacks + figures.hangs:
            Path(args.save, f"fuzz-{args.seed}-{name[:80]}.xml").write_bytes(data)
    return 1 if figures.tracebacks or figures.hangs else 0


if __name__ == "__main__":
    raise SystemExit(main())
