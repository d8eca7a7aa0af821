"""A small stand-in for ``dataclasses`` on the dry-run path.

``import dataclasses`` pulls in ``inspect`` and costs ~13 ms of a ~35 ms dry run, so
the model's value classes use this instead: fields are the class annotations, in
order; a class attribute is the default (``Factory(list)`` for a fresh mutable one);
fields named in ``_hidden`` (e.g. the source XML node) are left out of ``==`` and repr.
"""

from __future__ import annotations


class _Factory:
    """Default made afresh for every instance (like ``field(default_factory=...)``)."""

    __slots__ = ("make",)

    def __init__(self, make):
        self.make = make


TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeVar

    _T = TypeVar("_T")

    def Factory(make: Callable[[], _T]) -> _T: ...  # noqa: N802 - a class at run time
else:
    Factory = _Factory


_MISSING = object()


def _make_init(cls):
    """An ``__init__`` written for the class's fields, as dataclasses does (a generic one
    that loops over the fields costs several microseconds per object)."""
    params, body, scope = [], [], {"_MISSING": _MISSING}
    for name in cls._fields:
        default = getattr(cls, name, _MISSING)
        if default is _MISSING:
            if any("=" in p for p in params):
                raise TypeError(f"{cls.__name__}: field '{name}' without a default follows "
                                "one with a default")
            params.append(name)
            body.append(f"    self.{name} = {name}")
        elif isinstance(default, _Factory):
            scope[f"_make_{name}"] = default.make
            params.append(f"{name}=_MISSING")
            body.append(f"    self.{name} = _make_{name}() if {name} is _MISSING else {name}")
        else:
            scope[f"_default_{name}"] = default
            params.append(f"{name}=_default_{name}")
            body.append(f"    self.{name} = {name}")
    source = f"def __init__(self, {', '.join(params)}):\n" + ("\n".join(body) or "    pass")
    exec(source, scope)  # noqa: S102 - generated from the class's own field names
    return scope["__init__"]


class Record:
    _fields: tuple[str, ...] = ()
    _hidden: frozenset[str] = frozenset({"node"})

    if TYPE_CHECKING:  # the real __init__ is generated per class from its fields
        def __init__(self, *args, **kwargs) -> None: ...

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        own = tuple(cls.__dict__.get("__annotations__", {}))
        cls._fields = tuple(f for f in (*cls._fields, *own) if not f.startswith("_"))
        cls.__init__ = _make_init(cls)

    def _key(self) -> tuple:
        return tuple(getattr(self, f) for f in self._fields if f not in self._hidden)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]  # mutable, like a non-frozen dataclass

    def __repr__(self) -> str:
        shown = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._fields
                          if f not in self._hidden)
        return f"{type(self).__name__}({shown})"
