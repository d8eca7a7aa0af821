"""What the companions' guests are refused, and when, without booting anything: internal
snapshots of a UEFI guest (before QEMU is asked), a passthrough TPM without its host
device (a host check: ``--no-host-check`` translates as for a host that has one),
virtiofsd without root (before anything is spawned, swtpm included); and ``logs``
showing the companions' logs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from test_demoguest import short_path

from qemuwrap.errors import QemuwrapError
from qemuwrap.runtime.guestdir import GuestDir

from conftest import DEFAULT_CAPS, QEMU, ROOT, XML2ARGV


def qw(*args: str, root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qemuwrap", *args, "--state-dir", str(root)],
                          capture_output=True, text=True, timeout=120)


def one_line(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 1, (res.returncode, res.stdout, res.stderr)
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr
    return res.stderr


def known_guest(tmp_path: Path, os_xml: str, disks: str = "") -> Path:
    """A guest 'g' that was started from a definition once (its state directory names
    the file), with a qcow2 disk unless ``disks`` says otherwise."""
    xml = tmp_path / "g.xml"
    xml.write_text(f"""<domain type='qemu'><name>g</name><memory unit='MiB'>128</memory>
      <os{os_xml}</os><features><acpi/></features>
      <devices>{disks}<memballoon model='none'/></devices></domain>""")
    root = tmp_path / "state"
    gdir = GuestDir("g", str(root))
    gdir.prepare()
    gdir.write("definition", str(xml).encode())
    return root


UEFI = (" firmware='efi'><type arch='x86_64' machine='q35'>hvm</type>", "its UEFI variable "
        "store {data}/nvram/g_VARS.fd is a raw pflash image")
PFLASH = ("><type arch='x86_64' machine='q35'>hvm</type><loader readonly='yes' "
          "type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader><nvram>/v/g_VARS.fd</nvram>",
          "its UEFI variable store /v/g_VARS.fd is a raw pflash image")
WRITABLE_CODE = ("><type arch='x86_64' machine='q35'>hvm</type><loader readonly='no' "
                 "type='pflash'>/fw/OVMF.fd</loader>",
                 "its firmware /fw/OVMF.fd is a writable pflash image")


@pytest.mark.parametrize("action", ["create", "revert"])
@pytest.mark.parametrize(("os_xml", "what"), [UEFI, PFLASH, WRITABLE_CODE],
                         ids=["firmware-efi", "pflash-nvram", "writable-code"])
def test_internal_snapshots_of_a_uefi_guest_are_refused_first(tmp_path, monkeypatch, action,
                                                              os_xml, what):
    """One line naming the raw pflash image, before anything else is asked (the guest
    does not even run here, and it has no qcow2 disk: those refusals come after)."""
    monkeypatch.setenv("QEMUWRAP_DATA_DIR", str(tmp_path / "data"))
    root = known_guest(tmp_path, os_xml)
    err = one_line(qw("snapshot", action, "g", "s1", root=root))
    assert err == (f"qemuwrap: g: guest 'g': internal snapshots of a UEFI guest are not "
                   f"supported: {what.format(data=tmp_path / 'data')}, which cannot hold a "
                   "snapshot (libvirt takes them only with the NVRAM in qcow2); use 'save' "
                   "and 'restore' instead\n")


def test_a_bios_guest_gets_past_the_pflash_check(tmp_path):
    root = known_guest(tmp_path, "><type arch='x86_64' machine='pc'>hvm</type>")
    err = one_line(qw("snapshot", "create", "g", "s1", root=root))
    assert "snapshots need every writable disk to be qcow2" in err


# --- TPM passthrough: a host check ----------------------------------------------------------


def test_tpm_passthrough_without_the_device_is_a_host_refusal(tmp_path):
    """Refused in one line on this host; with --no-host-check the command is built as
    libvirt builds it for another host (the golden tpm-passthrough-missing.args)."""
    xml = XML2ARGV / "tpm-passthrough-missing.xml"
    common = ["dry-run", str(xml), "--caps", str(DEFAULT_CAPS)]
    state = short_path(tmp_path, "s")  # the guest's long name in a short enough root
    err = one_line(qw(*common, root=state))
    assert err.endswith("line 16: /domain/devices/tpm/backend/device: tpm: Could not open "
                        "TPM device /dev/qemuwrap-no-such-tpm: No such file or directory\n")
    res = qw(*common, "--no-host-check", root=state)
    assert res.returncode == 0, res.stderr
    assert ("-tpmdev passthrough,id=tpm-tpm0,path=/dev/qemuwrap-no-such-tpm,"
            "cancel-path=/dev/null") in res.stdout


def test_passthrough_check_opens_the_device(tmp_path):
    from qemuwrap.companions import swtpm
    from qemuwrap.companions.daemon import CompanionError

    with pytest.raises(CompanionError) as info:
        swtpm.check_passthrough(str(tmp_path / "tpm0"))
    assert str(info.value) == f"tpm: Could not open TPM device {tmp_path / 'tpm0'}: " \
                              "No such file or directory"
    device = tmp_path / "tpm1"
    device.write_bytes(b"")  # opens read-write: the check passes
    swtpm.check_passthrough(str(device))
    assert swtpm.cancel_path(str(device)) == "/dev/null"  # libvirt's when sysfs has none


# --- virtiofsd without root -----------------------------------------------------------------


SHARED_MEMORY = ("<memoryBacking><source type='memfd'/><access mode='shared'/>"
                 "</memoryBacking>")


def test_virtiofsd_refusals_say_what_to_do(tmp_path, monkeypatch):
    from qemuwrap.companions import virtiofsd

    if not os.access(virtiofsd.VIRTIOFSD, os.X_OK):
        pytest.skip(f"{virtiofsd.VIRTIOFSD} is missing (Debian package qemu-system-common)")
    monkeypatch.setattr(virtiofsd, "_privileged", lambda: False)
    daemon = virtiofsd.Virtiofsd(str(tmp_path), str(tmp_path / "s"))
    assert daemon.refusals() == [
        "virtiofsd: QEMU 7.2's virtiofsd needs root (it sandboxes itself in new "
        f"namespaces): start the guest as root, or share {tmp_path} over 9p (remove "
        "<driver type='virtiofs'/>)"]
    with pytest.raises(QemuwrapError, match="needs root"):
        daemon.prepare()
    monkeypatch.undo()
    assert virtiofsd.Virtiofsd(str(tmp_path / "missing"), "/s", cache="sometimes"
                               ).refusals() == [
        "virtiofsd: unknown cache mode 'sometimes'",
        f"virtiofsd: {tmp_path / 'missing'} is not a directory"]


@pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 is not installed "
                    "(Debian package qemu-system-x86)")
def test_virtiofsd_without_root_is_refused_before_swtpm_starts(tmp_path, monkeypatch):
    """A guest with a TPM and a virtiofs share, started by a user who is not root: one
    line from the launcher, and nothing was spawned or made (no swtpm, no TPM state)."""
    from qemuwrap import launcher
    from qemuwrap.companions import virtiofsd
    from qemuwrap.options import Options

    if not os.access(virtiofsd.VIRTIOFSD, os.X_OK):
        pytest.skip(f"{virtiofsd.VIRTIOFSD} is missing (Debian package qemu-system-common)")
    monkeypatch.setenv("QEMUWRAP_DATA_DIR", str(tmp_path / "data"))
    share = tmp_path / "share"
    share.mkdir()
    text = (ROOT / "examples" / "demo.xml").read_text().replace(
        "<memballoon", "<tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>"
        f"<filesystem type='mount'><driver type='virtiofs'/><source dir='{share}'/>"
        "<target dir='hostshare'/></filesystem><memballoon").replace(
        "<vcpu", SHARED_MEMORY + "<vcpu", 1)
    xml = tmp_path / "demo.xml"
    xml.write_text(text)
    monkeypatch.setattr(virtiofsd, "_privileged", lambda: False)  # as a user would
    opts = Options(state_dir=str(tmp_path / "state"), caps=str(DEFAULT_CAPS))
    with pytest.raises(QemuwrapError) as info:
        launcher.start(str(xml), opts)
    assert str(info.value).startswith("virtiofsd: QEMU 7.2's virtiofsd needs root")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "data").exists()  # no TPM state manufactured
    assert not [p for p in psutil.process_iter(["cmdline"])
                if any(str(tmp_path) in a for a in (p.info["cmdline"] or []))]


# --- logs -----------------------------------------------------------------------------------


def test_logs_show_the_companions_logs(tmp_path):
    root = tmp_path / "state"
    gdir = GuestDir("g", str(root))
    gdir.prepare()
    for name in ("supervisor.log", "qemu.log", "serial0.log", "swtpm-tpm0.log.1",
                 "swtpm-tpm0.log", "swtpm.log", "virtiofsd-fs0.log"):
        gdir.write(name, f"text of {name}\n".encode())
    gdir.write("state.json.tmp", b"not a log")
    res = qw("logs", "g", root=root)
    assert res.returncode == 0, res.stderr
    headers = [line for line in res.stdout.splitlines() if line.startswith("==> ")]
    assert headers == [f"==> {n} <==" for n in (
        "supervisor.log", "qemu.log", "serial0.log", "swtpm-tpm0.log.1", "swtpm-tpm0.log",
        "swtpm.log", "virtiofsd-fs0.log")]
    assert "text of virtiofsd-fs0.log\n" in res.stdout and "not a log" not in res.stdout
