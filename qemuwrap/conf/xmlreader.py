"""Safe reading of untrusted domain XML into a small tree that tracks what was consumed.

Parsing uses the C expat parser from the standard library: it is already in the
interpreter, so a dry run does not pay lxml's import cost (lxml is used for the
RelaxNG schema instead, see ``schema.py``).  Hardening: any DOCTYPE is refused
(so no entity declarations, no external DTD, nothing fetched from a network),
undefined entities are errors, and the input size is bounded.

Every ``Node`` remembers which attributes and children the model read; the model
calls :meth:`Node.finish` to refuse anything left over, so an unsupported element
is an error naming it instead of a device silently dropped.
"""

from __future__ import annotations

import os
import pyexpat
import re

from qemuwrap.conf import untrusted
from qemuwrap.errors import XMLError

MAX_XML_BYTES = untrusted.MAX_BYTES  # 1 MiB: a domain definition is a few KiB
#: Nesting depth, as libxml2 (the schema pass) limits it: a definition nests about 5
#: deep, and a megabyte of nested tags would cost seconds of node building.
MAX_DEPTH = 256
#: XML's white space (RelaxNG's ``\s`` and token type): str.strip() would also drop
#: U+00A0 and friends, which the schema does not, so the two would disagree.
XML_SPACE = " \t\n\r"
#: C's strtol(..., 0) spellings, as libvirt reads PCI address parts: ``0x`` hex,
#: a leading ``0`` octal (so ``08`` is an error), else decimal.  No sign, no spaces.
_BASE0 = re.compile(r"0[xX](?P<hex>[0-9a-fA-F]+)|(?P<oct>0[0-7]*)|(?P<dec>[1-9][0-9]*)",
                    re.ASCII)
#: Significant digits worth converting; more is out of range for any field (2**64 has 20),
#: and converting a long digit string costs quadratic time.
_MAX_DIGITS = 20


