"""Validation of domain XML against ``domain.rng``, qemuwrap's subset of libvirt's schema.

Used by ``qemuwrap validate``, the launcher and the tests, never by a dry run: lxml
costs tens of milliseconds to import, so it is imported on first use only.  The
document is parsed with a hardened parser (no entities, no DTD, no network) and a
DOCTYPE is refused outright, as the model's own reader does.
"""

from __future__ import annotations

import os
from pathlib import Path

from qemuwrap.conf import untrusted
from qemuwrap.conf.xmlreader import MAX_XML_BYTES
from qemuwrap.errors import XMLError

SCHEMA_PATH = Path(__file__).with_name("domain.rng")
_RNG = "{http://relaxng.org/ns/structure/1.0}"

#: The compiled schema, built on first use and kept for the life of the process.
_relaxng = None
#: For error messages only: element name -> schema whose start is that element's define.
_focused: dict = {}
#: libxml2's generic messages, best first; any other kind names the attribute, value or
#: element at fault and is preferred.
_VAGUE = ("RELAXNG_ERR_INTEREXTRA", "RELAXNG_ERR_ATTRVALID", "RELAXNG_ERR_CONTENTVALID",
          "RELAXNG_ERR_INTERSEQ", "RELAXNG_ERR_TYPECMP", "RELAXNG_ERR_NOSTATE")


def _schema():
    """The compiled RelaxNG; compiling costs more than validating, so do it once."""
    global _relaxng
    if _relaxng is None:
        from lxml import etree

        _relaxng = etree.RelaxNG(etree.parse(str(SCHEMA_PATH), _parser()))
    return _relaxng


def _focused_schema(tag: str):
    """The schema for ``<tag>`` alone, if one define is exactly that element (else None)."""
    if tag not in _focused:
        from lxml import etree

        grammar = etree.parse(str(SCHEMA_PATH), _parser())
        names = [d.get("name") for d in grammar.iterfind(f"{_RNG}define")
                 if len(d) == 1 and d[0].tag == f"{_RNG}element" and d[0].get("name") == tag]
        if len(names) == 1:
            start = grammar.find(f"{_RNG}start")
            assert start is not None and names[0] is not None  # the generated schema's shape
            start[0].set("name", names[0])
            _focused[tag] = etree.RelaxNG(grammar)
        else:
            _focused[tag] = None
    return _focused[tag]


def _parser(encoding: str | None = None):
    """A parser that expands nothing and fetches nothing: the input is untrusted."""
    from lxml import etree

    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           huge_tree=False, dtd_validation=False, encoding=encoding)


def _error(line: int | None, message: str) -> XMLError:
    """The one-line error the CLI prints: libxml2 messages may span lines."""
    text = " ".join(str(message).split())
    return XMLError(f"schema: line {line or 0}: {text}", line=line)


def validate_bytes(data: bytes, name: str = "<string>") -> None:
    """Raise XMLError unless ``data`` is a domain definition the schema accepts.

    ``name`` only labels lxml's own log entries (it is the document's base URL).
    """
    from lxml import etree

    # The model's decoding (any declared encoding, or a one-line refusal); libxml2 then
    # reads the same UTF-8 text the model parsed.
    utf8 = untrusted.decode(data).utf8
    schema = _schema()
    try:
        root = etree.fromstring(utf8, _parser(encoding="utf-8"), base_url=name)
    except etree.XMLSyntaxError as exc:
        raise _error(exc.lineno, exc.msg) from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        line = utf8[:max(utf8.find(b"<!DOCTYPE"), 0)].count(b"\n") + 1
        raise _error(line, "DOCTYPE and entity declarations are not allowed")
    if schema.validate(root):
        return
    raise _error(*_explain(schema, root))


def _explain(validator, element) -> tuple[int, str]:
    """Line and message for ``element``, which ``validator`` has just refused.

    When a child inside an <interleave> fails, libxml2 drops the child's own errors
    and says only "Extra element X in interleave"; validating that child alone
    against its define brings them back.  Of the messages left, the most specific
    is shown rather than libxml2's first, which is often a generic one.
    """
    log = list(validator.error_log)
    culprit = element
    extra = [i for i, e in enumerate(log) if e.type_name == "RELAXNG_ERR_INTEREXTRA"]
    if extra:
        # libxml2 logs inner failures first: the last one is about a child of ``element``.
        path = next((e.path for e in log[extra[-1]:] if e.path), None)
        culprit = _find(element, path)
        focused = _focused_schema(culprit.tag) if culprit is not element else None
        if focused is not None and not focused.validate(culprit):
            return _explain(focused, culprit)
    entry = min(log, key=lambda e: _VAGUE.index(e.type_name) + 1 if e.type_name in _VAGUE
                else 0)
    return entry.line or culprit.sourceline or 0, entry.message


def _find(element, path: str | None):
    """The element at libxml2's ``path``, which starts at ``element`` itself."""
    rest = path.strip("/").partition("/")[2] if path else ""
    if not rest:
        return element
    try:
        found = element.xpath(rest)
    except Exception:  # an unexpected path from libxml2 only costs precision
        return element
    return found[0] if found else element


def validate_file(path: str | os.PathLike) -> None:
    """Validate a definition file, read as the model reads it (a regular file only, no
    more than the size limit)."""
    validate_bytes(untrusted.read_bytes(path, limit=MAX_XML_BYTES), os.fspath(path))
