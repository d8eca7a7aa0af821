"""QEMU 7.2's own reading of option strings, modelled for the tests.

Two parsers, as QEMU has them:

- QemuOpts (util/qemu-option.c): ``opts_parse_id`` first scans the whole string for
  ``id=`` reading *every* token as a key (so a bare first value is a flag name there),
  then ``opts_do_parse`` reads tokens: ``key=value`` with ``,,`` for a comma inside the
  value, a bare first token as the implied key's value (escaped the same way), any
  other bare token as a flag (``noX`` is X=off, ``help``/``?`` asks for help); ``id``
  tokens are skipped.  A list that merges (``-name``, ``-rtc``, ...) refuses an id;
  an id must be an identifier.
- keyval (util/keyval.c, as of 7.2): ``key=value`` with ``,,`` escapes and dotted keys
  (``file.filename``) building nested dicts; a bare *first* token is the implied key's
  value and ends at the first ``,`` or ``=`` -- no escaping there; a bare ``help`` or
  ``?`` anywhere asks for help; a key must be a QAPI name (a letter, then letters,
  digits, ``-``, ``_``), list indexes after the first fragment.

:func:`parse_argv` splits a whole argv by the options qemuwrap uses and parses each
value with the parser QEMU uses for it.  It is written from QEMU's sources and checked
against the real binary in test_qemuopts.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

HELP = ("help", "?")


class OptionError(ValueError):
    """QEMU would refuse the option string (the message is QEMU's)."""


@dataclass
class Opts:
    """What QEMU reads from one option string."""

    kind: str  # "qemuopts", "keyval" or "raw"
    values: dict = field(default_factory=dict)  # key -> value (keyval: nested dicts)
    id: str | None = None  # QemuOpts: the id opts_parse_id found
    help: bool = False
    order: list = field(default_factory=list)  # QemuOpts: (key, value) in order, repeats kept


# --------------------------------------------------------------------------- QemuOpts


def _get_opt_value(params: str, p: int) -> tuple[int, str]:
    """``get_opt_value``: up to the first single comma; ``,,`` is one comma."""
    value = []
    n = len(params)
    while True:
        offset = params.find(",", p)
        if offset < 0:
            offset = n
        length = offset - p
        doubled = offset + 1 < n and params[offset + 1] == ","
        if doubled:
            length += 1
        value.append(params[p:p + length])
        if offset == n or not doubled:
            return offset, "".join(value)
        p = offset + 2


def _name_value(params: str, p: int, firstname: str | None) -> tuple[int, str, str, bool]:
    """``get_opt_name_value``: (next position, name, value, is_help)."""
    rest = params[p:]
    length = len(re.match(r"[^=,]*", rest)[0])
    is_help = False
    if p + length >= len(params) or params[p + length] != "=":
        if firstname is not None:
            name = firstname
            p, value = _get_opt_value(params, p)
        else:
            name = params[p:p + length]
            p += length
            if name.startswith("no"):
                name, value = name[2:], "off"
            else:
                value = "on"
                is_help = name in HELP
    else:
        name = params[p:p + length]
        p, value = _get_opt_value(params, p + length + 1)
    assert p == len(params) or params[p] == ","
    if p < len(params):
        p += 1
    return p, name, value, is_help


def _id_wellformed(text: str) -> bool:
    return re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]*", text) is not None


def parse_qemuopts(params: str, implied: str | None = None, *, merge_lists: bool = False) \
        -> Opts:
    """``qemu_opts_parse_noisily(list, params, permit_abbrev=implied is not None)``."""
    p, found_id = 0, None
    while p < len(params):  # opts_parse_id: every token read as a key
        p, name, value, _help = _name_value(params, p, None)
        if name == "id":
            found_id = value
            break
    if found_id is not None:
        if merge_lists:
            raise OptionError("Invalid parameter 'id'")
        if not _id_wellformed(found_id):
            raise OptionError("Parameter 'id' expects an identifier")
    opts = Opts("qemuopts", id=found_id)
    p, firstname = 0, implied
    while p < len(params):
        p, name, value, is_help = _name_value(params, p, firstname)
        if is_help:
            opts.help = True
            return opts
        firstname = None
        if name == "id":
            continue
        opts.order.append((name, value))
        opts.values[name] = value  # qemu_opt_get: the last one wins
    return opts


