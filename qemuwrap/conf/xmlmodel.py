"""Declarative XML <-> model mapping: one line per attribute or child element.

libvirt's domain XML has about a thousand attributes and elements an x86 guest may use.
Writing a parse, a format and a schema rule by hand for each is how they drift apart, so
(as virtinst's ``XMLProperty`` does) each model class declares its XML once::

    class DiskTarget(Element):
        TAG = "target"
        dev: str = attr(Str(), required=True)
        bus: DiskBus | None = attr(DiskBus)

and :meth:`Element.from_node` reads it, :meth:`Element.format` writes it back, and
``schema.py`` derives the RelaxNG rules from the same declarations.  Value sets are
``Enum`` classes (one per set, used by the parser, the schema and the builders' tables).

Reading collects every problem instead of stopping at the first: each field that fails,
each attribute or element nothing consumed, and each failed ``check()`` is recorded in
the :class:`ParseContext`, and the parse goes on, so a user sees all of them in one run.
"""

from __future__ import annotations

import enum
import functools
import importlib
import re
import sys
from collections.abc import Callable, Iterator

from qemuwrap.conf.xmlreader import XML_SPACE, Node, to_int
from qemuwrap.conf.xmlwriter import Writer
from qemuwrap.errors import XMLError
from qemuwrap.hints import TYPE_CHECKING, Generic, TypeVar, cast, overload

if TYPE_CHECKING:
    from typing import Any, ClassVar, Literal

T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)
El = TypeVar("El", bound="Element")

#: Namespaces libvirt's domain XML uses, by the prefix libvirt writes.
QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
PREFIXES = {QEMU_NS: "qemu"}


class KindError(ValueError):
    """A value that does not fit its kind; the text is the reason (one line).
    ``declared``: False for a rule the schema cannot state."""

    def __init__(self, message: str, declared: bool = True):
        super().__init__(message)
        self.declared = declared


# --------------------------------------------------------------------------- kinds
class Kind(Generic[T]):
    """How one value is spelled in XML."""

    #: Arbitrary text a user chooses (names, paths, free strings): the property tests
    #: feed such fields hostile text and check it stays one value in QEMU's options.
    free_text: ClassVar[bool] = False

    def parse(self, raw: str, name: str) -> T:
        """The value of ``raw``; ``name`` is the attribute (or "value") for messages."""
        raise NotImplementedError

    def format(self, value: T) -> str:
        return str(value)

    def rng(self, text: bool = False) -> str:
        """The RelaxNG pattern for this kind (see rng.py); ``text``: as element content,
        where the model ignores XML white space around a value."""
        return "<text/>"


class Str(Kind[str]):
    """Text; ``pattern`` (a regex) restricts it, ``strip`` drops XML white space around."""

    free_text = True

    def __init__(self, pattern: str | None = None, *, strip: bool = True,
                 empty: bool = True, what: str = "value"):
        self.pattern = pattern
        self.strip = strip
        self.empty = empty
        self.what = what

    @functools.cached_property
    def regex(self) -> re.Pattern[str] | None:
        """``pattern`` compiled when a value is first read: compiling the model's ~100
        patterns cost more than the rest of its import."""
        return re.compile(self.pattern) if self.pattern else None

    def parse(self, raw: str, name: str) -> str:
        value = raw.strip(XML_SPACE) if self.strip else raw
        if not self.empty and not value:
            raise KindError(f"{_what(name)} must not be empty")
        regex = self.regex
        if regex is not None and not regex.fullmatch(value):
            raise KindError(f"{_what(name)} '{_short(value)}' is not a valid {self.what}")
        return value

    def rng(self, text: bool = False) -> str:
        if self.pattern:
            return _pattern(self.pattern, text and self.strip)
        if not self.empty:
            return _pattern(r"(.|\n)*\S(.|\n)*", False)
        return "<text/>"


class Token(Str):
    """A short name of letters, digits and ``._:-`` (an alias, a tag, a network name)."""

    free_text = False

    def __init__(self, pattern: str = r"[A-Za-z0-9_.:+\-]+", what: str = "name"):
        super().__init__(pattern, what=what)


