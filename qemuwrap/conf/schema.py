"""Validation of domain XML against ``domain.rng``, qemuwrap's subset of libvirt's schema.

Used by ``qemuwrap validate``, the launcher and the tests, never by a dry run: lxml
costs tens of milliseconds to import, so it is imported on first use only.  The
document is parsed with a hardened parser (no entities, no DTD, no network) and a
DOCTYPE is refused outright, as the model's own reader does.
"""

from __future__ import annotations

import os
from pathlib import Path

from qemuwrap.conf.xmlreader import MAX_XML_BYTES
from qemuwrap.errors import XMLError

SCHEMA_PATH = Path(__file__).with_name("domain.rng")

#: The compiled schema, built on first use and kept for the life of the process.
_relaxng = None


def _schema():
    """The compiled RelaxNG; compiling costs more than validating, so do it once."""
    global _relaxng
    if _relaxng is None:
        from lxml import etree

        _relaxng = etree.RelaxNG(etree.parse(str(SCHEMA_PATH), _parser()))
    return _relaxng


def _parser():
    """A parser that expands nothing and fetches nothing: the input is untrusted."""
    from lxml import etree

    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           huge_tree=False, dtd_validation=False)


def _error(line: int | None, message: str) -> XMLError:
    """The one-line error the CLI prints: libxml2 messages may span lines."""
    text = " ".join(str(message).split())
    return XMLError(f"schema: line {line or 0}: {text}", line=line)


def validate_bytes(data: bytes, name: str = "<string>") -> None:
    """Raise XMLError unless ``data`` is a domain definition the schema accepts.

    ``name`` only labels lxml's own log entries (it is the document's base URL).
    """
    from lxml import etree

    if len(data) > MAX_XML_BYTES:
        raise XMLError(f"document is larger than {MAX_XML_BYTES} bytes")
    schema = _schema()
    try:
        root = etree.fromstring(data, _parser(), base_url=name)
    except etree.XMLSyntaxError as exc:
        raise _error(exc.lineno, exc.msg) from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        line = data[:data.find(b"<!DOCTYPE")].count(b"\n") + 1
        raise _error(line, "DOCTYPE and entity declarations are not allowed")
    if schema.validate(root):
        return
    log = schema.error_log
    first = log[0]
    # libxml2 reports interleave errors with line 0; a later entry names the element.
    line = first.line or next((e.line for e in log if e.line > 0), root.sourceline)
    raise _error(line, first.message)


def validate_file(path: str | os.PathLike) -> None:
    """Validate a definition file, reading no more than the size limit (plus one byte)."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_XML_BYTES + 1)
    except OSError as exc:
        raise XMLError(f"cannot read: {exc.strerror}") from None
    validate_bytes(data, os.fspath(path))
