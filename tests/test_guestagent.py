"""The guest agent client against Debian's real qemu-ga: on the host (unix-listen, with every
command that could touch the host blocked) for the protocol — handshake, stale replies, errors,
deadlines — and inside the demo guest over a virtio-serial channel, as qemuwrap will use it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid

import pytest
from test_demoguest import boot_guests, short_path

from qemuwrap import guestagent
from qemuwrap.guestagent import AgentCommandError, AgentError, GuestAgent

from conftest import QEMU

QEMU_GA = shutil.which("qemu-ga") or ("/usr/sbin/qemu-ga" if os.path.exists("/usr/sbin/qemu-ga")
                                      else None)
needs_qemu_ga = pytest.mark.skipif(
    QEMU_GA is None, reason="qemu-ga is not installed (Debian package qemu-guest-agent)")
#: The only commands the host's agent may run in these tests: none of them changes anything.
HARMLESS = {"guest-sync-delimited", "guest-sync", "guest-ping", "guest-info",
            "guest-get-osinfo", "guest-network-get-interfaces", "guest-fsfreeze-status",
            "guest-get-host-name"}


@pytest.fixture
def host_agent(tmp_path):
    """A real qemu-ga listening on a unix socket on this host, everything else blocked."""
    every = subprocess.run([QEMU_GA, "-b", "help"], capture_output=True, text=True).stdout.split()
    assert "guest-shutdown" in every and "guest-fsfreeze-freeze" in every
    blocked = ",".join(sorted(set(every) - HARMLESS))
    sock = short_path(tmp_path, "qga.sock")
    proc = subprocess.Popen([QEMU_GA, "-m", "unix-listen", "-p", str(sock), "-t", str(tmp_path),
                             "-f", str(tmp_path / "qga.pid"), "-b", blocked],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not sock.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "qemu-ga did not start"
        time.sleep(0.02)
    yield str(sock)
    proc.terminate()
    proc.wait(10)


@needs_qemu_ga
def test_ping_osinfo_interfaces_and_virsh_style_command(host_agent):
    guestagent.ping(host_agent)
    info = guestagent.osinfo(host_agent)
    assert info["kernel-release"] == os.uname().release
    names = {i["name"] for i in guestagent.network_interfaces(host_agent)}
    assert "lo" in names
    assert "lo" not in guestagent.addresses(host_agent)
    reply = guestagent.command(host_agent, '{"execute": "guest-fsfreeze-status"}')
    assert json.loads(reply) == {"return": "thawed"}


@needs_qemu_ga
def test_errors_are_one_line(host_agent):
    with pytest.raises(AgentCommandError) as info:
        guestagent.command(host_agent, '{"execute": "guest-no-such-thing"}')
    assert str(info.value) == ("guest agent: guest-no-such-thing: The command "
                               "guest-no-such-thing has not been found")
    assert info.value.error_class == "CommandNotFound"
    with pytest.raises(AgentCommandError, match="has been disabled"):
        guestagent.shutdown(host_agent)  # blocked here: an error reply, not silence
    with pytest.raises(AgentError, match="not a JSON command"):
        guestagent.command(host_agent, "{execute")
    with pytest.raises(AgentError, match="'execute'"):
        guestagent.command(host_agent, '["guest-ping"]')


@needs_qemu_ga
def test_stale_replies_are_dropped_by_the_handshake(host_agent):
    """Requests whose answers nobody read (a client that gave up) come back first; the
    handshake drops them, so the next reply is the next command's."""
    with GuestAgent(host_agent) as agent:
        agent._send(b'{"execute": "guest-info"}\n{"execute": "guest-get-osinfo"}\n',
                    time.monotonic() + 5)
        time.sleep(0.2)  # both answers are waiting in the socket now
        assert agent.execute("guest-ping") == {}
        assert agent.execute("guest-fsfreeze-status") == "thawed"


