"""The model of QEMU's option syntax (tests/qemuopts.py), and argv.py's escaping by it: unit
cases from QEMU's own reading, then cross-checks against the real binary."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from qemuwrap.errors import UnsupportedError
from qemuwrap.qemu.argv import IMPLIED_KEYS, Arg, implied_is_safe, optstr

from conftest import QEMU, needs_qemu
from qemuopts import OPTIONS, OptionError, parse_argv, parse_keyval, parse_qemuopts

# --------------------------------------------------------------------------- QemuOpts


@pytest.mark.parametrize("params, implied, order, opts_id", [
    ("a=1,b=2", None, [("a", "1"), ("b", "2")], None),
    ("x,y=1", "driver", [("driver", "x"), ("y", "1")], None),
    ("x,,y,z=1", "driver", [("driver", "x,y"), ("z", "1")], None),
    ("a=1,,2,,,b=3", None, [("a", "1,2,"), ("b", "3")], None),
    ("a=,b=", None, [("a", ""), ("b", "")], None),
    ("flag,noother", None, [("flag", "on"), ("other", "off")], None),
    ("websocket=0.0.0.0:0,to=99", "vnc", [("websocket", "0.0.0.0:0"), ("to", "99")], None),
    ("vnc=websocket=0.0.0.0:0,to=99", "vnc", [("vnc", "websocket=0.0.0.0:0"), ("to", "99")],
     None),
    # opts_parse_id reads an implied value as flag names: ",,id=" inside it is an id
    ("s,,id=leak", "vnc", [("vnc", "s,id=leak")], "leak"),
    ("vnc=s,,id=leak", "vnc", [("vnc", "s,id=leak")], None),
    ("x=,,id=bar", None, [("x", ",id=bar")], None),  # QEMU's test-qemu-opts: fixed
    ("id=a,x=1", None, [("x", "1")], "a"),
    (",x=1", "driver", [("driver", ""), ("x", "1")], None),
])
def test_qemuopts(params, implied, order, opts_id):
    opts = parse_qemuopts(params, implied)
    assert (opts.order, opts.id, opts.help) == (order, opts_id, False)


@pytest.mark.parametrize("params, implied", [("help", None), ("a=1,?", None),
                                             ("x,help", "driver")])
def test_qemuopts_help(params, implied):
    assert parse_qemuopts(params, implied).help


def test_qemuopts_implied_help_is_a_value():
    """A bare first value is the implied key's even when it reads 'help'."""
    assert parse_qemuopts("help", "driver").values == {"driver": "help"}


@pytest.mark.parametrize("params, merge, message", [
    ("a,,id=c", True, "Invalid parameter 'id'"),
    ("id=1x", False, "expects an identifier"),
])
def test_qemuopts_refusals(params, merge, message):
    with pytest.raises(OptionError, match=message):
        parse_qemuopts(params, "guest", merge_lists=merge)


# --------------------------------------------------------------------------- keyval


@pytest.mark.parametrize("params, implied, values", [
    ("driver=file,filename=/a,,b", None, {"driver": "file", "filename": "/a,b"}),
    ("qcow2,file.driver=file,file.filename=x", "driver",
     {"driver": "qcow2", "file": {"driver": "file", "filename": "x"}}),
    ("a=1,a=2", None, {"a": "2"}),  # the last one wins
    ("pc,usb=off", "type", {"type": "pc", "usb": "off"}),
])
def test_keyval(params, implied, values):
    assert parse_keyval(params, implied).values == values


@pytest.mark.parametrize("params, implied, message", [
    ("pc,,x", "type", "Invalid parameter ''"),  # no escaping in an implied value
    ("a=b=c,d", None, "Expected '='"),  # "d" is a key without "="
    ("1a=x", None, "Invalid parameter '1a'"),
    ("a=1,a.b=2", None, "used inconsistently"),
    ("a.b=1,a=2", None, "used inconsistently"),
    ("", "driver", None),
])
def test_keyval_refusals(params, implied, message):
    if message is None:
        assert parse_keyval(params, implied).values == {}
        return
    with pytest.raises(OptionError, match=message):
        parse_keyval(params, implied)


def test_keyval_help():
    assert parse_keyval("help", "type").help
    assert parse_keyval("driver=file,?", None).help
    assert not parse_keyval("helpx", "type").help


# --------------------------------------------------------------------------- argv.py


@pytest.mark.parametrize("value", ["websocket=0.0.0.0:0", "a,b", "a,,id=x", "", "help", "?",
                                   "x=y,z", ",", "="])
def test_misreadable_implied_values_get_their_key(value):
    """Every option with an implied key: QEMU reads exactly the value meant."""
    for option, key in IMPLIED_KEYS.items():
        if option not in OPTIONS:
            continue
        kind, implied, _merge = OPTIONS[option]
        assert implied == key, f"{option}: argv.py says {key}, the model {implied}"
        arg = Arg(option, optstr(value, other="1"))
        parsed = parse_argv(["qemu", option, arg.value])[0][1]
        assert parsed.values == {key: value, "other": "1"}, (option, arg.value)
        assert parsed.id is None and not parsed.help
        alone = parse_argv(["qemu", option, Arg(option, optstr(value)).value])[0][1]
        assert alone.values == {key: value}


