"""The differential harness against libvirt (qemuwrap/testing/).

The pure parts run on reports recorded from the real QEMU here (``data/differential``;
``PYTHONPATH=. .venv/bin/python tests/test_differential.py --record`` makes them
again): ``pc-a.json`` and ``pc-b.json`` are two i440fx machines whose differences
are known (``PC_B_CHANGES``), with different QEMU ids, node names and chardev names
throughout; ``q35.qtree`` is ``info qtree`` of a q35 machine with root ports, a
PCIe-to-PCI bridge and AHCI disks.
One integration test runs the whole harness on three of the project's definitions
(it needs virsh, i.e. libvirt, and QEMU).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from qemuwrap.testing import (
    bootargv,
    classify,
    compare,
    facts,
    qtree,
    report,
    translate,
    workcopy,
)

from conftest import DATA, QEMU, ROOT, XML2ARGV

REC = DATA / "differential"
RECORD_SCRATCH = "/tmp/qwdiff-record"  # placeholder images lived here when recording
PC_CTX = facts.Context(macs={"52:54:00:12:34:56"}, has_uuid=True,
                       genid="8fc9a2b5-7a5e-4c79-9f36-5bc1c4a1a9d2", scratch=RECORD_SCRATCH)
needs_qemu_img = pytest.mark.skipif(shutil.which("qemu-img") is None,
                                    reason="qemu-img is not installed (Debian package qemu-utils)")


def recorded(name: str) -> dict:
    return json.loads((REC / f"{name}.json").read_text())


# --- info qtree ---------------------------------------------------------------------

def test_qtree_paths_name_places_not_ids():
    located = qtree.locate(qtree.parse((REC / "q35.qtree").read_text()))
    what = {path: (dev.type, dev.pci_ids) for path, dev in located.items()}
    assert what["pcie.0/02.0"] == ("pcie-root-port", "1b36:000c")
    assert what["pcie.0/02.0/00.0"] == ("virtio-net-pci", "1af4:1041")
    assert what["pcie.0/02.0/00.0/virtio"] == ("virtio-net-device", None)
    assert what["pcie.0/02.1/00.0"] == ("virtio-blk-pci", "1af4:1042")
    assert what["pcie.0/02.3/00.0"] == ("pcie-pci-bridge", "1b36:000e")
    assert what["pcie.0/02.3/00.0/01.0"] == ("e1000", "8086:100e")  # behind the bridge
    assert what["pcie.0/02.2/00.0/port=1"] == ("usb-tablet", None)
    assert what["pcie.0/1f.2/bus2/unit=0"] == ("ide-hd", None)  # third AHCI port
    assert what["pcie.0/1f.2/bus0/unit=0"] == ("ide-cd", None)
    assert what["pcie.0/1f.0/isa-serial@3f8"] == ("isa-serial", None)
    assert what["pcie.0/1f.0/i8257#0"][0] == what["pcie.0/1f.0/i8257#1"][0] == "i8257"
    assert "kvmvapic" in what


def test_qtree_paths_do_not_depend_on_ids_or_bus_names():
    text = (REC / "q35.qtree").read_text()
    renamed = text
    for old, new in (('"net0"', '"nic-a"'), ('"pci.1"', '"rp1"'), ("bus: pci.1", "bus: rp1"),
                     ('"virtio-disk0"', '"d"'), ('"usb"', '"xhci9"'),
                     ("bus: usb.0", "bus: xhci9.0")):
        assert old in renamed
        renamed = renamed.replace(old, new)
    before = {p: d.type for p, d in qtree.locate(qtree.parse(text)).items()}
    after = {p: d.type for p, d in qtree.locate(qtree.parse(renamed)).items()}
    assert before == after


def test_qtree_properties_without_decoration():
    root = qtree.parse((REC / "q35.qtree").read_text())
    net = next(d for d in qtree.walk(root) if d.type == "virtio-net-device")
    assert net.props["mac"] == "52:54:00:aa:bb:cc"
    port = next(d for d in qtree.walk(root) if d.type == "pcie-root-port" and d.id == "pci.1")
    assert port.props["chassis"] == "1" and port.props["port"] == "16"
    assert port.props["multifunction"] == "true"
    assert qtree.prop_value("4294967295 (4 GiB)") == "4294967295"
    assert qtree.prop_value('"auto"') == "auto"
    assert qtree.prop_value("02.1") == "02.1"


@pytest.mark.parametrize("text", ["", "hello", "  dev: x, id \"\"\n", "bus: a\nbus: b\n"])
def test_qtree_rejects_what_is_not_qtree(text):
    with pytest.raises(qtree.QtreeError):
        qtree.parse(text)


# --- facts and comparison -------------------------------------------------------------

def test_facts_name_the_machine():
    f = facts.normalise(recorded("pc-a"), PC_CTX)
    s = f["scalars"]
    assert s["identity: name"] == "recorded"
    assert s["identity: uuid"] == "6ba7b810-9dad-41d1-80b4-00c04fd430c8"
    assert s["identity: genid"] == "8fc9a2b5-7a5e-4c79-9f36-5bc1c4a1a9d2"
    assert s["machine: type"] == "pc-i440fx-7.2"
    assert s["CPU: online"] == 2 and s["CPU: model"] == "qemu64"
    assert s["CPU: topology"]["sockets"] == 2
    assert s["memory: base"] == 256 * 1024 * 1024
    assert s["block: disk1.qcow2"] == {"at": "pci.0/01.1/bus0/unit=0", "type": "ide-hd",
                                       "format": "qcow2", "read-only": False,
                                       "removable": False}
    assert s["block: disk2.qcow2"]["at"] == "pci.0/05.0/virtio/scsi=0:0:0"
    assert s["block: empty at pci.0/01.1/bus1/unit=0"]["type"] == "ide-cd"
    assert s["NIC: 52:54:00:12:34:56"] == {"at": "pci.0/03.0", "model": "e1000"}
    assert s["chardev: pci.0/01.0/isa-serial@3f8"] == {"type": "isa-serial", "backend": "pty"}
    assert s["chardev: pci.0/04.0/virtio/nr=1"]["name"] == "org.qemu.guest_agent.0"
    assert s["boot: bootindex at pci.0/01.1/bus0/unit=0"] == 1
    assert f["devices"]["pci.0/01.2"]["what"] == "piix3-usb-uhci 8086:7020"
    assert "drive" not in f["devices"]["pci.0/01.1/bus0/unit=0"]["props"]  # a node name


def test_generated_values_compare_as_generated():
    """A uuid, genid or MAC the XML does not give is random in both tools: well-formed
    ones count as the same."""
    raw = recorded("pc-a")
    ctx = facts.Context(macs=set(), has_uuid=False, genid="", scratch=RECORD_SCRATCH)
    s = facts.normalise(raw, ctx)["scalars"]
    assert s["identity: uuid"] == s["identity: genid"] == facts.GENERATED
    assert "NIC: (generated) MAC #0" in s
    raw["genid"] = "not-a-guid"
    assert facts.normalise(raw, ctx)["scalars"]["identity: genid"] == "not-a-guid"


def test_machine_auto_is_what_qemu_resolves_it_to():
    raw = recorded("pc-a")
    raw["machine"]["acpi"], raw["machine"]["vmport"] = "auto", "off"
    s = facts.normalise(raw, PC_CTX)["scalars"]
    assert s["machine: acpi"] == "on" and s["machine: vmport"] == "off"


def test_same_machine_no_difference():
    a = facts.normalise(recorded("pc-a"), PC_CTX)
    assert compare.compare(a, a) == []


#: pc-b is pc-a with: the NIC at 00:07.0 instead of 00:03.0, no usb-hub (the keyboard on
#: port 1, not 1.1), VGA instead of cirrus, the second serial port on a pty instead of
#: null; and other ids, node names and chardev names everywhere (not differences).
PC_B_CHANGES = [
    "NIC: 52:54:00:12:34:56: at pci.0/03.0 (libvirt) vs pci.0/07.0 (qemuwrap)",
    "chardev: pci.0/01.0/isa-serial@2f8: backend null (libvirt) vs pty (qemuwrap)",
    "USB: pci.0/01.2/port=1.1 vs pci.0/01.2/port=1: usb-kbd (USB speed 12) placed "
    "differently (libvirt vs qemuwrap)",
    "PCI: pci.0/03.0 vs pci.0/07.0: e1000 8086:100e placed differently (libvirt vs qemuwrap)",
    "USB: pci.0/01.2/port=1: usb-hub (USB speed 12) only in libvirt",
    "PCI: pci.0/02.0: cirrus-vga 1013:00b8 (libvirt) vs VGA 1234:1111 (qemuwrap)",
]


def test_every_known_difference_and_nothing_else():
    a = facts.normalise(recorded("pc-a"), PC_CTX)
    b = facts.normalise(recorded("pc-b"), PC_CTX)
    assert sorted(d.line() for d in compare.compare(a, b)) == sorted(PC_B_CHANGES)


def test_a_device_missing_is_reported_once_with_what_is_behind_it():
    a = facts.normalise(recorded("pc-a"), PC_CTX)
    b = json.loads(json.dumps(a))
    for path in [p for p in b["devices"] if p.startswith("pci.0/04.0")]:
        del b["devices"][path]
    diffs = [d.line() for d in compare.compare(a, b) if d.category == "PCI"]
    assert diffs == ["PCI: pci.0/04.0 (and 2 behind it): virtio-serial-pci 1af4:1003 only "
                     "in libvirt"]


def test_property_and_scalar_differences_say_both_values():
    a = facts.normalise(recorded("pc-a"), PC_CTX)
    b = json.loads(json.dumps(a))
    b["devices"]["pci.0/03.0"]["props"]["romfile"] = "other.rom"
    b["scalars"]["memory: base"] = 1
    b["scalars"]["clock: RTC ahead of UTC (s)"] += 60  # within the tolerance
    lines = [d.line() for d in compare.compare(a, b)]
    assert lines == ["memory: base: 268435456 (libvirt) vs 1 (qemuwrap)",
                     "PCI: pci.0/03.0: e1000.romfile = efi-e1000.rom (libvirt) vs other.rom "
                     "(qemuwrap)"]
    b["scalars"]["clock: RTC ahead of UTC (s)"] += 3600  # base='localtime' vs 'utc'
    assert any(d.category == "clock" for d in compare.compare(a, b))


def test_a_different_cpu_model_is_one_line_not_hundreds():
    a = facts.normalise(recorded("pc-a"), PC_CTX)
    b = json.loads(json.dumps(a))
    b["scalars"]["CPU: model"] = "max"
    b["scalars"]["CPU: property avx"] = True
    b["scalars"]["CPU: property family"] = 6
    lines = [d.line() for d in compare.compare(a, b)]
    assert lines == ["CPU: model: qemu64 (libvirt) vs max (qemuwrap)",
                     "CPU: 2 properties differ with the model"]


def test_rtc_offset():
    tm = {"tm_year": 126, "tm_mon": 10, "tm_mday": 27, "tm_hour": 20, "tm_min": 0, "tm_sec": 0}
    assert facts.rtc_offset(tm, 1795809600.0 - 3600) == 3600


def test_backend_kind():
    assert facts.backend_kind("disconnected:unix:/x/a.sock,server=on") == "unix server"
    assert facts.backend_kind("pty:/dev/pts/4") == "pty"
    assert facts.backend_kind("spicevmc") == "spicevmc"


# --- command lines made bootable ------------------------------------------------------

VIRSH_OUT = (
    "LC_ALL=C PATH=/usr/bin HOME=/r/lib/qemu/domain--1-g /usr/bin/qemu-system-x86_64 "
    "-name guest=g,debug-threads=on -S -object "
    "'{\"qom-type\":\"secret\",\"id\":\"masterKey0\",\"format\":\"raw\","
    "\"file\":\"/r/lib/qemu/domain--1-g/master-key.aes\"}' "
    "-chardev socket,id=charmonitor,path=/r/lib/qemu/domain--1-g/monitor.sock,server=on,"
    "wait=off -netdev '{\"type\":\"tap\",\"fd\":\"5\",\"id\":\"hostnet0\"}' "
    "-device '{\"driver\":\"virtio-net-pci\",\"netdev\":\"hostnet0\",\"id\":\"net0\"}' "
    "-netdev tap,fd=7,vhost=on,vhostfd=8,id=hostnet1 "
    "-device '{\"driver\":\"vhost-vsock-pci\",\"id\":\"vsock0\",\"guest-cid\":4,"
    "\"vhostfd\":\"-1\"}' -audiodev '{\"id\":\"audio1\",\"driver\":\"pa\","
    "\"server\":\"x\",\"in\":{\"mixing-engine\":false,\"name\":\"n\"}}' -display sdl "
    "-chardev null,id=chrtpm -tpmdev emulator,id=tpm-tpm0,chardev=chrtpm "
    "-sandbox on,obsolete=deny -msg timestamp=on\n")


def test_parse_virsh_splits_environment_and_command():
    t = bootargv.parse_virsh(VIRSH_OUT)
    assert t.env == {"LC_ALL": "C", "PATH": "/usr/bin", "HOME": "/r/lib/qemu/domain--1-g"}
    assert t.argv[:3] == ["/usr/bin/qemu-system-x86_64", "-name", "guest=g,debug-threads=on"]
    with pytest.raises(bootargv.ArgvError):
        bootargv.parse_virsh("A=b C=d\n")


def test_bootable_rules(tmp_path):
    root = tmp_path / "r"
    argv = bootargv.parse_virsh(VIRSH_OUT.replace("/r/", f"{root}/")).argv
    monitor = tmp_path / "h.qmp"
    out = bootargv.bootable(argv, tool_dirs=[root], scratch=tmp_path, monitor=monitor)
    joined = " ".join(out)
    assert "masterKey0" not in joined and "-sandbox" not in out
    assert out[out.index("-netdev") + 1] == "user,id=hostnet0"
    assert "user,id=hostnet1" in out
    assert json.loads(out[out.index("-device", out.index("user,id=hostnet1")) + 1]) == {
        "driver": "vhost-vsock-pci", "id": "vsock0", "guest-cid": 4}
    assert json.loads(out[out.index("-audiodev") + 1]) == {
        "id": "audio1", "driver": "none", "in": {"mixing-engine": False}}
    assert out[out.index("-display") + 1] == "none"
    tpm_sock = tmp_path / "tpm-chrtpm.sock"
    assert f"socket,id=chrtpm,path={tpm_sock}" in out
    assert bootargv.tpm_sockets(out) == [str(tpm_sock)]
    assert out[-4:] == ["-chardev", f"socket,id=qwdiff-mon,path={monitor},server=on,wait=off",
                        "-mon", "chardev=qwdiff-mon,mode=control"]
    assert (root / "lib/qemu/domain--1-g").is_dir()  # where libvirt's monitor socket goes
    assert out.count("-S") == 1


def test_bootable_adds_paused_and_creates_the_variable_store(tmp_path):
    template = tmp_path / "VARS.fd"
    template.write_bytes(b"vars")
    store = tmp_path / "s" / "g" / "nvram.fd"
    argv = ["qemu", "-drive", f"if=pflash,format=raw,file={store}"]
    out = bootargv.bootable(argv, tool_dirs=[tmp_path / "s"], scratch=tmp_path,
                            monitor=tmp_path / "m", nvram_template=template)
    assert out[:2] == ["qemu", "-S"]
    assert store.read_bytes() == b"vars"


def test_memory_is_not_touched_and_shared_memory_stays_in_scratch(tmp_path):
    argv = ["qemu", "-overcommit", "mem-lock=on", "-mem-prealloc",
            "-object", '{"qom-type":"memory-backend-file","id":"shmmem-shmem0",'
                       '"mem-path":"/dev/shm/shmem0","size":4194304,"prealloc":true}',
            "-object", "memory-backend-ram,id=pc.ram,size=1G,prealloc=on"]
    out = bootargv.bootable(argv, tool_dirs=[], scratch=tmp_path, monitor=tmp_path / "m")
    assert out[1:5] == ["-S", "-overcommit", "mem-lock=off", "-object"]
    assert json.loads(out[5]) == {"qom-type": "memory-backend-file", "id": "shmmem-shmem0",
                                  "mem-path": f"{tmp_path}/shm-shmem0", "size": 4194304}
    assert out[6:8] == ["-object", "memory-backend-ram,id=pc.ram,size=1G"]


def test_split_keyval_doubles_commas():
    assert bootargv.split_keyval("file,path=/a,,b,append=on") == ["file", "path=/a,b",
                                                                  "append=on"]
    assert bootargv.option_props("user,id=n0")[""] == "user"


# --- a boot is bounded and leaves nothing behind -------------------------------------

def test_boot_that_never_reports_is_killed_at_its_deadline(tmp_path):
    from qemuwrap.testing.boot import boot

    pidfile = tmp_path / "pid"
    argv = ["sh", "-c", f'echo $$ > {pidfile}; exec sleep 60']
    result = asyncio.run(boot(argv, dict(os.environ), monitor=tmp_path / "m.qmp",
                              log=tmp_path / "log", timeout=1, netns=False))
    assert not result.ok and result.error == "no report within 1 s (QEMU killed)"
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_boot_that_fails_says_qemus_last_line(tmp_path):
    from qemuwrap.testing.boot import boot

    argv = ["sh", "-c", "echo 'warning: x' >&2; echo '2026-11-27T19:39:48.9Z qemu: -device "
                        "foo: no such device' >&2; exit 1"]
    result = asyncio.run(boot(argv, dict(os.environ), monitor=tmp_path / "m.qmp",
                              log=tmp_path / "log", timeout=10, netns=False))
    assert result.error == "qemu: -device foo: no such device"
    assert result.warnings == ["warning: x"]


# --- working copy ---------------------------------------------------------------------

DOMAIN = """<domain type='kvm'>
  <name>wc</name>
  <genid/>
  <cpu mode='host-passthrough'/>
  <os><type arch='x86_64' machine='pc'>hvm</type>
    <kernel>/boot/does-not-exist</kernel><initrd>/initrd.img</initrd>
    <nvram template='/usr/share/OVMF/OVMF_VARS.fd'>/var/lib/libvirt/nvram/wc.fd</nvram></os>
  <devices>
    <disk type='block' device='disk'><driver name='qemu' type='raw'/>
      <source dev='/dev/HostVG/wc'/><target dev='vda' bus='virtio'/></disk>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='/images/top.qcow2'/>
      <backingStore type='file'><format type='qcow2'/><source file='/images/base.qcow2'/>
      </backingStore><target dev='vdb' bus='virtio'/></disk>
    <disk type='file' device='cdrom'><target dev='hdc' bus='ide'/></disk>
    <disk type='block' device='lun'><source dev='/dev/sdz'/><target dev='sda' bus='scsi'/>
    </disk>
    <disk type='network' device='disk'><source protocol='nbd' name='x'>
      <host name='example.org' port='6000'/></source><target dev='vdc' bus='virtio'/></disk>
    <interface type='user'><mac address='52:54:00:AB:CD:EF'/></interface>
    <serial type='unix'><source mode='connect' path='/var/run/x.sock'/>
      <log file='/var/log/x.log'/></serial>
    <serial type='file'><source path='/var/log/serial.txt'/></serial>
    <channel type='pipe'><source path='/tmp/pipe'/><target type='virtio' name='p'/></channel>
  </devices>
