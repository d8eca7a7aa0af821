"""Every value stays a value (issue 9): hostile text in any free-text field of the model
never adds, removes or renames an option key, an id or a help request in QEMU's argv.

The fields are found from the model's own declarations (every attribute, text and child
text whose kind is free text: ``Str``, ``Path``), so a field an area adds is covered the
day it is declared.  For each one a golden case that uses it (``data/xml2argv/*.xml`` with
an ``.args``) is the benign definition; hypothesis (fixed seed and budget) and a list of
known-hostile strings put other text there.  The outcome must be a refusal (one printable
line per problem) or an argv that a model of QEMU's own option parsers
(``tests/qemuopts.py``) reads with exactly the options, keys and ids of the benign one,
the hostile text only inside the values that held the benign text.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qemuwrap.conf import guid
from qemuwrap.conf.domain import Domain, loads
from qemuwrap.conf.xmlmodel import (
    AttrField,
    ChildField,
    Element,
    TextChildField,
    TextField,
    walk,
)
from qemuwrap.errors import QemuwrapError
from qemuwrap.qemu.capabilities import Capabilities
from qemuwrap.qemu.command import build_command
from qemuwrap.statedir import guest_dir

from conftest import DEFAULT_CAPS, GOLDEN_STATE_ROOT, XML2ARGV, missing_needs
from qemuopts import Opts, parse_argv

#: Examples per field in the default run (fixed seed: the same cases every run).
EXAMPLES = 40

#: The explicit escape hatch: text passed to QEMU verbatim, on purpose (README and
#: ``--explain`` say so).  Not values of ours to keep as values.
VERBATIM = {
    "QemuArg.value": "<qemu:commandline><qemu:arg> is passed through as written",
    "QemuEnv.name": "<qemu:commandline><qemu:env> sets QEMU's environment as written",
    "QemuEnv.value": "<qemu:commandline><qemu:env> sets QEMU's environment as written",
}

#: Free-text fields no accepted golden case can hold, and why.
NO_POSITIVE_CASE = {
    "TPMEncryption.secret": "an encrypted TPM state is refused (no secret store)",
    "Script.path": "qemuwrap runs no script a definition names (refused)",
    "DownScript.path": "qemuwrap runs no script a definition names (refused)",
    "FilterParameter.value": "<filterref> is refused (no network filter driver)",
    "HostdevAuth.username": "iSCSI <auth> is refused (no secret store)",
    "ShmemServer.path": "an ivshmem server's socket must exist; none does here (refused)",
    "Auth.username": "disk <auth> is refused (no secret store)",
    "SecretRef.usage": "secrets are refused (no secret store)",
    "SecretRef.uuid": "secrets are refused (no secret store)",
    "Cookie.name": "HTTP cookies are refused (no secret store)",
    "Cookie.value": "HTTP cookies are refused (no secret store)",
    "DiskSource.pool": "type='volume' disks are refused (no storage pools)",
    "DiskSource.volume": "type='volume' disks are refused (no storage pools)",
    "FSDriver.fmt": "only for container filesystem types, refused for QEMU",
    "FSSource.file": "only for container filesystem types, refused for QEMU",
    "FSSource.name": "only for container filesystem types, refused for QEMU",
    "QemuCapAdd.capability": "<qemu:capabilities> is refused",
    "QemuCapDel.capability": "<qemu:capabilities> is refused",
    "QemuDevice.alias": "<qemu:override> is refused",
    "QemuProperty.name": "<qemu:override> is refused",
    "QemuProperty.value": "<qemu:override> is refused",
    "CacheTune.id": "resctrl cache tuning is refused",
    "CacheTuneCache.unit": "resctrl cache tuning is refused",
    "LaunchSecurity.dh_cert": "SEV needs /dev/sev, absent here (refused)",
    "LaunchSecurity.policy": "SEV needs /dev/sev, absent here (refused)",
    "LaunchSecurity.session": "SEV needs /dev/sev, absent here (refused)",
    "MemoryDevice.uuid": "an NVDIMM uuid is for ppc64 only (refused on x86)",
    "Boot.loadparm": "loadparm is for s390 only (refused on x86)",
    "GraphicsRDP.listen_compat": "rdp graphics are not QEMU's (refused)",
    "GraphicsDesktop.display": "desktop graphics are not QEMU's (refused)",
    "GraphicsSDL.display": "SDL needs a display, refused without one here",
    "GraphicsSDL.xauth": "SDL needs a display, refused without one here",
    "Acceleration.rendernode": "OpenGL needs a /dev/dri render node, absent here (refused)",
    "GL.rendernode": "OpenGL needs a /dev/dri render node, absent here (refused)",
    "InputSource.dev": "host input devices are absent here (refused)",
    "InputSource.evdev": "host input devices are absent here (refused)",
    "Smartcard.database": "host smartcard modes need an NSS database, absent here (refused)",
    "Certificate.name": "host smartcard modes need an NSS database, absent here (refused)",
    "TPMDevicePath.path": "TPM passthrough needs /dev/tpm0, absent here (refused)",
    "GraphicsVNC.passwd_valid_to": "passwdValidTo is refused (needs a QMP command)",
    "GraphicsSpice.passwd_valid_to": "passwdValidTo is refused (needs a QMP command)",
    "Listen.network": "a network listen needs a defined network, none in the goldens",
    "OS.dtb": "x86 guests take no device tree",
    "Mirror.file": "a running libvirt block job's state: read and dropped, never in a command",
    "GraphicsVNC.socket": "the model reads it into the first <listen type='socket'> "
                          "(Listen.socket, which has its cases)",
}

#: Pieces of text QEMU's syntax or a shell gives meaning to.
NASTY = [",", ",,", "=", "id=", ",id=x", "help", "?", "no", ":", "[", "]", " ", "\t", "\n",
         "\r", "'", '"', "\\", "$(x)", ";", "&", "<", ">", "/", ".", "..", "-", "websocket=",
         "unix:", "file.", "driver=", "format=", "\u00e9", "\u202e", "\u0085", "\u2028",
         "\u00a0", "x" * 200]
KNOWN = ["websocket=0.0.0.0", "a,id=x", "a,,id=x", "help", "?", "", "no", "x=y", ",", "=",
         "id=evil", "file.driver=nbd", "\n", " "]


def _xml_legal(c: str) -> bool:
    o = ord(c)
    return o in (9, 10, 13) or 0x20 <= o <= 0xD7FF or 0xE000 <= o <= 0xFFFD or o >= 0x10000


HOSTILE = st.lists(st.one_of(st.sampled_from(NASTY),
                             st.text(st.characters().filter(_xml_legal), max_size=4)),
                   max_size=8).map("".join)


# --------------------------------------------------------------------------- the fields
def _element_classes(root: type[Element]) -> Iterator[type[Element]]:
    seen: set[type[Element]] = set()
    todo = [root]
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        yield cls
        todo.extend(getattr(cls, "_variants", {}).values())
        todo.extend(f.cls for f in cls._fields if isinstance(f, ChildField))


def free_text_fields() -> dict[str, tuple[type[Element], str]]:
    """``{"Class.field": (Class, field)}`` for every free-text field of the model."""
    out = {}
    for cls in _element_classes(Domain):
        for f in cls._fields:
            if isinstance(f, AttrField | TextField | TextChildField) and f.kind.free_text:
                out[f"{cls.__name__}.{f.name}"] = (cls, f.name)
    return out


FIELDS = free_text_fields()
CAPS = Capabilities.from_file(DEFAULT_CAPS)
CASES = sorted(p.stem for p in XML2ARGV.glob("*.xml") if (XML2ARGV / f"{p.stem}.args").exists()
               and not (XML2ARGV / f"{p.stem}.caps").exists() and missing_needs(p.stem) is None)


def _holders(dom: Domain, cls: type[Element], name: str) -> list[Element]:
    return [el for el in walk(dom) if type(el) is cls and el.__dict__.get(name) is not None]


def _case_for(key: str) -> str | None:
    """The first golden case whose definition sets this field."""
    cls, name = FIELDS[key]
    for case in CASES:
        dom = loads((XML2ARGV / f"{case}.xml").read_bytes(), random=guid.counting_random)
        if _holders(dom, cls, name):
            return case
    return None


_CASE_OF = {key: _case_for(key) for key in FIELDS}
TESTED = sorted(k for k, case in _CASE_OF.items() if case is not None and k not in VERBATIM)


# --------------------------------------------------------------------------- the check
def _with(case: str, key: str, text: str | None) -> bytes:
    """The case's definition, the field set to ``text`` (None: as it is), written out
    by the model (which escapes it as XML)."""
    cls, name = FIELDS[key]
    dom = loads((XML2ARGV / f"{case}.xml").read_bytes(), random=guid.counting_random)
    if text is not None:  # every element that has the field: they may belong together
        for holder in _holders(dom, cls, name):  # (disks sharing one iotune group)
            holder.__dict__[name] = text
    return copy.copy(dom).format().encode()


def _command(data: bytes):
    dom = loads(data, random=guid.counting_random)
    return dom, build_command(dom, CAPS, guest_dir(dom.name, GOLDEN_STATE_ROOT))


def shape(parsed: list[tuple[str, Opts | None]]):
    """What must not change: options, their order, each one's keys, ids and help."""
    out = []
    for option, opts in parsed:
        if opts is None:
            out.append((option,))
        elif opts.kind == "keyval":
            out.append((option, opts.kind, _key_tree(opts.values), opts.help))
        else:
            out.append((option, opts.kind, tuple(k for k, _ in opts.order) or
                        tuple(opts.values), opts.id, opts.help))
    return out


