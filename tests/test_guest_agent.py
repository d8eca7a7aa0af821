"""The guest agent end to end (issue 8): ``qemuwrap agent`` (as ``virsh
qemu-agent-command``), ``status`` (does the agent answer; the guest's addresses),
``shutdown --mode agent`` and ``snapshot create --quiesce``, on the real
qemu-system-x86_64 (TCG) with the demo guest running Debian's real ``qemu-ga``; and,
without QEMU, the supervisor's agent worker (one exchange at a time, off its event loop),
the quiesce sequence's failure paths and where the socket is (the builder's rule).

``tests/test_guestagent.py`` tests the client itself (protocol, handshake, deadlines).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from test_demoguest import short_path
from test_guestagent import host_agent, needs_qemu_ga  # noqa: F401  (a fixture)

from qemuwrap.errors import QemuwrapError
from qemuwrap.runtime.agent import NO_CHANNEL, AgentWorker, NoAgentChannel, quiesced
from qemuwrap.runtime.loop import Loop
from qemuwrap.runtime.policy import Ending, shutdown_outcome

from conftest import DEFAULT_CAPS
from test_launcher import GENID, Env, gone

CHANNEL = ("<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/>"
           "</channel>")
PING = '{"execute":"guest-ping"}'
FSFREEZE_STATUS = '{"execute":"guest-fsfreeze-status"}'
SOCKET = "channel.org.qemu.guest_agent.0"


# --- without QEMU ---------------------------------------------------------------------------


@pytest.mark.parametrize("ending, outcome", [
    (Ending(reason="guest-shutdown", returncode=0, stopping=True), "acpi"),
    (Ending(reason="guest-shutdown", returncode=0, stopping=True, asked="agent"), "agent"),
    (Ending(reason="guest-shutdown", returncode=0, stopping=True, asked="agent", forced=True),
     "forced"),
    (Ending(returncode=-9, stopping=True, asked="agent"), "crashed"),
])
def test_a_shutdown_says_how_the_guest_was_asked(ending, outcome):
    assert shutdown_outcome(ending) == outcome


def _domain(tmp_path, channels: str):
    from qemuwrap.conf.domain import load

    from conftest import ROOT

    text = (ROOT / "examples" / "demo.xml").read_text().replace(
        "<memballoon", channels + "<memballoon")
    path = tmp_path / "d.xml"
    path.write_text(text)
    return path, load(str(path))[1]


def test_the_agent_socket_is_where_the_builder_put_it(tmp_path):
    """One rule for QEMU's -chardev and for the tools: the supervisor is handed the
    path the command was built with."""
    from qemuwrap.ops.agent import socket_path

    path, dom = _domain(tmp_path, CHANNEL)
    state = str(tmp_path / "state")
    res = subprocess.run([sys.executable, "-m", "qemuwrap",
                          "dry-run", str(path), "--json", "--state-dir", state, "--caps",
                          str(DEFAULT_CAPS), "--no-host-check"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    argv = json.loads(res.stdout)["argv"]
    expected = os.path.join(state, "demo", SOCKET)
    assert socket_path(dom, os.path.join(state, "demo")) == expected
    assert f"socket,id=charchannel0,path={expected},server=on,wait=off" in argv


@pytest.mark.parametrize("channels, expected", [
    ("<channel type='unix'><source mode='bind' path='/srv/qga.sock'/>"
     "<target type='virtio' name='org.qemu.guest_agent.0'/></channel>", "/srv/qga.sock"),
    ("", None),  # no channel
    ("<channel type='pty'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>",
     None),  # not a socket qemuwrap can reach
    ("<channel type='unix'><source mode='connect' path='/srv/qga.sock'/>"
     "<target type='virtio' name='org.qemu.guest_agent.0'/></channel>", None),  # QEMU connects
    ("<channel type='unix'><target type='virtio' name='org.example.other'/></channel>", None),
])
def test_which_channels_are_the_agents(tmp_path, channels, expected):
    from qemuwrap.ops.agent import socket_path

    _path, dom = _domain(tmp_path, channels)
    assert socket_path(dom, "/run/qemuwrap/demo") == expected


def _run(loop: Loop, done, timeout: float = 30) -> None:
    assert loop.run_until(done, timeout), "the worker did not deliver in time"


@needs_qemu_ga
def test_the_worker_runs_commands_in_order_on_their_own_connection(host_agent):  # noqa: F811
    loop = Loop()
    results: list = []
    worker = AgentWorker(loop, host_agent, results.append)
    try:
        for request in ({"execute": "guest-ping"}, {"execute": "guest-fsfreeze-status"},
                        {"execute": "guest-no-such-thing"}):
            worker.submit(request, 10, lambda reply, error, r=request["execute"]:
                          results.append((r, reply, str(error) if error else None)))
        _run(loop, lambda: len(results) == 3)
    finally:
        worker.close()
        loop.close()
    assert results == [
        ("guest-ping", {"return": {}}, None),
        ("guest-fsfreeze-status", {"return": "thawed"}, None),
        ("guest-no-such-thing", None, "guest agent: guest-no-such-thing: The command "
                                      "guest-no-such-thing has not been found")]


@pytest.fixture
def silent_agent(tmp_path):
    """A channel nobody answers on (a guest that runs no qemu-ga)."""
    path = short_path(tmp_path, "silent.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(4)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield str(path)
    server.close()
    for conn in held:
        conn.close()


def test_a_silent_agent_costs_its_deadline_and_the_loop_runs_meanwhile(silent_agent):
    """The first request waits its deadline out in the worker; the second, queued behind
    it, fails at its own (earlier) deadline without being sent; timers on the loop keep
    firing meanwhile."""
    loop = Loop()
    results: dict = {}
    ticks: list[float] = []

    def tick() -> None:
        ticks.append(time.monotonic())
        loop.call_later(0.1, tick)

    worker = AgentWorker(loop, silent_agent, lambda _line: None)
    try:
        worker.submit({"execute": "guest-ping"}, 1.0,
                      lambda reply, error: results.setdefault("first", error))
        worker.submit({"execute": "guest-info"}, 0.3,
                      lambda reply, error: results.setdefault("second", error))
        loop.call_later(0.1, tick)
        start = time.monotonic()
        _run(loop, lambda: len(results) == 2)
    finally:
        worker.close()
        loop.close()
    assert str(results["first"]) == ("guest agent: no answer to guest-sync-delimited within "
                                     "1 s (is qemu-ga running in the guest?)")
    assert str(results["second"]) == ("guest agent: guest-info: not sent within 0.3 s: the "
                                      "agent was busy with an earlier command")
    assert list(results) == ["second", "first"]  # the queued one did not wait its turn
    assert len([t for t in ticks if t - start < 0.9]) >= 3  # the loop was not blocked


def test_no_channel_is_refused_before_anything_is_sent():
    loop = Loop()
    try:
        worker = AgentWorker(loop, None, lambda _line: None)
        with pytest.raises(NoAgentChannel, match="no guest agent channel"):
            worker.submit({"execute": "guest-ping"}, 1, lambda *_: None)
        worker.close()
    finally:
        loop.close()


class ScriptedWorker:
    """The worker's interface, answering each command at once as scripted: the quiesce
    sequence's branches (the real agent runs it in the integration tests below)."""

    def __init__(self, answers: dict):
        self.answers = answers
        self.sent: list[str] = []

    def submit(self, request: dict, _timeout: float, done) -> None:
        name = request["execute"]
        self.sent.append(name)
        answer = self.answers[name]
        if isinstance(answer, QemuwrapError):
            done(None, answer)
        else:
            done({"return": answer}, None)


