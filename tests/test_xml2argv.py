"""Golden argv tests (libvirt's qemuxml2argvtest): data/xml2argv/NAME.xml gives NAME.args,
or NAME.err with the refusals (one line each). NAME.caps, if present, names the capabilities
file in data/caps to use instead of the default QEMU 7.2 one.  NAME.host-err, beside
NAME.args, holds what the host check (``qemu/validate/host.py``: dry-run, validate and
start run it after translation) refuses for a case that names host files no machine has:
translation is the same on every host, the host check says what this one lacks."""

from __future__ import annotations

import pytest

from qemuwrap.conf import guid
from qemuwrap.conf.domain import load
from qemuwrap.errors import QemuwrapError
from qemuwrap.qemu.capabilities import Capabilities
from qemuwrap.qemu.command import build_command
from qemuwrap.statedir import guest_dir

from conftest import (
    CAPS_DIR,
    DEFAULT_CAPS,
    GOLDEN_STATE_ROOT,
    XML2ARGV,
    check_golden,
    missing_needs,
)

CASES = sorted(p.stem for p in XML2ARGV.glob("*.xml"))


def caps_for(name: str) -> Capabilities:
    sidecar = XML2ARGV / f"{name}.caps"
    path = CAPS_DIR / sidecar.read_text().strip() if sidecar.exists() else DEFAULT_CAPS
    return Capabilities.from_file(path)


def translate(name: str):
    """(domain, command) for a case, with libvirt's deterministic test RNG."""
    _data, dom = load(str(XML2ARGV / f"{name}.xml"), random=guid.counting_random)
    return dom, build_command(dom, caps_for(name), guest_dir(dom.name, GOLDEN_STATE_ROOT))


def test_enough_cases():
    assert len(CASES) >= 30
    assert {"genid", "genid-auto"} <= set(CASES)


@pytest.mark.parametrize("name", CASES)
def test_xml2argv(name):
    reason = missing_needs(name)
    if reason is not None:
        pytest.skip(reason)
    args, err = XML2ARGV / f"{name}.args", XML2ARGV / f"{name}.err"
    assert not (args.exists() and err.exists()), "a case has .args or .err, not both"
    try:
        _dom, cmd = translate(name)
    except QemuwrapError as exc:
        message = str(exc)  # one line per problem, every problem at once
        assert all(line.strip() for line in message.split("\n"))
        if not err.exists() and args.exists():
            pytest.fail(f"expected {args.name} but translation failed: {message}")
        check_golden(err, message + "\n")
        return
    if err.exists():
        pytest.fail(f"expected the refusal in {err.name}, got a command")
    check_golden(args, cmd.to_args())
    host_err = XML2ARGV / f"{name}.host-err"
    if host_err.exists():
        from qemuwrap.qemu.validate.host import check_host_hardware

        problems = check_host_hardware(_dom)
        assert problems, f"{host_err.name}: the host check refused nothing"
        check_golden(host_err, "".join(f"{p}\n" for p in problems))
