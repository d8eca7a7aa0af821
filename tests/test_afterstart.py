"""What the supervisor does once QEMU is up and before the guest runs (issue 7): CPU
pinning and schedulers on QEMU's threads (``<vcpu cpuset>``, ``<cputune>``), libvirt's
post-start QMP commands (``<link state='down'/>``, ``<memballoon><stats period>``), for a
start, a restore and a restart; and serial logs that keep earlier boots (issue 10).

The pure parts are tables; the rest runs the demo guest under QEMU (TCG) and reads what
the kernel says of QEMU's threads (``/proc/PID/task/TID/status``), what QMP says of the
balloon, and what the guest itself sees of its link.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from qemuwrap.conf import guid
from qemuwrap.conf.domain import loads
from qemuwrap.qemu import afterstart as plan_after_start
from qemuwrap.qemu import tuning
from qemuwrap.qemu.capabilities import Capabilities
from qemuwrap.qemu.command import build_command
from qemuwrap.runtime import afterstart, pinning, qmp
from qemuwrap.runtime.machine import Exe, chardev_logs
from qemuwrap.runtime.pinning import ThreadTuning
from qemuwrap.supervisor import Guest, Plan

from conftest import DEFAULT_CAPS, GOLDEN_STATE_ROOT, needs_qemu
from test_launcher import GENID, Env

CAPS = Capabilities.from_file(DEFAULT_CAPS)
#: A thread id no process can have (above the kernel's largest pid_max, 2^22).
NO_THREAD = (1 << 22) + 1


def domain(vcpu: str = "<vcpu>2</vcpu>", cputune: str = "", body: str = "",
           devices: str = "<memballoon model='none'/>"):
    return loads(f"<domain type='qemu'><name>t</name><memory unit='MiB'>64</memory>{vcpu}"
                 f"{body}<os><type arch='x86_64' machine='pc'>hvm</type></os>"
                 f"{f'<cputune>{cputune}</cputune>' if cputune else ''}"
                 f"<devices>{devices}</devices></domain>", random=guid.counting_random)


def brief(spec: list[dict]) -> list[tuple]:
    return [(e["thread"], e.get("id"), e.get("cpus"), e.get("scheduler"), e.get("priority"))
            for e in spec]


# --------------------------------------------------------------------------- the spec
@pytest.mark.parametrize("vcpu, cputune, body, expected", [
    ("<vcpu>2</vcpu>", "", "", []),
    # <vcpu cpuset> is every thread's default; a vcpupin overrides it for its vCPU.
    ("<vcpu cpuset='0'>2</vcpu>", "<vcpupin vcpu='1' cpuset='1'/>", "",
     [("vcpu", 0, [0], None, None), ("vcpu", 1, [1], None, None),
      ("emulator", None, [0], None, None)]),
    # An emulatorpin alone: vCPUs keep what QEMU inherited.
    ("<vcpu>2</vcpu>", "<emulatorpin cpuset='1'/>", "", [("emulator", None, [1], None, None)]),
    # Schedulers: a vcpusched for the vCPUs it names; emulatorsched for the main thread.
    ("<vcpu>4</vcpu>", "<emulatorsched scheduler='batch'/>"
     "<vcpusched vcpus='2-3' scheduler='fifo' priority='5'/>", "",
     [("vcpu", 2, None, "fifo", 5), ("vcpu", 3, None, "fifo", 5),
      ("main", None, None, "batch", 0)]),
    # I/O threads: their own pin, else the default; a scheduler without ids is for all.
    ("<vcpu cpuset='0-1'>1</vcpu>", "<iothreadpin iothread='2' cpuset='1'/>"
     "<iothreadsched scheduler='idle'/>", "<iothreads>2</iothreads>",
     [("vcpu", 0, [0, 1], None, None), ("iothread", 1, [0, 1], "idle", 0),
      ("iothread", 2, [1], "idle", 0), ("emulator", None, [0, 1], None, None)]),
    # What needs cgroups is not in the spec (--explain says it is not enforced).
    ("<vcpu>1</vcpu>", "<shares>2048</shares><period>100000</period>", "", []),
])
def test_pinning_spec_follows_libvirt(vcpu, cputune, body, expected):
    assert brief(tuning.pinning(domain(vcpu, cputune, body))) == expected


def test_pinning_spec_names_each_element_with_its_line():
    spec = tuning.pinning(loads(
        "<domain type='qemu'><name>t</name><memory unit='MiB'>64</memory>\n"
        "<vcpu cpuset='0'>2</vcpu>\n<cputune>\n<vcpupin vcpu='1' cpuset='1'/>\n"
        "<vcpusched vcpus='0-1' scheduler='batch'/>\n</cputune><os><type arch='x86_64' "
        "machine='pc'>hvm</type></os><devices><memballoon model='none'/></devices></domain>"))
    assert spec[0]["cpus_from"] == "line 2: <vcpu cpuset='0'>"
    assert spec[1]["cpus_from"] == "line 4: <vcpupin vcpu='1' cpuset='1'/>"
    assert spec[1]["scheduler_from"] == "line 5: <vcpusched vcpus='0-1' scheduler='batch'/>"
    assert json.loads(json.dumps(spec)) == spec  # plain JSON: it travels to the supervisor


def test_qmp_commands_after_start_name_their_elements():
    dom = loads(
        "<domain type='qemu'><name>t</name><memory unit='MiB'>64</memory>\n<os><type "
        "arch='x86_64' machine='pc'>hvm</type></os><devices>\n<interface type='user'>"
        "<mac address='52:54:00:00:00:01'/>\n<link state='down'/></interface>\n"
        "<interface type='user'/>\n<memballoon model='virtio'>\n<stats period='5'/>"
        "</memballoon></devices></domain>", random=guid.counting_random)
    build_command(dom, CAPS, "/run/qemuwrap/t")  # assigns the device ids
    assert plan_after_start.plan(dom) == {"pinning": [], "qmp": [
        ["set_link", {"name": "net0", "up": False},
         "line 4: <interface> net0: <link state='down'/>"],
        ["qom-set", {"path": "/machine/peripheral/balloon0",
                     "property": "guest-stats-polling-interval", "value": 5},
         "line 7: <memballoon><stats period='5'/>"]]}


def test_the_plan_carries_the_after_start_work_to_the_supervisor():
    dom = domain("<vcpu cpuset='0'>1</vcpu>")
    work = plan_after_start.plan(dom)
    plan = Plan(Guest.of(dom), Exe("/usr/bin/qemu-system-x86_64", ["-S"], {}),
                after_start=work)
    back = Plan.from_json(json.loads(json.dumps(plan.to_json())))
    assert back.after_start == work and work["pinning"]


# --------------------------------------------------------------------------- threads
def test_thread_ids_are_put_on_the_spec():
    spec = [{"thread": "vcpu", "id": 0, "cpus": [0], "cpus_from": "a"},
            {"thread": "vcpu", "id": 2, "cpus": [1], "cpus_from": "b"},  # not plugged
            {"thread": "iothread", "id": 1, "scheduler": "idle", "priority": 0,
             "scheduler_from": "c"},
            {"thread": "emulator", "cpus": [1], "cpus_from": "d"},
            {"thread": "main", "scheduler": "batch", "priority": 0, "scheduler_from": "e"}]
    got = pinning.tunings(spec, {0: 11, 1: 12}, {1: 21}, [10, 11, 12, 21, 30], 10)
    assert [(t.thread_id, t.role, t.cpus, t.scheduler) for t in got] == [
        (11, "vcpu 0", {0}, None), (21, "iothread1", None, "idle"),
        (10, "emulator", {1}, None), (30, "emulator", {1}, None), (10, "main", None, "batch")]
    with pytest.raises(pinning.PinningError, match="^c: QEMU runs no iothread1$"):
        pinning.tunings(spec, {0: 11}, {}, [10, 11], 10)


def test_apply_pins_and_schedules_a_thread():
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    try:
        tid = worker.native_id
        assert tid is not None
        cpu = min(os.sched_getaffinity(0))
        assert pinning.apply([ThreadTuning(tid, "vcpu 0", frozenset({cpu}), "batch")]) == []
        assert os.sched_getaffinity(tid) == {cpu}
        assert os.sched_getscheduler(tid) == os.SCHED_BATCH
    finally:
        stop.set()
        worker.join()


def test_apply_says_which_element_could_not_be_applied():
    lines = pinning.apply([
        ThreadTuning(NO_THREAD, "vcpu 1", frozenset({0}), None, 0,
                     "line 4: <vcpupin vcpu='1' cpuset='0'/>"),
        ThreadTuning(NO_THREAD, "emulator", frozenset({0}), None, 0, "x"),  # ended: fine
        ThreadTuning(os.getpid(), "vcpu 0", None, "fifo", 100, "", "line 5: <vcpusched "
                     "vcpus='0' scheduler='fifo' priority='100'/>")])
    assert lines == [
        f"line 4: <vcpupin vcpu='1' cpuset='0'/>: cannot pin vcpu 1 (thread {NO_THREAD}): "
        "No such process",
        "line 5: <vcpusched vcpus='0' scheduler='fifo' priority='100'/>: scheduler "
        "priority 100 is out of range [1, 99]"]


class FakeMachine:
    """QMP answers for vCPU threads that are threads of this process; what was sent."""

    def __init__(self, vcpus: dict[int, int], refuse: str = ""):
        self.pid = os.getpid()
        self.vcpus = vcpus
        self.refuse = refuse
        self.sent: list[tuple[str, dict | None]] = []

    def execute(self, command, args=None, *, timeout=5.0):
        self.sent.append((command, args))
        if command == self.refuse:
            raise qmp.CommandError(command, "GenericError", "no such device")
        if command == "query-cpus-fast":
            return [{"cpu-index": i, "thread-id": t} for i, t in self.vcpus.items()]
        return {}


def test_run_pins_then_sends_the_commands_and_fails_naming_the_element():
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    cpu = min(os.sched_getaffinity(0))
    work = {"pinning": [{"thread": "vcpu", "id": 0, "cpus": [cpu], "cpus_from": "p"}],
            "qmp": [["set_link", {"name": "net0", "up": False}, "line 9: <link>"]]}
    try:
        machine = FakeMachine({0: worker.native_id or 0})
        logged: list[str] = []
        afterstart.run(machine, work, logged.append)
        assert [c for c, _ in machine.sent] == ["query-cpus-fast", "set_link"]
        assert os.sched_getaffinity(worker.native_id or 0) == {cpu}
        assert logged == ["after start: 1 threads pinned or scheduled; set_link "
                          "(line 9: <link>)"]
        with pytest.raises(afterstart.AfterStartError,
                           match="^line 9: <link>: QEMU refused 'set_link': no such device$"):
            afterstart.run(FakeMachine({0: worker.native_id or 0}, refuse="set_link"), work,
                           logged.append)
    finally:
        stop.set()
        worker.join()


# --------------------------------------------------------------------------- explain
def test_explain_says_what_the_supervisor_applies(tmp_path):
    path = tmp_path / "t.xml"
    path.write_text("<domain type='qemu'><name>t</name><memory unit='MiB'>64</memory>\n"
                    "<vcpu cpuset='0'>2</vcpu>\n<cputune>\n<vcpupin vcpu='1' cpuset='1'/>\n"
                    "</cputune><os><type arch='x86_64' machine='pc'>hvm</type></os><devices>"
                    "\n<interface type='user'><link state='down'/></interface>"
                    "<memballoon model='none'/></devices></domain>")
    res = subprocess.run([sys.executable, "-m", "qemuwrap", "dry-run", "--explain", str(path),
                          "--caps", str(DEFAULT_CAPS), "--state-dir", GOLDEN_STATE_ROOT,
                          "--no-host-check"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("# after start")]
    assert lines == [
        "# after start: vCPU 0, emulator threads pinned to host CPUs 0  "
        "# line 2: <vcpu cpuset='0'>",
        "# after start: vCPU 1 pinned to host CPUs 1  # line 4: <vcpupin vcpu='1' cpuset='1'/>",
        "# after start: QMP set_link {\"name\": \"net0\", \"up\": false}  "
        "# line 6: <interface> net0: <link state='down'/>"]


# --------------------------------------------------------------------------- serial logs
def test_serial_logs_are_found_in_qemus_command():
    argv = ["-chardev", "pty,id=charserial0,logfile=/run/q/a,,b/serial0.log,logappend=on",
            "-chardev", "file,id=charserial1,path=/x,logfile=/elsewhere/y.log,logappend=off",
            "-name", "guest=logfile=/run/q/a,,b/not-a-log"]
    assert chardev_logs(argv, "/run/q/a,b") == ["serial0.log"]


# --------------------------------------------------------------------------- real QEMU
TUNED = ("<vcpu cpuset='0'>2</vcpu><iothreads>2</iothreads><cputune>"
         "<vcpupin vcpu='1' cpuset='1'/><emulatorpin cpuset='1'/><iothreadpin iothread='2' "
         "cpuset='1'/><vcpusched vcpus='0' scheduler='batch'/><iothreadsched iothreads='1' "
         "scheduler='idle'/></cputune>")


@pytest.fixture
def env(tmp_path, demo_image):
    e = Env(tmp_path, demo_image)
    yield e
    e.cleanup()


def needs_two_cpus() -> None:
    if not {0, 1} <= os.sched_getaffinity(0):
        pytest.skip("needs host CPUs 0 and 1 (pins vCPUs to each)")


def tuned_xml(env: Env, *, vcpu: str = TUNED, devices: str = "", **kwargs):
    path = env.xml(genid=GENID, **kwargs)
    text = path.read_text().replace("<vcpu>1</vcpu>", vcpu)
    path.write_text(text.replace("<memballoon model='none'/>", devices or
                                 "<memballoon model='none'/>"))
    return path


def threads(pid: int) -> dict[str, tuple[str, int]]:
    """QEMU's threads by name (``-name debug-threads=on``): (Cpus_allowed_list, policy)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            name = f.read().strip()
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            cpus = re.search(r"^Cpus_allowed_list:\s*(\S+)", f.read(), re.M).group(1)
        key = "main" if int(tid) == pid else name
        out[key if key not in out else f"{key} {tid}"] = (cpus, os.sched_getscheduler(int(tid)))
    return out