@pytest.mark.parametrize("freeze, snapshot, thaw, sent, result, error", [
    (2, None, 2, ["guest-fsfreeze-freeze", "snapshot", "guest-fsfreeze-thaw"],
     {"quiesced": 2}, None),
    (QemuwrapError("guest agent: no answer"), None, 0,
     ["guest-fsfreeze-freeze", "guest-fsfreeze-thaw"], None,
     "cannot quiesce the guest: guest agent: no answer; no snapshot taken"),
    (1, QemuwrapError("Error: disk full"), 1,
     ["guest-fsfreeze-freeze", "snapshot", "guest-fsfreeze-thaw"], None, "Error: disk full"),
    (1, None, QemuwrapError("guest agent: gone"),
     ["guest-fsfreeze-freeze", "snapshot", "guest-fsfreeze-thaw"], None,
     "the snapshot was taken, but the guest's file systems could not be thawed (guest agent: "
     "gone): they may still be frozen; thaw them with '{\"execute\":\"guest-fsfreeze-thaw\"}' "
     "through 'qemuwrap agent'"),
])
def test_quiesce_always_thaws(freeze, snapshot, thaw, sent, result, error):
    worker = ScriptedWorker({"guest-fsfreeze-freeze": freeze, "guest-fsfreeze-thaw": thaw})
    outcome: list = []

    def action(then) -> None:
        worker.sent.append("snapshot")
        then(None, snapshot) if snapshot is not None else then({}, None)

    quiesced(worker, action,  # type: ignore[arg-type]
             lambda r, e: outcome.append((r, str(e) if e else None)), lambda _line: None)
    assert worker.sent == sent
    assert outcome == [(result, error)]


