"""A fleet on this machine: 20 guests started at once, qemuwrap against bare QEMU, and
the memory each idle supervisor holds.

Run: .venv/bin/python benchmarks/bench_fleet.py [--guests N] [--memory MIB] [--runs R]
Figures only, nothing passes or fails. Needs qemu-system-x86_64 and the demo guest.

- bare: N ``qemu-system-x86_64`` processes with the guests' own argv (less ``-S``)
  spawned at once; the time until every one answers on QMP (it runs).
- qemuwrap: N ``qemuwrap start`` commands at once; the time until every one returned
  0 (each guest running: QMP attached, genid checked, resumed, recorded).
- memory: unique (USS) and resident (RSS) memory of each idle supervisor (psutil),
  a few seconds after the fleet is up.
Runs interleaved, medians; the ratio is qemuwrap's time over bare's of the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from qemuwrap import demoguest  # noqa: E402
from qemuwrap.conf.domain import load  # noqa: E402
from qemuwrap.qemu import capabilities  # noqa: E402
from qemuwrap.qemu.command import build_command  # noqa: E402
from qemuwrap.runtime.qmp import QMP  # noqa: E402

from conftest import demo_xml  # noqa: E402

_SCRIPT = shutil.which("qemuwrap", path=str(Path(sys.executable).parent))
QW = [_SCRIPT] if _SCRIPT else [sys.executable, "-m", "qemuwrap"]
#: The work tree's code, compiled once (as an installed package is), not at every run.
ENV = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
       "PYTHONPATH": str(ROOT)}


def definitions(work: Path, image, n: int, memory: int) -> list[Path]:
    out = []
    for i in range(n):
        path = demo_xml(work / f"g{i}.xml", image, name=f"g{i}", genid="")
        path.write_text(path.read_text().replace("<memory unit='MiB'>256</memory>",
                                                 f"<memory unit='MiB'>{memory}</memory>"))
        out.append(path)
    return out


def bare_fleet(xmls: list[Path], work: Path) -> float:
    cmds = []
    for xml in xmls:
        _data, dom = load(str(xml))
        state = work / "bare" / dom.name
        state.mkdir(parents=True, exist_ok=True)
        cmd = build_command(dom, capabilities.for_domain(dom.devices.emulator, None), state)
        cmds.append((cmd, state))
    t = time.perf_counter()
    procs = [subprocess.Popen([a for a in cmd.argv if a != "-S"], env=cmd.env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for cmd, _state in cmds]
    for _cmd, state in cmds:
        QMP.connect(str(state / "qmp.sock"), timeout=60).close()
    elapsed = time.perf_counter() - t
    for p in procs:
        p.kill()
        p.wait()
    shutil.rmtree(work / "bare", ignore_errors=True)
    return elapsed


def qemuwrap_fleet(xmls: list[Path], root: Path, measure_memory: bool) -> tuple[float, list]:
    t = time.perf_counter()
    procs = [subprocess.Popen([*QW, "start", str(x), "--state-dir", str(root)], env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for x in xmls]
    failed = [p.stderr.read().decode() for p in procs if p.wait() != 0]
    elapsed = time.perf_counter() - t
    if failed:
        raise RuntimeError(f"{len(failed)} starts failed: {failed[0]}")
    memory = []
    if measure_memory:
        import psutil

        time.sleep(3)
        for x in xmls:
            rec = json.loads((root / x.stem / "state.json").read_text())
            info = psutil.Process(rec["supervisor"]["pid"]).memory_full_info()
            memory.append((info.uss, info.rss))
    for x in xmls:
        subprocess.run([*QW, "destroy", x.stem, "--state-dir", str(root)], env=ENV,
                       capture_output=True)
    return elapsed, memory


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--guests", type=int, default=20)
    ap.add_argument("--memory", type=int, default=128, help="MiB per guest")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if not shutil.which("qemu-system-x86_64"):
        print("qemu-system-x86_64 is not installed")
        return 1
    image = demoguest.build(Path(os.environ.get("QEMUWRAP_DEMO_DIR") or demoguest.DEFAULT_DIR))
    work = Path(tempfile.mkdtemp(prefix="qemuwrap-bench-fleet-", dir="/var/tmp"))
    root = work / "state"
    try:
        xmls = definitions(work, image, args.guests, args.memory)
        qw_fleet = qemuwrap_fleet  # the first start of each writes its generated genid
        qw_fleet(xmls, root, False)
        bare, ours, memory = [], [], []
        for i in range(args.runs):
            bare.append(bare_fleet(xmls, work))
            elapsed, mem = qw_fleet(xmls, root, i == args.runs - 1)
            ours.append(elapsed)
            memory += mem
        b, q = statistics.median(bare), statistics.median(ours)
        uss = [u / 2**20 for u, _r in memory]
        rss = [r / 2**20 for _u, r in memory]
        load = os.getloadavg()[0]
        print(f"{args.guests} guests x {args.memory} MiB, started at once; medians of "
              f"{args.runs} runs (load average {load:.1f} on {os.cpu_count()} CPUs)")
        print(f"bare QEMU, all answering QMP:        {b:6.2f} s")
        print(f"qemuwrap start, all running:         {q:6.2f} s   ratio {q / b:.2f}x")
        print(f"idle supervisor memory: USS median {statistics.median(uss):.1f} MiB "
              f"(max {max(uss):.1f}), total {sum(uss):.0f} MiB; RSS median "
              f"{statistics.median(rss):.1f} MiB, total {sum(rss):.0f} MiB")
    finally:
        for x in work.glob("g*.xml"):
            subprocess.run([*QW, "destroy", x.stem, "--state-dir", str(root)], env=ENV,
                           capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