# --------------------------------------------------------------------------- keyval


def _qapi_name_length(s: str) -> int:
    """``parse_qapi_name(s, complete=false)``: length of the name at the start, or -1."""
    m = re.match(r"(?:__[A-Za-z0-9.-]*_)?[A-Za-z][A-Za-z0-9_-]*", s)
    return len(m[0]) if m else -1


def parse_keyval(params: str, implied: str | None = None) -> Opts:
    """``keyval_parse(params, implied_key, &help)`` of QEMU 7.2."""
    opts = Opts("keyval")
    root: dict = opts.values
    s = 0
    while s < len(params):
        s = _keyval_one(root, params, s, implied, opts)
        implied = None
    return opts


def _keyval_one(root: dict, params: str, start: int, implied: str | None, opts: Opts) -> int:
    length = len(re.match(r"[^=,]*", params[start:])[0])
    key, key_from, val_end = params, start, None
    if length and (start + length >= len(params) or params[start + length] != "="):
        token = params[start:start + length]
        if token in HELP:
            opts.help = True
            s = start + length
            return s + 1 if s < len(params) and params[s] == "," else s
        if implied is not None:
            key, key_from, val_end = implied, 0, start + length
            length = len(implied)
    key_end = key_from + length
    whole = key[key_from:key_end]
    cur = root
    s = key_from
    name = ""
    while True:
        if s != key_from and re.match(r"\d+", key[s:key_end]):
            frag = len(re.match(r"\d+", key[s:key_end])[0])
        else:
            frag = max(_qapi_name_length(key[s:key_end]), 0)
        if not frag or (s + frag < key_end and key[s + frag] != "."):
            raise OptionError(f"Invalid parameter '{whole}'")
        if frag >= 128:
            raise OptionError(f"Parameter '{key[s:s + frag]}' is too long")
        if s != key_from:
            old = cur.get(name)
            if old is not None and not isinstance(old, dict):
                raise OptionError(f"Parameters '{key[key_from:s - 1]}.*' used inconsistently")
            cur = cur.setdefault(name, {})
        name = key[s:s + frag]
        s += frag
        if s >= key_end or key[s] != ".":
            break
        s += 1
    if val_end is not None:
        value = params[start:val_end]
        s = val_end + 1 if val_end < len(params) and params[val_end] == "," else val_end
    else:
        s = key_end
        if s >= len(params) or params[s] != "=":
            raise OptionError(f"Expected '=' after parameter '{whole}'")
        s, value = _get_opt_value(params, s + 1)
        if s < len(params):
            s += 1
    if isinstance(cur.get(name), dict):
        raise OptionError(f"Parameters '{whole}.*' used inconsistently")
    cur[name] = value
    return s


# --------------------------------------------------------------------------- argv