# --- the demo guest on QEMU -----------------------------------------------------------------


@pytest.fixture
def env(tmp_path, demo_image):
    if not demo_image.agent:
        pytest.skip("the demo image has no qemu-ga (Debian package qemu-guest-agent)")
    e = Env(tmp_path, demo_image)
    yield e
    e.cleanup()


def one_line(res, code: int = 1) -> str:
    assert res.returncode == code, (res.returncode, res.stdout, res.stderr)
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr
    return res.stderr


def ext4_qcow2(env: Env, where=None) -> str:
    """A qcow2 disk holding an ext4 file system the guest mounts (qemuwrap.mount=vda):
    something for guest-fsfreeze-freeze to freeze."""
    if shutil.which("mkfs.ext4") is None:
        pytest.skip("mkfs.ext4 is not installed (Debian package e2fsprogs)")
    raw = env.tmp / "ext4.raw"
    with open(raw, "wb") as f:
        f.truncate(16 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(raw)], check=True)
    disk = (where or env.tmp) / "disk.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(disk)], check=True)
    raw.unlink()
    return (f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
            f"<source file='{disk}'/><target dev='vda' bus='virtio'/></disk>")


def boot(env: Env, *, devices: str = CHANNEL, cmdline: str = "", name: str = "demo") -> dict:
    path = env.xml(name=name, genid=GENID, extra_devices=devices, cmdline=cmdline)
    res = env.qw("start", str(path), "--json")
    assert res.returncode == 0, res.stderr
    env.wait_serial(name, f"genid: {GENID}", timeout=60)
    return json.loads(res.stdout)


def agent(env: Env, command: str, *args: str, name: str = "demo"):
    return env.qw("agent", name, command, *args)