class Path(Str):
    """An absolute file system path (what a disk, kernel or socket names)."""

    def __init__(self) -> None:
        super().__init__(what="path")

    def parse(self, raw: str, name: str) -> str:
        value = raw.strip(XML_SPACE)
        if not value.startswith("/"):
            raise KindError(f"{_what(name)} '{_short(value)}' must be an absolute path")
        if "\0" in value:
            raise KindError(f"{_what(name)} must not contain NUL")
        return value

    def rng(self, text: bool = False) -> str:
        return _pattern("/.*", text)


class Int(Kind[int]):
    """An integer as libvirt reads it: decimal (``base`` 0: C's strtol, 0x hex, 0 octal;
    8: octal, as file modes)."""

    def __init__(self, minimum: int = 0, maximum: int | None = None, *, base: int = 10,
                 hex_format: int | None = None, octal_format: int | None = None):
        self.minimum = minimum
        self.maximum = maximum
        self.base = base
        self.hex_format = hex_format  # format as 0x%0Nx (PCI addresses)
        self.octal_format = octal_format  # format as %0No (file modes)

    def parse(self, raw: str, name: str) -> int:
        try:
            return to_int(raw, _what(name), self.minimum, self.maximum, self.base)
        except ValueError as exc:
            if self.base in (0, 8) and "out of range" in str(exc):
                raise KindError(str(exc), False) from None  # a range rng cannot state
            raise

    def format(self, value: int) -> str:
        if self.hex_format is not None:
            return f"0x{value:0{self.hex_format}x}"
        if self.octal_format is not None:
            return f"{value:0{self.octal_format}o}"
        return str(value)

    def rng(self, text: bool = False) -> str:
        if self.base == 0:  # strtol's spellings; the range is the model's to check
            return _pattern("(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)", text)
        if self.base == 8:
            return _pattern("[0-7]+", text)
        digits = "-?[0-9]+" if self.minimum < 0 else "[0-9]+"
        ws = "\\s*" if text else ""
        params = f'<param name="pattern">{ws}{digits}{ws}</param>'
        params += f'<param name="minInclusive">{self.minimum}</param>'
        if self.maximum is not None:
            params += f'<param name="maxInclusive">{self.maximum}</param>'
        return f'<data type="integer">{params}</data>'


class Choice(Kind[E]):
    """One member of an Enum, spelled as its value."""

    def __init__(self, enum_cls: type[E]):
        self.enum = enum_cls

    @functools.cached_property
    def lookup(self) -> dict[str, E]:
        """Members by spelling, made when a value is first read or written."""
        return {str(m.value): m for m in self.enum}

    def parse(self, raw: str, name: str) -> E:
        member = self.lookup.get(raw)
        if member is None:
            allowed = ", ".join(f"'{v}'" for v in self.lookup)
            shown = f"{name}='{_short(raw)}'" if name != "value" else f"value '{_short(raw)}'"
            raise KindError(f"unsupported {shown} (supported: {allowed})")
        return member

    def format(self, value: E) -> str:
        return str(value.value)

    def rng(self, text: bool = False) -> str:
        typ = "" if text else ' type="string"'  # text: token, white space collapsed
        return "<choice>" + "".join(f"<value{typ}>{_xml(v)}</value>"
                                    for v in self.lookup) + "</choice>"


class Bool(Kind[bool]):
    """A yes/no (or on/off) switch."""

    def __init__(self, true: str = "yes", false: str = "no"):
        self.true = true
        self.false = false

    def parse(self, raw: str, name: str) -> bool:
        if raw == self.true:
            return True
        if raw == self.false:
            return False
        raise KindError(f"unsupported {name}='{_short(raw)}' "
                        f"(supported: '{self.true}', '{self.false}')")

    def format(self, value: bool) -> str:
        return self.true if value else self.false

    def rng(self, text: bool = False) -> str:
        typ = "" if text else ' type="string"'
        return (f"<choice><value{typ}>{self.true}</value><value{typ}>{self.false}</value>"
                "</choice>")


YES_NO = Bool()
ON_OFF = Bool("on", "off")


def _what(name: str) -> str:
    return "value" if name == "value" else f"attribute '{name}'"


def _short(raw: str, limit: int = 40) -> str:
    return raw if len(raw) <= limit else raw[:limit] + "..."


