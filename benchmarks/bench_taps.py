"""What a tap NIC costs a start: the demo guest on libvirt's ``default`` network (NAT)
against the same guest without a NIC, and against bare QEMU with the same argv.

Run (root): .venv/bin/python benchmarks/bench_taps.py [--runs N]
Figures only, nothing passes or fails. Everything happens in a network namespace made
for the run (removed at the end); needs qemu-system-x86_64, dnsmasq, nft and the demo
guest (built on first use into /var/tmp/qemuwrap-demo).

- start: ``qemuwrap start`` (exec until the guest runs) with one virtio NIC on
  ``default`` (the supervisor makes the tap, attaches it to virbr0, QEMU opens it)
  against no NIC; ``destroy`` of each (the tap deleted, the lease released);
- bare QEMU: the very argv of the NIC guest (QEMU makes an unattached tap itself, as
  root), exec until its QMP socket greets; interleaved runs, medians;
- the tap alone: GuestTap start + stop in this process (netlink), median;
- an idle supervisor's unique memory (USS) with and without the tap (pyroute2 stays
  loaded in it once a tap was made).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bench_launcher import QW, bare_qemu  # noqa: E402

from qemuwrap import demoguest  # noqa: E402

from conftest import demo_xml  # noqa: E402

NIC = ("<interface type='network'><mac address='52:54:00:be:00:01'/>"
       "<source network='default'/><model type='virtio'/></interface>")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_taps: needs root (a network namespace, a bridge, taps)", file=sys.stderr)
        return 2
    from pyroute2 import netns

    image = demoguest.build(demoguest.DEFAULT_DIR)
    work = Path(tempfile.mkdtemp(prefix="qwbench-taps-"))
    ns = f"qwbench{os.getpid()}"
    netns.create(ns)
    os.environ.update(QEMUWRAP_STATE_DIR=str(work / "s"),
                      QEMUWRAP_CONFIG_DIR=str(work / "etc"))  # bare_qemu builds here too
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)

    def qw(*words: str) -> float:
        t = time.perf_counter()
        subprocess.run(["ip", "netns", "exec", ns, *QW, *words], env=env, check=True,
                       capture_output=True, text=True)
        return time.perf_counter() - t

    try:
        netns.pushns(ns)
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        qw("net-define", str(ROOT / "data" / "networks" / "default.xml"))
        qw("net-start", "default")
        tapped = demo_xml(work / "tap.xml", image, name="tap", genid=None,
                          cmdline="qemuwrap.poweroff=0 qemuwrap.agent=0", extra_devices=NIC)
        plain = demo_xml(work / "plain.xml", image, name="plain", genid=None,
                         cmdline="qemuwrap.poweroff=0 qemuwrap.agent=0")
        times: dict[str, list[float]] = {k: [] for k in
                                         ("start tap", "start plain", "bare QEMU",
                                          "destroy tap", "destroy plain", "tap alone")}
        uss: dict[str, int] = {}
        for run in range(args.runs):
            for name, path in (("tap", tapped), ("plain", plain)):
                times[f"start {name}"].append(qw("start", str(path)))
                if run == 0:
                    uss[name] = _supervisor_uss(work / "s" / name)
                times[f"destroy {name}"].append(qw("destroy", name))
            times["bare QEMU"].append(bare_qemu(tapped, work / "bare"))
            times["tap alone"].append(_tap_alone())
        med = {k: statistics.median(v) * 1000 for k, v in times.items()}
        for key, value in med.items():
            print(f"{key:14s} {value:8.1f} ms (median of {args.runs})")
        print(f"the tap's share of a start: {med['start tap'] - med['start plain']:.1f} ms; "
              f"start with a tap / bare QEMU: {med['start tap'] / med['bare QEMU']:.2f}x; "
              f"without / bare: {med['start plain'] / med['bare QEMU']:.2f}x")
        print(f"idle supervisor USS: {uss['tap'] / 2**20:.1f} MiB with a tap, "
              f"{uss['plain'] / 2**20:.1f} MiB without")
        qw("net-stop", "default")
    finally:
        netns.popns()
        for pid in subprocess.run(["ip", "netns", "pids", ns], capture_output=True,
                                  text=True, check=False).stdout.split():
            try:
                os.kill(int(pid), 9)
            except ProcessLookupError:
                pass
        netns.remove(ns)
        subprocess.run(["rm", "-rf", str(work)], check=False)
    return 0


def _supervisor_uss(gdir: Path) -> int:
    import psutil

    record = json.loads((gdir / "state.json").read_text())
    time.sleep(0.5)  # let it settle into its loop
    return int(psutil.Process(record["supervisor"]["pid"]).memory_full_info().uss)


def _tap_alone() -> float:
    from qemuwrap.companions.network import GuestTap
    from qemuwrap.conf.network import InterfaceHost

    tap = GuestTap(InterfaceHost("network", source="default"), "52:54:00:be:00:02",
                   ifname="qwbenchn0", bridge="virbr0")
    t = time.perf_counter()
    tap.start()
    tap.stop()
    return time.perf_counter() - t


if __name__ == "__main__":
    sys.exit(main())
