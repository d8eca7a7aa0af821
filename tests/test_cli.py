"""The qemuwrap command as a user runs it: output, exit statuses, one-line errors."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from conftest import DEFAULT_CAPS, GOLDEN_STATE_ROOT, XML2ARGV

BASE = ["--caps", str(DEFAULT_CAPS), "--state-dir", GOLDEN_STATE_ROOT, "--no-host-check"]


def qemuwrap(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qemuwrap", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=60)


def test_dry_run_prints_the_golden_args():
    res = qemuwrap("dry-run", str(XML2ARGV / "genid.xml"), *BASE)
    assert res.returncode == 0, res.stderr
    assert res.stdout == (XML2ARGV / "genid.args").read_text()
    assert res.stderr == ""


def test_dry_run_is_ready_to_paste_into_a_shell():
    """The printed text, run through a shell, yields exactly the argv (quoting is right)."""
    res = qemuwrap("dry-run", str(XML2ARGV / "escape-shell.xml"), *BASE)
    js = json.loads(qemuwrap("dry-run", "--json", str(XML2ARGV / "escape-shell.xml"),
                             *BASE).stdout)
    script = res.stdout.replace("/usr/bin/qemu-system-x86_64",
                                'python3 -c "import sys,json; print(json.dumps(sys.argv[1:]))"'
                                " /usr/bin/qemu-system-x86_64", 1)
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == js["argv"]
    assert "guest=it's a $guest,debug-threads=on" in js["argv"]


def test_dry_run_json():
    res = qemuwrap("dry-run", "--json", str(XML2ARGV / "genid.xml"), *BASE)
    data = json.loads(res.stdout)
    assert data["env"]["LC_ALL"] == "C"
    assert data["argv"][0] == "/usr/bin/qemu-system-x86_64"
    i = data["argv"].index("-uuid")
    assert data["argv"][i + 2:i + 4] == [
        "-device", "vmgenid,guid=e9392370-2917-565e-692b-d057f46512d6,id=vmgenid0"]


def test_dry_run_explain_names_the_element():
    res = qemuwrap("dry-run", "--explain", str(XML2ARGV / "genid.xml"), *BASE)
    line = next(ln for ln in res.stdout.splitlines() if "vmgenid" in ln)
    assert "line 4: <genid>e9392370-2917-565e-692b-d057f46512d6</genid>" in line


def test_dry_run_with_empty_genid_writes_nothing_and_says_so(tmp_path):
    src = tmp_path / "auto.xml"
    src.write_bytes((XML2ARGV / "genid-auto.xml").read_bytes())
    before = (hashlib.sha256(src.read_bytes()).hexdigest(), src.stat().st_mtime_ns)
    res = qemuwrap("dry-run", str(src), *BASE)
    assert res.returncode == 0
    assert "is not saved" in res.stderr and res.stderr.count("\n") == 1
    guid = res.stderr.split("genid ")[1].split()[0]
    assert f"vmgenid,guid={guid},id=vmgenid0" in res.stdout
    assert (hashlib.sha256(src.read_bytes()).hexdigest(), src.stat().st_mtime_ns) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["auto.xml"]


@pytest.mark.parametrize("name", ["genid-twice", "genid-noacpi", "unsupported-device",
                                  "genid-no-device"])
def test_refusals_are_one_line_with_file_and_reason(name):
    caps = (XML2ARGV / f"{name}.caps")
    args = ["--caps", str(DEFAULT_CAPS.parent / caps.read_text().strip())] if caps.exists() \
        else ["--caps", str(DEFAULT_CAPS)]
    path = str(XML2ARGV / f"{name}.xml")
    res = qemuwrap("dry-run", path, *args)
    assert res.returncode == 1
    assert res.stdout == ""
    expected = (XML2ARGV / f"{name}.err").read_text().splitlines()
    assert res.stderr == "".join(f"qemuwrap: {path}: {line}\n" for line in expected)
    assert "Traceback" not in res.stderr


def test_missing_file_and_malformed_xml(tmp_path):
    res = qemuwrap("dry-run", str(tmp_path / "nope.xml"), *BASE)
    assert res.returncode == 1
    assert res.stderr == f"qemuwrap: {tmp_path / 'nope.xml'}: cannot read: No such file or " \
                         "directory\n"
    bad = tmp_path / "bad.xml"
    bad.write_text("<domain type='qemu'><name>x</name>")
    res = qemuwrap("dry-run", str(bad), *BASE)
    assert res.returncode == 1 and res.stderr.count("\n") == 1
    assert "malformed XML" in res.stderr and "Traceback" not in res.stderr


def test_entities_are_refused(tmp_path):
    bomb = tmp_path / "bomb.xml"
    bomb.write_text('<?xml version="1.0"?>\n<!DOCTYPE domain [<!ENTITY a "aaaaaaaaaa">'
                    '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>\n'
                    "<domain type='qemu'><name>&b;</name></domain>\n")
    res = qemuwrap("dry-run", str(bomb), *BASE)
    assert res.returncode == 1
    assert "DOCTYPE and entity declarations are not allowed" in res.stderr


def test_oversized_file_is_refused(tmp_path):
    big = tmp_path / "big.xml"
    big.write_text("<domain type='qemu'>" + " " * (2 << 20) + "</domain>")
    res = qemuwrap("dry-run", str(big), *BASE)
    assert res.returncode == 1 and "larger than" in res.stderr


def test_usage_errors_exit_2():
    assert qemuwrap("dry-run").returncode == 2
    assert qemuwrap("frobnicate", "x.xml").returncode == 2
    assert qemuwrap("dry-run", "--json", "--explain", "x.xml").returncode == 2


def test_validate(tmp_path):
    res = qemuwrap("validate", str(XML2ARGV / "full-pc.xml"), *BASE)
    assert res.returncode == 0, res.stderr
    res = qemuwrap("validate", str(XML2ARGV / "unsupported-device.xml"), *BASE)
    assert res.returncode == 1 and "sound" in res.stderr


def test_dry_run_imports_stay_light(tmp_path):
    """A dry run with a valid capabilities cache imports no asyncio, qemu.qmp or lxml."""
    code = ("import sys; from qemuwrap.cli import main; rc = main(['dry-run', sys.argv[1], "
            "'--caps', sys.argv[2]]); heavy = [m for m in ('asyncio', 'qemu.qmp', 'lxml', "
            "'lxml.etree') if m in sys.modules]; print(heavy, file=sys.stderr); "
            "raise SystemExit(rc)")
    res = subprocess.run([sys.executable, "-c", code, str(XML2ARGV / "genid.xml"),
                          str(DEFAULT_CAPS)], capture_output=True, text=True)
    assert res.returncode == 0
    assert res.stderr.strip() == "[]"


def test_version_and_debug():
    from qemuwrap import __version__

    res = qemuwrap("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"qemuwrap {__version__}"
    res = qemuwrap("-v", "dry-run", str(XML2ARGV / "genid.xml"), *BASE)
    assert res.returncode == 0 and "qemuwrap: debug: " in res.stderr


def test_options_before_or_after_the_subcommand(tmp_path):
    after = qemuwrap("dry-run", str(XML2ARGV / "genid.xml"), "--json", *BASE)
    before = qemuwrap("--json", *BASE[:-1], "dry-run", str(XML2ARGV / "genid.xml"),
                      "--no-host-check")
    assert after.returncode == before.returncode == 0
    assert after.stdout == before.stdout and json.loads(before.stdout)["argv"]
    res = qemuwrap("--state-dir", str(tmp_path), "status", "nosuch")
    assert res.returncode == 1 and f"state root {tmp_path}" in res.stderr
    assert qemuwrap("--json", "run", "x.xml").returncode == 2  # run reports nothing


def test_validate_json():
    res = qemuwrap("validate", "--json", str(XML2ARGV / "full-pc.xml"), *BASE)
    assert json.loads(res.stdout) == {"file": str(XML2ARGV / "full-pc.xml"), "valid": True}


def test_shell_completion_comes_from_the_parser():
    pytest.importorskip("shtab", reason="shtab is not installed (pip install shtab)")
    res = qemuwrap("completion", "bash")
    assert res.returncode == 0
    for word in ("dry-run", "snapshot", "--shutdown-timeout", "--allow-duplicate-genid"):
        assert word in res.stdout


@pytest.mark.parametrize("argv", [
    ["dry-run", "x.xml"], ["--json", "dry-run", "x.xml", "--no-host-check"],
    ["--caps", "run", "dry-run", "x.xml"], ["--caps=c.json", "-v", "list"],
    ["--state-dir", "/s", "status", "vm"], ["--st", "/s", "--js", "list"],
    ["-v", "snapshot", "create", "vm", "s1"], ["clone", "a.xml", "b.xml", "--name", "b"]])
def test_a_run_parses_with_its_subcommand_alone_as_with_every_one(argv):
    """main() builds the parser for the subcommand argv names (the others' arguments cost
    a dry run more than translating genid.xml): argv means the same to both parsers."""
    from qemuwrap.cli import build_parser, command_in

    assert command_in(argv) is not None
    assert vars(build_parser(command_in(argv)).parse_args(argv)) == \
        vars(build_parser().parse_args(argv))


@pytest.mark.parametrize("argv", [
    [], ["--help"], ["-h", "dry-run"], ["--version"], ["bogus"], ["--", "dry-run"],
    ["--caps"], ["--caps", "--json", "list"], ["-vv", "list"], ["--json=1", "list"],
    ["-1", "list"], ["--s=", "--d", "x", "list"]])
def test_anything_else_is_parsed_by_the_full_parser(argv):
    """Help, usage errors and spellings command_in does not follow get every subcommand,
    so their messages (the list of commands) are the full parser's."""
    from qemuwrap.cli import command_in

    assert command_in(argv) is None