def _pattern(regex: str, text: bool) -> str:
    """A string pattern; as element text, with the XML white space the model strips."""
    if text:
        regex = f"\\s*({regex})\\s*"
    return f'<data type="string"><param name="pattern">{_xml(regex)}</param></data>'


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _kind(kind: Kind[T] | type[E]) -> Kind[Any]:
    if isinstance(kind, Kind):
        return kind
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return Choice(kind)
    raise TypeError(f"not a kind: {kind!r}")


# --------------------------------------------------------------------------- fields
class ParseContext:
    """What one parse shares: the problems found so far, the random source for values
    the model generates (uuid, MACs), and the document's bytes (for raw passthrough)."""

    def __init__(self, random: Callable[[int], bytes], data: bytes = b"",
                 codec: str = "utf-8"):
        self.errors: list[XMLError] = []
        self.random = random
        self.data = data  # the file's own bytes (Node offsets point into them)
        self.codec = codec

    def record(self, error: XMLError) -> None:
        self.errors.append(error)


class Field:
    """One declared piece of an element's XML; subclasses say how it is read and written."""

    name: str = ""
    virtual = False
    #: The value when absent; a callable is a factory (a fresh list per object).
    default: Any = None
    is_attr = False
    is_text = False

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def initial(self) -> Any:
        return self.default() if callable(self.default) else self.default

    def read(self, node: Node, ctx: ParseContext) -> Any:
        raise NotImplementedError

    def assign(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.name] = value

    def present(self, value: Any) -> bool:
        return value is not None

    def write(self, value: Any, w: Writer) -> None:
        raise NotImplementedError

    def rng(self) -> str:
        raise NotImplementedError


class AttrField(Field):
    is_attr = True

    def __init__(self, kind: Kind[Any], xml: str | None, default: Any, required: bool):
        self.kind = kind
        self.xml = xml
        self.default = default
        self.required = required

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        if self.xml is None:
            self.xml = name

    def read(self, node: Node, ctx: ParseContext) -> Any:
        xml = cast(str, self.xml)
        node.used_attrs.add(xml)
        raw = node.attrib.get(xml)
        if raw is None:
            if self.required:
                raise node.error(f"missing attribute '{xml}'")
            return self.initial()
        try:
            return self.kind.parse(raw, xml)
        except ValueError as exc:
            err = node.error(str(exc))
            err.declared = getattr(exc, "declared", True)
            raise err from None

    def rng(self) -> str:
        body = f'<attribute name="{self.xml}">{self.kind.rng()}</attribute>'
        return body if self.required else f"<optional>{body}</optional>"


class TextField(Field):
    """The element's own text content (``<vcpu>2</vcpu>``)."""

    is_text = True

    def __init__(self, kind: Kind[Any], default: Any, required: bool):
        self.kind = kind
        self.default = default
        self.required = required

    def read(self, node: Node, ctx: ParseContext) -> Any:
        node.text_used = True
        raw = node.text
        if not raw.strip(XML_SPACE) and not (isinstance(self.kind, Str) and not self.kind.strip
                                             and raw):
            if self.required:
                raise node.error("missing value")
            return self.initial()
        if not isinstance(self.kind, Str):
            raw = raw.strip(XML_SPACE)  # <vcpu> 2 </vcpu>: numbers and names as tokens
        try:
            return self.kind.parse(raw, "value")
        except ValueError as exc:
            raise node.error(str(exc)) from None

    def rng(self) -> str:
        body = self.kind.rng(text=True)
        return body if self.required else f"<optional>{body}</optional>"


