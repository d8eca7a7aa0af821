"""Every value stays a value: hostile text in any free-text field of a definition is either
refused in one line or reaches QEMU as (part of) one value of the key the model meant.

One table, :data:`FIELDS`, drives it: where the text goes in the XML and where the
model keeps it.  For each field, hypothesis (a fixed seed and budget) writes hostile
text there; the command built from it is read with QEMU's own option syntax
(tests/qemuopts.py) and must have exactly the options, keys and ids of the command
built from a benign value, every value the field does not feed unchanged, and the
field's text inside the values it does feed.  :func:`test_every_free_text_field_is_covered`
walks the model's records: a new ``str`` field fails it until it is in FIELDS (or in
NOT_FREE_TEXT, with the reason it cannot carry arbitrary text).
"""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qemuwrap.conf import guid
from qemuwrap.conf.domain import Domain, loads
from qemuwrap.errors import QemuwrapError
from qemuwrap.qemu.capabilities import Capabilities
from qemuwrap.qemu.command import build_command
from qemuwrap.record import Record
from qemuwrap.statedir import guest_dir

from conftest import DEFAULT_CAPS, GOLDEN_STATE_ROOT
from qemuopts import Opts, parse_argv

#: Examples per field in the default run (fixed seed: the same cases every run).
EXAMPLES = 120

TEMPLATE = """<domain type='qemu'>
  <name>{name}</name>
  <uuid>{uuid}</uuid>
  <genid>{genid}</genid>
  <title>{title}</title>
  <description>{description}</description>
  <memory unit='MiB'>64</memory>
  <os>
    <type arch="{arch}" machine="{machine}">hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>{cmdline}</cmdline>
  </os>
  <features><acpi/></features>
  <devices>
    <emulator>{emulator}</emulator>
    <disk type='file' device='disk'><source file="{disk_file}"/>
      <target dev='vda' bus='virtio'/></disk>
    <disk type='block' device='disk'><source dev="{disk_block}"/>
      <target dev='vdb' bus='virtio'/></disk>
    <disk type='file' device='cdrom'><source file="{cdrom}"/><target dev='hdc'/></disk>
    <interface type='user'><mac address="{mac}"/></interface>
    <serial type='file'><source path="{serial_file}"/><target port='0'/></serial>
    <serial type='unix'><source mode='bind' path="{serial_unix}"/><target port='1'/></serial>
    <console type='file'><source path="{console_file}"/><target type='virtio'/></console>
    <graphics type='vnc' autoport='yes' listen="{vnc_listen}">
      <listen type='address' address="{vnc_listen}"/></graphics>
    <memballoon model='virtio'/>
  </devices>
</domain>
"""


@dataclass(frozen=True)
class Field:
    """A free-text field: its placeholder in TEMPLATE, its benign value, where the model
    keeps it (``model_path``, as :func:`free_text_paths` names it, and ``meant``, the
    value itself), and whether the model requires an absolute path."""

    slot: str
    benign: str
    model_path: str
    meant: Callable[[Domain], object]
    absolute: bool = False