</domain>
"""


@needs_qemu_img
def test_working_copy_rules(tmp_path):
    src = tmp_path / "wc.xml"
    src.write_text(DOMAIN)
    work = tmp_path / "w"
    work.mkdir()
    copy = workcopy.make(src, work)
    try:
        from lxml import etree

        root = etree.parse(str(copy.path)).getroot()
        assert root.get("type") == "qemu"
        assert root.find("cpu").get("mode") == "maximum"
        disks = root.findall("devices/disk")
        assert disks[0].get("type") == "file"
        first = Path(disks[0].find("source").get("file"))
        assert first.parent == work and first.exists()
        top = Path(disks[1].find("source").get("file"))
        base = Path(disks[1].find("backingStore/source").get("file"))
        for image in (top, base):
            info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(image)],
                                             capture_output=True, text=True).stdout)
            assert info["format"] == "qcow2"
        assert disks[2].find("source") is None  # an empty cdrom stays empty
        assert disks[3].find("source").get("dev") == "/dev/sdz"  # a lun needs a real device
        assert disks[4].find("source").get("protocol") == "nbd"
        os_el = root.find("os")
        assert os_el.findtext("kernel") != "/boot/does-not-exist"
        assert Path(os_el.findtext("initrd")).stat().st_size == 4096
        assert Path(os_el.findtext("nvram")).parent == work
        assert copy.nvram_template == Path("/usr/share/OVMF/OVMF_VARS.fd")
        unix, log = root.find("devices/serial/source"), root.find("devices/serial/log")
        assert stat.S_ISSOCK(os.stat(unix.get("path")).st_mode)  # someone listens
        probe = socket.socket(socket.AF_UNIX)
        probe.connect(unix.get("path"))
        probe.close()
        assert Path(log.get("file")).parent == work
        assert Path(root.findall("devices/serial")[1].find("source").get("path")).parent == work
        assert stat.S_ISFIFO(os.stat(root.find("devices/channel/source").get("path")).st_mode)
        assert copy.macs == {"52:54:00:ab:cd:ef"}
        assert copy.genid == "" and not copy.has_uuid and copy.name == "wc"
    finally:
        copy.close()
    assert copy.listeners == []


def test_working_copy_refuses_entities(tmp_path):
    src = tmp_path / "evil.xml"
    src.write_text('<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                   "<domain><name>&x;</name></domain>")
    work = tmp_path / "w"
    work.mkdir()
    copy = workcopy.make(src, work)
    assert "root:" not in copy.path.read_text()


def test_working_copy_of_something_else(tmp_path):
    src = tmp_path / "x.xml"
    src.write_text("<network/>")
    with pytest.raises(workcopy.WorkCopyError, match="not a <domain>"):
        workcopy.make(src, tmp_path)


# --- translators' answers and the report ----------------------------------------------

def test_refusals_group_across_files():
    src = Path("/c/a.xml")
    assert translate.refusal_group(
        "qemuwrap: /c/a.xml: /domain/devices/disk[2]/driver (line 14): unsupported "
        "attribute 'cache'", src) == "/domain/devices/disk/driver: unsupported attribute 'cache'"
    assert translate.refusal_group("qemuwrap: /c/a.xml: line 5: unsupported element 'x'",
                                   src) == "unsupported element 'x'"


def test_qemuwrap_lines_name_the_users_file():
    err = ("qemuwrap: /w/0001/domain.xml: note: genid 1 was generated\n"
           "qemuwrap: /w/0001/domain.xml: line 3: bad\n")
    assert translate.qemuwrap_lines(err, Path("/w/0001/domain.xml"), Path("/c/g.xml")) == [
        "qemuwrap: /c/g.xml: line 3: bad"]


def test_virsh_errors_keep_the_specific_line():
    err = ("2026-11-27 info : libvirt version: 9.0.0\n"
           "error: Failed to connect\nerror: XML error: double use of PCI Address\n")
    assert translate.virsh_errors(err) == ["XML error: double use of PCI Address"]


def _result(name, outcome, lv_ok=True, qw_ok=True, diffs=(), groups=()):
    return {"name": name, "outcome": outcome, "libvirt": {"ok": lv_ok},
            "qemuwrap": {"ok": qw_ok, "messages": list(groups)}, "boot": {},
            "refusal_groups": list(groups), "argv": {},
            "differences": [{"category": c, "where": w, "text": t} for c, w, t in diffs]}


def test_figures():
    results = [
        _result("a", "alike"),
        _result("b", "different", diffs=[("PCI", "pci.0/01.2", "x only in libvirt")]),
        _result("c", "qemuwrap-refused", qw_ok=False, groups=["unsupported element 'y'"]),
        _result("d", "qemuwrap-only", lv_ok=False),
        _result("e", "both-refused", lv_ok=False, qw_ok=False),
    ]
    s = report.summarise(results)
    assert (s["definitions"], s["translatable"], s["accepted"], s["alike"]) == (5, 3, 2, 1)
    assert s["accepted_pct"] == "66.7 %" and s["alike_pct"] == "50.0 %"
    assert s["qemuwrap_only"] == ["d"]
    assert s["refusals"] == {"unsupported element 'y'": ["c"]}
    assert s["differences"] == {"PCI: x only in libvirt": ["b"]}
    text = report.text(results, s)
    assert "accepted by qemuwrap:              2 of 3 = 66.7 %" in text
    assert "libvirt refuses, qemuwrap accepts: 1   (d)" in text
    assert "    PCI: pci.0/01.2: x only in libvirt" in text


# --- what is not qemuwrap's doing (classify) ---------------------------------------------

NIC_JSON = ('{"driver":"virtio-net-pci","rss":true,"netdev":"hostnet0","id":"net0",'
            '"mac":"00:11:22:33:44:55","bus":"pci.0","addr":"0x2","acpi-index":100}')
NIC_KEYVAL = ("virtio-net-pci,rss=on,netdev=n0,id=nic0,mac=00:11:22:33:44:55,bus=pci.0,"
              "addr=0x2,acpi-index=100")
#: what domxml-to-native makes of that NIC: a tap by fd, no address, no driver options
NIC_REWRITTEN = ('{"driver":"virtio-net-pci","netdev":"hostnet0","id":"net0",'
                 '"mac":"00:11:22:33:44:55","bus":"pci.0","addr":"0x3"}')
DISK = "virtio-blk-pci,bus=pci.0,addr=0x4,drive=libvirt-1-format,id=virtio-disk0,bootindex=1"
IDE = '{"driver":"ide-hd","bus":"ide.0","unit":0,"drive":"libvirt-2-format","id":"ide0-0-0"}'


def _argv(*devices, smp="1,sockets=1,cores=1,threads=1"):
    return ["/usr/bin/qemu-system-x86_64", "-smp", smp,
            *[a for d in devices for a in ("-device", d)]]


def _diff(category, where, text):
    return {"category": category, "where": where, "text": text}


NIC_DIFFS = [
    _diff("PCI", "pci.0/02.0/virtio", "virtio-net-device.rss = false (libvirt) vs true (qemuwrap)"),
    _diff("NIC", "00:11:22:33:44:55", "at pci.0/03.0 (libvirt) vs pci.0/02.0 (qemuwrap)"),
    _diff("PCI", "pci.0/03.0 vs pci.0/02.0",
          "virtio-net-pci 1af4:1000 placed differently (libvirt vs qemuwrap)"),
]
OTHER_DIFF = _diff("PCI", "pci.0/01.2", "piix3-usb-uhci 8086:7020 only in libvirt")


def test_nic_devices_read_json_and_keyval_alike_without_tool_names():
    assert classify.nic_devices(_argv(NIC_JSON)) == classify.nic_devices(_argv(NIC_KEYVAL))
    (nic,) = classify.nic_devices(_argv(NIC_JSON, IDE))  # the disk is no NIC
    assert nic == {"driver": "virtio-net-pci", "rss": "on", "mac": "00:11:22:33:44:55",
                   "bus": "pci.0", "addr": "0x2", "acpi-index": "100"}
    # three NICs with one MAC (devices-acpi-index) stay three
    assert len(classify.nic_devices(_argv(NIC_JSON, NIC_JSON, NIC_KEYVAL))) == 3
    assert classify.nic_devices(_argv(NIC_JSON)) != classify.nic_devices(_argv(NIC_REWRITTEN))


def test_nic_differences_are_artifacts_only_when_libvirts_expected_argv_agrees():
    diffs = [*NIC_DIFFS, OTHER_DIFF]
    lv, qw = _argv(NIC_REWRITTEN), _argv(NIC_KEYVAL)
    verified = classify.classify_differences(diffs, expected=_argv(NIC_JSON), libvirt=lv,
                                             qemuwrap=qw)
    assert verified == [f"artifact: {classify.NIC_VERIFIED}"] * 3 + ["qemuwrap"]
    assert classify.verdict(verified) == "qemuwrap"  # the USB difference stays
    assert classify.verdict(verified[:3]) == "artifact"
    # libvirt's own expected argv lacks qemuwrap's acpi-index: qemuwrap's difference
    other = _argv(NIC_JSON.replace(',"acpi-index":100', ""))
    assert classify.classify_differences(NIC_DIFFS, expected=other, libvirt=lv,
                                         qemuwrap=qw) == ["qemuwrap"] * 3
    unverified = classify.classify_differences(NIC_DIFFS, expected=None, libvirt=lv,
                                               qemuwrap=qw)
    assert unverified == [f"unverified: {classify.NIC_REWRITE}"] * 3
    assert classify.verdict(unverified) == "unverified"
    assert classify.verdict([]) == "alike"


TRANSIENT_DIFFS = [
    _diff("block", "", 'disk1.qcow2: absent (libvirt) vs {"at": "pci.0/04.0", "format": '
          '"qcow2", "read-only": false, "removable": false, "type": "virtio-blk-pci"} '
          "(qemuwrap)"),
    _diff("boot", "", "bootindex at pci.0/04.0: absent (libvirt) vs 1 (qemuwrap)"),
    _diff("PCI", "pci.0/04.0 (and 1 behind it)", "virtio-blk-pci 1af4:1001 only in qemuwrap"),
]


def test_transient_disks_libvirt_adds_after_start():
    lv, qw = _argv(IDE), _argv(IDE, DISK)
    artifact = f"artifact: {classify.DISK_AFTER_START}"
    assert classify.classify_differences(TRANSIENT_DIFFS, expected=_argv(IDE), libvirt=lv,
                                         qemuwrap=qw, shared_transient=1) == [artifact] * 3
    for expected, shared in ((_argv(IDE), 0),        # no transient disk in the XML
                             (None, 1),               # nothing to verify with
                             (_argv(IDE, DISK), 1)):  # libvirt's own argv has the disk
        assert classify.classify_differences(
            TRANSIENT_DIFFS, expected=expected, libvirt=lv, qemuwrap=qw,
            shared_transient=shared) == ["qemuwrap"] * 3
    # a boot index elsewhere is not that disk's
    elsewhere = _diff("boot", "", "bootindex at pci.0/09.0: absent (libvirt) vs 2 (qemuwrap)")
    assert classify.classify_differences(
        [TRANSIENT_DIFFS[0], elsewhere], expected=_argv(IDE), libvirt=lv, qemuwrap=qw,
        shared_transient=1) == [artifact, "qemuwrap"]


def test_vcpus_hotplugged_after_start():
    online = _diff("CPU", "", "online: 1 (libvirt) vs 3 (qemuwrap)")
    lv = _argv(smp="1,maxcpus=6,sockets=3,cores=2,threads=1")
    qw = _argv(smp="3,maxcpus=6,sockets=3,cores=2,threads=1")
    kw = {"libvirt": lv, "qemuwrap": qw}
    assert classify.classify_differences([online], expected=None, vcpus=(3, 6), **kw) == [
        f"unverified: {classify.VCPU_AFTER_START}"]
    assert classify.classify_differences([online], expected=lv, vcpus=(3, 6), **kw) == [
        f"artifact: {classify.VCPU_VERIFIED}"]
    with_cpu_device = [*lv, "-device", "qemu64-x86_64-cpu,id=vcpu1,socket-id=0,core-id=1"]
    assert classify.classify_differences([online], expected=with_cpu_device, vcpus=(3, 6),
                                         **kw) == ["qemuwrap"]
    for vcpus in ((6, 6), (2, 6), None):  # no hotplug, or qemuwrap not at <vcpu current>
        assert classify.classify_differences([online], expected=None, vcpus=vcpus,
                                             **kw) == ["qemuwrap"]


def _boot(ok, error=None):
    return {"ok": ok, "error": error, "seconds": 0.1, "warnings": []}


def test_boot_failures_by_side():
    both = {"outcome": "boot-failed", "boot": {"libvirt": _boot(False, "x"),
                                               "qemuwrap": _boot(False, "x")}}
    only_qw = {"outcome": "boot-failed", "boot": {"libvirt": _boot(True),
                                                  "qemuwrap": _boot(False, "y")}}
    only_lv = {"outcome": "boot-failed", "boot": {"libvirt": _boot(False, "z"),
                                                  "qemuwrap": _boot(True)}}
    assert [classify.boot_failure(r) for r in (both, only_qw, only_lv)] == [
        "both", "qemuwrap", "libvirt"]
    assert classify.boot_failure({"outcome": "alike", "boot": {}}) is None


def test_classified_figures():
    lv_fails = "qemu-system-x86_64: -soundhw: invalid option"
    results = [
        _result("alike1", "alike"),
        _result("alike2", "alike"),
        _result("nic", "different", diffs=NIC_DIFFS[:1]),
        _result("usb", "different", diffs=[("PCI", "pci.0/01.2", "x only in libvirt")]),
        _result("tap", "different", diffs=[("NIC", "m", "at a (libvirt) vs b (qemuwrap)")]),
        _result("host", "qemuwrap-refused", qw_ok=False, groups=["no /dev/ttyS2"]),
        _result("hostdev", "qemuwrap-refused", qw_ok=False, groups=["no usb 1/2"]),
        _result("nope", "qemuwrap-refused", qw_ok=False, groups=["unsupported 'x'"]),
        _result("both-fail", "boot-failed"),
        _result("lv-fail", "boot-failed"),
        _result("other", "both-refused", lv_ok=False, qw_ok=False),
    ]
    by = {r["name"]: r for r in results}
    by["nic"]["difference_classes"] = [f"artifact: {classify.NIC_VERIFIED}"]
    by["usb"]["difference_classes"] = ["qemuwrap"]
    by["tap"]["difference_classes"] = [f"unverified: {classify.NIC_REWRITE}"]
    for name in ("alike1", "alike2", "nic", "usb", "tap", "host", "nope"):
        by[name]["boot"]["libvirt"] = _boot(True)
    for name in ("alike1", "alike2", "nic", "usb", "tap"):
        by[name]["boot"]["qemuwrap"] = _boot(True)
    by["host"]["qemuwrap_no_host_check"] = {"ok": True, "messages": []}
    by["hostdev"]["qemuwrap_no_host_check"] = {"ok": True, "messages": []}
    by["hostdev"]["boot"]["libvirt"] = _boot(False, "failed to open /dev/bus/usb/1/2")
    by["nope"]["qemuwrap_no_host_check"] = {"ok": False, "messages": ["unsupported 'x'"]}
    by["both-fail"]["boot"] = {"libvirt": _boot(False, "a"), "qemuwrap": _boot(False, "a")}
    by["lv-fail"]["boot"] = {"libvirt": _boot(False, lv_fails), "qemuwrap": _boot(True)}

    s = report.summarise(results)
    # the raw figures stay what they were
    assert (s["translatable"], s["accepted"], s["alike"], s["different"]) == (10, 7, 2, 3)
    c = s["classified"]
    assert list(c["refused_for_this_host_only"]) == ["host", "hostdev"]
    assert c["libvirt_argv_fails_here"] == {"hostdev": "failed to open /dev/bus/usb/1/2",
                                            "both-fail": "a", "lv-fail": lv_fails}
    assert c["libvirt_argv_fails_here_refused_by_qemuwrap"] == ["hostdev"]
    # of the 7 whose libvirt argv starts, 5 accepted; with the host-only refusal 6
    assert (c["accepted_libvirt_starts"], c["translatable_libvirt_starts"]) == (5, 7)
    assert c["accepted_or_host_only_libvirt_starts"] == 6
    assert c["accepted_libvirt_starts_pct"] == "71.4 %"
    assert (c["alike"], c["both_booted"], c["alike_or_only_verified_artifacts"]) == (2, 5, 3)
    assert c["alike_of_accepted_pct"] == "28.6 %" and c["alike_of_both_booted_pct"] == "40.0 %"
    assert c["different_qemuwrap"] == ["usb"]
    assert c["different_oracle_artifacts_verified"] == ["nic"]
    assert c["different_unverified"] == ["tap"]
    assert (c["boot_failed_both"], c["boot_failed_only_qemuwrap"],
            c["boot_failed_only_libvirt"]) == (["both-fail"], [], ["lv-fail"])
    text = report.text(results, s)
    assert "accepted by qemuwrap:              7 of 10 = 70.0 %" in text  # raw, first
    assert text.index("accepted by qemuwrap:") < text.index("classified (")
    assert "  refused for this host only:                   2" in text
    assert "accepted / translatable whose libvirt argv starts here: 5 of 7 = 71.4 %" in text
    assert f"  lv-fail: {lv_fails}" in text
    assert "different: qemuwrap's 1, oracle artifacts (verified) 1, unverified 1" in text
    assert ("boot failed: both failed (environment) 1, only qemuwrap failed 0, only "
            "libvirt failed 1") in text
    assert f"[artifact: {classify.NIC_VERIFIED}]" in text
    assert "qemuwrap refuses: no /dev/ttyS2 (for this host only)" in report.progress(by["host"])


def test_expected_args_beside_the_definition(tmp_path):
    (tmp_path / "a.xml").write_text("<domain/>")
    (tmp_path / "a.x86_64-latest.args").write_text(
        "LC_ALL=C \\\nPATH=/bin \\\n/usr/bin/qemu-system-x86_64 \\\n-name guest=a \\\n"
        f"-device '{NIC_JSON}'\n")
    argv = classify.expected_argv(tmp_path / "a.xml")
    assert argv == ["/usr/bin/qemu-system-x86_64", "-name", "guest=a", "-device", NIC_JSON]
    assert classify.expected_argv(tmp_path / "b.xml") is None


@needs_qemu_img
def test_working_copy_knows_transient_disks_and_vcpus(tmp_path):
    src = tmp_path / "t.xml"
    src.write_text(
        "<domain type='qemu'><name>t</name><memory>65536</memory>"
        "<vcpu current='3'>6</vcpu><devices>"
        "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        "<source file='/nowhere/a.qcow2'/><target dev='vda' bus='virtio'/>"
        "<transient shareBacking='yes'/></disk>"
        "<disk type='file' device='disk'><source file='/nowhere/b.img'/>"
        "<target dev='hda' bus='ide'/><transient/></disk>"
        "</devices></domain>")
    work = tmp_path / "w"
    work.mkdir()
    copy = workcopy.make(src, work)
    assert (copy.shared_transient, copy.vcpus) == (1, (3, 6))


@pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 is not installed "
                    "(Debian package qemu-system-x86)")
def test_refusal_for_this_host_only_translates_without_the_host_check(tmp_path):
    src = tmp_path / "h.xml"
    text = (XML2ARGV / "genid-auto.xml").read_text()
    src.write_text(text.replace("<memballoon", "<serial type='dev'><source "
                                "path='/dev/ttyS-qwdiff-absent'/><target port='0'/></serial>"
                                "\n    <memballoon"))

    async def both():
        return (await translate.qemuwrap(src, tmp_path / "s", src),
                await translate.qemuwrap(src, tmp_path / "s", src, host_check=False))

    checked, unchecked = asyncio.run(both())
    assert not checked.ok and "/dev/ttyS-qwdiff-absent" in checked.messages[0]
    assert unchecked.ok, unchecked.messages


# --- the whole harness ----------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.skipif(shutil.which("virsh") is None,
                    reason="virsh is not installed (Debian packages libvirt-clients and "
                           "libvirt-daemon-system): no libvirt to compare with")
@pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 is not installed "
                    "(Debian package qemu-system-x86)")
@needs_qemu_img
def test_harness_on_project_definitions(tmp_path):
    """Three of the project's definitions through libvirt and qemuwrap, both booted:
    each boots on both sides, and name, uuid and genid agree."""
    out = tmp_path / "result.json"
    names = ["genid-auto", "full-pc", "console-virtio"]
    proc = subprocess.run(
        [sys.executable, "-m", "qemuwrap.testing.differential", str(XML2ARGV),
         *[a for n in names for a in ("--only", n)], "--json", str(out)],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["summary"]["definitions"] == 3
    assert data["summary"]["translatable"] == 3, proc.stdout
    assert "definitions:                       3" in proc.stdout
    for r in data["results"]:
        if r["outcome"] == "qemuwrap-refused":
            continue  # qemuwrap's own business; the harness kept its message
        assert r["outcome"] in ("alike", "different"), (r["name"], r["boot"])
        assert r["boot"]["libvirt"]["ok"] and r["boot"]["qemuwrap"]["ok"]
        assert not [d for d in r["differences"] if d["category"] == "identity"], r
    assert any(r["outcome"] in ("alike", "different") for r in data["results"])


# --- making the recordings again ------------------------------------------------------

def _pc_argv(variant: str) -> list[str]:
    a = variant == "a"
    pre = "libvirt" if a else "qw"

    def disk(n: str, image: str) -> list[str]:
        return ["-blockdev", json.dumps({"driver": "file", "node-name": f"{n}-storage",
                                         "filename": f"{RECORD_SCRATCH}/{image}"}),
                "-blockdev", json.dumps({"driver": "qcow2", "file": f"{n}-storage",
                                         "node-name": f"{n}-format"})]
    net = "hostnet0" if a else "n0"
    ser = "charserial0" if a else "s0"
    usb = (["-device", "usb-hub,id=hub0,bus=usb.0,port=1",
            "-device", "usb-kbd,id=input0,bus=usb.0,port=1.1"] if a else
           ["-device", "usb-kbd,id=kbd,bus=usb.0,port=1"])
    return [
        "qemu-system-x86_64", "-name", "guest=recorded,debug-threads=on", "-S", "-nodefaults",
        "-no-user-config", "-display", "none", "-machine",
        "pc-i440fx-7.2,usb=off,dump-guest-core=off", "-accel", "tcg", "-m", "256",
        "-smp", "2,sockets=2,cores=1,threads=1", "-uuid", "6ba7b810-9dad-41d1-80b4-00c04fd430c8",
        "-device", "vmgenid,guid=8fc9a2b5-7a5e-4c79-9f36-5bc1c4a1a9d2,id=vmgenid0",
        "-device", "piix3-usb-uhci,id=usb,bus=pci.0,addr=0x1.0x2", *usb,
        "-device", "usb-tablet,id=input1,bus=usb.0,port=2", *disk(f"{pre}-1", "disk1.qcow2"),
        "-device", f"ide-hd,bus=ide.0,unit=0,drive={pre}-1-format,"
                   f"id={'ide0-0-0' if a else 'disk0'},bootindex=1",
        "-device", f"ide-cd,bus=ide.1,unit=0,id={'ide0-1-0' if a else 'cd0'}",
        "-netdev", f"user,id={net}", "-device", f"e1000,netdev={net},id=net0,"
        f"mac=52:54:00:12:34:56,bus=pci.0,addr={'0x3' if a else '0x7'}",
        "-chardev", f"pty,id={ser}", "-device", f"isa-serial,chardev={ser},id=serial0,index=0",
        "-chardev", f"{'null' if a else 'pty'},id=cs1",
        "-device", "isa-serial,chardev=cs1,id=serial1,index=1",
        "-device", "virtio-serial-pci,id=vs0,bus=pci.0,addr=0x4",
        "-chardev", f"socket,id=chan0,path={RECORD_SCRATCH}/{variant}-agent.sock,server=on,"
                    "wait=off",
        "-device", "virtserialport,bus=vs0.0,nr=1,chardev=chan0,id=channel0,"
                   "name=org.qemu.guest_agent.0",
        "-device", "virtio-scsi-pci,id=scsi0,bus=pci.0,addr=0x5",
        *disk(f"{pre}-2", "disk2.qcow2"),
        "-device", f"scsi-hd,bus=scsi0.0,channel=0,scsi-id=0,lun=0,drive={pre}-2-format,"
                   "id=scsi0-0-0-0",
        "-device", f"{'cirrus-vga' if a else 'VGA'},id=video0,bus=pci.0,addr=0x2",
        "-device", "virtio-balloon-pci,id=balloon0,bus=pci.0,addr=0x6"]


def _q35_argv() -> list[str]:
    def disk(n: str, image: str) -> list[str]:
        return ["-blockdev", json.dumps({"driver": "file", "node-name": f"s{n}",
                                         "filename": f"{RECORD_SCRATCH}/{image}"}),
                "-blockdev", json.dumps({"driver": "qcow2", "file": f"s{n}",
                                         "node-name": f"f{n}"})]
    return [
        "qemu-system-x86_64", "-name", "guest=q35rec", "-S", "-nodefaults", "-no-user-config",
        "-display", "none", "-machine", "pc-q35-7.2,usb=off", "-accel", "tcg", "-m", "512",
        "-device", "pcie-root-port,port=16,chassis=1,id=pci.1,bus=pcie.0,multifunction=on,"
                   "addr=0x2",
        "-device", "pcie-root-port,port=17,chassis=2,id=pci.2,bus=pcie.0,addr=0x2.0x1",
        "-device", "pcie-root-port,port=18,chassis=3,id=pci.3,bus=pcie.0,addr=0x2.0x2",
        "-device", "pcie-root-port,port=19,chassis=4,id=pci.4,bus=pcie.0,addr=0x2.0x3",
        "-device", "pcie-pci-bridge,id=pci.5,bus=pci.4,addr=0x0",
        "-netdev", "user,id=hostnet0", "-device", "virtio-net-pci,netdev=hostnet0,id=net0,"
        "mac=52:54:00:aa:bb:cc,bus=pci.1,addr=0x0", *disk("1", "q1.qcow2"),
        "-device", "virtio-blk-pci,drive=f1,id=virtio-disk0,bus=pci.2,addr=0x0",
        "-device", "qemu-xhci,id=usb,bus=pci.3,addr=0x0",
        "-device", "usb-tablet,id=input0,bus=usb.0,port=1", *disk("2", "q2.qcow2"),
        "-device", "ide-hd,bus=ide.2,drive=f2,id=sata0-0-2", "-device", "ide-cd,bus=ide.0,"
        "id=sata0-0-0", "-netdev", "user,id=hostnet1", "-device", "e1000,netdev=hostnet1,"
        "id=net1,mac=52:54:00:aa:bb:cd,bus=pci.5,addr=0x1",
        "-chardev", "null,id=c0", "-device", "isa-serial,chardev=c0,id=serial0"]


def record() -> None:
    """Boot the three machines above on this QEMU and write their reports."""
    from qemuwrap.testing.boot import boot

    scratch = Path(RECORD_SCRATCH)
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    for image in ("disk1.qcow2", "disk2.qcow2", "q1.qcow2", "q2.qcow2"):
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(scratch / image), "16M"],
                       check=True)
    for name, argv in (("pc-a", _pc_argv("a")), ("pc-b", _pc_argv("b")),
                       ("q35", _q35_argv())):
        monitor = scratch / f"{name}.qmp"
        full = bootargv.bootable(argv, tool_dirs=[], scratch=scratch, monitor=monitor)
        result = asyncio.run(boot(full, dict(os.environ), monitor=monitor,
                                  log=scratch / f"{name}.log", timeout=60, netns=False))
        assert result.raw is not None, result.error
        if name == "q35":
            (REC / "q35.qtree").write_text(result.raw["qtree"])
        else:
            (REC / f"{name}.json").write_text(json.dumps(result.raw, indent=1,
                                                         sort_keys=True) + "\n")
        print(f"recorded {name}")
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--record"]:
        record()
    else:
        print("usage: python tests/test_differential.py --record", file=sys.stderr)


def test_a_disk_is_its_image_under_throttle_filters_and_transient_overlays():
    """qemuwrap puts I/O limits in a throttle node and lets QEMU make a transient
    disk's overlay; libvirt does both over QMP after start: the same disk."""
    throttled = ('json:{"throttle-group": "g0", "driver": "throttle", "file": {"driver": '
                 '"qcow2", "file": {"driver": "file", "filename": "/s/disk1.qcow2"}}}')
    assert facts._unfiltered(throttled, "throttle") == ("/s/disk1.qcow2", "qcow2")
    overlay = ('json:{"backing": {"driver": "qcow2", "file": {"driver": "file", "filename":'
               ' "/s/disk2.qcow2"}}, "driver": "qcow2", "file": {"driver": "file", '
               '"filename": "/var/tmp/vl.ABC"}}')
    assert facts._unfiltered(overlay, "qcow2") == ("/s/disk2.qcow2", "qcow2")
    assert facts._unfiltered("/s/plain.img", "raw") == ("/s/plain.img", "raw")


def test_variable_stores_compare_by_name():
    assert facts._nvram_name("/tmp/x/lv0/lib/qemu/nvram/f_VARS.fd") == "nvram/f_VARS.fd"
    assert facts._nvram_name("/tmp/x/0001/d/nvram/f_VARS.fd") == "nvram/f_VARS.fd"


def test_a_silenced_audiodev_keeps_numbers_numbers():
    value = "pa,id=audio1,timer-period=50,in.frequency=44100,in.name=x"
    assert json.loads(bootargv._silent_audiodev(value)) == {
        "id": "audio1", "driver": "none", "timer-period": 50, "in": {"frequency": 44100}}