def wait_thawed(env: Env, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        res = agent(env, FSFREEZE_STATUS, "--timeout", "10")
        if res.returncode == 0 and json.loads(res.stdout) == {"return": "thawed"}:
            return
        assert time.monotonic() < deadline, (res.stdout, res.stderr)
        time.sleep(0.2)


@pytest.mark.slow
def test_agent_command_status_and_shutdown_through_the_supervisor(env, demo_image):
    """Under ``run`` (a supervisor in the foreground, as systemd runs it)."""
    run = env.popen("run", str(env.xml(genid=GENID, extra_devices=CHANNEL)))
    env.wait_serial("demo", f"genid: {GENID}", timeout=60)
    info = env.record("demo")
    assert "agent: running on /dev/vport" in env.serial("demo")
    res = agent(env, PING, "--timeout", "30")  # qemu-ga may still be starting
    assert res.returncode == 0, res.stderr
    assert res.stdout == '{"return": {}}\n'  # virsh qemu-agent-command's output
    res = agent(env, '{"execute":"guest-get-osinfo"}', "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    release = (demo_image.kernel.parent / "modules" / "version").read_text().strip()
    assert out["name"] == "demo" and out["command"] == "guest-get-osinfo"
    assert out["reply"]["return"]["name"] == "Linux" and out["reply"]["return"]["id"] == "linux"
    assert out["reply"]["return"]["kernel-release"] == release
    # Each error is one line.
    assert one_line(agent(env, '{"execute":"guest-no-such"}')) == (
        "qemuwrap: demo: guest agent: guest-no-such: The command guest-no-such has not been "
        "found\n")
    assert one_line(agent(env, '{"execute"')).startswith(
        "qemuwrap: demo: guest agent: not a JSON command: ")
    assert one_line(agent(env, '["guest-ping"]')) == (
        "qemuwrap: demo: guest agent: the command must be a JSON object with 'execute'\n")
    assert one_line(agent(env, PING, "--timeout", "0")) == (
        "qemuwrap: demo: the guest agent timeout must be a number of seconds above 0 and at "
        "most 3600\n")
    assert "no guest 'nosuch' here" in one_line(agent(env, PING, name="nosuch"))
    # status: the agent answers; lo's address, from the agent.
    st = env.status("demo")
    assert st["agent"] == "answers"
    assert st["agent_socket"] == str(env.gdir("demo") / SOCKET)
    assert "127.0.0.1/8" in st["addresses"]["lo"]
    text = env.qw("status", "demo").stdout
    assert "agent:            answers\n" in text
    assert re.search(r"^addresses:\s+lo 127\.0\.0\.1/8\b", text, re.MULTILINE), text
    listed = json.loads(env.qw("list", "--json").stdout)
    assert listed[0]["agent"] is None  # list does not ask every guest's agent
    # shutdown through the agent: the guest powers itself off; the reply says how.
    res = env.qw("shutdown", "demo", "--mode", "agent", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"name": "demo", "outcome": "agent", "exit_status": 0}
    assert "demo: powering off" in env.serial("demo")
    assert run.wait(30) == 0  # the guest powered off
    assert gone(info["qemu_pid"])
    log = run.stderr.read()
    assert "the guest agent was asked to power off the guest" in log
    assert "guest powered off" in log and "by force" not in log


def fsfreeze_lines(env: Env) -> list[str]:
    return re.findall(r"agent: fsfreeze (\w+)", env.serial("demo"))


@pytest.mark.slow
def test_a_quiesced_snapshot_freezes_and_thaws_and_its_revert_thaws(env):
    path_disk = ext4_qcow2(env)
    boot(env, devices=CHANNEL + path_disk, cmdline="qemuwrap.mount=vda")
    assert "mount: vda: mounted" in env.serial("demo")
    assert agent(env, PING, "--timeout", "30").returncode == 0
    res = env.qw("snapshot", "create", "demo", "calm", "--quiesce", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"name": "demo", "snapshot": "calm", "genid": GENID,
                                      "quiesced": 1}  # the ext4 disk
    # qemu-ga's fsfreeze hook printed both on the console, in order; thawed now.
    assert fsfreeze_lines(env) == ["freeze", "thaw"]
    assert json.loads(agent(env, FSFREEZE_STATUS).stdout) == {"return": "thawed"}
    log = (env.gdir("demo") / "supervisor.log").read_text()
    assert "guest file systems frozen: 1" in log and "guest file systems thawed: 1" in log
    res = env.qw("snapshot", "create", "demo", "x", "--quiesce", "--json")  # again: fine
    assert res.returncode == 0, res.stderr
    # The snapshot holds the guest as it was: frozen. Reverted, it is thawed.
    res = env.qw("snapshot", "revert", "demo", "calm")
    assert res.returncode == 0, res.stderr
    assert f"genid: {GENID} -> " in res.stdout
    wait_thawed(env)
    log = (env.gdir("demo") / "supervisor.log").read_text().split("revert to calm")[-1]
    assert "the guest's file systems were frozen in the snapshot (taken quiesced); thawing" \
        in log
    assert "guest file systems thawed: 1" in log
    assert env.qw("destroy", "demo").returncode == 0


@pytest.fixture
def small_fs(tmp_path):
    """An 8 MiB tmpfs (root only): too small for a snapshot's memory state."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a small tmpfs")
    mnt = tmp_path / "small"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)],
                         capture_output=True, text=True)
    if res.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.mark.slow
def test_a_failed_quiesced_snapshot_still_thaws(env, small_fs):
    """savevm runs out of room (the disk is on a small tmpfs): one line, no snapshot,
    and the guest's file systems are thawed again, the guest runs on."""
    boot(env, devices=CHANNEL + ext4_qcow2(env, small_fs), cmdline="qemuwrap.mount=vda")
    assert agent(env, PING, "--timeout", "30").returncode == 0
    err = one_line(env.qw("snapshot", "create", "demo", "big", "--quiesce"))
    assert "Error while writing VM state" in err, err
    assert fsfreeze_lines(env) == ["freeze", "thaw"]
    assert json.loads(agent(env, FSFREEZE_STATUS).stdout) == {"return": "thawed"}
    assert env.qw("snapshot", "list", "demo").stdout.split() == []
    assert env.status("demo")["state"] == "running"
    log = (env.gdir("demo") / "supervisor.log").read_text()
    assert "snapshot failed" in log and "guest file systems thawed: 1" in log
    assert env.qw("destroy", "demo").returncode == 0


@pytest.mark.slow
def test_without_an_agent_channel_each_use_is_one_line(env):
    boot(env, devices=ext4_qcow2(env))
    assert one_line(agent(env, PING)) == f"qemuwrap: demo: {NO_CHANNEL}\n"
    st = env.status("demo")
    assert (st["agent"], st["agent_socket"], st["addresses"]) == ("no channel", None, None)
    assert one_line(env.qw("snapshot", "create", "demo", "s", "--quiesce")) == \
        f"qemuwrap: demo: {NO_CHANNEL}\n"
    assert env.qw("snapshot", "list", "demo").stdout.split() == []
    assert one_line(env.qw("shutdown", "demo", "--mode", "agent")) == \
        f"qemuwrap: demo: {NO_CHANNEL}; the guest was not asked to power off\n"
    assert env.status("demo")["state"] == "running"
    assert one_line(env.qw("snapshot", "list", "demo", "--quiesce"), 2) == \
        "qemuwrap: demo: --quiesce is for snapshot create\n"
    assert env.qw("destroy", "demo").returncode == 0


@pytest.mark.slow
def test_an_agent_that_never_answers_costs_its_deadline_not_the_supervisor(env):
    """The channel is there, qemu-ga is not (qemuwrap.agent=0): each request ends at its
    deadline with one line, and meanwhile the supervisor serves everything else."""
    info = boot(env, cmdline="qemuwrap.agent=0")
    assert one_line(agent(env, PING, "--timeout", "1")) == (
        "qemuwrap: demo: guest agent: no answer to guest-sync-delimited within 1 s (is "
        "qemu-ga running in the guest?)\n")
    slow = env.popen("agent", "demo", PING, "--timeout", "20")
    time.sleep(0.5)  # it holds the agent now
    t = time.monotonic()
    assert env.qw("suspend", "demo").returncode == 0
    st = env.status("demo")
    assert (st["state"], st["agent"]) == ("paused", "not answering")
    assert env.qw("resume", "demo").returncode == 0
    assert time.monotonic() - t < 15  # not behind the 20 s request
    assert slow.poll() is None
    assert "the guest was not asked to power off" in one_line(
        env.qw("shutdown", "demo", "--mode", "agent", "--shutdown-timeout", "2"))
    assert env.status("demo")["state"] == "running"
    assert env.qw("destroy", "demo").returncode == 0  # with the slow request still queued
    assert gone(info["qemu_pid"])
    _out, err = slow.communicate(timeout=30)
    assert slow.returncode == 1 and err.count("\n") == 1, err


@pytest.mark.slow
def test_without_a_supervisor_the_tools_use_the_socket(env):
    info = boot(env, devices=CHANNEL + ext4_qcow2(env), cmdline="qemuwrap.mount=vda")
    assert agent(env, PING, "--timeout", "30").returncode == 0
    os.kill(info["supervisor_pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not gone(info["supervisor_pid"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    res = agent(env, PING)
    assert res.returncode == 0 and res.stdout == '{"return": {}}\n', res.stderr
    st = env.status("demo")
    assert not st["supervised"] and st["agent"] == "answers"
    assert "127.0.0.1/8" in st["addresses"]["lo"]
    res = env.qw("snapshot", "create", "demo", "s", "--quiesce", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["quiesced"] == 1
    assert fsfreeze_lines(env) == ["freeze", "thaw"]
    assert json.loads(agent(env, FSFREEZE_STATUS).stdout) == {"return": "thawed"}
    res = env.qw("shutdown", "demo", "--mode", "agent", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"name": "demo", "outcome": "agent", "exit_status": 0}
    assert gone(info["qemu_pid"]) and "demo: powering off" in env.serial("demo")
    assert not (env.gdir("demo") / "state.json").exists()


@pytest.mark.slow
def test_an_adopted_guests_agent_is_its_new_supervisors(env):
    """``adopt`` works the agent's socket out from the live definition, as ``start`` did."""
    info = boot(env)
    assert agent(env, PING, "--timeout", "30").returncode == 0
    os.kill(info["supervisor_pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not gone(info["supervisor_pid"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    adopter = env.popen("adopt", "demo")
    deadline = time.monotonic() + 30
    while not env.status("demo")["supervised"]:
        assert time.monotonic() < deadline and adopter.poll() is None, adopter.stderr
        time.sleep(0.1)
    st = env.status("demo")
    assert st["agent"] == "answers" and st["agent_socket"] == str(env.gdir("demo") / SOCKET)
    res = env.qw("shutdown", "demo", "--mode", "agent", "--json")
    assert json.loads(res.stdout)["outcome"] == "agent", res.stderr
    assert adopter.wait(30) == 0