def assert_tuned(env: Env, pid: int) -> None:
    got = threads(pid)
    assert got.pop("CPU 0/TCG") == ("0", os.SCHED_BATCH)  # <vcpu cpuset>, <vcpusched>
    assert got.pop("CPU 1/TCG") == ("1", os.SCHED_OTHER)  # <vcpupin>
    assert got.pop("IO iothread1") == ("0", os.SCHED_IDLE)  # <vcpu cpuset>, <iothreadsched>
    assert got.pop("IO iothread2") == ("1", os.SCHED_OTHER)  # <iothreadpin>
    assert got.pop("main") == ("1", os.SCHED_OTHER)  # <emulatorpin>
    assert got and all(cpus == "1" for cpus, _ in got.values()), got  # the other threads
    # The vCPU threads are the ones QMP reports.
    vcpus = qmp.command(str(env.gdir("demo") / "control.sock"), "query-cpus-fast")
    assert {os.sched_getaffinity(c["thread-id"]) == {c["cpu-index"]} for c in vcpus} == {True}


@needs_qemu
@pytest.mark.slow
def test_the_supervisor_pins_threads_sets_the_link_and_the_balloon(env):
    needs_two_cpus()
    path = tuned_xml(env, cmdline="qemuwrap.net=dhcp", devices=(
        "<interface type='user'><model type='virtio'/><link state='down'/></interface>"
        "<memballoon model='virtio'><stats period='7'/></memballoon>"))
    res = env.qw("start", str(path))
    assert res.returncode == 0, res.stderr
    assert_tuned(env, env.record("demo")["qemu_pid"])
    interval = qmp.command(str(env.gdir("demo") / "control.sock"), "qom-get", {
        "path": "/machine/peripheral/balloon0", "property": "guest-stats-polling-interval"})
    assert interval == 7
    # The guest itself finds its link down: no DHCP lease from QEMU's user network.
    text = env.wait_serial("demo", r"net: eth0 (no lease|lease)", timeout=90)
    assert "net: eth0 no lease" in text
    assert env.qw("destroy", "demo").returncode == 0


