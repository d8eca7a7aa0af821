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
        # Defaults resolved once per class, not on every instance.
        cls._plain = {f: getattr(cls, f) for f in cls._fields
                      if hasattr(cls, f) and not isinstance(getattr(cls, f), Factory)}
        cls._factories = {f: getattr(cls, f).make for f in cls._fields
                          if isinstance(getattr(cls, f, None), Factory)}

    def __init__(self, *args, **kwargs):
        fields = self._fields
        if len(args) > len(fields):
            raise TypeError(f"{type(self).__name__} takes at most {len(fields)} values")
        values = dict(self._plain)
        for name, make in self._factories.items():
            if name not in kwargs:
                values[name] = make()
        values.update(zip(fields, args, strict=False))
        for name in kwargs:
            if name not in fields:
                raise TypeError(f"{type(self).__name__} has no field {name!r}")
        values.update(kwargs)
        if len(values) != len(fields):
            missing = next(f for f in fields if f not in values)
            raise TypeError(f"{type(self).__name__} needs '{missing}'")
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
