"""ValueSet makes the model's enumerations without EnumType's slow path: each must be
exactly the StrEnum that EnumType makes of the same class body."""

from __future__ import annotations

import enum
import importlib
import pickle
import pkgutil

import pytest

import qemuwrap.conf
from qemuwrap.conf import valueset
from qemuwrap.conf.valueset import ValueSet, ValueSetType


def _value_sets() -> list[type[ValueSet]]:
    for mod in pkgutil.walk_packages(qemuwrap.conf.__path__, "qemuwrap.conf."):
        importlib.import_module(mod.name)
    out, todo = [], list(ValueSet.__subclasses__())
    while todo:
        cls = todo.pop()
        if cls.__module__ != valueset.__name__:  # not the sample it learns from
            out.append(cls)
        todo.extend(cls.__subclasses__())
    return sorted(out, key=lambda c: f"{c.__module__}.{c.__qualname__}")


VALUE_SETS = _value_sets()


def _reference(cls: type[ValueSet]) -> type[enum.Enum]:
    """What EnumType makes of ``cls``'s class body."""
    body = {"__module__": cls.__module__, "__qualname__": cls.__qualname__}
    if cls.__dict__.get("__doc__") is not None:
        body["__doc__"] = cls.__doc__
    body.update((m.name, m.value) for m in cls)
    return valueset.slow(ValueSetType, cls.__name__, (ValueSet,), body)


def test_the_fast_path_is_on():
    """EnumType's layout was recognised on this Python (else every value set is slow)."""
    assert valueset._LAYOUT is not None
    assert len(VALUE_SETS) > 150


@pytest.mark.parametrize("cls", VALUE_SETS, ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_value_set_is_what_enumtype_makes(cls):
    ref = _reference(cls)
    assert list(cls.__dict__) == list(ref.__dict__)
    for key, value in ref.__dict__.items():
        ours = cls.__dict__[key]
        if key in cls._member_map_:
            assert type(ours) is cls and str.__str__(ours) == str.__str__(value)
            mine, theirs = dict(ours.__dict__), dict(value.__dict__)
            assert mine.pop("__objclass__") is cls and theirs.pop("__objclass__") is ref
            assert mine == theirs
        elif key == "_member_map_":
            assert list(ours) == list(value)
            assert all(ours[k] is cls.__dict__[k] for k in ours)
        elif key == "_value2member_map_":
            assert list(ours) == list(value)
            assert all(ours[v] is cls._member_map_[m._name_] for v, m in value.items())
        elif isinstance(value, list | str | bool):
            assert ours == value
        else:
            assert ours is value, key
    assert type(cls) is ValueSetType and cls.__mro__[1:] == ref.__mro__[1:]
    for member, other in zip(cls, ref, strict=True):
        assert cls(member.value) is member and cls[member.name] is member
        assert (str(member), f"{member}", repr(member), hash(member)) == \
            (str(other), f"{other}", repr(other), hash(other))
        assert pickle.loads(pickle.dumps(member)) is member


def test_a_body_with_more_than_plain_strings_takes_enumtypes_path(monkeypatch):
    def fast(*args):
        raise AssertionError("made by the direct path")

    monkeypatch.setattr(valueset, "_make", fast)

    class WithMethod(ValueSet):
        ON = "on"

        def flipped(self) -> str:
            return "off" if self == "on" else "on"

    class WithAlias(ValueSet):
        ON = "on"
        YES = "on"

    class WithInheritedName(ValueSet):
        name = "n"

    assert WithMethod.ON.flipped() == "off" and list(WithMethod) == [WithMethod.ON]
    assert WithAlias.YES is WithAlias.ON and list(WithAlias) == [WithAlias.ON]
    assert list(WithInheritedName) == [WithInheritedName("n")]
    with pytest.raises(AssertionError, match="direct path"):
        class Plain(ValueSet):
            ON = "on"


def test_a_name_given_twice_is_refused():
    with pytest.raises(TypeError, match="'A' already defined as 'a'"):
        class Twice(ValueSet):
            A = "a"
            A = "b"  # the error under test
