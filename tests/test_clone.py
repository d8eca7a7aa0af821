"""``qemuwrap clone``: the clone is a different guest (name, uuid, genid, MACs) on its own
disks, the source is left byte for byte as it was, and a refused or failed clone leaves
nothing behind. The boot test proves the guest itself reads the clone's new genid.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from qemuwrap.clone import clone, describe
from qemuwrap.conf import guid, schema
from qemuwrap.conf.domain import load
from qemuwrap.errors import QemuwrapError

from conftest import demo_xml, needs_qemu
from test_launcher import Env

needs_qemu_img = pytest.mark.skipif(shutil.which("qemu-img") is None,
                                    reason="qemu-img is not installed (Debian package "
                                    "qemu-utils)")

GENID = "e9392370-2917-465e-a92b-d057f46512d6"
UUID = "c7a5fdbd-edaf-9455-926a-d65c16db1809"
MACS = ("52:54:00:aa:bb:01", "52:54:00:aa:bb:02")
V4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
MAC = re.compile(r"52:54:00(:[0-9a-f]{2}){3}")


def qemu_img(*args: str) -> str:
    return subprocess.run(["qemu-img", *args], check=True, capture_output=True,
                          text=True).stdout


def img_info(path: Path) -> dict:
    return json.loads(qemu_img("info", "-U", "--output=json", str(path)))


class Source:
    """A source guest in tmp_path: a qcow2 system disk with data, a read-only raw disk,
    a cdrom and two NICs; ``extra_disks`` adds more disk XML."""

    def __init__(self, tmp: Path, *, genid: str | None = GENID, extra_disks: str = ""):
        self.dir = tmp / "images"
        self.dir.mkdir(exist_ok=True)
        self.raw = self.dir / "seed.raw"
        self.raw.write_bytes(b"qemuwrap clone test " * 50_000 + b"\0" * 24_000)
        self.qcow2 = self.dir / "src.qcow2"
        qemu_img("convert", "-f", "raw", "-O", "qcow2", str(self.raw), str(self.qcow2))
        self.data = self.dir / "data.raw"
        self.data.write_bytes(b"read-only data\n" * 1000)
        self.iso = self.dir / "cd.iso"
        self.iso.write_bytes(b"\0" * 2048 * 16)
        genid_el = "" if genid is None else f"<genid>{genid}</genid>"
        self.xml = tmp / "src.xml"
        self.xml.write_text(f"""<domain type='qemu'>
  <name>src</name>
  <uuid>{UUID}</uuid>
  {genid_el}
  <memory unit='MiB'>128</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <features><acpi/></features>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{self.qcow2}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{self.data}'/>
      <target dev='vdb' bus='virtio'/>
      <readonly/>
    </disk>
    <disk type='file' device='cdrom'>
      <source file='{self.iso}'/>
      <target dev='hdc' bus='ide'/>
    </disk>
    {extra_disks}
    <interface type='user'><mac address='{MACS[0]}'/><model type='virtio'/></interface>
    <interface type='user'><mac address='{MACS[1]}'/><model type='e1000'/></interface>
    <memballoon model='none'/>
  </devices>