FIELDS: tuple[Field, ...] = (
    Field("name", "benign-name", "name", lambda d: d.name),
    Field("uuid", "c7a5fdbd-edaf-9455-926a-d65c16db1809", "uuid", lambda d: d.uuid_str),
    Field("genid", "e9392370-2917-565e-692b-d057f46512d6", "genid", lambda d: d.genid_str),
    Field("title", "benign title", "title", lambda d: d.title),
    Field("description", "benign description", "description", lambda d: d.description),
    Field("arch", "x86_64", "os.arch", lambda d: d.os.arch),
    Field("machine", "pc", "os.machine", lambda d: d.os.machine),
    Field("kernel", "/benign/kernel", "os.kernel", lambda d: d.os.kernel, absolute=True),
    Field("initrd", "/benign/initrd", "os.initrd", lambda d: d.os.initrd, absolute=True),
    Field("cmdline", "benign cmdline", "os.cmdline", lambda d: d.os.cmdline),
    Field("emulator", "/usr/bin/qemu-system-x86_64", "devices.emulator",
          lambda d: d.devices.emulator, absolute=True),
    Field("disk_file", "/benign/disk.img", "devices.disks[].source",
          lambda d: d.devices.disks[0].source, absolute=True),
    Field("disk_block", "/benign/blockdev", "devices.disks[].source",
          lambda d: d.devices.disks[1].source, absolute=True),
    Field("cdrom", "/benign/cdrom.iso", "devices.disks[].source",
          lambda d: d.devices.disks[2].source, absolute=True),
    Field("mac", "52:54:00:12:34:56", "devices.interfaces[].mac",
          lambda d: d.devices.interfaces[0].mac),
    Field("serial_file", "/benign/serial.log", "devices.serials[].source.path",
          lambda d: d.devices.serials[0].source.path, absolute=True),
    Field("serial_unix", "/benign/serial.sock", "devices.serials[].source.path",
          lambda d: d.devices.serials[1].source.path, absolute=True),
    Field("console_file", "/benign/console.log", "devices.consoles[].source.path",
          lambda d: d.devices.consoles[0].source.path, absolute=True),
    Field("vnc_listen", "127.0.0.1", "devices.graphics[].listen",
          lambda d: d.devices.graphics[0].listen),
)

#: ``str`` fields of the model that cannot carry arbitrary text into a command, and why.
NOT_FREE_TEXT = {
    "type": "one of qemu, kvm",
    "clock_offset": "one of utc, localtime",
    "on_poweroff": "a lifecycle action from a fixed list",
    "on_reboot": "a lifecycle action from a fixed list",
    "on_crash": "a lifecycle action from a fixed list",
    "os.boot[]": "boot devices from a fixed list",
    "devices.disks[].type": "file or block",
    "devices.disks[].device": "disk or cdrom",
    "devices.disks[].target_dev": "matches (hd|sd|vd)[a-z]{1,2}",
    "devices.disks[].bus": "one of ide, sata, virtio",
    "devices.disks[].driver_type": "raw or qcow2",
    "devices.disks[].address.multifunction": "on or off",
    "devices.controllers[].type": "from a fixed list",
    "devices.controllers[].model": "from a fixed list",
    "devices.controllers[].address.multifunction": "on or off",
    "devices.interfaces[].model": "from a fixed list",
    "devices.interfaces[].address.multifunction": "on or off",
    "devices.serials[].source.type": "pty, file or unix",
    "devices.serials[].source.mode": "bind or connect",
    "devices.consoles[].source.type": "pty, file or unix",
    "devices.consoles[].source.mode": "bind or connect",
    "devices.consoles[].target_type": "serial or virtio",
    "devices.inputs[].type": "mouse, keyboard or tablet",
    "devices.inputs[].bus": "ps2 or usb",
    "devices.memballoon.model": "virtio or none",
    "devices.memballoon.address.multifunction": "on or off",
}

#: Pieces of text QEMU's syntax or a shell gives meaning to.
NASTY = [",", ",,", "=", "id=", ",id=x", "help", "?", "no", ":", "[", "]", " ", "\t", "\n",
         "\r", "'", '"', "\\", "$(x)", ";", "&", "<", ">", "/", ".", "..", "-", "websocket=",
         "unix:", "file.", "driver=", "format=", "\u00e9", "\u202e", "\u0085", "\u2028",
         "\u00a0", "x" * 200]


def _xml_legal(c: str) -> bool:
    o = ord(c)
    return o in (9, 10, 13) or 0x20 <= o <= 0xD7FF or 0xE000 <= o <= 0xFFFD or o >= 0x10000


HOSTILE = st.lists(st.one_of(st.sampled_from(NASTY),
                             st.text(st.characters().filter(_xml_legal), max_size=4)),
                   max_size=8).map("".join)


def xml_escape(text: str) -> str:
    """Text as an attribute value or element content that parses back to exactly it."""
    out = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    out = out.replace('"', "&quot;").replace("'", "&apos;")
    return out.replace("\t", "&#9;").replace("\n", "&#10;").replace("\r", "&#13;")


