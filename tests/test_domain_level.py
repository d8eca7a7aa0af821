"""The domain level, proven on what QEMU builds: each feature group's golden case is
started paused (TCG) and QMP/HMP shows the guest-visible result (CPU model and
properties, topology, NUMA nodes and their memory backends, memory devices, I/O
threads, machine properties, firmware images, pass-through arguments); the pure parts
(boot order, CPU pinning plan, host facts, cpusets) are tested as tables."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from contextlib import contextmanager

import pytest

from qemuwrap.conf import guid
from qemuwrap.conf.cpuset import CPUSet, parse_cpuset
from qemuwrap.conf.domain import load, loads
from qemuwrap.conf.tuning import Scheduler
from qemuwrap.conf.xmlmodel import KindError
from qemuwrap.errors import QemuwrapError
from qemuwrap.qemu import host, tuning
from qemuwrap.qemu.bootorder import assign_boot_order, boot_index
from qemuwrap.qemu.capabilities import Capabilities
from qemuwrap.qemu.command import build_command

from conftest import DEFAULT_CAPS, XML2ARGV, needs_qemu

CAPS = Capabilities.from_file(DEFAULT_CAPS)


def dom_xml(body: str = "", *, os_extra: str = "", devices: str = "", machine: str = "pc",
            vcpus: int = 2, memory: str = "<memory unit='MiB'>256</memory>",
            domain_type: str = "qemu") -> str:
    return (f"<domain type='{domain_type}'><name>t</name>{memory}<vcpu>{vcpus}</vcpu>"
            f"<os><type arch='x86_64' machine='{machine}'>hvm</type>{os_extra}</os>{body}"
            f"<devices><memballoon model='none'/>{devices}</devices></domain>")


def argv_of(xml: str, state: str = "/run/qemuwrap/t") -> list[str]:
    return build_command(loads(xml, random=guid.counting_random), CAPS, state).argv


def option(argv: list[str], name: str) -> list[str]:
    return [argv[i + 1] for i, w in enumerate(argv) if w == name]


# --------------------------------------------------------------------------- QEMU runs
@contextmanager
def running(name: str, tmp_path):
    """The golden case ``name`` started paused; yields (qmp, pid)."""
    from qemu.qmp.legacy import QEMUMonitorProtocol

    _data, dom = load(str(XML2ARGV / f"{name}.xml"), random=guid.counting_random)
    for i, mem in enumerate(dom.devices.memories):
        if mem.source is not None and mem.source.path is not None:
            mem.source.path = str(tmp_path / f"memdev{i}")
    if dom.os.nvram is not None and dom.os.nvram.path is not None:
        if not os.path.exists("/usr/share/OVMF/OVMF_VARS_4M.fd"):
            pytest.skip("needs OVMF (Debian package ovmf)")
        dom.os.nvram.path = str(tmp_path / "VARS.fd")
        shutil.copyfile("/usr/share/OVMF/OVMF_VARS_4M.fd", dom.os.nvram.path)
    state = tmp_path / "state"
    state.mkdir()
    cmd = build_command(dom, CAPS, state)
    proc = subprocess.Popen(cmd.argv, env=cmd.env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sock = str(state / "qmp.sock")
    qmp = None
    try:
        for _ in range(1000):  # QEMU makes the socket a moment before it listens
            if os.path.exists(sock):
                try:
                    qmp = QEMUMonitorProtocol(sock)
                    qmp.connect()
                    break
                except Exception:  # noqa: BLE001 - refused, or closed during greeting
                    qmp = None
            if proc.poll() is not None:
                raise AssertionError(proc.stderr.read().decode())
            time.sleep(0.01)
        assert qmp is not None, "QMP never came up"
        yield qmp, proc.pid
    finally:
        if qmp is not None:
            try:
                qmp.cmd("quit")
                qmp.close()
            except Exception:  # noqa: BLE001 - EOF as QEMU quits
                pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def qtree(qmp) -> str:
    return qmp.cmd("human-monitor-command", **{"command-line": "info qtree"})


def qom(qmp, path: str, prop: str):
    return qmp.cmd("qom-get", path=path, property=prop)


@needs_qemu
def test_cpu_model_and_properties(tmp_path):
    with running("cpu-vendor-cache-physbits", tmp_path) as (qmp, _pid):
        cpus = qmp.cmd("query-cpus-fast")
        path = cpus[0]["qom-path"]
        assert qom(qmp, path, "vendor") == "GenuineIntel"
        assert qom(qmp, path, "phys-bits") == 40
        assert qom(qmp, path, "l3-cache") is True


@needs_qemu
def test_cpu_features_switched(tmp_path):
    with running("cpu-custom-features", tmp_path) as (qmp, _pid):
        path = qmp.cmd("query-cpus-fast")[0]["qom-path"]
        assert qom(qmp, path, "lahf-lm") is True
        assert qom(qmp, path, "pclmulqdq") is True
        assert qom(qmp, path, "aes") is False
        assert "Westmere" in qom(qmp, path, "model-id")


@needs_qemu
def test_topology_with_dies_and_hotpluggable_cpus(tmp_path):
    with running("cpu-topology-dies", tmp_path) as (qmp, _pid):
        slots = qmp.cmd("query-hotpluggable-cpus")
        assert len(slots) == 8
        present = [s for s in slots if "qom-path" in s]
        assert len(present) == 4
        props = {(s["props"]["socket-id"], s["props"]["die-id"], s["props"]["core-id"])
                 for s in slots}
        assert props == {(s, d, c) for s in range(2) for d in range(2) for c in range(2)}


@needs_qemu
def test_numa_cells_and_backends(tmp_path):
    with running("numa-cells-shared", tmp_path) as (qmp, _pid):
        nodes = {c["cpu-index"]: c["props"]["node-id"]
                 for c in qmp.cmd("query-cpus-fast")}
        assert nodes == {0: 0, 1: 0, 2: 1, 3: 1}
        memdevs = {m["id"]: m for m in qmp.cmd("query-memdev")}
        assert memdevs["ram-node0"]["size"] == 127 * 1024 * 1024  # 130000 KiB, MiB-aligned
        assert memdevs["ram-node0"]["share"] is True
        assert memdevs["ram-node1"]["share"] is False
        summary = qmp.cmd("query-memory-size-summary")
        assert summary["base-memory"] == 255 * 1024 * 1024


@needs_qemu
def test_numatune_host_nodes_and_policy(tmp_path):
    with running("numa-numatune", tmp_path) as (qmp, _pid):
        memdevs = {m["id"]: m for m in qmp.cmd("query-memdev")}
        assert memdevs["ram-node0"]["policy"] == "bind"
        assert memdevs["ram-node1"]["policy"] == "interleave"
        assert memdevs["ram-node0"]["host-nodes"] == [0]
        assert memdevs["ram-node0"]["prealloc"] is True


@needs_qemu
def test_memory_devices(tmp_path):
    with running("memory-hotplug", tmp_path) as (qmp, _pid):
        devices = qmp.cmd("query-memory-devices")
        dimms = sorted((d["data"]["slot"], d["data"]["node"], d["data"]["size"])
                       for d in devices if d["type"] == "dimm")
        assert dimms == [(0, 0, 128 << 20), (2, 0, 128 << 20)]
        vmem = [d["data"] for d in devices if d["type"] == "virtio-mem"]
        assert vmem and vmem[0]["requested-size"] == 64 << 20
        assert vmem[0]["block-size"] == 2 << 20
        summary = qmp.cmd("query-memory-size-summary")
        assert summary["base-memory"] == 256 << 20


@needs_qemu
def test_nvdimm_backed_by_a_shared_file(tmp_path):
    with running("memory-nvdimm", tmp_path) as (qmp, _pid):
        devices = qmp.cmd("query-memory-devices")
        assert [d["type"] for d in devices] == ["nvdimm"]
        memdevs = {m["id"]: m for m in qmp.cmd("query-memdev")}
        assert memdevs["memnvdimm0"]["share"] is True
        assert (tmp_path / "memdev0").exists()


@needs_qemu
def test_iothreads_and_main_loop(tmp_path):
    with running("iothreads-ids-pools", tmp_path) as (qmp, _pid):
        ids = sorted(t["id"] for t in qmp.cmd("query-iothreads"))
        assert ids == ["iothread1", "iothread2", "iothread3", "iothread5"]
        assert qom(qmp, "/objects/main-loop", "thread-pool-max") == 8
        assert qom(qmp, "/objects/iothread2", "thread-pool-max") == 16


@needs_qemu
def test_machine_properties_and_platform_devices(tmp_path):
    with running("features-q35-platform", tmp_path) as (qmp, _pid):
        assert qom(qmp, "/machine", "smm") == "on"
        assert qom(qmp, "/machine", "vmport") == "off"
        children = qmp.cmd("qom-list", path="/machine/peripheral-anon")
        assert "child<vmcoreinfo>" in {c["type"] for c in children}
        cpu = qmp.cmd("query-cpus-fast")[0]["qom-path"]
        assert qom(qmp, cpu, "pmu") is False  # kvm-pv-unhalt: TCG filters KVM PV bits


@needs_qemu
def test_pm_globals_reach_the_chipset(tmp_path):
    with running("os-bootmenu-bios", tmp_path) as (qmp, _pid):
        tree = qtree(qmp)
        assert "disable_s3 = 1" in tree and "disable_s4 = 0" in tree


@needs_qemu
def test_uefi_images_are_pflash_blockdevs(tmp_path):
    with running("os-uefi-secure-boot", tmp_path) as (qmp, _pid):
        nodes = {n["node-name"]: n for n in qmp.cmd("query-named-block-nodes")}
        assert nodes["libvirt-pflash0-format"]["ro"] is True
        assert nodes["libvirt-pflash1-format"]["ro"] is False
        assert nodes["libvirt-pflash1-storage"]["file"] == str(tmp_path / "VARS.fd")
        assert qom(qmp, "/machine", "smm") == "on"


@needs_qemu
def test_commandline_passthrough_reaches_qemu(tmp_path):
    with running("commandline-passthrough", tmp_path) as (_qmp, pid):
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            words = f.read().split(b"\0")
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read().split(b"\0")
        assert words[-3:-1] == [b"-fw_cfg", b"name=opt/com.example/flag,string=a,,b"]
        assert b"QEMU_EXTRA=two words" in env and b"EMPTY=" in env


# --------------------------------------------------------------------------- CPU tuning
def test_pinning_plan_follows_libvirt():
    dom = load(str(XML2ARGV / "cpu-cputune-pinning.xml"))[1]
    plan = tuning.plan(dom, {0: 101, 1: 102}, {1: 201}, [100, 101, 102, 201, 300],
                       host_cpus=CPUSet({0, 1}))
    by_role = {t.role: t for t in plan}
    assert by_role["vcpu 0"].cpus == {0} and by_role["vcpu 1"].cpus == {1}
    assert by_role["vcpu 0"].scheduler == Scheduler.BATCH
    assert by_role["iothread1"].cpus == {1}
    emulators = [t for t in plan if t.role == "emulator"]
    assert {t.thread_id for t in emulators} == {100, 300}
    assert all(t.cpus == {0, 1} for t in emulators)


def test_pinning_plan_defaults_to_the_vcpu_cpuset_cut_to_the_host():
    dom = loads(dom_xml().replace("<vcpu>2</vcpu>", "<vcpu cpuset='1-3'>2</vcpu>"))
    plan = tuning.plan(dom, {0: 11, 1: 12}, {}, [10, 11, 12], host_cpus=CPUSet({0, 1}))
    assert [(t.role, set(t.cpus or ())) for t in plan] == [
        ("vcpu 0", {1}), ("vcpu 1", {1}), ("emulator", {1})]


def test_no_tuning_no_plan():
    assert tuning.plan(loads(dom_xml()), {0: 1}, {}, [1, 2]) == []


def test_qmp_answers_become_thread_maps():
    assert tuning.vcpu_threads([{"cpu-index": 1, "thread-id": 42},
                                {"cpu-index": 0, "thread-id": 41}]) == {0: 41, 1: 42}
    assert tuning.iothread_threads([{"id": "iothread3", "thread-id": 7},
                                    {"id": "other", "thread-id": 8}]) == {3: 7}


def test_unenforced_settings_are_said():
    dom = load(str(XML2ARGV / "memory-tune-not-enforced.xml"))[1]
    notes = tuning.unenforced(dom)
    assert any("blkiotune" in n for n in notes) and any("memtune" in n for n in notes)
    cmd = build_command(dom, CAPS, "/run/qemuwrap/t")
    machine = next(a for a in cmd.args if a.option == "-machine")
    assert "not enforced" in (machine.why or "")


@needs_qemu
def test_pinning_applied_to_a_real_qemu(tmp_path):
    with running("cpu-cputune-pinning", tmp_path) as (qmp, pid):
        dom = load(str(XML2ARGV / "cpu-cputune-pinning.xml"))[1]
        vcpus = tuning.vcpu_threads(qmp.cmd("query-cpus-fast"))
        iothreads = tuning.iothread_threads(qmp.cmd("query-iothreads"))
        plan = tuning.plan(dom, vcpus, iothreads, tuning.process_threads(pid),
                           host_cpus=CPUSet(os.sched_getaffinity(0)))
        if len(os.sched_getaffinity(0)) < 2:
            pytest.skip("needs two host CPUs")
        assert tuning.apply(plan) == []
        assert os.sched_getaffinity(vcpus[0]) == {0}
        assert os.sched_getaffinity(vcpus[1]) == {1}
        assert os.sched_getscheduler(vcpus[0]) == os.SCHED_BATCH
        assert os.sched_getaffinity(iothreads[1]) == {1}
        assert os.sched_getaffinity(pid) == {0, 1}


# --------------------------------------------------------------------------- boot order
def test_os_boot_devices_become_boot_indexes():
    disks = ("<disk type='file' device='cdrom'><target dev='hdc' bus='ide'/></disk>"
             "<disk type='file' device='disk'><source file='/a.img'/>"
             "<target dev='hda' bus='ide'/></disk>"
             "<disk type='file' device='disk'><source file='/b.img'/>"
             "<target dev='hdb' bus='ide'/></disk>"
             "<interface type='user'/><interface type='user'/>")
    dom = loads(dom_xml(os_extra="<boot dev='network'/><boot dev='hd'/><boot dev='cdrom'/>",
                        devices=disks))
    assign_boot_order(dom)
    cdrom, hda, hdb = (next(d for d in dom.devices.disks if d.target_dev == t)
                       for t in ("hdc", "hda", "hdb"))
    nic0, nic1 = dom.devices.interfaces
    assert [boot_index(dom, d) for d in (nic0, hda, cdrom, hdb, nic1)] == [1, 2, 3, None, None]
    assert "strict=on" in option(argv_of(dom_xml(os_extra="<boot dev='hd'/>")), "-boot")[0]


def test_device_boot_order_when_no_os_boot():
    dom = loads(dom_xml(devices="<disk type='file' device='disk'><source file='/a.img'/>"
                                "<target dev='vda' bus='virtio'/><boot order='2'/></disk>"))
    assign_boot_order(dom)
    assert boot_index(dom, dom.devices.disks[0]) == 2


# --------------------------------------------------------------------------- host facts
@pytest.fixture
def fake_host():
    def use(**facts):
        base = dict(numa_nodes=CPUSet({0, 1}), hugetlbfs=[], default_hugepage_kib=2048,
                    page_kib=4)
        base.update(facts)
        host.override(host.HostFacts(**base))

    yield use
    host.override(None)


HUGEPAGES = "<memoryBacking><hugepages><page size='2' unit='MiB'/></hugepages></memoryBacking>"


def test_hugepages_use_the_mount_of_that_size(fake_host):
    fake_host(hugetlbfs=[host.HugeTLBFS("/dev/hugepages1G", 1048576),
                         host.HugeTLBFS("/dev/hugepages", 2048)])
    backend = option(argv_of(dom_xml(HUGEPAGES)), "-object")[0]
    assert backend.startswith("memory-backend-file,id=pc.ram,mem-path=/dev/hugepages,")
    assert "prealloc=on" in backend


def test_hugepages_without_a_mount_are_refused(fake_host):
    fake_host(hugetlbfs=[])
    with pytest.raises(QemuwrapError, match="hugepages of 2048 KiB need a hugetlbfs mount"):
        argv_of(dom_xml(HUGEPAGES))


def test_hugepages_per_numa_cell(fake_host):
    fake_host(hugetlbfs=[host.HugeTLBFS("/dev/hugepages", 2048)])
    xml = dom_xml("<memoryBacking><hugepages><page size='2048' unit='KiB' nodeset='1'/>"
                  "</hugepages></memoryBacking><cpu><numa><cell id='0' cpus='0' "
                  "memory='128' unit='MiB'/><cell id='1' cpus='1' memory='128' unit='MiB'/>"
                  "</numa></cpu>")
    objects = option(argv_of(xml), "-object")
    assert objects[0].startswith("memory-backend-ram,id=ram-node0,")
    assert objects[1].startswith("memory-backend-file,id=ram-node1,mem-path=/dev/hugepages")


def test_numatune_on_a_two_node_host(fake_host):
    fake_host()
    xml = dom_xml("<numatune><memory mode='interleave' nodeset='0-1'/></numatune>")
    assert "host-nodes=0-1,policy=interleave" in option(argv_of(xml), "-object")[0]
    fake_host(numa_nodes=CPUSet({0}))
    with pytest.raises(QemuwrapError, match="NUMA node 1 is unavailable"):
        argv_of(xml)


def test_host_facts_are_read():
    facts = host.facts()
    assert 0 in facts.numa_nodes and facts.page_kib >= 4


# --------------------------------------------------------------------------- values
@pytest.mark.parametrize(("raw", "cpus", "text"), [
    ("0", {0}, "0"), ("0-3,^2,8", {0, 1, 3, 8}, "0-1,3,8"), ("5,6", {5, 6}, "5-6"),
    ("16383", {16383}, "16383"), ("1-4,8-20,525", set(range(1, 5)) | set(range(8, 21)) | {525},
                                  "1-4,8-20,525")])
def test_cpusets_read_and_written_as_libvirt(raw, cpus, text):
    value = parse_cpuset(raw)
    assert value == cpus and str(value) == text


@pytest.mark.parametrize("raw", ["", "1-", "a", "3-1", "16384", "^1", "0, 1", "+1"])
def test_bad_cpusets_refused(raw):
    with pytest.raises(KindError):
        parse_cpuset(raw)


def test_variable_clock_is_now_plus_the_adjustment(monkeypatch):
    import datetime


    fixed = datetime.datetime(2030, 1, 1, 0, 0, 0, tzinfo=datetime.UTC)

    class Frozen(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return fixed

    monkeypatch.setattr(datetime, "datetime", Frozen)  # clock imports it when needed
    argv = argv_of(dom_xml("<clock offset='variable' adjustment='3600' basis='utc'/>"))
    assert option(argv, "-rtc") == ["base=2030-01-01T01:00:00"]
    argv = argv_of(dom_xml("<clock offset='utc' adjustment='-60'/>"))
    assert option(argv, "-rtc") == ["base=2029-12-31T23:59:00"]
    argv = argv_of(dom_xml("<clock offset='utc' adjustment='reset'/>"))
    assert option(argv, "-rtc") == ["base=utc"]


def test_host_passthrough_is_kvms_maximum_is_tcgs():
    """libvirt refuses host-passthrough for a qemu (TCG) domain; 'maximum' is TCG's."""
    dom = loads(dom_xml("<cpu mode='host-passthrough'/>"))
    with pytest.raises(QemuwrapError, match="'host-passthrough' for x86_64 qemu domain"):
        build_command(dom, CAPS, "/run/qemuwrap/t")
    dom = loads(dom_xml("<cpu mode='maximum'/>"))
    cmd = build_command(dom, CAPS, "/run/qemuwrap/t")
    assert next(a for a in cmd.args if a.option == "-cpu").value.startswith("max")
    kvm = loads(dom_xml("<cpu mode='host-passthrough'/>", domain_type="kvm"))
    assert option(build_command(kvm, CAPS, "/run/qemuwrap/t").argv, "-cpu") == [
        "host,migratable=on"]


def test_memory_devices_count_in_memory_and_format_back():
    xml = (XML2ARGV / "memory-hotplug.xml").read_text()
    dom = loads(xml)
    assert dom.memory_kib == 256 * 1024  # the NUMA cell; the devices come on top
    assert "<memory unit='KiB'>655360</memory>" in dom.format()


def test_migratable_only_on_the_host_architectures_binary():
    """libvirt probes the host CPU model (and so QEMU's 'migratable') only on the binary
    of the host's architecture: for qemu-system-i386 it passes no migratable=, whatever
    the XML says (kvm-features in libvirt's tests)."""
    cpu = "<cpu mode='maximum' migratable='off'/>"
    assert option(argv_of(dom_xml(cpu)), "-cpu") == ["max,migratable=off"]
    from qemuwrap.qemu.capabilities import Capabilities

    i386 = "/usr/bin/qemu-system-i386"
    caps = Capabilities.from_dict({**CAPS.to_dict(), "emulator": i386})
    dom = loads(dom_xml(cpu, devices=f"<emulator>{i386}</emulator>"))
    assert option(build_command(dom, caps, "/run/qemuwrap/t").argv, "-cpu") == ["max"]