</domain>
""")
        self.before = self.snapshot()

    def snapshot(self) -> dict[str, bytes]:
        """Every file of the source (definition and images), by name."""
        files = {p.name: p.read_bytes() for p in self.dir.iterdir()}
        files[self.xml.name] = self.xml.read_bytes()
        return files

    def assert_untouched(self, *, new_files: tuple[str, ...] = ()) -> None:
        now = self.snapshot()
        for name in new_files:
            now.pop(name)
        assert now == self.before


@pytest.fixture
def source(tmp_path):
    if shutil.which("qemu-img") is None:
        pytest.skip("qemu-img is not installed (Debian package qemu-utils)")
    return Source(tmp_path)


@needs_qemu_img
def test_clone_is_a_new_guest_on_overlays(source, tmp_path):
    dst = tmp_path / "new.xml"
    res = clone(str(source.xml), str(dst), "new", state_dir=str(tmp_path / "state"))
    _, old = load(str(source.xml))
    _, new = load(str(dst))
    schema.validate_file(dst)

    assert (new.name, res.old_name, res.new_name) == ("new", "src", "new")
    assert new.uuid_str == res.new_uuid != UUID == res.old_uuid
    assert V4.fullmatch(new.uuid_str)
    assert new.genid_requested and not new.genid_generated
    assert new.genid_str == res.new_genid != GENID == res.old_genid
    assert V4.fullmatch(new.genid_str)

    macs = [nic.mac for nic in new.devices.interfaces]
    assert all(MAC.fullmatch(m) for m in macs)
    assert len(set(macs)) == 2 and not set(macs) & set(MACS)
    assert res.macs == list(zip(MACS, macs, strict=True))
    assert [nic.model for nic in new.devices.interfaces] == ["virtio", "e1000"]

    overlay = source.dir / "new-vda.qcow2"
    assert res.new_disks == [str(overlay)]
    vda, vdb, hdc = new.devices.disks
    assert (vda.source, vda.driver_type, vda.readonly) == (str(overlay), "qcow2", False)
    info = img_info(overlay)
    assert info["format"] == "qcow2"
    assert info["backing-filename"] == str(source.qcow2)
    assert info["backing-filename-format"] == "qcow2"
    assert info["virtual-size"] == img_info(source.qcow2)["virtual-size"]
    qemu_img("compare", str(source.qcow2), str(overlay))
    # Read-only disk and cdrom stay shared; everything else equals the source.
    assert (vdb, hdc) == tuple(old.devices.disks[1:])
    for attr in ("memory_kib", "vcpus", "os", "acpi", "on_reboot"):
        assert getattr(new, attr) == getattr(old, attr)
    source.assert_untouched(new_files=("new-vda.qcow2",))
    assert describe(res) == [
        "name: src -> new",
        f"uuid: {UUID} -> {new.uuid_str}",
        f"genid: {GENID} -> {new.genid_str}",
        f"mac: {MACS[0]} -> {macs[0]}",
        f"mac: {MACS[1]} -> {macs[1]}",
        f"disk vda: {source.qcow2} -> {overlay} (qcow2 overlay backed by {source.qcow2})",
    ]
    assert (dst.stat().st_mode & 0o777) == 0o644
    # The lock taken on the source guest left no state directory behind.
    assert not (tmp_path / "state").exists()


@needs_qemu_img
def test_copy_is_independent(source, tmp_path):
    dst = tmp_path / "new.xml"
    res = clone(str(source.xml), str(dst), "new", copy=True, state_dir=str(tmp_path / "st"))
    copy = source.dir / "new-vda.qcow2"
    assert res.new_disks == [str(copy)]
    info = img_info(copy)
    assert info["format"] == "qcow2" and "backing-filename" not in info
    qemu_img("compare", str(source.qcow2), str(copy))
    _, new = load(str(dst))
    assert (new.devices.disks[0].source, new.devices.disks[0].driver_type) == (str(copy),
                                                                             "qcow2")
    assert describe(res)[-1] == f"disk vda: {source.qcow2} -> {copy} (independent qcow2 copy)"
    source.assert_untouched(new_files=("new-vda.qcow2",))


@needs_qemu_img
def test_clone_json_shape(source, tmp_path):
    """``clone --json``: the documented shape, with the values the clone has."""
    dst = tmp_path / "new.xml"
    res = subprocess.run([sys.executable, "-m", "qemuwrap", "clone", str(source.xml),
                          str(dst), "--name", "new", "--json", "--state-dir",
                          str(tmp_path / "state")], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert set(out) == {"file", "name", "uuid", "genid", "macs", "disks", "warnings",
                        "nvram", "tpm"}
    assert out["nvram"] is None and out["tpm"] is None  # a BIOS guest without a TPM
    _, new = load(str(dst))
    assert out["file"] == str(dst)
    assert out["name"] == {"old": "src", "new": "new"}
    assert out["uuid"] == {"old": UUID, "new": new.uuid_str}
    assert out["genid"] == {"old": GENID, "new": new.genid_str}
    assert out["macs"] == [{"old": o, "new": nic.mac}
                           for o, nic in zip(MACS, new.devices.interfaces, strict=True)]
    overlay = str(source.dir / "new-vda.qcow2")
    assert out["disks"] == [{"target": "vda", "old": str(source.qcow2), "new": overlay,
                             "format": "qcow2", "overlay": True}]
    assert isinstance(out["warnings"], list)
    assert res.stderr == ""  # notes go into "warnings", stdout is one JSON value


@needs_qemu_img
def test_copy_keeps_a_raw_disk_raw(tmp_path):
    src = Source(tmp_path, extra_disks=f"""<disk type='file' device='disk'>
      <source file='{tmp_path / "images" / "seed.raw"}'/>
      <target dev='sda' bus='sata'/>
    </disk>""")
    res = clone(str(src.xml), str(tmp_path / "new.xml"), "new", copy=True,
                state_dir=str(tmp_path / "st"))
    raw = src.dir / "new-sda.raw"
    assert res.new_disks == [str(src.dir / "new-vda.qcow2"), str(raw)]
    assert raw.read_bytes() == src.raw.read_bytes()
    _, new = load(str(tmp_path / "new.xml"))
    assert new.devices.disks[-1].driver_type == "raw"


@needs_qemu_img
def test_counting_random_gives_libvirts_test_genid(source, tmp_path):
    res = clone(str(source.xml), str(tmp_path / "new.xml"), "new",
                state_dir=str(tmp_path / "st"), random=guid.counting_random)
    assert res.new_genid == "00010203-0405-4607-8809-0a0b0c0d0e0f"
    # One draw for all NICs: distinct even from a source that repeats itself.
    assert [new for _, new in res.macs] == ["52:54:00:00:01:02", "52:54:00:03:04:05"]


@needs_qemu_img
def test_genid_requestedness_is_kept(tmp_path):
    """No <genid>: the clone has none. <genid/>: the source never had a genid, the
    clone gets a concrete new one."""
    (tmp_path / "a").mkdir()
    src = Source(tmp_path / "a", genid=None)
    res = clone(str(src.xml), str(tmp_path / "a" / "new.xml"), "new",
                state_dir=str(tmp_path / "st"))
    assert (res.old_genid, res.new_genid) == (None, None)
    assert "genid: none -> none" in describe(res)
    assert "<genid" not in (tmp_path / "a" / "new.xml").read_text()

    (tmp_path / "b").mkdir()
    src = Source(tmp_path / "b", genid=None)
    src.xml.write_text(src.xml.read_text().replace("<memory", "<genid/><memory"))
    res = clone(str(src.xml), str(tmp_path / "b" / "new.xml"), "new",
                state_dir=str(tmp_path / "st"))
    assert res.old_genid is None and V4.fullmatch(res.new_genid)
    assert f"<genid>{res.new_genid}</genid>" in (tmp_path / "b" / "new.xml").read_text()
    assert "<genid/>" in src.xml.read_text()


@needs_qemu_img
@pytest.mark.parametrize("name, message", [
    ("src", "other than the source's"),
    ("../x", "cannot be used as a directory name"),
    ("", "cannot be used as a directory name"),
    (" new", "white space"),
])
def test_refuses_bad_names(source, tmp_path, name, message):
    with pytest.raises(QemuwrapError, match=re.escape(message)):
        clone(str(source.xml), str(tmp_path / "new.xml"), name, state_dir=str(tmp_path))
    assert not (tmp_path / "new.xml").exists()
    source.assert_untouched()


@needs_qemu_img
def test_refuses_a_missing_directory(source, tmp_path):
    with pytest.raises(QemuwrapError, match="its directory does not exist"):
        clone(str(source.xml), str(tmp_path / "no" / "new.xml"), "new",
              state_dir=str(tmp_path / "st"))
    source.assert_untouched()


@needs_qemu_img
def test_refuses_existing_definition(source, tmp_path):
    dst = tmp_path / "new.xml"
    dst.write_text("mine")
    with pytest.raises(QemuwrapError, match="new.xml already exists"):
        clone(str(source.xml), str(dst), "new", state_dir=str(tmp_path / "st"))
    assert dst.read_text() == "mine"
    source.assert_untouched()


@needs_qemu_img
def test_refuses_existing_disk_and_creates_nothing(tmp_path):
    src = Source(tmp_path, extra_disks=f"""<disk type='file' device='disk'>
      <source file='{tmp_path / "images" / "seed.raw"}'/>
      <target dev='vdc' bus='virtio'/>
    </disk>""")
    taken = src.dir / "new-vdc.qcow2"
    taken.write_bytes(b"someone else's")
    src.before = src.snapshot()
    with pytest.raises(QemuwrapError, match="new-vdc.qcow2 already exists"):
        clone(str(src.xml), str(tmp_path / "new.xml"), "new", state_dir=str(tmp_path / "st"))
    src.assert_untouched()  # vda's overlay was not made either
    assert not (tmp_path / "new.xml").exists()


@needs_qemu_img
def test_failed_qemu_img_removes_what_was_created(tmp_path):
    """vda's overlay is made, then vdc's fails (its source is no qcow2): vda's goes."""
    bad = tmp_path / "images" / "bad.qcow2"
    src = Source(tmp_path, extra_disks=f"""<disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{bad}'/>
      <target dev='vdc' bus='virtio'/>
    </disk>""")
    bad.write_bytes(b"not a qcow2 image" * 100)
    src.before = src.snapshot()
    with pytest.raises(QemuwrapError,
                       match="disk 'vdc': qemu-img create failed: .*not in qcow2 format"):
        clone(str(src.xml), str(tmp_path / "new.xml"), "new", state_dir=str(tmp_path / "st"))
    src.assert_untouched()
    assert not (tmp_path / "new.xml").exists()