def _key_tree(values: dict):
    return tuple(sorted((k, _key_tree(v) if isinstance(v, dict) else None)
                        for k, v in values.items()))


def _leaves(parsed):
    for option, opts in parsed:
        if opts is None:
            continue
        stack = [(option, opts.values)]
        while stack:
            where, values = stack.pop()
            for key, value in values.items():
                if isinstance(value, dict):
                    stack.append((f"{where}.{key}", value))
                else:
                    yield f"{where} {key}", value


def _value(dom: Domain, key: str) -> str:
    cls, name = FIELDS[key]
    return str(_holders(dom, cls, name)[0].__dict__[name])


def _baseline(key: str):
    """The benign argv, and which of its values carry the field: those that change when
    the field's value does (a marker value differing from the benign one in one place)."""
    cached = _BASELINES.get(key)
    if cached is not None:
        return cached
    case = _CASE_OF[key]
    assert case is not None
    dom, cmd = _command(_with(case, key, None))
    benign = parse_argv(cmd.argv)
    was = _value(dom, key)
    carriers: dict[str, str] = {}
    for marker in (was + "z", "z" + was, was[:-1] + "z", "/z" + was):
        try:
            mdom, mcmd = _command(_with(case, key, marker))
        except QemuwrapError:
            continue
        marked = parse_argv(mcmd.argv)
        if shape(marked) != shape(benign):
            continue
        mval = _value(mdom, key)
        carriers = {i: after for i, ((_w, before), (_x, after))
                    in enumerate(zip(_leaves(benign), _leaves(marked), strict=True))
                    if after != before}
        _BASELINES[key] = (cmd, benign, carriers, mval)
        return _BASELINES[key]
    # Every other value is refused (the emulator must be the probed one): nothing in the
    # argv may change then.
    _BASELINES[key] = (cmd, benign, {}, was)
    return _BASELINES[key]


