"""The launcher on the real qemu-system-x86_64 (TCG) with the demo guest.

Each test runs qemuwrap as a user would (a subprocess) with its own state directory,
and kills whatever it left running at teardown.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from conftest import QEMU, demo_xml, needs_qemu

pytestmark = [needs_qemu, pytest.mark.slow]
GENID = "e9392370-2917-565e-692b-d057f46512d6"


class Env:
    """A scratch state root, and helpers to run qemuwrap against it."""

    def __init__(self, tmp_path: Path, image):
        self.tmp = tmp_path
        self.image = image
        self.root = tmp_path / "state"
        self.procs: list[subprocess.Popen] = []

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "qemuwrap", *args, "--state-dir", str(self.root)]

    def qw(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*args), capture_output=True, text=True,
                              timeout=timeout)

    def popen(self, *args: str) -> subprocess.Popen:
        proc = subprocess.Popen(self.argv(*args), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        self.procs.append(proc)
        return proc

    def xml(self, name: str = "demo", **kwargs) -> Path:
        return demo_xml(self.tmp / f"{name}.xml", self.image, name=name, **kwargs)

    def gdir(self, name: str) -> Path:
        return self.root / name

    def record(self, name: str) -> dict:
        """The guest record, with the pids flattened for the tests' convenience."""
        rec = json.loads((self.gdir(name) / "state.json").read_text())
        rec["qemu_pid"] = (rec.get("qemu") or {}).get("pid")
        rec["supervisor_pid"] = (rec.get("supervisor") or {}).get("pid")
        rec["argv"] = (rec.get("qemu") or {}).get("argv")
        return rec

    def status(self, name: str) -> dict:
        res = self.qw("status", name, "--json")
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)

    def serial(self, name: str) -> str:
        """Serial port 0's output since the guest's QEMU last started (the log keeps
        the boots before, each after its ``---- DATE start ----`` line)."""
        text = self.serial_log(name)
        marks = list(re.finditer(r"^---- [^\n]* ----\n", text, re.M))
        return text[marks[-1].end():] if marks else text

    def serial_log(self, name: str) -> str:
        try:
            return (self.gdir(name) / "serial0.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_serial(self, name: str, pattern: str, timeout: float = 30, count: int = 1) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.serial(name)
            if len(re.findall(pattern, text)) >= count:
                return text
            time.sleep(0.1)
        raise AssertionError(f"{pattern!r} x{count} not in serial log:\n{self.serial(name)}")

    def qemus(self) -> list[psutil.Process]:
        """QEMU processes started for this test's state root."""
        out = []
        for p in psutil.process_iter(["cmdline"]):
            cmd = p.info["cmdline"] or []
            if cmd and "qemu-system" in cmd[0] and any(str(self.root) in a for a in cmd):
                out.append(p)
        return out

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for p in self.qemus():
            p.kill()
        for p in psutil.process_iter(["cmdline"]):
            cmd = p.info["cmdline"] or []
            if "qemuwrap" in cmd and str(self.root) in cmd and p.pid != os.getpid():
                p.kill()


def gone(pid: int) -> bool:
    """The process ended (a zombie waiting for a slow init to collect it has ended)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def env(tmp_path, demo_image):
    e = Env(tmp_path, demo_image)
    yield e
    e.cleanup()


def test_run_foreground_powers_off_and_saves_generated_genid(env):
    path = env.xml(cmdline="qemuwrap.poweroff=1")
    original = path.read_bytes()
    res = env.qw("run", str(path))
    assert res.returncode == 0, res.stderr
    saved = path.read_bytes()
    genid = re.search(rb"<genid>([0-9a-f-]{36})</genid>", saved).group(1).decode()
    # Only the genid element changed, byte for byte.
    assert saved == original.replace(b"<genid/>", f"<genid>{genid}</genid>".encode())
    assert f"genid: {genid}" in env.serial("demo")  # what the guest itself read
    assert "guest powered off" in res.stderr
    # Runtime files are gone; logs stay for the user.
    left = sorted(p.name for p in env.gdir("demo").iterdir())
    assert "state.json" not in left and "qmp.sock" not in left
    assert "qemu.log" in left and "serial0.log" in left
    # Next boot: the same genid.
    res = env.qw("run", str(path))
    assert res.returncode == 0
    assert path.read_bytes() == saved
    assert f"genid: {genid}" in env.serial("demo")


def test_run_console_shows_the_guest(env):
    path = env.xml(genid=GENID, cmdline="qemuwrap.poweroff=1")
    res = env.qw("run", "--console", str(path))
    assert res.returncode == 0, res.stderr
    assert f"genid: {GENID}" in res.stdout


def test_start_status_list_shutdown(env):
    path = env.xml(genid=GENID)
    res = env.qw("start", str(path))
    assert res.returncode == 0, res.stderr
    assert GENID in res.stdout
    st = env.status("demo")
    rec = env.record("demo")
    assert st["state"] == "running" and st["supervised"]
    assert st["genid"] == GENID
    assert st["qemu_pid"] == rec["qemu_pid"] == int((env.gdir("demo") / "qemu.pid").read_text())
    assert st["supervisor_pid"] == rec["supervisor_pid"] != os.getpid()
    assert st["qmp_socket"] == str(env.gdir("demo") / "qmp.sock")
    assert st["state_dir"] == str(env.gdir("demo"))
    live = (env.gdir("demo") / "domain.xml").read_text()
    assert f"<domain type='qemu' id='{rec['qemu_pid']}'>" in live
    listed = json.loads(env.qw("list", "--json").stdout)
    assert [g["name"] for g in listed] == ["demo"]
    # QEMU runs in its own session, not the supervisor's.
    assert os.getsid(rec["qemu_pid"]) != os.getsid(rec["supervisor_pid"])
    env.wait_serial("demo", f"genid: {GENID}")
    res = env.qw("shutdown", "demo")
    assert res.returncode == 0, res.stderr
    assert "demo: powering off" in env.serial("demo")  # ACPI reached the guest
    assert gone(rec["qemu_pid"])
    assert env.status("demo")["state"] == "shut off"
    assert "guest powered off" in (env.gdir("demo") / "supervisor.log").read_text()


def test_destroy(env):
    path = env.xml(genid=GENID)
    assert env.qw("start", str(path)).returncode == 0
    rec = env.record("demo")
    res = env.qw("destroy", "demo")
    assert res.returncode == 0, res.stderr
    assert gone(rec["qemu_pid"])
    assert gone(rec["supervisor_pid"])
    assert "QEMU stopped by force" in (env.gdir("demo") / "supervisor.log").read_text()
    assert env.qw("destroy", "demo").returncode == 1  # not running any more


def test_failed_start_is_one_line_and_keeps_only_the_logs(env):
    """A failure only QEMU sees (an empty file declared qcow2: it exists, so the host
    checks pass): one line with QEMU's reason; runtime files go, logs stay."""
    empty = env.tmp / "empty.qcow2"
    empty.write_bytes(b"")
    path = env.xml(genid=GENID, extra_devices=f"""<disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{empty}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    """)
    res = env.qw("run", str(path))
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert res.stderr.startswith(f"qemuwrap: {path}: QEMU failed to start: QEMU exited with "
                                 "status 1")
    assert "Image is not in qcow2 format" in res.stderr
    left = sorted(p.name for p in env.gdir("demo").iterdir())
    assert "state.json" not in left and "qmp.sock" not in left  # runtime files go
    assert "Image is not in qcow2 format" in (env.gdir("demo") / "qemu.log").read_text()
    assert env.qemus() == []


def test_missing_disk_is_refused_before_qemu_runs(env):
    """A missing image is a host check: one line naming the element, and no QEMU (no
    qemu.log: QEMU was never spawned)."""
    path = env.xml(genid=GENID, extra_devices="""<disk type='file' device='disk'>
      <source file='/nonexistent/disk.img'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    """)
    for command in ("run", "start"):
        res = env.qw(command, str(path))
        assert res.returncode == 1
        assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
        assert res.stderr.startswith(f"qemuwrap: {path}: line ")
        assert "/domain/devices/disk: disk source /nonexistent/disk.img cannot be used: " \
            "No such file or directory" in res.stderr
        assert not (env.gdir("demo") / "qemu.log").exists()
        assert env.qemus() == []


def _marked(mark: str) -> list[psutil.Process]:
    """Processes whose environment carries ``QW_TEST_MARK=mark``."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("QW_TEST_MARK") == mark:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


def test_a_refused_start_leaves_no_supervisor(env):
    """``start`` starts its supervisor's interpreter while it reads the definition; a
    definition refused meanwhile ends that process before the command returns."""
    path = env.xml(genid=GENID, extra_devices="""<disk type='file' device='disk'>
      <source file='/nonexistent/disk.img'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    """)
    mark = os.urandom(8).hex()
    for _ in range(3):
        res = subprocess.run(env.argv("start", str(path)), capture_output=True, text=True,
                             timeout=90, env={**os.environ, "QW_TEST_MARK": mark})
        assert res.returncode == 1 and "cannot be used" in res.stderr, res.stderr
        assert _marked(mark) == []
    assert env.qemus() == []


def test_a_removed_qemu_binary_is_one_line(env, tmp_path):
    """A trusted emulator (listed in $QEMUWRAP_CONFIG_DIR/emulators) that was removed:
    one line naming it, and nothing started."""
    binary = tmp_path / "bin" / "qemu-system-x86_64"
    binary.parent.mkdir()
    shutil.copy2(QEMU, binary)
    config = tmp_path / "config"
    config.mkdir(mode=0o755)
    (config / "emulators").write_text(f"{binary}\n")
    (config / "emulators").chmod(0o644)
    path = env.xml(genid=GENID)
    path.write_text(path.read_text().replace("/usr/bin/qemu-system-x86_64", str(binary)))
    binary.unlink()
    res = subprocess.run(env.argv("start", str(path)), capture_output=True, text=True,
                         timeout=90, env={**os.environ, "QEMUWRAP_CONFIG_DIR": str(config)})
    assert res.returncode == 1
    assert res.stderr == f"qemuwrap: {path}: QEMU binary {binary} not found\n"
    assert not (env.gdir("demo") / "qemu.log").exists() and env.qemus() == []


def test_sigterm_asks_the_guest_then_exits_0(env):
    path = env.xml(genid=GENID)
    proc = env.popen("run", str(path))
    env.wait_serial("demo", f"genid: {GENID}")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "asking the guest to power off (ACPI)" in err
    assert "demo: powering off" in env.serial("demo")


def test_shutdown_timeout_forces_off(env):
    """A guest that ignores the power button (still booting: no ACPI driver yet)."""
    path = env.xml(genid=GENID)
    proc = env.popen("run", "--shutdown-timeout", "0.3", str(path))
    deadline = time.monotonic() + 30
    while not (env.gdir("demo") / "state.json").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 4, err
    assert "guest still running after 0.3 s" in err
    assert env.qemus() == []


def test_on_poweroff_restart_keeps_genid(env):
    path = env.xml(genid=GENID, cmdline="qemuwrap.poweroff=1",
                   lifecycle={"on_poweroff": "restart"})
    assert env.qw("start", str(path)).returncode == 0
    pid = env.record("demo")["qemu_pid"]
    text = env.wait_serial("demo", f"genid: {GENID}", timeout=60, count=2)
    assert text.count("demo: up") >= 2  # booted again, in the same QEMU
    assert env.record("demo")["qemu_pid"] == pid
    assert env.qw("destroy", "demo").returncode == 0


def test_on_poweroff_preserve_keeps_qemu(env):
    path = env.xml(genid=GENID, cmdline="qemuwrap.poweroff=1",
                   lifecycle={"on_poweroff": "preserve"})
    assert env.qw("start", str(path)).returncode == 0
    env.wait_serial("demo", "demo: powering off")
    deadline = time.monotonic() + 20
    while env.status("demo")["state"] != "shutdown" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert env.status("demo")["state"] == "shutdown"  # QEMU kept, guest stopped
    assert env.qw("destroy", "demo").returncode == 0


def test_on_reboot_restart_and_destroy(env):
    path = env.xml(genid=GENID, cmdline="qemuwrap.reboot=1")
    assert env.qw("start", str(path)).returncode == 0
    pid = env.record("demo")["qemu_pid"]
    env.wait_serial("demo", f"genid: {GENID}", timeout=60, count=2)  # rebooted, same genid
    assert env.record("demo")["qemu_pid"] == pid
    assert env.qw("destroy", "demo").returncode == 0

    path = env.xml(name="demo2", genid=GENID, cmdline="qemuwrap.reboot=1",
                   lifecycle={"on_reboot": "destroy"})
    res = env.qw("run", str(path))
    assert res.returncode == 0, res.stderr
    assert "on_reboot=destroy" in res.stderr
    assert env.serial("demo2").count("demo: up") == 1


def test_on_crash_restart_after_qemu_is_killed(env):
    path = env.xml(genid=GENID, lifecycle={"on_crash": "restart"})
    assert env.qw("start", str(path)).returncode == 0
    first = env.record("demo")
    env.wait_serial("demo", f"genid: {GENID}")
    os.kill(first["qemu_pid"], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rec = env.gdir("demo") / "state.json"
        if rec.exists() and env.record("demo")["qemu_pid"] != first["qemu_pid"]:
            break
        time.sleep(0.1)
    second = env.record("demo")
    assert second["qemu_pid"] != first["qemu_pid"]
    assert second["supervisor_pid"] == first["supervisor_pid"]
    env.wait_serial("demo", f"genid: {GENID}")  # a new QEMU, the same generation ID
    log = (env.gdir("demo") / "supervisor.log").read_text()
    assert "QEMU was killed by signal 9 (SIGKILL)" in log
    assert "on_crash=restart" in log
    assert env.qw("destroy", "demo").returncode == 0


def test_on_crash_destroy_exit_status(env):
    path = env.xml(genid=GENID)
    proc = env.popen("run", str(path))
    env.wait_serial("demo", f"genid: {GENID}")
    os.kill(env.record("demo")["qemu_pid"], signal.SIGKILL)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 3
    assert "QEMU was killed by signal 9 (SIGKILL)" in err


def test_guest_outlives_its_supervisor_and_is_adopted(env):
    path = env.xml(genid=GENID)
    assert env.qw("start", str(path)).returncode == 0
    rec = env.record("demo")
    os.kill(rec["supervisor_pid"], signal.SIGKILL)
    psutil.Process(rec["qemu_pid"])  # still there
    deadline = time.monotonic() + 10
    while env.status("demo")["supervised"] and time.monotonic() < deadline:
        time.sleep(0.05)
    st = env.status("demo")
    assert st["state"] == "running" and not st["supervised"] and st["qemu_pid"] == rec["qemu_pid"]
    res = env.qw("start", str(path))
    assert res.returncode == 1
    assert "running without a supervisor" in res.stderr and "qemuwrap adopt demo" in res.stderr
    adopter = env.popen("adopt", "demo")
    deadline = time.monotonic() + 20
    while not env.status("demo")["supervised"] and time.monotonic() < deadline:
        time.sleep(0.05)
    st = env.status("demo")
    assert st["supervised"] and st["supervisor_pid"] == adopter.pid
    assert st["qemu_pid"] == rec["qemu_pid"]
    env.wait_serial("demo", f"genid: {GENID}")
    assert env.qw("shutdown", "demo").returncode == 0
    _out, err = adopter.communicate(timeout=30)
    assert adopter.returncode == 0, err
    assert "adopted QEMU pid" in err and "guest powered off" in err


def test_unsupervised_guest_can_still_be_shut_down(env):
    path = env.xml(genid=GENID)
    assert env.qw("start", str(path)).returncode == 0
    rec = env.record("demo")
    env.wait_serial("demo", f"genid: {GENID}")
    os.kill(rec["supervisor_pid"], signal.SIGKILL)
    res = env.qw("shutdown", "demo")
    assert res.returncode == 0, res.stderr
    assert "demo: powering off" in env.serial("demo")
    assert gone(rec["qemu_pid"])
    assert env.status("demo")["state"] == "shut off"


def test_ten_concurrent_starts_make_one_qemu(env):
    path = env.xml()  # <genid/>: the winner saves its genid, the losers write nothing
    procs = [subprocess.Popen(env.argv("start", str(path)), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(10)]
    results = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in procs]
    ok = [r for r in results if r[0] == 0]
    assert len(ok) == 1, results
    for code, _out, err in results:
        if code:
            assert code == 1 and err.count("\n") == 1
            assert "already running or starting" in err or "running without a supervisor" in \
                err or "changed while it was being used" in err, err
    assert len(env.qemus()) == 1
    genid = re.search(r"<genid>([0-9a-f-]{36})</genid>", path.read_text()).group(1)
    assert env.status("demo")["genid"] == genid
    assert env.qw("destroy", "demo").returncode == 0


def test_name_is_checked_before_it_becomes_a_path(env):
    path = env.xml(genid=GENID)
    path.write_text(path.read_text().replace("<name>demo</name>", "<name>../../etc</name>"))
    res = env.qw("start", str(path))
    assert res.returncode == 1 and "cannot be used as a directory name" in res.stderr
    assert not (env.tmp / "etc").exists()


def test_unsaveable_genid_refuses_unless_transient(env):
    """A definition that cannot take its generated genid (immutable: as root no
    permission bit can stop the write) starts only with --transient."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed (e2fsprogs)")
    path = env.xml(cmdline="qemuwrap.poweroff=1")
    before = path.read_bytes()
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
        pytest.skip("this filesystem has no immutable attribute")
    try:
        res = env.qw("run", str(path))
        assert res.returncode == 1 and res.stderr.count("\n") == 1, res.stderr
        assert "use --transient" in res.stderr
        assert env.qemus() == []
        res = env.qw("run", "--transient", str(path))
        assert res.returncode == 0, res.stderr
    finally:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)
    assert path.read_bytes() == before
    assert "genid: " in env.serial("demo")


def test_systemd_readiness(env, tmp_path):
    """Type=notify: READY=1 once the guest runs, STOPPING=1 when asked to stop."""
    import socket

    path = env.xml(genid=GENID)
    sock_path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(sock_path)
        s.settimeout(60)
        proc = subprocess.Popen(env.argv("run", str(path)), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "NOTIFY_SOCKET": sock_path})
        env.procs.append(proc)
        ready = s.recv(200).decode()
        assert ready.startswith("READY=1\n") and f"MAINPID={proc.pid}" in ready
        assert (env.gdir("demo") / "state.json").exists()  # the guest runs already
        env.wait_serial("demo", f"genid: {GENID}")
        proc.send_signal(signal.SIGTERM)
        assert s.recv(200) == b"STOPPING=1"
        proc.communicate(timeout=60)
    assert proc.returncode == 0
