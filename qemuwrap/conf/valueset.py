"""``ValueSet``: the base of the model's enumerations, each a ``StrEnum`` made fast.

Every value set of libvirt's XML is a ``StrEnum`` (one source for the parser, the schema
and the builders' tables), and there are 170 of them.  ``enum.EnumType`` spends ~100 K
instructions on each member it makes (CPython 3.11, callgrind): the 370 members a dry
run of a small definition loads were a sixth of its run.  A value set is always the
plainest kind of ``StrEnum`` -- string members, no aliases, no methods, no ``auto()``,
no member named as an attribute of ``StrEnum`` --
so :class:`ValueSetType` makes it directly, in a fifth of the time, and gives it exactly
what ``EnumType`` would: the class attributes and member attributes it copies from a
value set ``EnumType`` made when this module loaded (checked there, or every value set
takes ``EnumType``'s own path), and ``tests/test_valueset.py`` compares every value set
of the model with the one ``EnumType`` makes of the same body.  A body with anything
else in it is made by ``EnumType`` itself.
"""

from __future__ import annotations

import enum

from qemuwrap.hints import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any


#: What EnumType gives a value set (see _layout); None until learnt, or when unusable.
_LAYOUT: tuple[list, list] | None = None


class _Body(dict):
    """A class body, as ``EnumType``'s namespace refuses a name given twice."""

    def __setitem__(self, key: str, value: Any) -> None:
        if key in self:
            raise TypeError(f"{key!r} already defined as {self[key]!r}")  # EnumType's words
        super().__setitem__(key, value)


class ValueSetType(enum.EnumType):
    """``EnumType`` with a direct path for plain string members (see the module)."""

    @classmethod
    def __prepare__(  # type: ignore[override] # a dict, not EnumType's namespace
            metacls, cls: str, bases: tuple[type, ...], **kwds: Any) -> Any:
        if _LAYOUT is None or kwds or bases != (ValueSet,):
            return super().__prepare__(cls, bases, **kwds)
        return _Body()

    def __new__(metacls, cls: str, bases: tuple[type, ...], classdict: Any,
                **kwds: Any) -> Any:
        if type(classdict) is not _Body:
            return super().__new__(metacls, cls, bases, classdict, **kwds)
        members = {k: v for k, v in classdict.items()
                   if k not in ("__module__", "__qualname__", "__doc__")}
        if _LAYOUT is None or len(set(members.values())) != len(members) or not all(
                type(v) is str and not k.startswith("_") and k not in _INHERITED
                for k, v in members.items()):  # aliases, other values, inherited names
            return slow(metacls, cls, bases, classdict)
        return _make(metacls, cls, bases, classdict, members, _LAYOUT)


def slow(mcls: type, cls: str, bases: tuple[type, ...], classdict: dict) -> Any:
    """The value set ``EnumType`` makes of ``classdict`` (a class body as a dict)."""
    body = enum.EnumType.__prepare__(cls, bases)
    for key, value in classdict.items():
        body[key] = value
    return enum.EnumType.__new__(mcls, cls, bases, body)


def _make(mcls: type, cls: str, bases: tuple[type, ...], classdict: dict,
          members: dict[str, str], layout: tuple[list, list]) -> Any:
    """The class attributes ``EnumType`` sets, in its order: those before the members
    (``layout[0]``: a name and its value, None for a fresh one), the members, those
    after (``layout[1]``)."""
    before, after = layout
    body: dict[str, Any] = {}
    for key, value in before:
        if key in ("__module__", "__qualname__", "__doc__"):
            if key in classdict:
                body[key] = classdict[key]
        elif value is None:
            body[key] = [] if key in ("_member_names_", "_unhashable_values_") else {}
        else:
            body[key] = value
    if "__qualname__" in classdict:
        body["__qualname__"] = classdict["__qualname__"]
    new_class: Any = type.__new__(mcls, cls, bases, body)
    names, by_name, by_value = (body["_member_names_"], body["_member_map_"],
                                body["_value2member_map_"])
    new_member = body["_new_member_"]
    for order, (name, value) in enumerate(members.items()):
        member = new_member(new_class, value)
        member._name_ = name
        member.__objclass__ = new_class
        member.__init__(value)
        member._sort_order_ = order
        names.append(name)
        type.__setattr__(new_class, name, member)
        by_name[name] = member
        by_value[value] = member
    for key, value in after:
        type.__setattr__(new_class, key, value)
    return new_class


class ValueSet(enum.StrEnum, metaclass=ValueSetType):
    """A value set of the XML: subclass it as ``enum.StrEnum`` (members are strings)."""


def _layout() -> tuple[list, list] | None:
    """What ``EnumType`` gives a value set, learnt from one it makes here: the class
    attributes before and after its members (the containers as None), or None when a
    value set or a member of it has anything :func:`_make` does not give."""
    sample = slow(ValueSetType, "Sample", (ValueSet,), {
        "__module__": __name__, "__qualname__": "Sample", "__doc__": "A sample.",
        "A": "a", "B": "b"})
    keys = list(sample.__dict__)
    if keys.count("A") != 1 or keys.index("B") != keys.index("A") + 1 \
            or list(sample.A.__dict__) != ["_value_", "_name_", "__objclass__", "_sort_order_"] \
            or sample._use_args_ is not True or sample._member_type_ is not str:
        return None
    fresh = ("_member_names_", "_member_map_", "_value2member_map_", "_unhashable_values_")
    before = [(k, None if k in fresh else sample.__dict__[k])
              for k in keys[:keys.index("A")]]
    after = [(k, sample.__dict__[k]) for k in keys[keys.index("B") + 1:]]
    if any(k in fresh for k, _ in after):
        return None
    return before, after


#: Every name ValueSet has from its bases: a member of such a name is EnumType's to make.
_INHERITED = frozenset(name for base in ValueSet.__mro__ for name in vars(base))
_LAYOUT = _layout()

__all__ = ["ValueSet", "ValueSetType", "slow"]