_BASELINES: dict[str, tuple] = {}  # per field: (command, parsed argv, carriers, marker)


def check(key: str, text: str) -> None:
    case = _CASE_OF[key]
    assert case is not None
    benign_cmd, benign, carriers, marker = _baseline(key)
    try:
        dom, cmd = _command(_with(case, key, text))
    except QemuwrapError as exc:
        lines = str(exc).split("\n")
        assert all(line and line.isprintable() for line in lines), f"not one line each: {lines}"
        return
    parsed = parse_argv(cmd.argv)
    assert shape(parsed) == shape(benign), f"{key}={text!r} changed the options"
    now = _value(dom, key)
    for i, ((where, before), (_w, after)) in enumerate(zip(_leaves(benign), _leaves(parsed),
                                                           strict=True)):
        if i in carriers:  # the field's own value: the text is there, as text
            assert after == carriers[i].replace(marker, now) or now in after, \
                f"{key}={text!r}: {where} is {after!r}"
        else:
            assert after == before, f"{key}={text!r} changed {where} to {after!r}"
    assert cmd.argv[0] == benign_cmd.argv[0]


# --------------------------------------------------------------------------- the tests
def test_every_free_text_field_has_a_golden_case():
    """"The golden suite has a case per field": a free-text field no accepted case sets
    cannot be checked here."""
    assert len(FIELDS) > 20 and "Domain.name" in FIELDS  # the walk works
    missing = sorted(k for k, case in _CASE_OF.items()
                     if case is None and k not in NO_POSITIVE_CASE and k not in VERBATIM)
    assert not missing, f"free-text fields no accepted golden case sets: {missing}"


@pytest.mark.parametrize("key", TESTED)
@settings(derandomize=True, max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
@given(text=HOSTILE)
def test_hostile_text_stays_a_value(key, text):
    check(key, text)


@pytest.mark.parametrize("key", TESTED)
@pytest.mark.parametrize("text", KNOWN)
def test_known_hostile_text_stays_a_value(key, text):
    """The cases that broke (or nearly) in issue 9, for every field, every run."""
    check(key, text)
