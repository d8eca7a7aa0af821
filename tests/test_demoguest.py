"""The demo guest: its initramfs is a valid newc archive, and under real QEMU (TCG) it prints
its VM Generation ID, powers off by timer and by ACPI power button, and reports a new GUID
after a save/restore without rebooting.

The image is built once per session into QEMUWRAP_DEMO_DIR (default /var/tmp/qemuwrap-demo),
where later runs reuse it instead of downloading the kernel again.
"""

from __future__ import annotations

import contextlib
import gzip
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
    modules = {
        "kernel/drivers/acpi/button.ko": b"b" * 5,
        "kernel/drivers/input/evdev.ko": b"e" * 6,
        "kernel/drivers/virtio/virtio_ring.ko": b"r",
        "kernel/drivers/virtio/virtio.ko": b"v",
        "kernel/drivers/virtio/virtio_pci.ko": b"p",
        "modules.dep": b"kernel/drivers/acpi/button.ko:\nkernel/drivers/input/evdev.ko:\n"
        b"kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio.ko "
        b"kernel/drivers/virtio/virtio_ring.ko\n"
        b"kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n"
        b"kernel/drivers/virtio/virtio_ring.ko:\n",
    }
    files = {"sbin/qemu-ga": b"agent", "lib/x86_64-linux-gnu/libfoo.so.1": b"lib"}
    out = tmp_path / "initrd.img"

    def entries_list():
        return demoguest.initramfs_entries(init, fake_busybox, modules, files, "6.1.0-test")

    demoguest.write_initramfs(out, entries_list())
    raw = gzip.decompress(out.read_bytes())
    entries = read_newc(raw)
    check_image_entries(entries, init)
    assert entries["bin/busybox"]["data"] == fake_busybox
    assert entries["lib/modules/6.1.0-test/kernel/drivers/input/evdev.ko"]["data"] == b"e" * 6
    # What the init loads, in load order: dependencies first.
    assert entries["lib/modules/power.order"]["data"] == (
        b"6.1.0-test/kernel/drivers/input/evdev.ko\n6.1.0-test/kernel/drivers/acpi/button.ko\n")
    assert entries["lib/modules/virtio.order"]["data"] == (
        b"6.1.0-test/kernel/drivers/virtio/virtio_ring.ko\n"
        b"6.1.0-test/kernel/drivers/virtio/virtio.ko\n"
        b"6.1.0-test/kernel/drivers/virtio/virtio_pci.ko\n")
    assert stat.S_IMODE(entries["sbin/qemu-ga"]["mode"]) == 0o755
    # Every parent directory comes before what it holds.
    names = list(entries)
    for name in names:
        parent = name.rsplit("/", 1)[0] if "/" in name else None
        if parent:
            assert stat.S_ISDIR(entries[parent]["mode"]), parent
            assert names.index(parent) < names.index(name), name
    assert not list(tmp_path.glob(".initrd.img.*")), "temp file left behind"
    # Reproducible: same inputs, same bytes (mtime 0 in cpio and gzip).
    again = tmp_path / "again.img"
    demoguest.write_initramfs(again, entries_list())
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


def test_load_order_puts_dependencies_first():
    deps = demoguest.parse_modules_dep(
        "kernel/a/virtio_net.ko: kernel/v/virtio.ko kernel/n/failover.ko kernel/n/net_failover.ko"
        " kernel/v/virtio_ring.ko\n"
        "kernel/n/net_failover.ko: kernel/n/failover.ko\n"
        "kernel/v/virtio.ko: kernel/v/virtio_ring.ko\n"
        "kernel/v/virtio_ring.ko:\nkernel/n/failover.ko:\nkernel/c/virtio-rng.ko:\n")
    order = demoguest.load_order(deps, ["virtio_net", "virtio_rng"])
    assert set(order) == set(deps)
    for module, needs in deps.items():
        assert all(order.index(n) < order.index(module) for n in needs), module
    with pytest.raises(demoguest.DemoBuildError, match="no module nope"):
        demoguest.load_order(deps, ["nope"])


def test_static_elf_check():
    assert not demoguest._is_static_x86_64_elf(b"#!/bin/sh\n")
    assert not demoguest._is_static_x86_64_elf(b"")


def test_missing_busybox_is_one_line_error(tmp_path):
    with pytest.raises(demoguest.DemoBuildError, match="busybox-static") as info:
        demoguest.read_busybox(tmp_path / "busybox")
    assert "\n" not in str(info.value)


# --- real QEMU --------------------------------------------------------------------------------


@pytest.fixture
def image(demo_image) -> demoguest.DemoImage:
    return demo_image


def short_path(workdir: Path, name: str) -> Path:
    """A socket path that fits sun_path (108 bytes), in workdir when it is short enough."""
    path = workdir / name
    if len(str(path)) > 100:
        path = Path(tempfile.mkdtemp(prefix="qw-")) / name
    return path