@needs_qemu_img
def test_refuses_block_device(tmp_path):
    src = Source(tmp_path, extra_disks="""<disk type='block' device='disk'>
      <source dev='/dev/null'/>
      <target dev='vdc' bus='virtio'/>
    </disk>""")
    with pytest.raises(QemuwrapError, match="'vdc' is a block device"):
        clone(str(src.xml), str(tmp_path / "new.xml"), "new", copy=True,
              state_dir=str(tmp_path / "st"))
    src.assert_untouched()


@needs_qemu_img
def test_warns_of_what_stays_shared(tmp_path):
    log = tmp_path / "serial.log"
    src = Source(tmp_path)
    src.xml.write_text(src.xml.read_text().replace(
        "<memballoon", f"<serial type='file'><source path='{log}'/></serial>\n"
                       "<graphics type='vnc' port='5907' autoport='no'/><memballoon"))
    res = clone(str(src.xml), str(tmp_path / "new.xml"), "new", state_dir=str(tmp_path / "s"))
    assert res.warnings == [f"serial port 0 still uses {log} (shared with the source)",
                            "VNC port 5907 is fixed (shared with the source)"]


@pytest.fixture
def env(tmp_path, demo_image):
    e = Env(tmp_path, demo_image)
    yield e
    e.cleanup()


