"""xml2xml golden tests (libvirt's qemuxml2xmltest): every positive xml2argv input,
formatted back, equals data/xml2xml/NAME-inactive.xml (and NAME-active.xml when the
input has a runtime id). The seed's four outputs are among them, byte for byte."""

from __future__ import annotations

import pytest

from qemuwrap.conf import guid
from qemuwrap.conf.domain import load, loads
from qemuwrap.errors import XMLError

from conftest import XML2ARGV, XML2XML, check_golden

CASES = sorted(p.stem for p in XML2ARGV.glob("*.xml") if (XML2ARGV / f"{p.stem}.args").exists())


@pytest.mark.parametrize("name", CASES)
def test_xml2xml(name):
    _data, dom = load(str(XML2ARGV / f"{name}.xml"), random=guid.counting_random)
    check_golden(XML2XML / f"{name}-inactive.xml", dom.format(inactive=True))
    if dom.id is not None:
        check_golden(XML2XML / f"{name}-active.xml", dom.format())


@pytest.mark.parametrize("name", CASES)
def test_format_is_a_fixed_point(name):
    """Formatting what we formatted changes nothing: nothing is lost or invented twice."""
    _data, dom = load(str(XML2ARGV / f"{name}.xml"), random=guid.counting_random)
    once = dom.format()
    again = loads(once, random=guid.counting_random).format()
    assert again == once


def test_seed_outputs_present():
    for name in ("genid-active", "genid-inactive", "genid-auto-active", "genid-auto-inactive"):
        assert (XML2XML / f"{name}.xml").exists()


def test_generated_genid_is_v4_from_source():
    xml = (XML2ARGV / "genid-auto.xml").read_text()
    dom = loads(xml, random=guid.counting_random)
    assert dom.genid_generated and dom.genid_str == "00010203-0405-4607-8809-0a0b0c0d0e0f"
    real = loads(xml)  # the OS CSPRNG: version 4, RFC 4122 variant, different each time
    assert real.genid_str[14] == "4" and real.genid_str[19] in "89ab"
    assert real.genid != loads(xml).genid


@pytest.mark.parametrize("text,message", [
    ("<genid/><genid/>", "element 'genid' can only appear once"),
    ("<genid>nope</genid>", "malformed genid element"),
    ("<genid>e9392370-2917-565e-692b-d057f46512d6-00</genid>", "malformed genid element"),
])
def test_genid_errors_are_libvirts(text, message):
    xml = (XML2ARGV / "genid.xml").read_text().replace(
        "<genid>e9392370-2917-565e-692b-d057f46512d6</genid>", text)
    with pytest.raises(XMLError) as exc:
        loads(xml)
    # libvirt's text, after where it is: "line 4: /domain/genid: malformed genid element"
    assert str(exc.value).startswith("line 4: /domain/genid") or \
        str(exc.value).startswith("line 4: /domain/genid[2]")
    assert str(exc.value).endswith(": " + message)
