"""The seed's ABI-stability check between a source and a target definition."""

from __future__ import annotations

import pytest

from qemuwrap.conf.abi import ABIError, check_abi_stability
from qemuwrap.conf.domain import loads

from conftest import XML2ARGV

GENID = "e9392370-2917-565e-692b-d057f46512d6"


def dom(genid_xml: str | None):
    xml = (XML2ARGV / "genid.xml").read_text()
    return loads(xml.replace(f"  <genid>{GENID}</genid>\n", genid_xml or ""))


def test_same_definition_is_stable():
    check_abi_stability(dom(f"  <genid>{GENID}</genid>\n"), dom(f"  <genid>{GENID}</genid>\n"))


def test_requested_mismatch():
    with pytest.raises(ABIError, match="^Target domain requested genid does not match source$"):
        check_abi_stability(dom(f"  <genid>{GENID}</genid>\n"), dom(None))


def test_genid_mismatch_names_both():
    other = "43dc0cf8-809b-4adb-9bea-a9abb5f3d90e"
    with pytest.raises(ABIError) as exc:
        check_abi_stability(dom(f"  <genid>{GENID}</genid>\n"), dom(f"  <genid>{other}</genid>\n"))
    assert str(exc.value) == f"Target domain genid {other} does not match source {GENID}"


def test_other_abi_differences():
    src = dom(None)
    dst = dom(None)
    dst.memory_kib *= 2
    with pytest.raises(ABIError, match="memory"):
        check_abi_stability(src, dst)