def test_safe_implied_values_stay_short():
    assert Arg("-device", optstr("vmgenid", guid="x")).value == "vmgenid,guid=x"
    assert Arg("-vnc", optstr("127.0.0.1:0", to=99)).value == "127.0.0.1:0,to=99"
    assert Arg("-vnc", optstr("websocket=0.0.0.0:0", to=99)).value == \
        "vnc=websocket=0.0.0.0:0,to=99"
    assert implied_is_safe("pc-i440fx-7.2") and not implied_is_safe("help")


def test_an_option_without_a_known_implied_key_refuses():
    with pytest.raises(UnsupportedError, match="cannot be passed to QEMU as a value"):
        Arg("-unknown", optstr("a=b"))


# --------------------------------------------------------------------------- real QEMU


def run_qemu(tmp_path, *args: str, queries: tuple[str, ...] = ()) -> tuple[int, str, list]:
    """QEMU with no machine, paused, the given options and a QMP monitor on stdio:
    (exit status, stderr, replies to ``queries``)."""
    lines = [{"execute": "qmp_capabilities"}, *({"execute": q} for q in queries),
             {"execute": "quit"}]
    proc = subprocess.run([QEMU, "-machine", "none", "-S", "-nodefaults", "-display", "none",
                           "-no-user-config", *args, "-qmp", "stdio"],
                          input="".join(json.dumps(x) + "\n" for x in lines),
                          capture_output=True, text=True, timeout=30, cwd=tmp_path)
    replies = [json.loads(x)["return"] for x in proc.stdout.splitlines()
               if '"return"' in x]
    return proc.returncode, proc.stderr, replies[1:1 + len(queries)]


@needs_qemu
@pytest.mark.parametrize("value", ["unix:{d}/a=b", "unix:{d}/s,,id=leak",
                                   "vnc=unix:{d}/s,,id=leak", "vnc=unix:{d}/plain",
                                   "unix:{d}/x,,y,,z"])
def test_vnc_as_qemu_reads_it(tmp_path, value):
    """-vnc is QemuOpts with the implied key 'vnc': the model says which socket and which
    display id QEMU gets, or that QEMU refuses the string; QEMU agrees."""
    value = value.format(d=tmp_path)
    status, stderr, replies = run_qemu(tmp_path, "-vnc", value, queries=("query-vnc-servers",))
    try:
        parsed = parse_argv(["qemu", "-vnc", value])[0][1]
    except OptionError as exc:
        assert status == 1 and str(exc) in stderr
        return
    if "vnc" not in parsed.values:
        assert status == 1 and "Invalid parameter" in stderr, stderr
        return
    assert status == 0, stderr
    (server,) = replies[0]
    assert server["id"] == (parsed.id or "default")
    assert server["server"][0]["service"] == parsed.values["vnc"].removeprefix("unix:")


@needs_qemu
@pytest.mark.parametrize("name", ["guest=plain", "guest=a,,b", "a,,id=c", "guest=a,,,,id=c",
                                  "x=1", "guest=,debug-threads=on", "guest=help"])
def test_name_as_qemu_reads_it(tmp_path, name):
    status, stderr, replies = run_qemu(tmp_path, "-name", name, queries=("query-name",))
    try:
        parsed = parse_argv(["qemu", "-name", name])[0][1]
    except OptionError as exc:
        assert status == 1 and str(exc) in stderr, stderr
        return
    if set(parsed.values) - {"guest", "debug-threads"}:
        assert status == 1 and "Invalid parameter" in stderr, stderr
        return
    assert status == 0, stderr
    assert replies[0].get("name") == parsed.values.get("guest")


@needs_qemu
@pytest.mark.parametrize("value", ["driver=file,node-name=n,filename={d}/a,,b",
                                   "file,node-name=n,filename={d}/a,,b",
                                   "fi,,le,node-name=n,filename={d}/a",
                                   "driver=file,node-name=n,filename={d}/a=b,,c=d"])
def test_blockdev_as_qemu_reads_it(tmp_path, value):
    """-blockdev is keyval: QEMU opens exactly the file the model names."""
    value = value.format(d=tmp_path)
    for name in ("a,b", "a", "a=b,c=d"):
        (tmp_path / name).write_bytes(b"\0" * 512)
    status, stderr, replies = run_qemu(tmp_path, "-blockdev", value,
                                       queries=("query-named-block-nodes",))
    try:
        parsed = parse_argv(["qemu", "-blockdev", value])[0][1]
    except OptionError as exc:
        assert status == 1 and str(exc) in stderr, stderr
        return
    assert status == 0, stderr
    assert replies[0][0]["file"] == parsed.values["filename"]


@needs_qemu
def test_chardev_file_as_qemu_reads_it(tmp_path):
    """QEMU creates exactly the file the model says, and the id the model says."""
    value = f"file,id=c0,path={tmp_path}/x,,id=y,,logfile=z"
    status, stderr, replies = run_qemu(tmp_path, "-chardev", value, queries=("query-chardev",))
    parsed = parse_argv(["qemu", "-chardev", value])[0][1]
    assert status == 0, stderr
    assert os.path.exists(parsed.values["path"])
    assert sorted(os.listdir(tmp_path)) == ["x,id=y,logfile=z"]
    assert [c["label"] for c in replies[0] if c["label"] != "compat_monitor0"] == [parsed.id]
