"""Companions started and stopped with the guest by the supervisor (issue 8), proven from
inside the demo guest: a TPM 2.0 from swtpm, a virtiofs share from virtiofsd.  Each test
skips, with the reason, when its package is absent."""

from __future__ import annotations

import os
import re
import shutil

import psutil
import pytest

from conftest import needs_qemu
from test_launcher import Env

pytestmark = [needs_qemu, pytest.mark.slow]

TPM = "<tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>"
SHARED_MEMORY = ("<memoryBacking><source type='memfd'/><access mode='shared'/>"
                 "</memoryBacking>")


@pytest.fixture
def env(tmp_path, demo_image, monkeypatch):
    monkeypatch.setenv("QEMUWRAP_DATA_DIR", str(tmp_path / "data"))
    e = Env(tmp_path, demo_image)
    yield e
    for proc in e.procs:
        if proc.poll() is None:
            proc.kill()
    for p in psutil.process_iter(["cmdline"]):
        if any(str(tmp_path) in arg for arg in (p.info["cmdline"] or [])):
            p.kill()


def _companions(tmp_path) -> list[str]:
    """The swtpm/virtiofsd processes of this test still alive."""
    return [" ".join(p.info["cmdline"]) for p in psutil.process_iter(["cmdline"])
            if p.info["cmdline"] and os.path.basename(p.info["cmdline"][0]) in
            ("swtpm", "virtiofsd") and any(str(tmp_path) in a for a in p.info["cmdline"])]


def test_guest_sees_a_tpm2_from_swtpm(env, tmp_path):
    if shutil.which("swtpm") is None or shutil.which("swtpm_setup") is None:
        pytest.skip("needs swtpm and swtpm_setup (Debian packages swtpm, swtpm-tools)")
    path = env.xml(extra_devices=TPM)
    res = env.qw("start", str(path))
    assert res.returncode == 0, res.stderr
    text = env.wait_serial("demo", r"tpm: version 2 pcr0 [0-9A-Fa-f]+", timeout=90)
    assert "tpm: version 2" in text
    assert len(_companions(tmp_path)) == 1  # swtpm runs beside QEMU
    status = env.status("demo")
    assert [c["kind"] for c in status["companions"]] == ["swtpm"]
    uuid = status["uuid"]
    state = tmp_path / "data" / "swtpm" / uuid / "tpm2"
    assert (state / "tpm2-00.permall").exists()  # manufactured, kept for good
    res = env.qw("destroy", "demo")
    assert res.returncode == 0, res.stderr
    assert _companions(tmp_path) == []  # stopped with the guest
    assert not (env.gdir("demo") / "swtpm.sock").exists()
    assert (state / "tpm2-00.permall").exists()


def test_guest_mounts_a_virtiofs_share(env, tmp_path):
    from qemuwrap.companions import virtiofsd

    if os.geteuid() != 0 or not os.access(virtiofsd.VIRTIOFSD, os.X_OK):
        pytest.skip("needs root and /usr/lib/qemu/virtiofsd (qemu-system-common)")
    share = tmp_path / "share"
    share.mkdir()
    (share / "hello.txt").write_text("hello from the host 7f3a\n")
    fs = (f"<filesystem type='mount'><driver type='virtiofs'/><source dir='{share}'/>"
          "<target dir='hostshare'/></filesystem>")
    path = env.xml(extra_devices=fs, cmdline="qemuwrap.virtiofs=hostshare")
    text = path.read_text().replace("<vcpu", SHARED_MEMORY + "<vcpu", 1)
    path.write_text(text)
    res = env.qw("start", str(path))
    assert res.returncode == 0, res.stderr
    out = env.wait_serial("demo", r"virtiofs: hostshare: hello.txt: .*", timeout=90)
    assert "virtiofs: hostshare: hello.txt: hello from the host 7f3a" in out, out
    assert _companions(tmp_path)  # virtiofsd (and the child it sandboxes itself in)
    res = env.qw("destroy", "demo")
    assert res.returncode == 0, res.stderr
    assert _companions(tmp_path) == []


def test_guest_boots_through_ovmf_picked_by_the_descriptors(env, tmp_path):
    """<os firmware='efi'>: the firmware QEMU's descriptors give (libvirt's pick), the
    guest's own VARS copy made on first start and kept, the genid read under OVMF."""
    if not os.path.exists("/usr/share/qemu/firmware/60-edk2-x86_64.json"):
        pytest.skip("needs OVMF and its firmware descriptors (Debian package ovmf)")
    path = env.xml(cmdline="iomem=relaxed")
    text = path.read_text()
    text = re.sub(r"<type arch='x86_64' machine='[^']*'>", "<type arch='x86_64' "
                  "machine='q35'>", text).replace(
        "<os>", "<os firmware='efi'><firmware><feature enabled='no' name='secure-boot'/>"
                "</firmware>", 1)  # Secure Boot would lock the kernel's /dev/mem down
    path.write_text(text)
    res = env.qw("start", str(path))
    assert res.returncode == 0, res.stderr
    out = env.wait_serial("demo", r"genid: [0-9a-f-]{36}", timeout=150)
    assert "efi: yes" in out
    genid = re.search(r"genid: ([0-9a-f-]{36})", out).group(1)
    assert genid == env.status("demo")["genid"]
    vars_fd = tmp_path / "data" / "nvram" / "demo_VARS.fd"
    assert vars_fd.is_file()  # the guest's own copy, in the persistent place
    live = (env.gdir("demo") / "domain.xml").read_text()
    assert f">{vars_fd}</nvram>" in live and "OVMF_CODE" in live  # as libvirt records it
    res = env.qw("destroy", "demo")
    assert res.returncode == 0, res.stderr
    assert vars_fd.is_file()  # kept across starts
