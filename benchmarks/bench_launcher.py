"""Launcher figures on the real QEMU (TCG): start overhead, idle supervisor, save/restore.

Run: .venv/bin/python benchmarks/bench_launcher.py [--runs N] [--idle SECONDS]
Figures only, nothing passes or fails. Needs qemu-system-x86_64 and the demo guest
(built on first use into /var/tmp/qemuwrap-demo).

- start overhead: `qemuwrap start` (exec until the guest runs: QMP attached, genid
  checked, resumed) against bare `qemu-system-x86_64` with the same argv (exec until its
  QMP socket greets), same machine, interleaved runs, medians.
- idle supervisor: CPU time and RSS of a background supervisor over --idle seconds.
- save/restore of the demo guest: wall time of each command, and from `restore` until
  the running guest prints its new genid.
"""

from __future__ import annotations

import argparse
import json
import os
import re
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
from qemuwrap.runtime.qmp import QMP, MonitorError  # noqa: E402

from conftest import demo_xml  # noqa: E402

# The installed command, as a user runs it (python -m from the work tree would compile
# the sources on every run where PYTHONDONTWRITEBYTECODE is set).
_SCRIPT = shutil.which("qemuwrap", path=str(Path(sys.executable).parent))
QW = [_SCRIPT] if _SCRIPT else [sys.executable, "-m", "qemuwrap"]


#: The work tree's code, compiled once (as an installed package is), not at every run.
ENV = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
       "PYTHONPATH": str(ROOT)}


def qw(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*QW, *args], capture_output=True, text=True, check=True, env=ENV)


def _greeting(sock: str, proc: subprocess.Popen) -> None:
    """Connect as soon as QEMU listens (the same client and polls for both sides)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            QMP.connect(sock, timeout=60, alive=lambda: proc.poll() is None
                        or sock.endswith("control.sock")).close()
            return
        except MonitorError:
            if proc.poll() is not None and not sock.endswith("control.sock"):
                raise RuntimeError("QEMU exited") from None
            time.sleep(0.001)
    raise RuntimeError("no QMP")


def bare_qemu(xml: Path, state: Path) -> float:
    _data, dom = load(str(xml))
    cmd = build_command(dom, capabilities.for_domain(dom.devices.emulator, None), state)
    state.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    proc = subprocess.Popen(cmd.argv, env=cmd.env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _greeting(cmd.env["HOME"] + "/qmp.sock", proc)
    elapsed = time.perf_counter() - t
    proc.kill()
    proc.wait()
    shutil.rmtree(state, ignore_errors=True)
    return elapsed


def qemuwrap_start(xml: Path, root: Path, name: str) -> tuple[float, float]:
    """(exec -> the guest's QMP monitor greets, exec -> `start` returns: guest running)."""
    control = root / name / "control.sock"
    t = time.perf_counter()
    proc = subprocess.Popen([*QW, "start", str(xml), "--state-dir", str(root)],
                            stdout=subprocess.DEVNULL, env=ENV)
    _greeting(str(control), proc)
    qmp_ready = time.perf_counter() - t
    proc.wait()
    running = time.perf_counter() - t
    qw("destroy", name, "--state-dir", str(root))
    return qmp_ready, running


def wait_for(path: Path, pattern: str, timeout: float = 60) -> float:
    t = time.perf_counter()
    while time.perf_counter() - t < timeout:
        if path.exists() and re.search(pattern, path.read_text(errors="replace")):
            return time.perf_counter()
        time.sleep(0.01)
    raise RuntimeError(f"{pattern} not seen in {path}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--idle", type=float, default=30.0)
    args = ap.parse_args()
    if not shutil.which("qemu-system-x86_64"):
        print("qemu-system-x86_64 is not installed")
        return 1
    image = demoguest.build(Path(os.environ.get("QEMUWRAP_DEMO_DIR") or demoguest.DEFAULT_DIR))
    work = Path(tempfile.mkdtemp(prefix="qemuwrap-bench-"))
    root = work / "state"
    try:
        xml = demo_xml(work / "bench.xml", image, name="bench",
                       genid="e9392370-2917-565e-692b-d057f46512d6")
        capabilities.for_domain("/usr/bin/qemu-system-x86_64", None)  # warm the capabilities cache
        bare, ready, running = [], [], []
        for _ in range(args.runs):
            bare.append(bare_qemu(xml, work / "bare"))
            r, g = qemuwrap_start(xml, root, "bench")
            ready.append(r)
            running.append(g)
        b = statistics.median(bare) * 1000
        r = statistics.median(ready) * 1000
        g = statistics.median(running) * 1000
        print(f"bare qemu exec -> QMP ready:          median {b:.0f} ms ({args.runs} runs)")
        print(f"qemuwrap start -> QMP ready:          median {r:.0f} ms (+{r - b:.0f} ms)")
        print(f"qemuwrap start -> returns, guest running (genid checked, resumed): "
              f"median {g:.0f} ms (+{g - b:.0f} ms)")

        import psutil

        qw("start", str(xml), "--state-dir", str(root))
        rec = json.loads((root / "bench" / "state.json").read_text())
        sup = psutil.Process(rec["supervisor"]["pid"])
        time.sleep(2)
        cpu0 = sum(sup.cpu_times()[:2])
        time.sleep(args.idle)
        cpu = sum(sup.cpu_times()[:2]) - cpu0
        mem = sup.memory_full_info()
        print(f"idle supervisor over {args.idle:.0f} s:          CPU {cpu * 1000:.0f} ms "
              f"({cpu / args.idle * 100:.2f} %), USS {mem.uss / 2**20:.1f} MiB, "
              f"RSS {mem.rss / 2**20:.1f} MiB")
        qw("destroy", "bench", "--state-dir", str(root))

        xml = demo_xml(work / "bench.xml", image, name="bench", genid="")
        qw("start", str(xml), "--state-dir", str(root))
        serial = root / "bench" / "serial0.log"
        wait_for(serial, r"genid: ")
        save = work / "bench.save"
        t = time.perf_counter()
        out = qw("save", "bench", str(save), "--state-dir", str(root)).stdout
        t_save = time.perf_counter() - t
        t = time.perf_counter()
        out = qw("restore", str(save), "--xml", str(xml), "--state-dir", str(root)).stdout
        t_restore = time.perf_counter() - t
        new = re.search(r"-> ([0-9a-f-]{36})", out).group(1)
        t_seen = wait_for(serial, f"genid: {new}") - t
        size = save.stat().st_size / 2**20
        print(f"save (256 MiB guest, {size:.0f} MiB file):     {t_save * 1000:.0f} ms")
        print(f"restore -> guest running:             {t_restore * 1000:.0f} ms")
        print(f"restore -> guest prints the new genid: {t_seen * 1000:.0f} ms")
        qw("destroy", "bench", "--state-dir", str(root))
    finally:
        subprocess.run([*QW, "destroy", "bench", "--state-dir", str(root)],
                       capture_output=True, env=ENV)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
