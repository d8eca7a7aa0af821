"""The RelaxNG schema of the domain XML, derived from the model's own declarations.

The model (``xmlmodel`` fields on each Element class) is the one source: this module
writes ``domain.rng`` from it, so the schema says what the parser reads, value set by
value set (``tests/test_schema.py`` checks they agree on hundreds of documents, and that
the shipped ``domain.rng`` is what this module writes).  Rules the model checks across
fields (``check()`` methods, validation) are not in the schema: it is looser there,
never stricter.

Regenerate: ``python -m qemuwrap.conf.rng > qemuwrap/conf/domain.rng``.
"""

from __future__ import annotations

from qemuwrap.conf.xmlmodel import (
    AttrField,
    ChildField,
    Element,
    Field,
    InternalField,
    TextField,
    _xml,
)

HEADER = """<?xml version="1.0"?>
<!--
  The domain XML qemuwrap reads, generated from its model (qemuwrap/conf/rng.py):
  do not edit by hand.  Element and attribute names are libvirt's.
-->
"""


class _Grammar:
    def __init__(self) -> None:
        self.defines: dict[str, str] = {}

    def element_ref(self, cls: type[Element]) -> str:
        name = cls.rng_name()
        if name not in self.defines:
            self.defines[name] = ""  # reserve: recursive structures end here
            self.defines[name] = self.pattern(cls)
        return f'<ref name="{name}"/>'

    def pattern(self, cls: type[Element]) -> str:
        variants = getattr(cls, "_variants", None)
        if cls.VARIANT_ATTR and cls.VARIANT is None and variants:
            return "<choice>" + "".join(self.element(v) for v in variants.values()) + \
                "</choice>"
        return self.element(cls)

    def element(self, cls: type[Element]) -> str:
        name = f'<name ns="{cls.NS}">{cls.TAG}</name>' if cls.NS else None
        head = f"<element>{name}" if name else f'<element name="{cls.TAG}">'
        parts: list[str] = []
        if cls.VARIANT_ATTR and cls.VARIANT is not None:
            parts.append(f'<attribute name="{cls.VARIANT_ATTR}"><value type="string">'
                         f"{_xml(cls.VARIANT)}</value></attribute>")
        body: list[str] = []
        attrs: list[str] = []
        text = None
        for f in cls._fields:
            if isinstance(f, InternalField):
                continue
            if isinstance(f, AttrField):
                attrs.append(f.rng())
            elif isinstance(f, TextField):
                text = f.rng()
            else:
                body.append(self.field(f))
        # Attributes are unordered anyway; as an interleave libxml2 matches them in
        # linear time (a group of optional ones costs it 2**n tries: <driver> has 18).
        if len(attrs) > 1:
            parts.append("<interleave>" + "".join(attrs) + "</interleave>")
        else:
            parts.extend(attrs)
        if text is not None:
            parts.append(text)
        if body:
            parts.append("<interleave>" + "".join(body) + "</interleave>"
                         if len(body) > 1 else body[0])
        if not parts:
            parts.append("<empty/>")
        return head + "".join(parts) + "</element>"

    def field(self, f: Field) -> str:
        if isinstance(f, ChildField):
            ref = self.element_ref(f.cls)
            if f.many:
                return f"<zeroOrMore>{ref}</zeroOrMore>"
            return ref if f.required else f"<optional>{ref}</optional>"
        return f.rng()


ANY_ELEMENT = ('<define name="anyElement"><element><anyName/><zeroOrMore><choice>'
               '<attribute><anyName/></attribute><text/><ref name="anyElement"/></choice>'
               '</zeroOrMore></element></define>')


def generate() -> str:
    """The whole grammar, one define per model class, pretty-printed."""
    from qemuwrap.conf.domain import Domain

    g = _Grammar()
    start = g.element_ref(Domain)
    defines = "".join(f'<define name="{n}">{p}</define>'
                      for n, p in sorted(g.defines.items()))
    text = ('<grammar xmlns="http://relaxng.org/ns/structure/1.0" '
            'datatypeLibrary="http://www.w3.org/2001/XMLSchema-datatypes">'
            f"<start>{start}</start>{defines}{ANY_ELEMENT}</grammar>")
    from xml.dom import minidom

    root = minidom.parseString(text).documentElement
    assert root is not None
    pretty = root.toprettyxml(indent="  ")
    return HEADER + pretty


if __name__ == "__main__":
    import sys

    sys.stdout.write(generate())