@needs_qemu
@pytest.mark.slow
def test_refuses_a_running_source(env):
    """An overlay on (or a copy of) a disk a running guest writes is corrupt: refused
    while supervised, and still refused when the QEMU outlived its supervisor."""
    path = env.xml(genid=GENID)
    res = env.qw("start", str(path))
    assert res.returncode == 0, res.stderr
    try:
        with pytest.raises(QemuwrapError, match="guest 'demo' is running or starting"):
            clone(str(path), str(env.tmp / "new.xml"), "new", state_dir=str(env.root))
        other = env.xml(name="other")
        with pytest.raises(QemuwrapError, match="a guest named 'demo' is running"):
            clone(str(other), str(env.tmp / "new.xml"), "demo", state_dir=str(env.root))
        rec = env.record("demo")
        os.kill(rec["supervisor_pid"], signal.SIGKILL)
        psutil.Process(rec["supervisor_pid"]).wait(10)
        with pytest.raises(QemuwrapError, match=f"guest 'demo' is running; .*QEMU pid "
                                                f"{rec['qemu_pid']}"):
            clone(str(path), str(env.tmp / "new.xml"), "new", state_dir=str(env.root))
        assert not (env.tmp / "new.xml").exists()
    finally:
        env.qw("destroy", "demo")
    # Once it is off, the same clone works.
    clone(str(path), str(env.tmp / "new.xml"), "new", state_dir=str(env.root))