class ChildField(Field):
    """One child element modelled by an Element class (``many``: a list of them).

    The class may be named lazily, as ``"module:Class"`` (a leading dot: relative to the
    declaring class's package) with the element's ``tag`` (its :meth:`Element.key`): its
    module is imported the first time an element of that tag is read, or the class is
    asked for (schema, tests), so a definition without such elements never loads it."""

    def __init__(self, cls: type[Element] | Callable[[], type[Element]] | str, many: bool,
                 required: bool, tag: str | None = None):
        if isinstance(cls, str) and tag is None:
            raise TypeError(f"{cls}: a class named by string needs its tag")
        self._cls = cls
        self._package: str | None = None
        self._tag = tag
        self.many = many
        self.required = required
        self.default = list if many else None

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        if isinstance(self._cls, str):  # relative to the package of the declaring class
            self._package = sys.modules[owner.__module__].__package__

    @property
    def cls(self) -> type[Element]:
        ref = self._cls
        if not (isinstance(ref, type) and issubclass(ref, Element)):
            if isinstance(ref, str):
                module, _, name = ref.partition(":")
                ref = getattr(importlib.import_module(module, self._package), name)
            else:
                ref = cast("Callable[[], type[Element]]", ref)()  # forward reference
            cls = cast("type[Element]", ref)
            if self._tag is not None and cls.key() != self._tag:
                raise TypeError(f"{self.name}: {cls.__name__} reads <{cls.key()}>, "
                                f"not <{self._tag}>")
            self._cls = cls
        return cast("type[Element]", self._cls)

    @property
    def key(self) -> str:
        return self._tag if self._tag is not None else self.cls.key()

    def read(self, node: Node, ctx: ParseContext) -> Any:
        found = node.take(self.key)
        if not found and not self.required:
            return [] if self.many else None
        cls = self.cls
        if self.many:
            return [cls.from_node(child, ctx) for child in found]
        if not found:
            raise node.error(f"missing <{cls.TAG}>")
        for extra in found[1:]:
            ctx.record(extra.error(f"element '{cls.TAG}' can only appear once"))
        return cls.from_node(found[0], ctx)

    def present(self, value: Any) -> bool:
        return bool(value) if self.many else value is not None

    def write(self, value: Any, w: Writer) -> None:
        for item in (value if self.many else (value,)):
            item.format(w)

    def rng(self) -> str:
        ref = f'<ref name="{self.cls.rng_name()}"/>'
        if self.many:
            return f"<zeroOrMore>{ref}</zeroOrMore>"
        return ref if self.required else f"<optional>{ref}</optional>"


class TextChildField(Field):
    """A child element that holds only text: ``<name>demo</name>``."""

    def __init__(self, tag: str, kind: Kind[Any], default: Any, required: bool):
        self.tag = tag
        self.key = tag
        self.kind = kind
        self.default = default
        self.required = required

    def read(self, node: Node, ctx: ParseContext) -> Any:
        found = node.take(self.tag)
        if not found:
            if self.required:
                raise node.error(f"missing <{self.tag}>")
            return self.initial()
        for extra in found[1:]:
            ctx.record(extra.error(f"element '{self.tag}' can only appear once"))
        child = found[0]
        child.text_used = True
        ctx.errors.extend(child.leftovers())
        raw = child.text if isinstance(self.kind, Str) else child.text.strip(XML_SPACE)
        try:
            return self.kind.parse(raw, "value")
        except ValueError as exc:
            raise child.error(str(exc)) from None

    def write(self, value: Any, w: Writer) -> None:
        w.text(self.tag, self.kind.format(value))

    def rng(self) -> str:
        body = f'<element name="{self.tag}">{self.kind.rng(text=True)}</element>'
        return body if self.required else f"<optional>{body}</optional>"


class FlagField(Field):
    """An empty marker element: ``<readonly/>`` present or not."""

    default = False

    def __init__(self, tag: str):
        self.tag = tag
        self.key = tag

    def read(self, node: Node, ctx: ParseContext) -> bool:
        found = node.take(self.tag)
        for child in found:
            ctx.errors.extend(child.leftovers())
        for extra in found[1:]:
            ctx.record(extra.error(f"element '{self.tag}' can only appear once"))
        return bool(found)

    def present(self, value: Any) -> bool:
        return bool(value)

    def write(self, value: Any, w: Writer) -> None:
        w.empty(self.tag)

    def rng(self) -> str:
        return f'<optional><element name="{self.tag}"><empty/></element></optional>'


class RawField(Field):
    """Children kept byte for byte and never read (``<metadata>``'s foreign elements)."""

    default = list

    def read(self, node: Node, ctx: ParseContext) -> list[str]:
        out = []
        for child in node.children:
            node.used_tags.add(child.tag)
            raw = ctx.data[child.start:child.end].decode(ctx.codec, "replace")
            out.append(_with_namespace(raw, child.tag))
        return out

    def present(self, value: Any) -> bool:
        return bool(value)

    def write(self, value: Any, w: Writer) -> None:
        for raw in value:
            w.raw(raw)

    def rng(self) -> str:
        return '<zeroOrMore><ref name="anyElement"/></zeroOrMore>'