def definition(field: Field | None = None, text: str = "") -> bytes:
    values = {f.slot: xml_escape(f.benign) for f in FIELDS}
    if field is not None:
        values[field.slot] = xml_escape(text)
    return TEMPLATE.format(**values).encode()


CAPS = Capabilities.from_file(DEFAULT_CAPS)


def command(data: bytes):
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


BENIGN_DOM, BENIGN_CMD = command(definition())
BENIGN = parse_argv(BENIGN_CMD.argv)


def assert_one_line(message: str) -> None:
    """A refusal is one line as the CLI prints it (qemuwrap.cli.main turns newlines into
    spaces; any other line break would still split it)."""
    printed = message.replace("\n", " ")
    assert len(printed.splitlines()) == 1, f"not one line: {printed!r}"


def check_field(field: Field, text: str) -> None:
    if field.absolute:
        text = "/" + text
    try:
        dom, cmd = command(definition(field, text))
    except QemuwrapError as exc:
        assert_one_line(str(exc))
        return
    parsed = parse_argv(cmd.argv)
    assert shape(parsed) == shape(BENIGN), f"{field.slot}={text!r} changed the options"
    meant_benign, meant = str(field.meant(BENIGN_DOM)), str(field.meant(dom))
    for (where, before), (_w, after) in zip(_leaves(BENIGN), _leaves(parsed), strict=True):
        if meant_benign in before:
            assert meant in after, f"{field.slot}={text!r}: {where} is {after!r}"
        else:
            assert after == before, f"{field.slot}={text!r} changed {where}"
    assert cmd.argv[0] == BENIGN_CMD.argv[0]


def test_benign_definition_uses_every_field():
    """The template is valid and each field's benign value reaches the model."""
    for field in FIELDS:
        assert str(field.meant(BENIGN_DOM)) == field.benign or field.slot == "uuid"


@pytest.mark.parametrize("field", FIELDS, ids=[f.slot for f in FIELDS])
@settings(derandomize=True, max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(text=HOSTILE)
def test_hostile_text_stays_a_value(field, text):
    check_field(field, text)


@pytest.mark.parametrize("field", FIELDS, ids=[f.slot for f in FIELDS])
@pytest.mark.parametrize("text", ["websocket=0.0.0.0", "a,id=x", "a,,id=x", "help", "?", "",
                                  "no", "x=y", ",", "=", "id=evil", "file.driver=nbd",
                                  "\n", " "])
def test_known_hostile_text_stays_a_value(field, text):
    """The cases that broke (or nearly) in issue 9, for every field, every run."""
    check_field(field, text)


def free_text_paths(cls: type, prefix: str = "") -> set[str]:
    """``str`` fields reachable from the record ``cls``, as dotted paths (``[]`` for list
    items); hidden fields (source nodes) and dicts are skipped."""
    found = set()
    hints: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        hints.update(getattr(klass, "__annotations__", {}))
    scope = vars(sys.modules[cls.__module__])
    for name in cls._fields:
        if name in cls._hidden or name.startswith("_"):
            continue
        hint = str(hints.get(name, ""))
        if hint.startswith("dict"):
            continue
        path = f"{prefix}{name}{'[]' if hint.startswith(('list', 'tuple')) else ''}"
        records = []
        for ident in re.findall(r"[A-Za-z_]\w*", hint):
            obj = scope.get(ident)
            members = obj.__args__ if isinstance(obj, types.UnionType) else (obj,)
            records += [m for m in members if isinstance(m, type) and issubclass(m, Record)]
        for record in records:
            found |= free_text_paths(record, f"{path}.")
        if re.search(r"\bstr\b", hint):
            found.add(path)
    return found


def test_every_free_text_field_is_covered():
    """A new free-text field in the model must get a row in FIELDS (or NOT_FREE_TEXT)."""
    paths = free_text_paths(Domain)
    assert "devices.disks[].source" in paths and "name" in paths  # the walk works
    covered = {f.model_path for f in FIELDS} | set(NOT_FREE_TEXT)
    missing = sorted(paths - covered)
    assert not missing, f"free-text fields without a row in FIELDS: {missing}"
    assert not sorted(covered - paths - {"uuid", "genid"}), "rows for fields that are gone"