class Guest:
    """One QEMU process booting the demo image, with its serial log and a QMP socket.

    Test-local on purpose: a small hand-written argv (machine, memory, kernel, serial, QMP)
    plus ``extra`` options, for proofs about the guest itself; the companions' proofs go
    through qemuwrap (test_firmware.py, test_swtpm.py, test_virtiofsd.py)."""

    def __init__(
        self,
        image,
        workdir: Path,
        name: str,
        guid: str | None,
        poweroff: int = 0,
        extra: tuple[str, ...] = (),
        machine: str = "pc,acpi=on",
        cmdline: str = "",
        memory: str = "256",
    ):
        self.log_path = workdir / f"{name}.serial.log"
        self.out_path = workdir / f"{name}.qemu.out"
        self.qmp_path = short_path(workdir, f"{name}.qmp")
        self.argv = [
            QEMU, "-accel", "tcg", "-machine", machine, "-m", memory,
            "-nodefaults", "-no-user-config", "-display", "none",
            # A panic or reboot ends QEMU instead of looping; the log tells it from a poweroff.
            "-no-reboot",
            "-kernel", str(image.kernel), "-initrd", str(image.initrd),
            "-append", f"console=ttyS0 panic=-1 quiet qemuwrap.poweroff={poweroff} {cmdline}",
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

    def wait_for(self, text: str, timeout: float = BOOT_TIMEOUT, count: int = 1) -> float:
        """Wait until the serial log contains text (count times); returns the seconds waited."""
        start = time.monotonic()
        while self.log().count(text) < count:
            if self.proc.poll() is not None and self.log().count(text) < count:
                pytest.fail(
                    f"QEMU exited ({self.proc.returncode}) before {text!r}" + self.diagnostics()
                )
            if time.monotonic() - start > timeout:
                pytest.fail(f"no {text!r} after {timeout} s" + self.diagnostics())
            time.sleep(0.02)
        return time.monotonic() - start

    def line(self, prefix: str, timeout: float = BOOT_TIMEOUT) -> str:
        """The first whole serial line that starts with prefix (waiting for it)."""
        self.wait_for("\n" + prefix, timeout)
        text = self.log()
        start = text.index("\n" + prefix) + 1
        end = text.find("\n", start)
        while end < 0:
            time.sleep(0.02)
            text = self.log()
            end = text.find("\n", start)
        return text[start:end]

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


def boot_guests(image, workdir: Path):
    """A fixture body: yields start(name, guid, **Guest options); every QEMU is killed after."""
    started: list[Guest] = []

    def start(name: str, guid: str | None, **kwargs) -> Guest:
        guest = Guest(image, workdir, name, guid, **kwargs)
        started.append(guest)
        return guest.start()

    try:
        yield start
    finally:
        for guest in started:
            guest.kill()


@pytest.fixture
def guests(demo_image, tmp_path):
    yield from boot_guests(demo_image, tmp_path)


def save_to_file(guest: Guest, monitor, state: Path) -> None:
    """QMP stop, migrate to a file, quit: the guest's whole state in ``state``."""
    monitor.cmd("stop")
    monitor.cmd("migrate", uri=f"exec:cat > {shlex.quote(str(state))}")
    deadline = time.monotonic() + 60
    while (status := monitor.cmd("query-migrate").get("status")) != "completed":
        assert status not in ("failed", "cancelled"), guest.diagnostics()
        assert time.monotonic() < deadline, f"migration still {status}"
        time.sleep(0.05)
    with contextlib.suppress(EOFError):
        monitor.cmd("quit")
    guest.close_qmp()
    assert guest.wait_exit(30) == 0


def wait_incoming(guest: Guest, monitor) -> None:
    """Wait until a QEMU started with -incoming -S has loaded the state (paused)."""
    deadline = time.monotonic() + 60
    while (status := monitor.cmd("query-status")["status"]) != "paused":
        assert status == "inmigrate", guest.diagnostics()
        assert time.monotonic() < deadline, "incoming migration did not finish"
        time.sleep(0.05)


@needs_qemu
def test_built_initrd_has_the_expected_entries(image):
    entries = read_newc(gzip.decompress(image.initrd.read_bytes()))
    check_image_entries(entries, demoguest.init_script())
    assert entries["bin/busybox"]["data"] == demoguest.BUSYBOX.read_bytes()
    release = (image.kernel.parent / "modules" / "version").read_text().strip()
    order = entries["lib/modules/virtio.order"]["data"].decode().split()
    loaded = {p.rsplit("/", 1)[-1] for p in order}
    # Each virtio driver the brief names, and what it needs (net_failover, scsi_mod, vsock...).
    assert {"virtio_pci.ko", "virtio_net.ko", "net_failover.ko", "virtio_blk.ko",
            "virtio_console.ko", "virtio_scsi.ko", "scsi_mod.ko", "fuse.ko", "virtiofs.ko",
            "virtio_balloon.ko", "virtio-rng.ko", "vsock.ko",
            "vmw_vsock_virtio_transport.ko"} <= loaded
    assert all(f"lib/modules/{p}" in entries for p in order)
    assert all(p.startswith(release + "/") for p in order)
    if image.agent:
        assert entries["sbin/qemu-ga"]["data"] == demoguest.QEMU_GA.read_bytes()
        assert "lib64/ld-linux-x86-64.so.2" in entries
        assert any(n.startswith("lib/x86_64-linux-gnu/libglib-2.0.so") for n in entries)
    assert image.kernel.stat().st_size > 1_000_000


@needs_qemu
def test_build_again_is_cheap_and_reuses_files(image, monkeypatch):
    """Cheap means no work: nothing is downloaded, packed or written (what it costs is
    for a benchmark, not a test)."""
    before = image.initrd.stat().st_mtime_ns, image.kernel.stat().st_mtime_ns

    def must_not_run(*_args, **_kwargs):
        raise AssertionError("a rebuild with nothing changed did real work")

    for name in ("_fetch_kernel", "write_initramfs", "_atomic_write", "cpio_newc"):
        monkeypatch.setattr(demoguest, name, must_not_run)
    again = demoguest.build(image.kernel.parent)
    assert again == image
    assert (image.initrd.stat().st_mtime_ns, image.kernel.stat().st_mtime_ns) == before


@needs_qemu
def test_changed_init_script_rebuilds_only_the_initrd(image, tmp_path, monkeypatch):
    # Seed a fresh dest with the session's kernel files, so nothing is downloaded.
    dest = tmp_path / "demo"
    dest.mkdir()
    shutil.copy(image.kernel, dest / "vmlinuz")
    shutil.copytree(image.kernel.parent / "modules", dest / "modules")
    shutil.copy(image.kernel.parent / "kernel-layout", dest / "kernel-layout")
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
        "kernel-layout",
        "modules",
        "vmlinuz",
    ], "temp files left behind"