def _with_namespace(raw: str, tag: str) -> str:
    """A namespaced element cut out of its document must declare its prefix itself."""
    uri = tag.rpartition(" ")[0]
    start = re.match(r"<([A-Za-z_][\w.-]*):[\w.-]+", raw)
    if not uri or start is None:
        return raw
    prefix = start.group(1)
    if re.search(rf"xmlns:{re.escape(prefix)}\s*=", raw[:raw.find(">")]):
        return raw
    return f"{raw[:start.end()]} xmlns:{prefix}='{uri}'{raw[start.end():]}"


class CustomField(Field):
    """Read and write by hand, for the few rules that are not one value of one kind."""

    def __init__(self, read: Callable[[Node, ParseContext], Any],
                 write: Callable[[Any, Writer], None], default: Any, rng: str,
                 present: Callable[[Any], bool] | None,
                 store: Callable[[Any, Any], None] | None):
        self._read = read
        self._write = write
        self.default = default
        self._rng = rng
        self._present = present
        self._store = store
        #: Stored by ``store`` into other attributes, not under its own name.
        self.virtual = store is not None

    def assign(self, obj: Any, value: Any) -> None:
        if self._store is not None:
            self._store(obj, value)
        else:
            obj.__dict__[self.name] = value

    def read(self, node: Node, ctx: ParseContext) -> Any:
        return self._read(node, ctx)

    def present(self, value: Any) -> bool:
        return self._present(value) if self._present else value is not None

    def write(self, value: Any, w: Writer) -> None:
        self._write(value, w)

    def rng(self) -> str:
        return self._rng


class InternalField(Field):
    """State of the model that is not XML (e.g. "this MAC was generated")."""

    def __init__(self, default: Any):
        self.default = default

    def read(self, node: Node, ctx: ParseContext) -> Any:
        return self.initial()

    def assign(self, obj: Any, value: Any) -> None:
        obj.__dict__.setdefault(self.name, value)  # a custom field may have set it already


# The declaration helpers: typed so that ``x: int | None = attr(Int())`` checks in mypy
# (like dataclasses.field, they return the field object disguised as the value).
@overload
def attr(kind: Kind[T] | type[T], *, xml: str | None = None,
         required: Literal[True]) -> T: ...
@overload
def attr(kind: Kind[T] | type[T], *, xml: str | None = None, required: bool = False,
         default: T) -> T: ...
@overload
def attr(kind: Kind[T] | type[T], *, xml: str | None = None,
         required: Literal[False] = False) -> T | None: ...
def attr(kind: Any, *, xml: str | None = None, required: bool = False,
         default: Any = None) -> Any:
    """An attribute of this element."""
    return AttrField(_kind(kind), xml, default, required)


@overload
def text(kind: Kind[T] | type[T], *, required: Literal[True]) -> T: ...
@overload
def text(kind: Kind[T] | type[T], *, required: bool = False, default: T) -> T: ...
@overload
def text(kind: Kind[T] | type[T], *, required: Literal[False] = False) -> T | None: ...
def text(kind: Any, *, required: bool = False, default: Any = None) -> Any:
    """The element's own text."""
    return TextField(_kind(kind), default, required)


@overload
def child(cls: str, *, tag: str, required: bool = False) -> Any: ...
@overload
def child(cls: type[El] | Callable[[], type[El]], *, required: Literal[True]) -> El: ...
@overload
def child(cls: type[El] | Callable[[], type[El]],
          *, required: Literal[False] = False) -> El | None: ...
def child(cls: Any, *, tag: str | None = None, required: bool = False) -> Any:
    """A child element modelled by ``cls`` (None when absent); ``cls`` may be named
    ``"module:Class"`` with its ``tag``, loaded when first needed (see ChildField)."""
    return ChildField(cls, False, required, tag)


@overload
def children(cls: str, *, tag: str) -> Any: ...
@overload
def children(cls: type[El] | Callable[[], type[El]]) -> list[El]: ...
def children(cls: Any, *, tag: str | None = None) -> Any:
    """Every child element modelled by ``cls``, in document order (``cls`` and ``tag``
    as for :func:`child`)."""
    return ChildField(cls, True, False, tag)


@overload
def text_child(tag: str, kind: Kind[T] | type[T], *, required: Literal[True]) -> T: ...
@overload
def text_child(tag: str, kind: Kind[T] | type[T], *, required: bool = False,
               default: T) -> T: ...