@needs_qemu
@pytest.mark.slow
def test_pinning_is_applied_again_on_restore_and_on_restart(env):
    needs_two_cpus()
    path = tuned_xml(env, lifecycle={"on_crash": "restart"})
    assert env.qw("start", str(path)).returncode == 0
    save = env.tmp / "demo.save"
    res = env.qw("save", "demo", str(save))
    assert res.returncode == 0, res.stderr
    res = env.qw("restore", str(save), "--xml", str(path))
    assert res.returncode == 0, res.stderr
    first = env.record("demo")["qemu_pid"]
    assert_tuned(env, first)  # before the saved state was loaded, as libvirt does
    os.kill(first, signal.SIGKILL)  # on_crash=restart: a new QEMU
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (env.gdir("demo") / "state.json").exists():
            status = env.status("demo")
            if status["qemu_pid"] not in (None, first) and status["state"] == "running":
                break
        time.sleep(0.1)
    second = env.record("demo")["qemu_pid"]
    assert second != first
    assert_tuned(env, second)
    assert env.qw("destroy", "demo").returncode == 0


@needs_qemu
@pytest.mark.slow
def test_a_tuning_that_cannot_be_applied_fails_the_start_and_stops_qemu(env):
    path = tuned_xml(env, vcpu="<vcpu>1</vcpu><cputune><vcpusched vcpus='0' "
                               "scheduler='fifo' priority='100'/></cputune>")
    res = env.qw("start", str(path))
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert ("<vcpusched vcpus='0' scheduler='fifo' priority='100'/>: scheduler priority 100 "
            "is out of range [1, 99]") in res.stderr
    assert env.qemus() == []
    assert env.qw("status", "demo").stdout.split()[-1:] != ["running"]
    assert (env.gdir("demo") / "qemu.log").exists()  # the logs stay


@needs_qemu
@pytest.mark.slow
def test_the_serial_log_keeps_each_boot_after_a_start_marker(env):
    path = env.xml(genid=GENID, cmdline="qemuwrap.poweroff=1")
    for _ in range(2):
        res = env.qw("run", str(path))
        assert res.returncode == 0, res.stderr
    log = env.serial_log("demo")
    marks = [m.start() for m in re.finditer(r"^---- [0-9-]+ [0-9:]+ start ----$", log, re.M)]
    boots = [m.start() for m in re.finditer(f"genid: {GENID}", log)]
    assert len(marks) == 2 and len(boots) == 2
    assert marks[0] < boots[0] < marks[1] < boots[1]  # the first boot kept, then the second
    assert env.serial("demo") == log[log.index("\n", marks[1]) + 1:]  # this start's output