@needs_qemu
def test_without_qemu_ga_the_image_is_built_without_the_agent(image, tmp_path, monkeypatch):
    dest = tmp_path / "demo"
    dest.mkdir()
    shutil.copy(image.kernel, dest / "vmlinuz")
    shutil.copytree(image.kernel.parent / "modules", dest / "modules")
    shutil.copy(image.kernel.parent / "kernel-layout", dest / "kernel-layout")
    monkeypatch.setattr(demoguest, "QEMU_GA", tmp_path / "no-qemu-ga")
    built = demoguest.build(dest)
    assert not built.agent
    assert built.notes == (f"{tmp_path / 'no-qemu-ga'} not found: built without the guest agent "
                           "(apt-get install qemu-guest-agent)",)
    entries = read_newc(gzip.decompress(built.initrd.read_bytes()))
    assert "sbin/qemu-ga" not in entries
    assert demoguest.main([str(dest)]) == 0  # the note goes to stderr, the paths to stdout


def test_a_directory_built_by_the_old_layout_fetches_the_kernel_again(tmp_path):
    """An image directory from before modules.dep (flat button.ko/evdev.ko, no layout stamp)
    is not taken as complete."""
    (tmp_path / "modules").mkdir()
    for name in ("button.ko", "evdev.ko"):
        (tmp_path / "modules" / name).write_bytes(b"old")
    (tmp_path / "vmlinuz").write_bytes(b"old kernel")
    assert not demoguest._kernel_ready(tmp_path)


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
    save_to_file(first, monitor, state)

    second = guests("second", g2, extra=("-incoming", f"exec:cat {shlex.quote(str(state))}", "-S"))
    monitor = second.qmp()
    wait_incoming(second, monitor)
    assert monitor.cmd("query-vm-generation-id") == {"guid": g2}
    monitor.cmd("cont")
    waited = second.wait_for(f"genid: {g2}\n", timeout=5)
    log = second.log()
    assert "demo: up" not in log, "the guest rebooted instead of resuming" + second.diagnostics()
    assert g1 not in log
    print(f"restored guest printed the new genid {waited:.2f} s after cont")


@needs_qemu
@pytest.mark.slow
def test_virtio_devices_get_their_drivers_and_dhcp_works(guests, tmp_path):
    """With virtio net, blk, scsi, rng, balloon and serial devices every module loads (no
    "modules:" line), udhcpc gets QEMU's user-network lease and the router answers a ping."""
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\0" * (1 << 20))
    extra = (
        "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0",
        "-drive", f"file={disk},format=raw,if=none,id=d0", "-device", "virtio-blk-pci,drive=d0",
        "-device", "virtio-scsi-pci", "-device", "virtio-rng-pci", "-device", "virtio-balloon-pci",
        "-device", "virtio-serial-pci",
    )  # fmt: skip
    guest = guests("virtio", None, extra=extra, cmdline="qemuwrap.net=dhcp qemuwrap.agent=0")
    assert guest.line("net: eth0 ") == "net: eth0 lease 10.0.2.15/24 router 10.0.2.2 dns 10.0.2.3"
    assert guest.line("net: ping ") == "net: ping 10.0.2.2 ok"
    guest.wait_for("genid: none\n")
    assert "modules:" not in guest.log(), guest.diagnostics()
    assert "agent:" not in guest.log()  # qemuwrap.agent=0