class Node:
    """One XML element: tag, attributes, text, children, source position.

    A namespaced element's tag is ``"URI local"`` (expat's namespace processing); an
    element in no namespace is just its local name.
    """

    __slots__ = ("tag", "attrib", "children", "text", "line", "start", "end", "parent",
                 "used_attrs", "used_tags", "text_used", "_by_tag", "source", "codec")

    def __init__(self, tag: str, attrib: dict[str, str], line: int, start: int,
                 parent: Node | None):
        self.tag = tag
        self.attrib = attrib
        self.children: list[Node] = []
        self.text = ""
        self.line = line
        self.start = start  # byte offset of '<'
        self.end = start  # byte offset just past the element's last '>'
        self.parent = parent
        self.used_attrs: set[str] = set()
        self.used_tags: set[str] = set()
        self.text_used = False
        self._by_tag: dict[str, list[Node]] | None = None
        self.source: bytes | None = None  # the root's: the bytes the offsets point into
        self.codec = "utf-8"  # the root's: what those bytes are in

    # -- naming --------------------------------------------------------------
    @property
    def name(self) -> str:
        """The tag as a user wrote it: ``qemu:commandline`` for libvirt's namespaces."""
        return display_tag(self.tag)

    @property
    def path(self) -> str:
        parts = []
        node: Node | None = self
        while node is not None:
            same = node.parent.children_named(node.tag) if node.parent else [node]
            index = next(i for i, c in enumerate(same, 1) if c is node)
            parts.append(node.name if len(same) == 1 else f"{node.name}[{index}]")
            node = node.parent
        return "/" + "/".join(reversed(parts))

    def error(self, message: str) -> XMLError:
        """An error about this element: ``line N: /domain/devices/disk[2]: message``.

        Values quoted from the document may hold newlines (``&#10;``) or other
        control characters; they are escaped so the message stays one line."""
        if not message.isprintable():
            message = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
        path = self.path
        return XMLError(f"line {self.line}: {path}: {message}", path, self.line)

    # -- reading ---------------------------------------------------------------
    def children_named(self, tag: str) -> list[Node]:
        return [c for c in self.children if c.tag == tag]

    def get(self, name: str, default: str | None = None, *, choices=None) -> str | None:
        """Attribute ``name``; with ``choices``, any other value is an error."""
        self.used_attrs.add(name)
        value = self.attrib.get(name)
        if value is None:
            return default
        if choices is not None and value not in choices:
            allowed = ", ".join(f"'{c}'" for c in choices)
            raise self.error(f"unsupported {name}='{value}' (supported: {allowed})")
        return value

    def require(self, name: str, *, choices=None) -> str:
        value = self.get(name, choices=choices)
        if value is None:
            raise self.error(f"missing attribute '{name}'")
        return value

    def get_int(self, name: str, default: int | None = None, *, minimum: int = 0,
                maximum: int | None = None, base: int = 10) -> int | None:
        """Integer attribute ``name``: ``base`` 10 (libvirt's default) or 0 (C's
        strtol base 0, which libvirt uses for PCI address parts only)."""
        raw = self.get(name)
        if raw is None:
            return default
        try:
            return to_int(raw, f"attribute '{name}'", minimum, maximum, base)
        except ValueError as exc:
            raise self.error(str(exc)) from None

    def require_int(self, name: str, *, minimum: int = 0, maximum: int | None = None,
                    base: int = 10) -> int:
        """Like :meth:`get_int` for an attribute libvirt requires."""
        value = self.get_int(name, minimum=minimum, maximum=maximum, base=base)
        if value is None:
            raise self.error(f"missing attribute '{name}'")
        return value

    @property
    def stripped_text(self) -> str:
        """The text without surrounding XML white space (what RelaxNG's tokens ignore)."""
        return self.text.strip(XML_SPACE)

    def int_text(self, *, minimum: int = 0, maximum: int | None = None) -> int:
        """The element's text as a decimal integer; surrounding XML white space is fine."""
        self.text_used = True
        try:
            return to_int(self.stripped_text, "value", minimum, maximum)
        except ValueError as exc:
            raise self.error(str(exc)) from None

    def take(self, tag: str) -> list[Node]:
        """All children named ``tag``, marked as consumed."""
        self.used_tags.add(tag)
        if not self.children:
            return []
        if self._by_tag is None:  # index the children once: the model asks for many tags
            self._by_tag = {}
            for child in self.children:
                self._by_tag.setdefault(child.tag, []).append(child)
        return self._by_tag.get(tag, [])

    def take_one(self, tag: str) -> Node | None:
        """The single child named ``tag`` (or None); a repeat is an error."""
        found = self.take(tag)
        if len(found) > 1:
            raise found[1].error(f"element '{display_tag(tag)}' can only appear once")
        return found[0] if found else None

    def flag(self, tag: str) -> bool:
        """An empty marker element such as ``<acpi/>`` or ``<readonly/>``."""
        node = self.take_one(tag)
        if node is not None:
            node.finish()
        return node is not None

    def used_all(self) -> None:
        """Mark everything here as consumed (an element already refused as a whole)."""
        self.used_attrs.update(self.attrib)
        self.used_tags.update(c.tag for c in self.children)
        self.text_used = True

    def leftovers(self) -> list[XMLError]:
        """One error per attribute, child or text that nothing consumed."""
        if (len(self.attrib) <= len(self.used_attrs) and self.used_attrs.issuperset(self.attrib)
                and all(c.tag in self.used_tags for c in self.children)
                and (self.text_used or not self.text or not self.text.strip(XML_SPACE))):
            return []
        out = [self.error(f"unsupported attribute '{display_tag(name)}'")
               for name in self.attrib if name not in self.used_attrs]
        out.extend(child.error(f"unsupported element '{child.name}'")
                   for child in self.children if child.tag not in self.used_tags)
        if not self.text_used and self.text.strip(XML_SPACE):
            out.append(self.error("unexpected text content"))
        return out

    def finish(self, *, text_allowed: bool = False) -> None:
        """Refuse attributes, children or text that nothing consumed (the first of them)."""
        if text_allowed:
            self.text_used = True
        problems = self.leftovers()
        if problems:
            raise problems[0]


#: Prefixes libvirt writes for its own namespaces (for messages).
_PREFIXES = {"http://libvirt.org/schemas/domain/qemu/1.0": "qemu"}


def display_tag(tag: str) -> str:
    """``"URI local"`` as ``prefix:local`` (libvirt's prefix where known)."""
    uri, sep, local = tag.rpartition(" ")
    if not sep:
        return tag
    prefix = _PREFIXES.get(uri)
    return f"{prefix}:{local}" if prefix else f"{{{uri}}}{local}"