@needs_qemu
@pytest.mark.slow
def test_the_clone_boots_with_its_new_genid(tmp_path, demo_image):
    """The guest itself reads the clone's genid from vmgenid memory, not the source's."""
    root = tmp_path / "state"
    src = demo_xml(tmp_path / "demo.xml", demo_image, genid=GENID,
                   cmdline="qemuwrap.poweroff=1")
    res = clone(str(src), str(tmp_path / "twin.xml"), "twin", state_dir=str(root))
    assert res.old_genid == GENID and res.new_genid != GENID
    run = subprocess.run([sys.executable, "-m", "qemuwrap", "run", str(tmp_path / "twin.xml"),
                          "--state-dir", str(root)], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    serial = (root / "twin" / "serial0.log").read_text(errors="replace")
    assert f"genid: {res.new_genid}" in serial
    assert GENID not in serial
    assert not (root / "demo").exists()  # the source guest never ran


# --- UEFI variable store and TPM state ----------------------------------------------------------


def uefi_tpm_source(tmp_path: Path, monkeypatch, *, started: bool = True,
                    nvram: str = "") -> tuple[Path, Path, Path]:
    """A UEFI guest with an emulated TPM whose persistent state lives under tmp_path
    (QEMUWRAP_DATA_DIR); ``started``: it has its own VARS file and a manufactured TPM, as
    after a first start. Returns (definition, its VARS file, its TPM state directory)."""
    data = tmp_path / "data"
    monkeypatch.setenv("QEMUWRAP_DATA_DIR", str(data))
    xml = tmp_path / "src.xml"
    xml.write_text(f"""<domain type='qemu'>
  <name>src</name>
  <uuid>{UUID}</uuid>
  <genid>{GENID}</genid>
  <memory unit='MiB'>128</memory>
  <os firmware='efi'><type arch='x86_64' machine='q35'>hvm</type>{nvram}</os>
  <features><acpi/></features>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>
    <memballoon model='none'/>
  </devices>
</domain>
""")
    vars_fd = data / "nvram" / "src_VARS.fd"
    tpm = data / "swtpm" / UUID / "tpm2"
    if started:
        vars_fd.parent.mkdir(parents=True)
        vars_fd.write_bytes(b"src's boot entries " * 1000)
        tpm.mkdir(parents=True)
        (tpm / "tpm2-00.permall").write_bytes(b"src's seeds and EK" * 100)
        (tpm / ".lock").write_bytes(b"")
    return xml, vars_fd, tpm


def test_clone_copies_the_nvram_and_the_tpm_state(tmp_path, monkeypatch):
    """The clone gets its own VARS file (the source's current variables, at the path
    qemuwrap gives the new name, written into its definition) and a copy of the TPM
    state under its new uuid; the source keeps its own, unchanged."""
    xml, vars_fd, tpm = uefi_tpm_source(tmp_path, monkeypatch)
    before = xml.read_bytes(), vars_fd.read_bytes(), (tpm / "tpm2-00.permall").read_bytes()
    dst = tmp_path / "new.xml"
    res = clone(str(xml), str(dst), "new", state_dir=str(tmp_path / "state"))
    new_vars = tmp_path / "data" / "nvram" / "new_VARS.fd"
    assert res.nvram is not None
    assert (res.nvram.old_path, res.nvram.new_path, res.nvram.copied) == \
        (str(vars_fd), str(new_vars), True)
    assert new_vars.read_bytes() == before[1]
    assert stat_mode(new_vars) == 0o600
    _, new = load(str(dst))
    schema.validate_file(dst)
    assert new.os.nvram is not None and new.os.nvram.path == str(new_vars)
    assert new.os.firmware == "efi" and new.os.loader is None  # still picked at start
    new_tpm = tmp_path / "data" / "swtpm" / new.uuid_str / "tpm2"
    assert res.tpm is not None and (res.tpm.old_dir, res.tpm.new_dir) == (str(tpm),
                                                                          str(new_tpm))
    assert (new_tpm / "tpm2-00.permall").read_bytes() == before[2]
    assert not (new_tpm / ".lock").exists()  # swtpm's lock is the running swtpm's
    assert stat_mode(new_tpm) == 0o700
    assert (xml.read_bytes(), vars_fd.read_bytes(),
            (tpm / "tpm2-00.permall").read_bytes()) == before
    assert describe(res)[-2:] == [f"nvram: {vars_fd} -> {new_vars} (copied)",
                                  f"tpm: {tpm} -> {new_tpm} (copied)"]
    # The clone's first start uses the copy: the path a start computes is the written one.
    from qemuwrap.companions import nvram as nvram_store

    assert nvram_store.default_path("new") == str(new_vars)


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_clone_json_reports_nvram_and_tpm(tmp_path, monkeypatch):
    xml, vars_fd, tpm = uefi_tpm_source(tmp_path, monkeypatch)
    dst = tmp_path / "new.xml"
    res = subprocess.run([sys.executable, "-m", "qemuwrap", "clone", str(xml), str(dst),
                          "--name", "new", "--json", "--state-dir", str(tmp_path / "state")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    # The documented fields, unchanged, plus "nvram" and "tpm".
    assert set(out) == {"file", "name", "uuid", "genid", "macs", "disks", "warnings",
                        "nvram", "tpm"}
    _, new = load(str(dst))
    data = tmp_path / "data"
    assert out["nvram"] == {"old": str(vars_fd), "new": str(data / "nvram" / "new_VARS.fd"),
                            "copied": True}
    assert out["tpm"] == {"old": str(tpm),
                          "new": str(data / "swtpm" / new.uuid_str / "tpm2")}


def test_clone_of_a_guest_never_started(tmp_path, monkeypatch):
    """No VARS file and no TPM state yet: the clone's definition names its own VARS
    path (made from the template at its first start), there is no TPM state to copy."""
    xml, vars_fd, _tpm = uefi_tpm_source(tmp_path, monkeypatch, started=False)
    dst = tmp_path / "new.xml"
    res = clone(str(xml), str(dst), "new", state_dir=str(tmp_path / "state"))
    new_vars = tmp_path / "data" / "nvram" / "new_VARS.fd"
    assert res.nvram is not None
    assert (res.nvram.old_path, res.nvram.new_path, res.nvram.copied) == \
        (None, str(new_vars), False)
    assert res.tpm is None
    assert not new_vars.exists() and not (tmp_path / "data").exists()
    _, new = load(str(dst))
    assert new.os.nvram is not None and new.os.nvram.path == str(new_vars)


def test_clone_of_an_explicit_nvram_keeps_its_template(tmp_path, monkeypatch):
    own = tmp_path / "mine_VARS.fd"
    xml, _vars, _tpm = uefi_tpm_source(
        tmp_path, monkeypatch, started=False,
        nvram=f"<nvram template='/usr/share/OVMF/OVMF_VARS_4M.fd'>{own}</nvram>")
    own.write_bytes(b"explicit variables")
    dst = tmp_path / "new.xml"
    res = clone(str(xml), str(dst), "new", state_dir=str(tmp_path / "state"))
    new_vars = tmp_path / "data" / "nvram" / "new_VARS.fd"
    assert res.nvram is not None and res.nvram.old_path == str(own) and res.nvram.copied
    assert new_vars.read_bytes() == b"explicit variables"
    _, new = load(str(dst))
    assert new.os.nvram is not None
    assert (new.os.nvram.path, new.os.nvram.template) == (
        str(new_vars), "/usr/share/OVMF/OVMF_VARS_4M.fd")


def test_clone_refuses_an_existing_nvram_and_makes_nothing(tmp_path, monkeypatch):
    xml, _vars, _tpm = uefi_tpm_source(tmp_path, monkeypatch)
    taken = tmp_path / "data" / "nvram" / "new_VARS.fd"
    taken.write_bytes(b"another guest's variables")
    dst = tmp_path / "new.xml"
    with pytest.raises(QemuwrapError, match="new_VARS.fd already exists"):
        clone(str(xml), str(dst), "new", state_dir=str(tmp_path / "state"))
    assert taken.read_bytes() == b"another guest's variables"
    assert not dst.exists()
    assert os.listdir(tmp_path / "data" / "swtpm") == [UUID]  # no TPM copy either


def test_a_failed_tpm_copy_removes_the_nvram_copy(tmp_path, monkeypatch):
    """The TPM state cannot be copied (a dangling link in it): the VARS copy already made
    goes again, and no definition is written."""
    xml, _vars, tpm = uefi_tpm_source(tmp_path, monkeypatch)
    (tpm / "broken").symlink_to(tmp_path / "nowhere")
    dst = tmp_path / "new.xml"
    with pytest.raises(QemuwrapError, match="^swtpm: cannot copy"):
        clone(str(xml), str(dst), "new", state_dir=str(tmp_path / "state"))
    assert sorted(os.listdir(tmp_path / "data" / "nvram")) == ["src_VARS.fd"]
    assert os.listdir(tmp_path / "data" / "swtpm") == [UUID]
    assert not dst.exists()


@needs_qemu
@pytest.mark.slow
def test_a_uefi_tpm_clone_starts_on_its_own_copies(tmp_path, demo_image, monkeypatch):
    """The source ran once (its VARS made, its TPM manufactured); the clone starts on the
    copies clone made: the VARS path in its live definition is its own, its swtpm runs
    on the state under its new uuid, not manufactured again, and the guest sees EFI and
    its TPM 2.0."""
    if not os.path.exists("/usr/share/qemu/firmware/60-edk2-x86_64.json"):
        pytest.skip("needs OVMF's firmware descriptors (Debian package ovmf)")
    if shutil.which("swtpm") is None or shutil.which("swtpm_setup") is None:
        pytest.skip("needs swtpm and swtpm_setup (Debian packages swtpm, swtpm-tools)")
    data = tmp_path / "data"
    monkeypatch.setenv("QEMUWRAP_DATA_DIR", str(data))
    env = Env(tmp_path, demo_image)
    try:
        path = env.xml(cmdline="iomem=relaxed qemuwrap.poweroff=1", extra_devices=(
            "<tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>"))
        text = re.sub(r"machine='[^']*'", "machine='q35'", path.read_text(), count=1)
        # Secure boot off: enforced, it would lock /dev/mem (the genid's way) down.
        path.write_text(text.replace("<os>", "<os firmware='efi'><firmware><feature "
                                     "enabled='no' name='secure-boot'/></firmware>", 1))
        res = env.qw("run", str(path), timeout=240)
        assert res.returncode == 0, res.stderr
        src_uuid = load(str(path))[1].uuid_str
        src_tpm = data / "swtpm" / src_uuid / "tpm2"
        assert (data / "nvram" / "demo_VARS.fd").is_file()
        assert (src_tpm / "tpm2-00.permall").is_file()

        twin = tmp_path / "twin.xml"
        res = clone(str(path), str(twin), "twin", state_dir=str(env.root))
        new_vars = data / "nvram" / "twin_VARS.fd"
        new_tpm = data / "swtpm" / res.new_uuid / "tpm2"
        assert new_vars.read_bytes() == (data / "nvram" / "demo_VARS.fd").read_bytes()
        res2 = env.qw("start", str(twin))
        assert res2.returncode == 0, res2.stderr
        out = env.wait_serial("twin", r"genid: [0-9a-f-]{36}", timeout=240)
        assert "efi: yes" in out and "tpm: version 2 pcr0 " in out, out
        assert f"genid: {res.new_genid}" in out
        live = (env.gdir("twin") / "domain.xml").read_text()
        assert f">{new_vars}</nvram>" in live
        rec = env.record("twin")
        [swtpm_entry] = [c for c in rec["companions"] if c["kind"] == "swtpm"]
        assert f"dir={new_tpm},mode=0600" in swtpm_entry["proc"]["argv"]
        # Not manufactured again: swtpm_setup would have authored a new state in its log.
        swtpm_log = (env.gdir("twin") / "swtpm.log").read_text(errors="replace")
        assert "Successfully authored TPM state" not in swtpm_log
        assert env.qw("destroy", "twin").returncode == 0
    finally:
        env.cleanup()