@pytest.mark.parametrize("columns", [None, "120", "0", "-3", "wide"])
def test_help_is_as_wide_as_shutil_would_make_it(monkeypatch, columns):
    """The parser's formatter sizes itself without importing shutil, to the same width."""
    import shutil

    from qemuwrap.cli import _terminal_columns

    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert _terminal_columns() == shutil.get_terminal_size().columns


def test_man_page_is_generated_from_the_parser():
    """man/qemuwrap.1 is argparse-manpage's output for build_parser(): regenerate it with
    scripts/manpage when the options change."""
    pytest.importorskip("build_manpages", reason="argparse-manpage is not installed")
    from conftest import ROOT

    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "manpage"), "-"],
                         capture_output=True, text=True, check=True)
    shipped = (ROOT / "man" / "qemuwrap.1").read_text()

    def body(text):
        return [line for line in text.splitlines() if not line.startswith(".TH")]

    assert body(res.stdout) == body(shipped), "man/qemuwrap.1 is stale: run scripts/manpage"


def test_network_definitions_through_the_cli(tmp_path):
    """net-define stores libvirt's <network> (uuid, bridge and MAC completed), net-list and
    net-dumpxml show it, net-undefine removes it (bringing networks up is proven in
    tests/test_networks.py, in network namespaces)."""
    env = {**os.environ, "QEMUWRAP_CONFIG_DIR": str(tmp_path / "conf")}
    xml = tmp_path / "default.xml"
    xml.write_text("<network><name>default</name><forward mode='nat'/>"
                   "<ip address='192.168.122.1' netmask='255.255.255.0'><dhcp>"
                   "<range start='192.168.122.2' end='192.168.122.254'/></dhcp></ip>"
                   "</network>")

    def qw(*args):
        return subprocess.run([sys.executable, "-m", "qemuwrap", *args, "--state-dir",
                               str(tmp_path / "state")], capture_output=True, text=True,
                              env=env)

    res = qw("net-define", str(xml), "--json")
    assert res.returncode == 0, res.stderr
    defined = json.loads(res.stdout)
    assert defined["name"] == "default" and defined["bridge"].startswith("virbr")
    assert (tmp_path / "conf" / "networks" / "default.xml").exists()
    nets = json.loads(qw("net-list", "--json").stdout)
    assert [(n["name"], n["state"], n["persistent"]) for n in nets] == \
        [("default", "inactive", True)]
    dump = qw("net-dumpxml", "default").stdout
    assert "<name>default</name>" in dump and defined["uuid"] in dump
    assert qw("net-undefine", "default").returncode == 0
    assert json.loads(qw("net-list", "--json").stdout) == []
    res = qw("net-start", "nosuch")
    assert res.returncode == 1 and len(res.stderr.splitlines()) == 1


def test_dry_run_explain_says_what_an_element_asks_that_is_not_applied():
    """A note beside the option of the element (here -machine, from <os><type>): a
    currentMemory without a balloon is accepted, as libvirt does, and said."""
    res = qemuwrap("dry-run", "--explain", str(XML2ARGV / "balloon-needed.xml"), *BASE)
    assert res.returncode == 0, res.stderr
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("-machine "))
    assert "# line 7: <type arch='x86_64' machine='pc'>hvm</type> (qemuwrap: " \
           "<currentMemory> not applied: without a memballoon the guest has all of " \
           "<memory> (as under libvirt))" in line
