"""The demo guest: its initramfs is a valid newc archive, and under real QEMU (TCG) it prints
its VM Generation ID, powers off by timer and by ACPI power button, and reports a new GUID
after a save/restore without rebooting.

The image is built once per session into QEMUWRAP_DEMO_DIR (default /var/tmp/qemuwrap-demo),
where later runs reuse it instead of downloading the kernel again.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shlex
import shutil
import stat
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from qemuwrap import demoguest

from conftest import QEMU, needs_qemu

BOOT_TIMEOUT = 60.0  # TCG boots in ~2 s; generous for a loaded CI machine


# --- the archive ------------------------------------------------------------------------------


def read_newc(raw: bytes) -> dict[str, dict]:
    """Our own newc reader, independent of the writer, so a writer bug cannot hide itself."""
    entries: dict[str, dict] = {}
    pos = 0
    while True:
        assert raw[pos : pos + 6] == b"070701", f"bad magic at {pos}"
        fields = [int(raw[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        mode, filesize, rmaj, rmin, namesize = (fields[i] for i in (1, 6, 9, 10, 11))
        name_at = pos + 110
        name = raw[name_at : name_at + namesize]
        assert name.endswith(b"\0")
        data_at = name_at + namesize + (-(110 + namesize) % 4)
        assert raw[name_at + namesize : data_at].strip(b"\0") == b""
        pos = data_at + filesize + (-filesize % 4)
        text = name[:-1].decode()
        if text == "TRAILER!!!":
            assert raw[pos:].strip(b"\0") == b""
            return entries
        entries[text] = {
            "mode": mode,
            "rdev": (rmaj, rmin),
            "data": raw[data_at : data_at + filesize],
        }


def check_image_entries(entries: dict[str, dict], init: bytes) -> None:
    for d in ("bin", "sbin", "proc", "sys", "dev", "tmp"):
        assert stat.S_ISDIR(entries[d]["mode"]), d
    console = entries["dev/console"]
    assert stat.S_ISCHR(console["mode"]) and console["rdev"] == (5, 1)
    assert stat.S_ISREG(entries["init"]["mode"]) and stat.S_IMODE(entries["init"]["mode"]) == 0o755
    assert entries["init"]["data"] == init
    assert stat.S_ISREG(entries["bin/busybox"]["mode"])
    assert stat.S_IMODE(entries["bin/busybox"]["mode"]) == 0o755
    assert stat.S_ISLNK(entries["bin/sh"]["mode"]) and entries["bin/sh"]["data"] == b"busybox"


def test_initramfs_archive_is_valid_newc(tmp_path):
    """Written from fake inputs (no download, no busybox needed) and read back two ways."""
    init = demoguest.init_script()
    fake_busybox = b"\x7fELF" + bytes(range(256)) * 3 + b"odd"  # length not a multiple of 4
    modules = {"button.ko": b"b" * 5, "evdev.ko": b"e" * 6}
    out = tmp_path / "initrd.img"
    demoguest.write_initramfs(out, demoguest.initramfs_entries(init, fake_busybox, modules))
    raw = gzip.decompress(out.read_bytes())
    entries = read_newc(raw)
    check_image_entries(entries, init)
    assert entries["bin/busybox"]["data"] == fake_busybox
    assert entries["lib/modules/evdev.ko"]["data"] == b"e" * 6
    assert not list(tmp_path.glob(".initrd.img.*")), "temp file left behind"
    # Reproducible: same inputs, same bytes (mtime 0 in cpio and gzip).
    again = tmp_path / "again.img"
    demoguest.write_initramfs(again, demoguest.initramfs_entries(init, fake_busybox, modules))
    assert again.read_bytes() == out.read_bytes()

    if shutil.which("cpio") is None:
        pytest.skip("cpio not installed: checked with our own reader only")
    listing = subprocess.run(
        ["cpio", "-itv", "--quiet"], input=raw, capture_output=True, check=True
    ).stdout.decode()
    lines = {line.split()[-1]: line for line in listing.splitlines() if line.strip()}
    assert "dev/console" in lines
    assert lines["dev/console"].startswith("crw")
    assert "5,   1" in lines["dev/console"]
    sh_line = next(line for line in listing.splitlines() if " bin/sh " in line + " ")
    assert sh_line.startswith("l") and sh_line.endswith("bin/sh -> busybox")
    assert set(entries) <= {line.split(" -> ")[0].split()[-1] for line in listing.splitlines()}


def test_static_elf_check():
    assert not demoguest._is_static_x86_64_elf(b"#!/bin/sh\n")
    assert not demoguest._is_static_x86_64_elf(b"")


def test_missing_busybox_is_one_line_error(tmp_path):
    with pytest.raises(demoguest.DemoBuildError, match="busybox-static") as info:
        demoguest.read_busybox(tmp_path / "busybox")
    assert "\n" not in str(info.value)


# --- real QEMU --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def image() -> demoguest.DemoImage:
    if QEMU is None:
        pytest.skip("qemu-system-x86_64 is not installed (Debian package qemu-system-x86)")
    dest = Path(os.environ.get("QEMUWRAP_DEMO_DIR") or demoguest.DEFAULT_DIR)
    return demoguest.build(dest)


class Guest:
    """One QEMU process booting the demo image, with its serial log and an optional QMP socket."""

    def __init__(
        self,
        image,
        workdir: Path,
        name: str,
        guid: str | None,
        poweroff: int = 0,
        extra: tuple[str, ...] = (),
    ):
        self.log_path = workdir / f"{name}.serial.log"
        self.out_path = workdir / f"{name}.qemu.out"
        self.qmp_path = workdir / f"{name}.qmp"
        if len(str(self.qmp_path)) > 100:  # sun_path holds 108 bytes
            self.qmp_path = Path(tempfile.mkdtemp(prefix="qw-")) / "qmp"
        self.argv = [
            QEMU, "-accel", "tcg", "-machine", "pc,acpi=on", "-m", "256",
            "-nodefaults", "-no-user-config", "-display", "none",
            # A panic or reboot ends QEMU instead of looping; the log tells it from a poweroff.
            "-no-reboot",
            "-kernel", str(image.kernel), "-initrd", str(image.initrd),
            "-append", f"console=ttyS0 panic=-1 quiet qemuwrap.poweroff={poweroff}",
            "-serial", f"file:{self.log_path}",
            "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
        ]  # fmt: skip
        if guid is not None:
            self.argv += ["-device", f"vmgenid,guid={guid},id=vmgenid0"]
        self.argv += list(extra)
        self.proc: subprocess.Popen | None = None
        self.monitor = None
        self.started = 0.0

    def start(self) -> Guest:
        with open(self.out_path, "wb") as out:
            self.started = time.monotonic()
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def diagnostics(self) -> str:
        out = self.out_path.read_text(errors="replace") if self.out_path.exists() else ""
        return f"\n--- serial log ---\n{self.log()[-3000:]}\n--- qemu output ---\n{out[-2000:]}"

    def wait_for(self, text: str, timeout: float = BOOT_TIMEOUT) -> float:
        """Wait until the serial log contains text; returns the seconds waited."""
        start = time.monotonic()
        while text not in self.log():
            if self.proc.poll() is not None and text not in self.log():
                pytest.fail(
                    f"QEMU exited ({self.proc.returncode}) before {text!r}" + self.diagnostics()
                )
            if time.monotonic() - start > timeout:
                pytest.fail(f"no {text!r} after {timeout} s" + self.diagnostics())
            time.sleep(0.02)
        return time.monotonic() - start

    def wait_exit(self, timeout: float = BOOT_TIMEOUT) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"QEMU still running after {timeout} s" + self.diagnostics())

    def qmp(self):
        """A connected synchronous QMP client (the socket appears shortly after exec)."""
        from qemu.qmp import ConnectError
        from qemu.qmp.legacy import QEMUMonitorProtocol

        deadline = time.monotonic() + 10
        while True:
            monitor = QEMUMonitorProtocol(str(self.qmp_path))
            try:
                monitor.connect()
                break
            except (ConnectError, OSError):
                monitor.close()
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    pytest.fail("cannot connect to QMP" + self.diagnostics())
                time.sleep(0.02)
        monitor.settimeout(30)
        self.monitor = monitor
        return monitor

    def close_qmp(self) -> None:
        if self.monitor is not None:
            # EOFError is expected after quit / guest poweroff: QEMU closed the socket first.
            with contextlib.suppress(EOFError, OSError):
                self.monitor.close()
            self.monitor = None

    def kill(self) -> None:
        self.close_qmp()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def guests(image, tmp_path):
    """Start guests with guests(name, guid, ...); every QEMU is killed at teardown."""
    started: list[Guest] = []

    def start(name: str, guid: str | None, **kwargs) -> Guest:
        guest = Guest(image, tmp_path, name, guid, **kwargs)
        started.append(guest)
        return guest.start()

    try:
        yield start
    finally:
        for guest in started:
            guest.kill()


@needs_qemu
def test_built_initrd_has_the_expected_entries(image):
    entries = read_newc(gzip.decompress(image.initrd.read_bytes()))
    check_image_entries(entries, demoguest.init_script())
    assert entries["bin/busybox"]["data"] == demoguest.BUSYBOX.read_bytes()
    assert {"lib/modules/button.ko", "lib/modules/evdev.ko"} <= set(entries)
    assert image.kernel.stat().st_size > 1_000_000


@needs_qemu
def test_build_again_is_cheap_and_reuses_files(image):
    before = image.initrd.stat().st_mtime_ns, image.kernel.stat().st_mtime_ns
    start = time.monotonic()
    again = demoguest.build(image.kernel.parent)
    assert time.monotonic() - start < 2
    assert again == image
    assert (image.initrd.stat().st_mtime_ns, image.kernel.stat().st_mtime_ns) == before


@needs_qemu
def test_changed_init_script_rebuilds_only_the_initrd(image, tmp_path, monkeypatch):
    # Seed a fresh dest with the session's kernel files, so nothing is downloaded.
    dest = tmp_path / "demo"
    (dest / "modules").mkdir(parents=True)
    shutil.copy(image.kernel, dest / "vmlinuz")
    for module in image.kernel.parent.joinpath("modules").iterdir():
        shutil.copy(module, dest / "modules" / module.name)
    kernel_mtime = (dest / "vmlinuz").stat().st_mtime_ns
    first = demoguest.build(dest)
    assert first.initrd.read_bytes() == image.initrd.read_bytes()  # reproducible
    changed = demoguest.init_script() + b"# changed\n"
    monkeypatch.setattr(demoguest, "init_script", lambda: changed)
    second = demoguest.build(dest)
    entries = read_newc(gzip.decompress(second.initrd.read_bytes()))
    assert entries["init"]["data"] == changed
    assert (dest / "vmlinuz").stat().st_mtime_ns == kernel_mtime
    assert sorted(p.name for p in dest.iterdir()) == [
        "initrd.img",
        "initrd.sha256",
        "modules",
        "vmlinuz",
    ], "temp files left behind"


@needs_qemu
@pytest.mark.slow
def test_prints_genid_and_powers_off_by_timer(guests):
    guid = str(uuid.uuid4())
    guest = guests("timer", guid, poweroff=1)
    guest.wait_for(f"genid: {guid}\n")
    assert guest.wait_exit() == 0
    log = guest.log()
    assert "demo: up" in log and "demo: powering off" in log, guest.diagnostics()
    assert log.count("genid:") == 1


@needs_qemu
@pytest.mark.slow
def test_without_vmgenid_device_prints_none(guests):
    guest = guests("nodev", None, poweroff=1)
    guest.wait_for("genid: none\n")
    assert guest.wait_exit() == 0
    assert "demo: powering off" in guest.log()


@needs_qemu
@pytest.mark.slow
def test_acpi_power_button_powers_off(guests):
    guid = str(uuid.uuid4())
    guest = guests("button", guid)
    monitor = guest.qmp()
    guest.wait_for(f"genid: {guid}\n")
    monitor.cmd("system_powerdown")
    assert guest.wait_exit(30) == 0
    assert "demo: powering off" in guest.log(), guest.diagnostics()


@needs_qemu
@pytest.mark.slow
def test_restore_with_new_genid_is_seen_without_reboot(guests, tmp_path):
    g1, g2 = str(uuid.uuid4()), str(uuid.uuid4())
    state = tmp_path / "state.bin"
    first = guests("first", g1)
    monitor = first.qmp()
    first.wait_for(f"genid: {g1}\n")
    monitor.cmd("stop")
    monitor.cmd("migrate", uri=f"exec:cat > {shlex.quote(str(state))}")
    deadline = time.monotonic() + 60
    while (status := monitor.cmd("query-migrate").get("status")) != "completed":
        assert status not in ("failed", "cancelled"), first.diagnostics()
        assert time.monotonic() < deadline, f"migration still {status}"
        time.sleep(0.05)
    with contextlib.suppress(EOFError):
        monitor.cmd("quit")
    first.close_qmp()
    assert first.wait_exit(30) == 0

    second = guests("second", g2, extra=("-incoming", f"exec:cat {shlex.quote(str(state))}", "-S"))
    monitor = second.qmp()
    deadline = time.monotonic() + 60
    while (status := monitor.cmd("query-status")["status"]) != "paused":
        assert status == "inmigrate", second.diagnostics()
        assert time.monotonic() < deadline, "incoming migration did not finish"
        time.sleep(0.05)
    assert monitor.cmd("query-vm-generation-id") == {"guid": g2}
    monitor.cmd("cont")
    waited = second.wait_for(f"genid: {g2}\n", timeout=5)
    log = second.log()
    assert "demo: up" not in log, "the guest rebooted instead of resuming" + second.diagnostics()
    assert g1 not in log
    print(f"restored guest printed the new genid {waited:.2f} s after cont")
