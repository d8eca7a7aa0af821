"""Firmware selection from QEMU's firmware descriptors: the installed OVMF descriptors
(picked as libvirt 9.0 picks them, checked against libvirt itself when it is installed),
synthetic descriptors for the precedence rules and refusals, and a real boot of the demo
guest through the picked OVMF on q35 (see test_demoguest.py for the guest)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from test_demoguest import boot_guests

from qemuwrap.companions import nvram
from qemuwrap.qemu import firmware
from qemuwrap.qemu.firmware import FirmwareError

from conftest import QEMU

INSTALLED = Path(firmware.SYSTEM_DIR) / "60-edk2-x86_64.json"
needs_ovmf = pytest.mark.skipif(
    not INSTALLED.is_file(), reason="OVMF's descriptors are not installed (Debian package ovmf)")
Q35 = "pc-q35-7.2"
PC = "pc-i440fx-7.2"


def write(directory: Path, name: str, *, interfaces=("uefi",), machines=("pc-q35-*",),
          features=(), code="/fw/CODE.fd", template: str | None = "/fw/VARS.fd",
          fmt="raw", device="flash", arch="x86_64") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    mapping: dict = {"device": device}
    if device == "flash":
        mapping["executable"] = {"filename": code, "format": fmt}
        if template is not None:
            mapping["nvram-template"] = {"filename": template, "format": fmt}
        else:
            mapping["mode"] = "stateless"
    else:
        mapping["filename"] = code
    doc = {"description": name, "interface-types": list(interfaces), "mapping": mapping,
           "targets": [{"architecture": arch, "machines": list(machines)}],
           "features": list(features), "tags": []}
    path = directory / name
    path.write_text(json.dumps(doc))
    return path


# --- the installed descriptors ------------------------------------------------------------------


@needs_ovmf
@pytest.mark.parametrize(("machine", "wishes", "expected"), [
    # libvirt's pick for a plain <os firmware='efi'> on q35: the first file, MS keys enrolled.
    (Q35, {}, "40-edk2-x86_64-secure-enrolled.json"),
    (Q35, {"secure_boot": False}, "60-edk2-x86_64.json"),
    (Q35, {"secure_boot": True, "enrolled_keys": False}, "50-edk2-x86_64-secure.json"),
    (Q35, {"enrolled_keys": True}, "40-edk2-x86_64-secure-enrolled.json"),
    (PC, {}, "60-edk2-x86_64.json"),  # the secure builds need q35 (SMM)
])
def test_installed_descriptors_pick_like_libvirt(machine, wishes, expected):
    fw = firmware.select("uefi", "x86_64", machine, dirs=[firmware.SYSTEM_DIR], **wishes)
    assert os.path.basename(fw.descriptor.path) == expected
    assert os.path.isfile(fw.loader) and fw.nvram_template and os.path.isfile(fw.nvram_template)
    secure = expected != "60-edk2-x86_64.json"
    assert fw.requires_smm is secure and fw.secure is secure
    assert ("smm" in fw.machine_properties()) is secure


@needs_ovmf
def test_secure_pick_builds_smm_pflash_and_the_write_lock():
    fw = firmware.select("uefi", "x86_64", Q35, secure_boot=True, enrolled_keys=False,
                         dirs=[firmware.SYSTEM_DIR])
    assert fw.machine_properties() == {"smm": "on", "pflash0": "pflash0", "pflash1": "pflash1"}
    assert fw.qemu_options("/var/lib/qemuwrap/nvram/g_VARS.fd") == [
        ("-blockdev", "driver=raw,node-name=pflash0,read-only=on,file.driver=file,"
                      "file.filename=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"),
        ("-blockdev", "driver=raw,node-name=pflash1,read-only=off,file.driver=file,"
                      "file.filename=/var/lib/qemuwrap/nvram/g_VARS.fd"),
        ("-global", "driver=cfi.pflash01,property=secure,value=on"),
    ]


@needs_ovmf
def test_no_match_is_one_line_with_what_was_asked_and_what_exists():
    with pytest.raises(FirmwareError) as info:
        firmware.select("uefi", "x86_64", PC, secure_boot=True, dirs=[firmware.SYSTEM_DIR])
    text = str(info.value)
    assert "\n" not in text
    assert "uefi firmware for x86_64 machine pc-i440fx-7.2, secure-boot on" in text
    assert "60-edk2-x86_64.json (uefi; x86_64 pc-i440fx-*,pc-q35-*;" in text
    with pytest.raises(FirmwareError, match="bios firmware for x86_64"):
        firmware.select("bios", "x86_64", Q35, dirs=[firmware.SYSTEM_DIR])


VIRSH = shutil.which("virsh")


@needs_ovmf
@pytest.mark.skipif(VIRSH is None, reason="libvirt's virsh is not installed (libvirt-clients)")
@pytest.mark.parametrize("features", ["", "<feature enabled='no' name='secure-boot'/>",
                                      "<feature enabled='no' name='enrolled-keys'/>"])
def test_agrees_with_libvirt(tmp_path, features):
    """libvirt 9.0 (daemonless) picks the same code and template for the same request."""
    xml = tmp_path / "g.xml"
    xml.write_text(f"""<domain type='qemu'><name>g</name><memory>131072</memory>
      <os firmware='efi'><type arch='x86_64' machine='q35'>hvm</type>
      <firmware>{features}</firmware></os><features><acpi/></features></domain>""")
    root = tmp_path / "embed"
    out = subprocess.run([VIRSH, "-q", "-c", f"qemu:///embed?root={root}", "domxml-to-native",
                          "qemu-argv", str(xml)], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        pytest.skip(f"virsh failed here: {out.stderr.strip()}")
    files = re.findall(r'"filename":"([^"]+)","node-name":"libvirt-pflash0-storage"', out.stdout)
    wishes = {}
    if "secure-boot" in features:
        wishes["secure_boot"] = False
    if "enrolled-keys" in features:
        wishes["enrolled_keys"] = False
    fw = firmware.select("uefi", "x86_64", Q35, dirs=[firmware.SYSTEM_DIR], **wishes)
    assert files == [fw.loader]
    assert ("smm=on" in out.stdout) is fw.requires_smm
    assert ("property=secure,value=on" in out.stdout) is fw.secure


# --- synthetic descriptors --------------------------------------------------------------------


def test_precedence_override_hide_and_order(tmp_path):
    system, etc, user = tmp_path / "share", tmp_path / "etc", tmp_path / "user"
    write(system, "50-a.json", code="/sys/a")
    write(system, "60-b.json", code="/sys/b")
    write(system, "70-c.json", code="/sys/c")
    write(etc, "60-b.json", code="/etc/b")  # replaces the distribution's file of that name
    (etc / "50-a.json").write_text("")  # an empty file hides it
    write(user, "55-u.json", code="/user/u")  # sorted in by file name, not by directory
    (system / "README").write_text("not a descriptor")
    dirs = [str(system), str(etc), str(user)]
    assert firmware.descriptor_files(dirs) == [
        str(user / "55-u.json"), str(etc / "60-b.json"), str(system / "70-c.json")]
    assert firmware.select("uefi", "x86_64", Q35, dirs=dirs).loader == "/user/u"
    assert firmware.descriptor_files([str(tmp_path / "missing")]) == []


def test_search_dirs_user_dir_only_unprivileged():
    env = {"XDG_CONFIG_HOME": "/home/u/cfg", "HOME": "/home/u"}
    assert firmware.search_dirs(True, env) == [firmware.SYSTEM_DIR, firmware.SYSCONF_DIR]
    assert firmware.search_dirs(False, env)[-1] == "/home/u/cfg/qemu/firmware"
    assert firmware.search_dirs(False, {"HOME": "/home/u"})[-1] == "/home/u/.config/qemu/firmware"


def test_machine_glob_arch_and_interface(tmp_path):
    write(tmp_path, "10-arm.json", arch="aarch64", machines=("virt-*",), code="/arm")
    write(tmp_path, "20-bios.json", interfaces=("bios",), device="memory", code="/bios.bin",
          machines=("pc-*",))
    write(tmp_path, "30-pc.json", machines=("pc-i440fx-*",), code="/pc")
    dirs = [str(tmp_path)]
    assert firmware.select("uefi", "x86_64", PC, dirs=dirs).loader == "/pc"
    bios = firmware.select("bios", "x86_64", Q35, dirs=dirs)
    assert bios.loader_type == "rom" and bios.qemu_options(None) == [("-bios", "/bios.bin")]
    assert bios.machine_properties() == {}
    assert firmware.select("uefi", "aarch64", "virt-7.2", dirs=dirs).loader == "/arm"
    with pytest.raises(FirmwareError, match="machine q35"):  # aliases are not machine types
        firmware.select("uefi", "x86_64", "q35", dirs=dirs)


def test_features_loader_and_smm(tmp_path):
    write(tmp_path, "10-secure.json", features=("secure-boot", "requires-smm"), code="/sec")
    write(tmp_path, "20-plain.json", code="/plain")
    dirs = [str(tmp_path)]
    assert firmware.select("uefi", "x86_64", Q35, dirs=dirs).loader == "/sec"
    assert firmware.select("uefi", "x86_64", Q35, secure_boot=False, dirs=dirs).loader == "/plain"
    # An explicit <loader> path picks the descriptor that maps it (for its template).
    picked = firmware.select("uefi", "x86_64", Q35, loader="/plain", dirs=dirs)
    assert picked.nvram_template == "/fw/VARS.fd"
    with pytest.raises(FirmwareError, match="secure loader"):
        firmware.select("uefi", "x86_64", Q35, loader="/plain", loader_secure=True, dirs=dirs)
    with pytest.raises(FirmwareError, match="requires SMM, which the domain turns off"):
        firmware.select("uefi", "x86_64", Q35, smm=False, dirs=dirs)


def test_formats_and_stateless(tmp_path):
    write(tmp_path, "10-vmdk.json", fmt="vmdk", code="/vmdk")
    write(tmp_path, "20-qcow2.json", fmt="qcow2", code="/q")
    write(tmp_path, "30-stateless.json", template=None, code="/s", machines=("pc-i440fx-*",))
    dirs = [str(tmp_path)]
    fw = firmware.select("uefi", "x86_64", Q35, dirs=dirs)
    assert fw.loader == "/q" and fw.nvram_format == "qcow2"
    assert fw.qemu_options("/n.qcow2")[1] == (
        "-blockdev", "driver=qcow2,node-name=pflash1,read-only=off,file.driver=file,"
                     "file.filename=/n.qcow2")
    stateless = firmware.select("uefi", "x86_64", PC, dirs=dirs)
    assert stateless.nvram_template is None
    assert stateless.machine_properties() == {"pflash0": "pflash0"}
    assert len(stateless.qemu_options(None)) == 1


def test_commas_in_paths_cannot_add_options(tmp_path):
    write(tmp_path, "10.json", code="/fw/a,file.driver=nbd")
    fw = firmware.select("uefi", "x86_64", Q35, dirs=[str(tmp_path)])
    assert fw.qemu_options("/n")[0][1].endswith("file.filename=/fw/a,,file.driver=nbd")


@pytest.mark.parametrize(("text", "message"), [
    ("{", "not valid JSON"),
    ("[]", "not a firmware descriptor"),
    ('{"interface-types": "uefi"}', "'interface-types' is missing or not a list"),
    ('{"interface-types": ["uefi"], "mapping": {"device": "flash"}}',
     "'mapping.executable' is missing or not an object"),
    ('{"interface-types": ["uefi"], "mapping": {"device": "floppy"}}', "unknown 'mapping.device'"),
    ('{"interface-types": ["uefi"], "mapping": {"device": "memory", "filename": "/x"},'
     ' "targets": [{"architecture": "x86_64", "machines": [1]}]}',
     "'targets[0].machines' must list strings"),
])
def test_bad_descriptor_is_one_line_naming_the_file(tmp_path, text, message):
    (tmp_path / "10-bad.json").write_text(text)
    with pytest.raises(FirmwareError) as info:
        firmware.select("uefi", "x86_64", Q35, dirs=[str(tmp_path)])
    assert str(info.value).startswith(f"{tmp_path / '10-bad.json'}: ")
    assert message in str(info.value) and "\n" not in str(info.value)


# --- a real boot through OVMF -------------------------------------------------------------------


@pytest.fixture
def guests(demo_image, tmp_path):
    yield from boot_guests(demo_image, tmp_path)


@needs_ovmf
@pytest.mark.slow
@pytest.mark.parametrize("secure_boot", [False, True], ids=["plain", "secure-boot"])
def test_demo_guest_boots_through_ovmf_and_reads_its_genid(guests, tmp_path, secure_boot):
    """Direct kernel boot through the picked OVMF on q35: the guest sees EFI and reads the
    genid (iomem=relaxed: under OVMF the vmgenid buffer is in ACPI NVS memory)."""
    fw = firmware.select("uefi", "x86_64", Q35, secure_boot=secure_boot, enrolled_keys=False,
                         dirs=[firmware.SYSTEM_DIR])
    vars_path = nvram.default_path("ovmf", environ={"XDG_DATA_HOME": str(tmp_path)},
                                   privileged=False)
    assert nvram.ensure(vars_path, fw.nvram_template)
    machine = ",".join(["q35", *(f"{k}={v}" for k, v in fw.machine_properties().items())])
    extra = [word for option in fw.qemu_options(vars_path) for word in option]
    guid = str(uuid.uuid4())
    guest = guests("ovmf", guid, machine=machine, extra=tuple(extra), poweroff=1,
                   cmdline="iomem=relaxed")
    guest.wait_for(f"genid: {guid}\n", timeout=180)
    assert guest.wait_exit(60) == 0
    log = guest.log()
    assert "efi: yes\n" in log, guest.diagnostics()
    # OVMF wrote its variables into the guest's own copy, never into the template.
    with open(vars_path, "rb") as mine, open(fw.nvram_template, "rb") as template:
        assert mine.read() != template.read()


@pytest.mark.slow
def test_demo_guest_under_seabios_says_no_efi(guests):
    if QEMU is None:
        pytest.skip("qemu-system-x86_64 is not installed")
    guest = guests("bios", None, poweroff=1)
    guest.wait_for("genid: none\n")
    assert "efi: no\n" in guest.log()
    assert guest.wait_exit() == 0