def to_int(raw: str, what: str, minimum: int, maximum: int | None, base: int = 10) -> int:
    """libvirt's numbers: ASCII decimal digits, a '-' only where ``minimum`` is
    negative; with ``base`` 0, C's ``0x`` hex and ``0`` octal too.  Never Python's
    int() syntax (``0x``, ``1_0``, ``+1``, spaces, non-ASCII digits) on the raw text.
    Raises ValueError with a one-line reason."""
    sign, digits, radix = "", raw, 10
    if base == 0:
        match = _BASE0.fullmatch(raw)
        if match is None:
            raise ValueError(f"{what} '{_shorten(raw)}' is not an integer")
        digits, radix = next((match[group], r) for group, r
                             in (("hex", 16), ("oct", 8), ("dec", 10))
                             if match[group] is not None)
    elif base == 8:  # file modes: strtol base 8 ('644' is 0644)
        if not (digits.isascii() and digits.isdigit() and "8" not in digits
                and "9" not in digits):
            raise ValueError(f"{what} '{_shorten(raw)}' is not an octal number")
        radix = 8
    else:
        if raw[:1] == "-" and minimum < 0:
            sign, digits = "-", raw[1:]
        if not (digits.isascii() and digits.isdigit()):
            raise ValueError(f"{what} '{_shorten(raw)}' is not an integer")
    if len(digits) > _MAX_DIGITS:
        digits = digits.lstrip("0") or "0"
        if len(digits) > _MAX_DIGITS:
            raise ValueError(f"{what} '{_shorten(raw)}' is out of range "
                             f"({_range(minimum, maximum)})")
    value = int(sign + digits, radix)
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(f"{what} {value} is out of range ({_range(minimum, maximum)})")
    return value


def _range(minimum: int, maximum: int | None) -> str:
    return f"{minimum} to {maximum}" if maximum is not None else f"{minimum} or more"


def _shorten(raw: str, limit: int = 40) -> str:
    """A quoted value cut to a readable length: the input may be a megabyte of digits."""
    return raw if len(raw) <= limit else raw[:limit] + "..."


def parse_bytes(data: bytes) -> Node:
    """Parse ``data`` (the file's own bytes, in any encoding it declares) into a Node
    tree whose ``start``/``end`` are offsets into ``data``; raises XMLError on anything
    unsafe, malformed or in an encoding that cannot be read."""
    doc = untrusted.decode(data)
    root = _parse_utf8(doc.utf8)
    if not doc.identity:
        _to_file_offsets(root, doc)
    root.source, root.codec = data, doc.codec
    return root


def _to_file_offsets(root: Node, doc: untrusted.Document) -> None:
    """Parser offsets (into the UTF-8 the parser read) become offsets into the file."""
    nodes, stack = [], [root]
    while stack:  # no recursion: nesting depth is the document's choice
        node = stack.pop()
        nodes.append(node)
        stack.extend(node.children)
    where = doc.file_offsets([n.start for n in nodes] + [n.end for n in nodes])
    for node in nodes:
        node.start, node.end = where[node.start], where[node.end]


def _parse_utf8(data: bytes) -> Node:
    """expat over UTF-8 bytes; the document's own encoding declaration is overridden
    (the bytes were decoded from it already)."""
    parser = pyexpat.ParserCreate("UTF-8", namespace_separator=" ")
    parser.buffer_text = True
    parser.SetParamEntityParsing(pyexpat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[Node] = []
    root: list[Node] = []

    def refuse_doctype(*_args):
        raise XMLError(f"line {parser.CurrentLineNumber}: DOCTYPE and entity declarations "
                       "are not allowed")

    def start(tag, attrs):
        if len(stack) >= MAX_DEPTH:
            raise XMLError(f"line {parser.CurrentLineNumber}: elements nested deeper than "
                           f"{MAX_DEPTH}")
        parent = stack[-1] if stack else None
        node = Node(tag, attrs, parser.CurrentLineNumber, parser.CurrentByteIndex, parent)
        (parent.children if parent is not None else root).append(node)
        stack.append(node)

    def end(_tag):
        node = stack.pop()
        idx = parser.CurrentByteIndex
        # expat points at "</tag>" for an end tag, and just past "<tag/>" for an empty one
        # (which may itself be followed by its parent's "</parent>").
        empty = not node.children and not node.text and data[idx - 2:idx] == b"/>"
        node.end = data.index(b">", idx) + 1 if not empty and data.startswith(b"</", idx) \
            else idx

    def chars(text):
        stack[-1].text += text

    parser.StartDoctypeDeclHandler = refuse_doctype
    parser.EntityDeclHandler = refuse_doctype
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    try:
        parser.Parse(data, True)
    except pyexpat.ExpatError as exc:
        raise XMLError(f"malformed XML: {pyexpat.ErrorString(exc.code)} "
                       f"(line {exc.lineno}, column {exc.offset})") from None
    return root[0]


def read_file(path: str | os.PathLike, *, follow_symlinks: bool = True) \
        -> tuple[bytes, Node]:
    """Read and parse a definition file: its own bytes (for in-place edits) and the tree.
    Only a regular file is read, and no more than the size limit; ``follow_symlinks=False``
    refuses a symbolic link (files in a state directory)."""
    data = untrusted.read_bytes(path, limit=MAX_XML_BYTES, follow_symlinks=follow_symlinks)
    return data, parse_bytes(data)