def test_no_agent_means_a_deadline_not_a_hang(tmp_path):
    """A channel nobody answers on (a guest without qemu-ga): each exchange ends at its
    deadline with one line."""
    path = short_path(tmp_path, "silent.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(server.accept()[0]), daemon=True).start()
    try:
        with pytest.raises(AgentError) as info:  # the deadline's own message: no hang
            guestagent.ping(str(path), timeout=0.5)
        assert str(info.value) == ("guest agent: no answer to guest-sync-delimited within 0.5 s "
                                   "(is qemu-ga running in the guest?)")
    finally:
        server.close()
        for conn in held:
            conn.close()
    with pytest.raises(AgentError, match="cannot connect"):
        guestagent.ping(str(tmp_path / "nothing.sock"))


# --- inside the demo guest ----------------------------------------------------------------------


@pytest.fixture
def guests(demo_image, tmp_path):
    if not demo_image.agent:
        pytest.skip("the demo image has no qemu-ga (Debian package qemu-guest-agent)")
    yield from boot_guests(demo_image, tmp_path)


def agent_channel(sock) -> tuple[str, ...]:
    """QEMU's side of libvirt's agent channel: a virtio-serial port on a unix socket."""
    return ("-device", "virtio-serial-pci,id=virtio-serial0",
            "-chardev", f"socket,id=charchannel0,path={sock},server=on,wait=off",
            "-device", "virtserialport,bus=virtio-serial0.0,nr=1,chardev=charchannel0,"
                       f"id=channel0,name={guestagent.CHANNEL_NAME}")


@needs_qemu_ga
@pytest.mark.slow
@pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 is not installed")
def test_the_demo_guests_agent_answers(guests, tmp_path, demo_image):
    sock = short_path(tmp_path, "agent.sock")
    guid = str(uuid.uuid4())
    disk = tmp_path / "ext4.img"
    with open(disk, "wb") as f:
        f.truncate(16 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(disk)], check=True)
    extra = agent_channel(sock) + (
        "-drive", f"file={disk},format=raw,if=none,id=d0", "-device", "virtio-blk-pci,drive=d0")
    guest = guests("agent", guid, extra=extra, cmdline="qemuwrap.mount=vda")
    guest.qmp()  # QEMU is up, its channel socket listens
    # Asked before the guest has booted: the handshake waits for the agent (and drops
    # whatever an earlier, impatient exchange left behind).
    with pytest.raises(AgentError, match="no answer"):
        guestagent.ping(str(sock), timeout=0.2)
    guest.wait_for("agent: running on /dev/vport")
    guestagent.ping(str(sock), timeout=30)
    info = guestagent.osinfo(str(sock))
    release = (demo_image.kernel.parent / "modules" / "version").read_text().strip()
    assert info["name"] == "Linux" and info["id"] == "linux"
    assert info["kernel-release"] == release  # the cloud kernel the image was built with
    assert info["machine"] == "x86_64"
    names = [i["name"] for i in guestagent.network_interfaces(str(sock))]
    assert "lo" in names
    # fsfreeze: the ext4 disk the guest mounted is frozen and thawed (the initramfs and the
    # kernel's own file systems cannot freeze and are skipped).
    assert guest.line("mount: vda") == "mount: vda: mounted", guest.diagnostics()
    assert guestagent.fsfreeze_freeze(str(sock)) == 1
    assert guestagent.fsfreeze_status(str(sock)) == "frozen"
    assert guestagent.fsfreeze_thaw(str(sock)) == 1
    assert guestagent.fsfreeze_status(str(sock)) == "thawed"
    # virsh qemu-agent-command's shape, and a clean shutdown through the agent.
    assert json.loads(guestagent.command(str(sock), '{"execute":"guest-ping"}')) == {"return": {}}
    guest.wait_for(f"genid: {guid}\n")
    guestagent.shutdown(str(sock))
    assert guest.wait_exit(30) == 0
    assert "demo: powering off" in guest.log()
