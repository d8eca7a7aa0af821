"""Every positive golden case, started with the real qemu-system-x86_64 (TCG, paused).

The golden .args could encode options QEMU refuses or misreads; here QEMU itself runs
each command and QMP confirms that name, uuid, generation ID, vCPU count and memory
are what the XML says. Host paths in the XML (disk images, log files, sockets) are
redirected into a temporary directory first; everything else is the golden command.
A case with ``NAME.qemu-refuses`` holds a value QEMU must read whole and refuse: the
file has the text QEMU's error must contain.
"""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import socket
import subprocess

import pytest

from qemuwrap.conf import guid
from qemuwrap.conf.domain import load
from qemuwrap.qemu.command import build_command

from conftest import QEMU, XML2ARGV, missing_needs, needs_qemu, qmp_at
from test_xml2argv import caps_for

#: Formats qemu-img creates a stand-in image of (other disks get a raw one).
IMG_FORMATS = {"raw", "qcow2", "qcow", "qed", "vmdk", "vdi", "vpc"}
CASES = sorted(p.stem for p in XML2ARGV.glob("*.xml") if (XML2ARGV / f"{p.stem}.args").exists())

pytestmark = needs_qemu


def _start_swtpm(dom, tpm, sock: str, tmp_path, request) -> None:
    """A real swtpm on ``sock`` for a TPM case (the companion qemuwrap starts)."""
    import shutil
    import time

    from qemuwrap.companions import swtpm

    if shutil.which("swtpm") is None or shutil.which("swtpm_setup") is None:
        pytest.skip("a TPM case needs swtpm and swtpm_setup (Debian packages swtpm, "
                    "swtpm-tools)")
    version = str(tpm.backend.version or "2.0")
    daemon = swtpm.Swtpm(str(tmp_path / "tpmstate"), sock, str(tmp_path / "swtpm.log"),
                         str(tmp_path / "swtpm.pid"), f"{dom.name}:{dom.uuid_str}",
                         version=version)
    daemon.prepare()
    daemon.start(None, time.monotonic() + 20)
    request.addfinalizer(lambda: daemon.stop(time.monotonic() + 10))


