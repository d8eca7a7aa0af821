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


def kernel_dom(**changes):
    xml = (XML2ARGV / "genid.xml").read_text().replace(
        "    <boot dev='hd'/>\n",
        "    <kernel>/boot/vmlinuz</kernel>\n    <initrd>/boot/initrd.img</initrd>\n").replace(
        "    <memballoon model='none'/>\n",
        "    <disk type='file' device='disk'><source file='/var/lib/a.img'/>"
        "<target dev='vda'/></disk>\n    <memballoon model='none'/>\n")
    for old, new in changes.items():
        xml = xml.replace(old, new)
    return loads(xml)


@pytest.mark.parametrize("old, new, what", [
    ("/usr/bin/qemu-system-x86_64", "/tmp/evil", "emulator"),
    ("/boot/vmlinuz", "/tmp/vmlinuz", "kernel"),
    ("/boot/initrd.img", "/tmp/initrd", "initrd"),
    ("/var/lib/a.img", "/etc/shadow", "disk sources"),
])
def test_what_runs_must_not_change(old, new, what):
    """issue 9: the ABI check covers the emulator and every path that selects what runs."""
    with pytest.raises(ABIError, match=f"^Target domain {what} .*{new}.* does not match "
                                       f"source .*{old}"):
        check_abi_stability(kernel_dom(), kernel_dom(**{old: new}))


def test_same_paths_spelled_differently_are_stable():
    check_abi_stability(kernel_dom(), kernel_dom(**{"/boot/vmlinuz": "/boot//./vmlinuz"}))


def test_a_new_path_field_is_one_row(monkeypatch):
    """The model's firmware fields (when it has them) are checked by RUNS_FROM's rows."""
    from qemuwrap.conf import abi

    src, dst = kernel_dom(), kernel_dom()
    src.os.__dict__["loader"] = "/usr/share/OVMF/OVMF_CODE_4M.fd"
    dst.os.__dict__["loader"] = "/tmp/evil.fd"
    with pytest.raises(ABIError, match="^Target domain loader /tmp/evil.fd"):
        check_abi_stability(src, dst)
    monkeypatch.setattr(abi, "RUNS_FROM", tuple(r for r in abi.RUNS_FROM if r[0] != "loader"))
    check_abi_stability(src, dst)


QEMU_NS = "xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'"


def runs_dom(*, args=("-set", "device.x.y=1"), env=(("QEMU_X", "1"),),
             backing="/var/lib/base.qcow2", share="/srv/share"):
    """A definition with every kind of RUNS_FROM row: verbatim QEMU arguments and
    environment, a disk with a backing chain, a shared directory."""
    xml = (XML2ARGV / "genid.xml").read_text()
    xml = xml.replace("<domain type='qemu' id='1'>", f"<domain type='qemu' {QEMU_NS}>")
    chain = ("<backingStore/>" if backing is None else
             f"<backingStore type='file'><format type='qcow2'/><source file='{backing}'/>"
             "<backingStore/></backingStore>")
    devices = (f"    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
               f"<source file='/var/lib/top.qcow2'/>{chain}<target dev='vda'/></disk>\n"
               f"    <filesystem type='mount' accessmode='passthrough'><source "
               f"dir='{share}'/><target dir='share'/></filesystem>\n"
               "    <memballoon model='none'/>\n")
    xml = xml.replace("    <memballoon model='none'/>\n", devices)
    extra = "".join(f"<qemu:arg value='{a}'/>" for a in args) + \
        "".join(f"<qemu:env name='{n}' value='{v}'/>" for n, v in env)
    xml = xml.replace("</domain>", f"  <qemu:commandline>{extra}</qemu:commandline>\n"
                                   "</domain>")
    return loads(xml)


def test_every_runs_from_row_is_stable_when_equal():
    check_abi_stability(runs_dom(), runs_dom())


@pytest.mark.parametrize("changes, what, new", [
    ({"args": ("-set", "device.x.y=2")}, "qemu:commandline arguments", "device.x.y=2"),
    ({"args": ("-set", "device.x.y=1", "-netdev", "tap,script=/tmp/prog")},
     "qemu:commandline arguments", "script=/tmp/prog"),
    ({"args": ()}, "qemu:commandline arguments", r"\[\]"),
    ({"env": (("QEMU_X", "2"),)}, "qemu:commandline environment", "'QEMU_X', '2'"),
    ({"env": (("LD_PRELOAD", "/tmp/evil.so"), ("QEMU_X", "1"))},
     "qemu:commandline environment", "LD_PRELOAD"),
    ({"backing": "/tmp/evil.qcow2"}, "disk backing chains", "/tmp/evil.qcow2"),
    ({"backing": None}, "disk backing chains", r"\[None\]"),
    ({"share": "/etc"}, "filesystem sources", "'/etc'"),
])
def test_what_runs_covers_arguments_chains_and_shares(changes, what, new):
    """issue 9: what selects what runs includes <qemu:commandline> (verbatim QEMU
    arguments and environment), disk backing chains and filesystem sources."""
    with pytest.raises(ABIError, match=f"^Target domain {what} .*{new}.* does not match "
                                       "source "):
        check_abi_stability(runs_dom(), runs_dom(**changes))


def test_network_disk_sources_are_compared():
    def net(host: str):
        xml = (XML2ARGV / "genid.xml").read_text().replace(
            "    <memballoon model='none'/>\n",
            "    <disk type='network' device='disk'><driver name='qemu' type='raw'/>"
            f"<source protocol='nbd' name='export'><host name='{host}' port='10809'/>"
            "</source><target dev='vda'/></disk>\n    <memballoon model='none'/>\n")
        return loads(xml)

    check_abi_stability(net("storage.example"), net("storage.example"))
    with pytest.raises(ABIError, match="^Target domain disk sources .*evil.example"):
        check_abi_stability(net("storage.example"), net("evil.example"))