@overload
def text_child(tag: str, kind: Kind[T] | type[T], *,
               required: Literal[False] = False) -> T | None: ...
def text_child(tag: str, kind: Any, *, required: bool = False, default: Any = None) -> Any:
    """A child element holding only text."""
    return TextChildField(tag, _kind(kind), default, required)


def flag(tag: str) -> bool:
    """An empty child element that is there or not."""
    return cast(bool, FlagField(tag))


def raw_children() -> list[str]:
    """Foreign child elements, kept as written."""
    return cast("list[str]", RawField())


def custom(read: Callable[[Node, ParseContext], Any], write: Callable[[Any, Writer], None],
           *, default: Any = None, rng: str = "", present: Callable[[Any], bool] | None = None,
           store: Callable[[Any, Any], None] | None = None) -> Any:
    """A field read and written by hand; ``store`` puts the value read into other
    attributes (the field then has no attribute of its own)."""
    return CustomField(read, write, default, rng, present, store)


def internal(default: Any = None) -> Any:
    """Model state that is neither read from nor written to XML."""
    return InternalField(default)


# --------------------------------------------------------------------------- elements
class Element:
    """A libvirt XML element: its fields are declared as class attributes (see above)."""

    TAG: ClassVar[str] = ""
    NS: ClassVar[str | None] = None
    #: For an element whose variants differ by one attribute (``<address type=...>``):
    #: the attribute, and on each variant class the value that selects it.
    VARIANT_ATTR: ClassVar[str | None] = None
    VARIANT: ClassVar[str | None] = None
    _variants: ClassVar[dict[str, type[Element]]]
    _fields: ClassVar[tuple[Field, ...]] = ()
    _trailing: ClassVar[tuple[Field, ...]] = ()
    _attrs: ClassVar[tuple[AttrField, ...]] = ()
    _text: ClassVar[TextField | None] = None
    _body: ClassVar[tuple[Field, ...]] = ()

    node: Node | None

    if TYPE_CHECKING:  # the real __init__ is generated per class from its fields
        def __init__(self, **fields: Any) -> None: ...

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = tuple(v for v in cls.__dict__.values() if isinstance(v, Field))
        names = {f.name for f in own}
        clash = names & _RESERVED
        if clash:  # a field named "format" would hide Element.format, and so on
            raise TypeError(f"{cls.__name__}: field names {sorted(clash)} are Element "
                            "methods; name the field otherwise and pass xml=")
        trail = tuple(f for f in cls._trailing if f.name not in names)
        lead = tuple(f for f in cls._fields if f.name not in names and f not in trail)
        if cls.__dict__.get("FIELDS_LAST"):  # a base whose fields follow its subclasses'
            own, trail = (), own + trail
        fields = lead + own + trail
        cls._fields = fields
        cls._trailing = trail
        cls._attrs = tuple(f for f in fields if isinstance(f, AttrField))
        texts = [f for f in fields if isinstance(f, TextField)]
        cls._text = texts[0] if texts else None
        cls._body = tuple(f for f in fields if not f.is_attr and not f.is_text
                          and not isinstance(f, InternalField) and not f.virtual)
        if cls.VARIANT_ATTR and "_variants" not in cls.__dict__ and cls.VARIANT is None:
            cls._variants = {}
        if cls.VARIANT is not None:
            cls._variants[cls.VARIANT] = cls
        cls.__init__ = _lazy_init  # type: ignore[method-assign]

    # -- naming ----------------------------------------------------------------------
    @classmethod
    def key(cls) -> str:
        """How the reader names this element: ``TAG`` or ``"NS TAG"``."""
        return f"{cls.NS} {cls.TAG}" if cls.NS else cls.TAG

    @classmethod
    def rng_name(cls) -> str:
        return f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__qualname__}"

    # -- reading -----------------------------------------------------------------------
    @classmethod
    def _index(cls) -> tuple[dict[str, AttrField], dict[str, Field], tuple[Field, ...],
                             tuple[Field, ...],
                             tuple[dict[str, Any], list[tuple[str, Callable[[], Any]]]]]:
        """What ``from_node`` needs, worked out once per class: fields by attribute name
        and by child key, the ones always read, the required ones, the defaults."""
        idx = cls.__dict__.get("_idx")
        if idx is None:
            attrs = {cast(str, f.xml): f for f in cls._attrs}
            keyed: dict[str, Field] = {}
            always: list[Field] = []
            for f in cls._fields:
                if isinstance(f, AttrField) or isinstance(f, InternalField):
                    continue
                key = f.key if isinstance(f, ChildField | TextChildField | FlagField) else None
                if key is None:
                    always.append(f)
                else:
                    keyed[key] = f
            required = tuple(f for f in (*cls._attrs, *keyed.values())
                             if getattr(f, "required", False))
            static = {f.name: f.default for f in cls._fields
                      if not f.virtual and not callable(f.default)}
            factories = [(f.name, f.default) for f in cls._fields
                         if not f.virtual and callable(f.default)]
            idx = (attrs, keyed, tuple(always), required, (static, factories))
            cls._idx = idx  # type: ignore[attr-defined]
        return idx

    @classmethod
    def from_node(cls: type[El], node: Node, ctx: ParseContext) -> El:
        """Read ``node``; problems go to ``ctx`` and the fields that failed keep defaults."""
        target: type[El] = cls
        if cls.VARIANT_ATTR and cls.VARIANT is None:
            kind = node.attrib.get(cls.VARIANT_ATTR)
            node.used_attrs.add(cls.VARIANT_ATTR)
            variant = cls._variants.get(kind) if kind is not None else None
            if variant is None:
                allowed = ", ".join(f"'{v}'" for v in cls._variants)
                what = (f"unsupported {cls.VARIANT_ATTR}='{_short(kind)}'" if kind is not None
                        else f"missing attribute '{cls.VARIANT_ATTR}'")
                ctx.record(node.error(f"{what} (supported: {allowed})"))
                obj = cls.__new__(cls)
                obj.__dict__.update((f.name, f.initial()) for f in cls._fields)
                obj.node = node
                node.used_all()
                return obj
            target = cast("type[El]", variant)
        elif cls.VARIANT_ATTR:
            node.used_attrs.add(cls.VARIANT_ATTR)
        obj = target.__new__(target)
        values = obj.__dict__
        before = len(ctx.errors)
        attrs, keyed, always, required, (static, factories) = target._index()
        values.update(static)
        for name, make in factories:
            values[name] = make()
        values["node"] = node
        # Only what the element has is read: most of the fields a class declares are absent
        # from a given element (a <devices> lists ~30 kinds and holds a handful).
        todo: list[Any] = [attrs[name] for name in node.attrib if name in attrs]
        tags = {c.tag for c in node.children}
        todo.extend(f for key, f in keyed.items() if key in tags)
        todo.extend(f for f in required if (getattr(f, "xml", None) not in node.attrib
                                            if f.is_attr else getattr(f, "key", None)
                                            not in tags))
        todo.extend(always)
        for f in todo:
            try:
                value = f.read(node, ctx)
            except XMLError as exc:
                ctx.record(exc)
                value = f.initial()
            f.assign(obj, value)
        ctx.errors.extend(node.leftovers())
        if len(ctx.errors) == before:
            try:
                obj.check(ctx)
            except XMLError as exc:
                ctx.record(exc)
            for problem in ctx.errors[before:]:
                problem.declared = False  # a rule across fields: not one a schema states
        return obj

    def check(self, ctx: ParseContext) -> None:
        """The model's own rules across fields (raise ``self.error(...)``); runs only when
        the element itself read without problems."""

    def error(self, message: str) -> XMLError:
        """An error about this element (its line and path when it came from XML)."""
        if self.node is not None:
            return self.node.error(message)
        return XMLError(f"<{self.TAG}>: {message}")

    def node_of(self, tag: str) -> Node | None:
        """The source node of child ``tag`` (for messages and ``--explain``), if parsed."""
        if self.node is None:
            return None
        found = self.node.children_named(tag)
        return found[0] if found else self.node

    # -- writing -----------------------------------------------------------------------
    def attrs(self) -> list[tuple[str, str]]:
        out = []
        if self.VARIANT_ATTR and self.VARIANT is not None:
            out.append((self.VARIANT_ATTR, self.VARIANT))
        values = self.__dict__
        for f in self._attrs:
            value = values[f.name]
            if value is not None:
                out.append((cast(str, f.xml), f.kind.format(value)))
        return out

    def format(self, w: Writer) -> None:
        tag = self.qualified_tag()
        attrs = self.attrs()
        values = self.__dict__
        body = [(f, values[f.name]) for f in self._body if f.present(values[f.name])]
        text_value = None
        if self._text is not None:
            value = values[self._text.name]
            if value is not None:
                text_value = self._text.kind.format(value)
        if not body:
            if text_value is None:
                w.empty(tag, *attrs)
            else:
                w.text(tag, text_value, *attrs)
            return
        w.open(tag, *attrs)
        for f, value in body:
            f.write(value, w)
        w.close(tag)

    def qualified_tag(self) -> str:
        if self.NS:
            return f"{PREFIXES.get(self.NS, 'ns')}:{self.TAG}"
        return self.TAG

    # -- comparing and copying -------------------------------------------------------
    def values(self) -> Iterator[tuple[str, Any]]:
        for f in self._fields:
            if not isinstance(f, InternalField) and not f.virtual:
                yield f.name, self.__dict__[f.name]

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(v == other.__dict__[k] for k, v in self.values())

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.values()
                          if v is not None and v != [] and v is not False)
        return f"{type(self).__name__}({shown})"

    def __deepcopy__(self, memo: dict) -> Element:
        import copy

        clone = type(self).__new__(type(self))
        for k, v in self.__dict__.items():
            clone.__dict__[k] = v if k == "node" else copy.deepcopy(v, memo)
        return clone


