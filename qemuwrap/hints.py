"""What type hints need at run time, without importing typing.

Importing typing costs a dry run 10 M instructions (4 %, callgrind), more than reading
and translating a small definition, and the model needs only these few names of it when
it runs.  To type checkers, and to ruff (``typing-modules``), they are typing's own; a
module on the dry run's path imports them from here, and takes annotation-only names
(``Any``, ``ClassVar``, ...) from typing under ``if TYPE_CHECKING:``.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Generic, TypeVar, cast, overload
else:
    def cast(_type, value):
        """typing.cast: the value itself."""
        return value

    def overload(func):
        """typing.overload: the definitions after it replace it; the last is the one."""
        return func

    def TypeVar(name, *_constraints, **_options):  # noqa: N802 - typing's name
        """typing.TypeVar: only type checkers look at it."""
        return name

    class Generic:
        """typing.Generic: ``Kind[str]`` (a base class, an annotation) is ``Kind``."""

        def __class_getitem__(cls, _params):
            return cls


__all__ = ["TYPE_CHECKING", "Generic", "TypeVar", "cast", "overload"]
