"""The declarative model's own promises: the shipped schema is the one the declarations
make, and every builder table covers every value of its Enum."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import qemuwrap.qemu.build
from qemuwrap.conf import rng
from qemuwrap.conf.xmlmodel import TABLES


def test_shipped_schema_is_generated():
    """domain.rng is what the declarations give (python -m qemuwrap.conf.rng)."""
    shipped = (rng.__file__.rsplit("/", 1)[0] + "/domain.rng")
    with open(shipped) as f:
        assert f.read() == rng.generate(), "regenerate: python -m qemuwrap.conf.rng > " \
                                           "qemuwrap/conf/domain.rng"


def _all_tables():
    for mod in pkgutil.iter_modules(qemuwrap.qemu.build.__path__):
        importlib.import_module(f"qemuwrap.qemu.build.{mod.name}")
    return TABLES


@pytest.mark.parametrize("table", _all_tables(), ids=lambda t: t.enum.__name__)
def test_every_table_covers_every_value(table):
    """A value the model reads but no table maps (nor says why not) would reach a
    builder with nothing to build."""
    missing = sorted(str(m.value) for m in table.uncovered())
    assert not missing, f"{table.enum.__name__}: no entry for {missing}"