#: Names an Element subclass may not use for a field.
_RESERVED = frozenset(n for n in dir(Element) if not n.startswith("__")) | {"node"}


def _make_init(fields: tuple[Field, ...]) -> Callable[..., None]:
    """A keyword-only ``__init__`` for the declared fields (defaults: the fields')."""
    scope: dict[str, Any] = {}
    params, body = [], []
    for f in fields:
        if f.virtual:
            continue
        scope[f"_f_{f.name}"] = f
        params.append(f"{f.name}=_MISSING")
        body.append(f"    self.{f.name} = _f_{f.name}.initial() if {f.name} is _MISSING "
                    f"else {f.name}")
    scope["_MISSING"] = _MISSING
    source = (f"def __init__(self, *, {', '.join(params + ['node=None'])}):\n"
              + "\n".join(body + ["    self.node = node"]))
    exec(source, scope)  # noqa: S102 - generated from the class's own field names
    return cast("Callable[..., None]", scope["__init__"])


_MISSING = object()


def _lazy_init(self: Element, **fields: Any) -> None:
    """Every class's ``__init__`` until first used: generating it costs ~0.1 ms a class,
    paid at import for ~200 classes, and parsing never calls it (``from_node`` fills
    objects made with ``__new__``)."""
    cls = type(self)
    init = _make_init(cls._fields)
    cls.__init__ = init  # type: ignore[method-assign]
    init(self, **fields)


