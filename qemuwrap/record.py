"""A small stand-in for ``dataclasses`` on the dry-run path.

``import dataclasses`` pulls in ``inspect`` and costs ~13 ms of a ~35 ms dry run, so
the model's value classes use this instead: fields are the class annotations, in
order; a class attribute is the default (``Factory(list)`` for a fresh mutable one);
fields named in ``_hidden`` (e.g. the source XML node) are left out of ``==`` and repr.
"""

from __future__ import annotations


class Factory:
    """Default made afresh for every instance (like ``field(default_factory=...)``)."""

    __slots__ = ("make",)

    def __init__(self, make):
        self.make = make


_MISSING = object()


class Record:
    _fields: tuple[str, ...] = ()
    _hidden: frozenset[str] = frozenset({"node"})

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        own = tuple(cls.__dict__.get("__annotations__", {}))
        cls._fields = tuple(f for f in (*cls._fields, *own) if not f.startswith("_"))

    def __init__(self, *args, **kwargs):
        if len(args) > len(self._fields):
            raise TypeError(f"{type(self).__name__} takes at most {len(self._fields)} values")
        values = dict(zip(self._fields, args, strict=False))
        for name in self._fields[len(args):]:
            if name in kwargs:
                values[name] = kwargs.pop(name)
                continue
            default = getattr(type(self), name, _MISSING)
            if default is _MISSING:
                raise TypeError(f"{type(self).__name__} needs '{name}'")
            values[name] = default.make() if isinstance(default, Factory) else default
        if kwargs:
            raise TypeError(f"{type(self).__name__} has no field {next(iter(kwargs))!r}")
        self.__dict__.update(values)

    def _key(self) -> tuple:
        return tuple(getattr(self, f) for f in self._fields if f not in self._hidden)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._key() == other._key()

    __hash__ = None  # mutable, like a non-frozen dataclass

    def __repr__(self) -> str:
        shown = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._fields
                          if f not in self._hidden)
        return f"{type(self).__name__}({shown})"