def _start_virtiofsd(source: str, sock: str, tmp_path, request) -> None:
    """A real virtiofsd on ``sock`` for a virtiofs case (the companion qemuwrap starts)."""
    import time

    from qemuwrap.companions import virtiofsd

    if not os.access(virtiofsd.VIRTIOFSD, os.X_OK) or os.geteuid() != 0:
        pytest.skip("a virtiofs case needs root and /usr/lib/qemu/virtiofsd "
                    "(qemu-system-common)")
    os.makedirs(source, exist_ok=True)
    daemon = virtiofsd.Virtiofsd(source, sock)
    daemon.prepare()
    log = os.open(str(tmp_path / f"virtiofsd-{os.path.basename(sock)}.log"),
                  os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        daemon.start(log, time.monotonic() + 20)
    finally:
        os.close(log)
    request.addfinalizer(lambda: daemon.stop(time.monotonic() + 10))


def _redirect_paths(dom, tmp_path, request, cleanup, state):
    """Point disks, chardev files, sockets and kernels at scratch files QEMU can open;
    start the companions a case needs (swtpm)."""
    for i, disk in enumerate(dom.devices.disks):
        if not disk.has_media:
            continue
        block = disk.type == "block"
        fmt = disk.image_format if disk.image_format in IMG_FORMATS else "raw"
        image = tmp_path / f"disk{i}.{fmt}"
        subprocess.run(["qemu-img", "create", "-q", "-f", fmt, str(image), "16M"], check=True)
        disk.stand_in(str(image), fmt)  # network, NVMe, vhost-user disks: a local file
        if block:
            disk.type = "block"
            loop = subprocess.run(["losetup", "--find", "--show", str(image)],
                                  capture_output=True, text=True)
            if loop.returncode:
                pytest.skip(f"a block device case needs a loop device: {loop.stderr.strip()}")
            disk.source = loop.stdout.strip()
            cleanup.append(["losetup", "-d", disk.source])
    devs = dom.devices
    for n, owner in enumerate([*devs.serials, *devs.parallels, *devs.consoles,
                               *devs.channels, *(r.backend for r in devs.rngs)]):
        if owner.log is not None:
            owner.log.file = str(tmp_path / f"chr-{n}.log")
        src = owner.sources[0] if owner.sources else None
        if src is None or src.path is None:
            continue
        src.path = str(tmp_path / f"chr-{n}")
        if owner.type == "dev":  # a host tty: a pty's other end stands in
            master, slave = os.openpty()
            src.path = os.ttyname(slave)
            request.addfinalizer(lambda fds=(master, slave): [os.close(fd) for fd in fds])
        if owner.type == "unix" and src.mode != "bind":
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(src.path)
            listener.listen(1)
            request.addfinalizer(listener.close)
    for nic in devs.interfaces:
        if nic.type == "vhostuser" and nic.source.mode == "server":
            pytest.skip("QEMU waits for a vhost-user backend to connect, and this machine "
                        "has no vhost-user backend program")
        if nic.type in ("network", "bridge", "ethernet") and os.geteuid() != 0:
            pytest.skip("QEMU makes a tap device only as root (CAP_NET_ADMIN)")
    if devs.hostdevs or any(nic.type == "hostdev" for nic in devs.interfaces):
        pytest.skip("host devices to pass through are this machine's, and it has none")
    for shmem in devs.shmems:
        request.addfinalizer(lambda name=shmem.name: _unlink(f"/dev/shm/{name}"))
        if shmem.server is not None:
            shmem.server.path = str(tmp_path / f"ivshmem-{shmem.name}.sock")
            _serve_ivshmem(shmem.server.path, request)
    for n, fs in enumerate(dom.devices.filesystems):
        if fs.source.dir is not None:
            share = tmp_path / f"share{n}"
            share.mkdir()
            fs.source.dir = str(share)
    for n, fs in enumerate(dom.devices.filesystems):
        if fs.virtiofs:
            sock = (str(tmp_path / f"external{n}.sock") if fs.source.socket is not None
                    else str(state / f"{fs.alias_name or f'fs{n}'}-fs.sock"))
            if fs.source.socket is not None:
                fs.source.socket = sock
            _start_virtiofsd(str(tmp_path / f"share{n}"), sock, tmp_path, request)
    for tpm in dom.devices.tpms:
        if tpm.backend.type == "emulator":
            _start_swtpm(dom, tpm, str(state / "swtpm.sock"), tmp_path, request)
        elif tpm.backend.type == "external":
            tpm.backend.source.path = str(tmp_path / "external-swtpm.sock")
            _start_swtpm(dom, tpm, tpm.backend.source.path, tmp_path, request)
    from qemuwrap.qemu.firmware import fill_domain
    from qemuwrap.qemu.validate import resolve_machine

    fill_domain(dom, resolve_machine(dom, caps_for(dom.name))[0].name)  # the firmware pick
    nvram = dom.os.nvram
    nv_file = nvram is not None and nvram.source is not None and nvram.source.file
    if nvram is not None and (nvram.path is not None or nv_file):
        template = nvram.template or "/usr/share/OVMF/OVMF_VARS_4M.fd"
        if not os.path.exists(template):
            pytest.skip(f"a UEFI case needs {template} (Debian package ovmf)")
        path = str(tmp_path / "VARS.fd")
        if nv_file:
            nvram.source.file = path
        else:
            nvram.path = path
        shutil.copyfile(template, path)
    loader = dom.os.loader
    if loader is not None and loader.path and not os.path.exists(loader.path):
        pytest.skip(f"a firmware case needs {loader.path} (Debian package ovmf)")
    for i, mem in enumerate(dom.devices.memories):
        if mem.source is not None and mem.source.path is not None:
            mem.source.path = str(tmp_path / f"memdev{i}")
    if dom.os.kernel:
        image = request.getfixturevalue("demo_image")
        dom.os.kernel, dom.os.initrd = str(image.kernel), str(image.initrd)
    dom.devices.emulator = QEMU


def _serve_ivshmem(path: str, request) -> None:
    """A stand-in ivshmem-server on ``path`` (QEMU's contrib program is not packaged):
    to the one client, protocol version 0, peer ID 0, then the shared memory's fd
    (message -1) - what ivshmem-doorbell reads before it is realized."""
    import struct
    import threading

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    memfd = os.memfd_create("qemuwrap-test-ivshmem")
    os.ftruncate(memfd, 4 << 20)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return  # closed: QEMU never came
        with conn:
            conn.sendall(struct.pack("<q", 0) + struct.pack("<q", 0))
            socket.send_fds(conn, [struct.pack("<q", -1)], [memfd])
            conn.recv(1)  # until QEMU goes

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    def stop() -> None:
        listener.close()
        os.close(memfd)

    request.addfinalizer(stop)


@functools.cache
def _kvm_has_smm() -> bool:
    """Whether this host's KVM runs a q35 machine with SMM (a nested KVM may not)."""
    proc = subprocess.run([QEMU, "-S", "-accel", "kvm", "-machine", "q35,smm=on",
                           "-display", "none", "-nodefaults", "-qmp", "stdio"],
                          input='{"execute":"qmp_capabilities"}{"execute":"quit"}',
                          capture_output=True, text=True, timeout=60)
    return "System Management Mode not supported" not in proc.stderr


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


async def _query(sock: str) -> dict:
    async with qmp_at(sock) as qmp:
        out = {
            "name": (await qmp.execute("query-name")).get("name"),
            "uuid": (await qmp.execute("query-uuid"))["UUID"],
            "cpus": len(await qmp.execute("query-cpus-fast")),
            "memory": (await qmp.execute("query-memory-size-summary"))["base-memory"],
            "status": (await qmp.execute("query-status"))["status"],
        }
        try:
            out["genid"] = (await qmp.execute("query-vm-generation-id"))["guid"]
        except Exception:  # noqa: BLE001 - "VM Generation ID device not found"
            out["genid"] = None
    return out


@pytest.mark.parametrize("name", CASES)
def test_qemu_accepts_golden_command(name, tmp_path, request):
    reason = missing_needs(name) or missing_needs(name, "qemu-needs")
    if reason is not None:
        pytest.skip(reason)
    if (XML2ARGV / f"{name}.host-err").exists():
        pytest.skip(f"names host files no machine has (the host check refuses it: "
                    f"{name}.host-err)")
    caps = caps_for(name)
    _data, dom = load(str(XML2ARGV / f"{name}.xml"), random=guid.counting_random)
    if dom.type == "kvm" and not os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("a kvm domain needs a usable /dev/kvm")

    cleanup: list[list[str]] = []
    try:
        state = tmp_path / "state"
        state.mkdir()
        _redirect_paths(dom, tmp_path, request, cleanup, state)
        cmd = build_command(dom, caps, state)
        if dom.type == "kvm" and any("smm=on" in a for a in cmd.argv) and not _kvm_has_smm():
            pytest.skip("a kvm domain with SMM needs a KVM that emulates it; this host's "
                        "(nested) KVM says 'System Management Mode not supported'")
        from qemuwrap.qemu.build.graphics import graphics_secrets

        for path, secret in graphics_secrets(dom.devices.graphics, str(state)).items():
            with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                f.write(secret)  # what the launcher writes before QEMU starts
        refusal = XML2ARGV / f"{name}.qemu-refuses"
        if refusal.exists():  # a value QEMU reads whole and refuses (see that file)
            res = subprocess.run(cmd.argv, env=cmd.env, stdin=subprocess.DEVNULL,
                                 capture_output=True, text=True, timeout=30)
            assert res.returncode == 1, res.stderr
            assert refusal.read_text().strip() in res.stderr
            return
        proc = subprocess.Popen(cmd.argv, env=cmd.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            got = asyncio.run(_query(str(state / "qmp.sock")))
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    finally:
        for argv in cleanup:
            subprocess.run(argv, capture_output=True)
    stderr = proc.stderr.read().decode(errors="replace")
    assert proc.returncode == 0, stderr
    # QEMU only warns on stderr for what it accepts anyway: there must be nothing, except
    # under KVM, where a nested host may lack CPUID bits of the default CPU model.
    # And a guestfwd channel: libvirt builds it as a user netdev of its own, without a
    # NIC, and QEMU says so.
    guestfwd = {f"netdev {c.alias_name} has no peer" for c in dom.devices.channels
                if c.target_type == "guestfwd"}
    warnings = [line for line in stderr.splitlines() if "warning" in line
                and not (dom.type == "kvm" and "host doesn't support requested feature" in line)
                and not any(line.endswith(w) for w in guestfwd)]
    assert not warnings, stderr
    assert got["status"] == "prelaunch"  # -S: paused before the guest runs
    assert got["name"] == dom.name
    assert got["uuid"] == dom.uuid_str
    assert got["genid"] == dom.genid_str
    assert got["cpus"] == (dom.vcpu_current or dom.vcpus)
    assert got["memory"] == -(-dom.memory_kib // 1024) * 1024 * 1024