def walk(element: Element) -> Iterator[Element]:
    """``element`` and every Element below it, depth first."""
    yield element
    for f in element._body:
        if isinstance(f, ChildField):
            value = element.__dict__[f.name]
            for item in (value if f.many else (value,) if value is not None else ()):
                yield from walk(item)


# --------------------------------------------------------------------------- tables
class EnumTable(dict[E, T]):
    """A mapping from every member of an Enum to what a builder needs for it (a QEMU
    device name, an option value).  ``not_mapped`` names members that never reach the
    builder (refused by validation, or handled elsewhere) and why; the test suite checks
    that every table covers every member of its Enum one way or the other."""

    def __init__(self, enum_cls: type[E], mapping: dict[E, T], *,
                 not_mapped: dict[E, str] | None = None):
        super().__init__(mapping)
        self.enum = enum_cls
        self.not_mapped = dict(not_mapped or {})
        TABLES.append(self)

    def uncovered(self) -> set[E]:
        return set(self.enum) - set(self) - set(self.not_mapped)


#: Every EnumTable made, for the coverage test.
TABLES: list[EnumTable] = []


def table(enum_cls: type[E], mapping: dict[E, T], *,
          not_mapped: dict[E, str] | None = None) -> EnumTable[E, T]:
    """An :class:`EnumTable` (see there)."""
    return EnumTable(enum_cls, mapping, not_mapped=not_mapped)