#: How QEMU 7.2 reads the value of each option qemuwrap emits: (parser, implied key,
#: merge_lists).  Options without a value are in NO_VALUE.
OPTIONS: dict[str, tuple[str, str | None, bool]] = {
    "-name": ("qemuopts", "guest", True),
    "-machine": ("keyval", "type", False),
    "-accel": ("qemuopts", "accel", False),
    "-m": ("qemuopts", "size", True),
    "-smp": ("qemuopts", "cpus", True),
    "-uuid": ("raw", None, False),
    "-device": ("qemuopts", "driver", False),
    "-display": ("keyval", "type", False),
    "-chardev": ("qemuopts", "backend", False),
    "-mon": ("qemuopts", "chardev", False),
    "-pidfile": ("raw", None, False),
    "-rtc": ("qemuopts", None, True),
    "-action": ("qemuopts", None, True),
    "-boot": ("qemuopts", "order", True),
    "-kernel": ("raw", None, False),
    "-initrd": ("raw", None, False),
    "-append": ("raw", None, False),
    "-blockdev": ("keyval", "driver", False),
    "-netdev": ("qemuopts", "type", False),
    "-vnc": ("qemuopts", "vnc", False),
    "-msg": ("qemuopts", None, False),
    "-incoming": ("raw", None, False),
    "-loadvm": ("raw", None, False),
    "-object": ("keyval", "qom-type", False),
    "-audiodev": ("keyval", "driver", False),  # audio_parse_option: keyval, "driver"
    "-spice": ("qemuopts", None, False),
    "-fsdev": ("qemuopts", "fsdriver", False),
    "-tpmdev": ("qemuopts", "type", False),
    "-global": ("global", None, False),
    "-k": ("raw", None, False),
    "-bios": ("raw", None, False),
    "-dtb": ("raw", None, False),
    "-acpitable": ("qemuopts", None, False),
    "-compat": ("keyval", None, False),  # qobject_input_visitor_new_str(optarg, NULL, ...)
    "-cpu": ("cpu", None, False),
    "-fw_cfg": ("qemuopts", None, False),
    "-numa": ("qemuopts", "type", False),
    "-overcommit": ("qemuopts", None, False),
    "-smbios": ("qemuopts", "type", False),
}
NO_VALUE = frozenset({"-S", "-no-user-config", "-nodefaults", "-no-shutdown",
                      "-full-screen", "-no-hpet", "-no-acpi"})
_GLOBAL = re.compile(r"([^.=]{1,63})\.([^=]{1,63})=(.*)", re.S)


#: Options QEMU 7.2 also takes as JSON (a value starting with '{'): qemu_opts_from_qdict
#: for -device, the QAPI visitor for the others.
JSON_OPTIONS = frozenset({"-blockdev", "-device", "-object", "-audiodev", "-netdev",
                          "-compat", "-display"})


def parse_option(option: str, value: str) -> Opts:
    kind, implied, merge = OPTIONS[option]
    if option in JSON_OPTIONS and value.startswith("{"):
        import json

        try:
            values = json.loads(value)
        except ValueError as exc:
            raise OptionError(f"{option}: malformed JSON: {exc}") from None
        if not isinstance(values, dict):
            raise OptionError(f"{option}: JSON value is not an object")
        return Opts("keyval", values)
    if kind == "raw":
        return Opts("raw", {"": value})
    if kind == "cpu":
        # cpu_parse_cpu_model: the model, then ","-separated features ("+f", "-f",
        # "f=v"); there is no escaping, so a feature is whatever lies between commas.
        model, *features = value.split(",")
        order = [(f.lstrip("+-").partition("=")[0], f) for f in features]
        return Opts("cpu", {"model": model, **dict(order)}, order=order)
    if kind == "global":
        # qemu_global_option: "DRIVER.PROPERTY=VALUE" is split by hand, the value taken
        # whole (commas included); anything else is QemuOpts without an implied key.
        m = _GLOBAL.fullmatch(value)
        if m is not None:
            return Opts("global", {"driver": m[1], "property": m[2], "value": m[3]})
        return parse_qemuopts(value, None, merge_lists=False)
    if kind == "keyval":
        return parse_keyval(value, implied)
    if option == "-vnc" and value in HELP:
        implied = None  # vnc_parse: permit_abbrev = !is_help_option(str)
    return parse_qemuopts(value, implied, merge_lists=merge)


def parse_argv(argv: list[str]) -> list[tuple[str, Opts | None]]:
    """``[(option, what QEMU reads from its value)]`` for argv[1:] (argv[0] is the binary).
    Raises OptionError for an option QEMU would refuse to parse, KeyError for one this
    model does not know."""
    out: list[tuple[str, Opts | None]] = []
    i = 1
    while i < len(argv):
        option = argv[i]
        if option in NO_VALUE:
            out.append((option, None))
            i += 1
            continue
        if option not in OPTIONS:
            raise KeyError(f"option {option!r} is not modelled")
        if i + 1 >= len(argv):
            raise OptionError(f"{option} requires an argument")
        out.append((option, parse_option(option, argv[i + 1])))
        i += 2
    return out
