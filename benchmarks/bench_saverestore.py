"""save and restore of the demo guest: qemuwrap against bare QEMU, side by side.

Run: .venv/bin/python benchmarks/bench_saverestore.py [--runs N]
Figures only, nothing passes or fails. Needs qemu-system-x86_64 and the demo guest.

- bare save: a QEMU with the guest's own argv, driven over QMP by this script (already
  connected): stop, unlimited bandwidth, migrate into an open file (fd:), until
  "completed", then fsync. qemuwrap save: the command's wall time (exec to return:
  pre-checks, the supervisor's QMP steps, BLAKE3 on the way, fsync, rename, QEMU
  stopped).
- bare restore: exec QEMU with ``-incoming defer`` until the guest runs (QMP up,
  migrate-incoming from the file, completed, cont). qemuwrap restore: the command's
  wall time (checksum checked first, then the same, plus genid check and records).
Interleaved runs, medians; ratios are against the bare figure of the same run.
"""

from __future__ import annotations

import argparse
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
from qemuwrap.runtime.qmp import QMP  # noqa: E402

from conftest import demo_xml  # noqa: E402

_SCRIPT = shutil.which("qemuwrap", path=str(Path(sys.executable).parent))
QW = [_SCRIPT] if _SCRIPT else [sys.executable, "-m", "qemuwrap"]
GENID = "e9392370-2917-565e-692b-d057f46512d6"
#: Each save's file size: both sides must save a guest as far booted (same stream size).
SIZES: dict[str, list[int]] = {"bare": [], "qemuwrap": []}


#: The work tree's code, compiled once (as an installed package is), not at every run.
ENV = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
       "PYTHONPATH": str(ROOT)}


def qw(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*QW, *args], capture_output=True, text=True, check=True, env=ENV)


def log_end(path: Path) -> int:
    """Where the next boot's lines start: serial logs are appended to, run after run."""
    return path.stat().st_size if path.exists() else 0


def wait_for(path: Path, pattern: str, timeout: float = 60, after: int = 0) -> None:
    """Until ``pattern`` shows in ``path`` past byte ``after`` (a previous boot's lines
    would end the wait at once: a guest saved before it booted writes a ~1 MiB stream,
    a booted one ~100 MiB)."""
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        if path.exists() and re.search(pattern.encode(), path.read_bytes()[after:]):
            return
        time.sleep(0.01)
    raise RuntimeError(f"{pattern} not seen in {path}")


def bare_boot(xml: Path, state: Path, incoming: bool = False):
    _data, dom = load(str(xml))
    cmd = build_command(dom, capabilities.for_domain(dom.devices.emulator, None), state,
                        incoming=incoming)
    state.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(cmd.argv, env=cmd.env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc


def bare_save(xml: Path, work: Path) -> float:
    state = work / "bare"
    seen = log_end(state / "serial0.log")
    proc = bare_boot(xml, state)
    qmp = QMP.connect(str(state / "qmp.sock"), timeout=30)
    qmp.execute("cont")
    wait_for(state / "serial0.log", "genid: ", after=seen)
    target = work / "bare.stream"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    t = time.perf_counter()
    qmp.execute("stop")
    qmp.execute("migrate-set-capabilities", {"capabilities": [{"capability": "events",
                                                               "state": True}]})
    qmp.execute("migrate-set-parameters", {"max-bandwidth": (1 << 63) - 1})
    qmp.execute("getfd", {"fdname": "f"}, fds=[fd])
    qmp.execute("migrate", {"uri": "fd:f"})
    while True:
        ev = qmp.wait_event(("MIGRATION",), 60)
        if ev and ev["data"]["status"] in ("completed", "failed"):
            break
    os.fsync(fd)
    elapsed = time.perf_counter() - t
    os.close(fd)
    SIZES["bare"].append(target.stat().st_size)
    qmp.execute("quit")
    proc.wait()
    qmp.close()
    return elapsed


def bare_restore(xml: Path, work: Path) -> float:
    state = work / "bare"
    fd = os.open(work / "bare.stream", os.O_RDONLY)
    t = time.perf_counter()
    proc = bare_boot(xml, state, incoming=True)
    qmp = QMP.connect(str(state / "qmp.sock"), timeout=30)
    qmp.execute("migrate-set-capabilities", {"capabilities": [{"capability": "events",
                                                               "state": True}]})
    qmp.execute("getfd", {"fdname": "f"}, fds=[fd])
    qmp.execute("migrate-incoming", {"uri": "fd:f"})
    while True:
        ev = qmp.wait_event(("MIGRATION",), 60)
        if ev and ev["data"]["status"] in ("completed", "failed"):
            break
    qmp.execute("cont")
    elapsed = time.perf_counter() - t
    os.close(fd)
    qmp.execute("quit")
    proc.wait()
    qmp.close()
    return elapsed


def qemuwrap_save_restore(xml: Path, work: Path) -> tuple[float, float]:
    root = work / "state"
    seen = log_end(root / "bench" / "serial0.log")
    qw("start", str(xml), "--state-dir", str(root))
    wait_for(root / "bench" / "serial0.log", "genid: ", after=seen)
    save = work / "bench.save"
    t = time.perf_counter()
    qw("save", "bench", str(save), "--state-dir", str(root))
    t_save = time.perf_counter() - t
    SIZES["qemuwrap"].append(save.stat().st_size)
    t = time.perf_counter()
    qw("restore", str(save), "--xml", str(xml), "--state-dir", str(root))
    t_restore = time.perf_counter() - t
    qw("destroy", "bench", "--state-dir", str(root))
    save.unlink()
    return t_save, t_restore


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    if not shutil.which("qemu-system-x86_64"):
        print("qemu-system-x86_64 is not installed")
        return 1
    image = demoguest.build(Path(os.environ.get("QEMUWRAP_DEMO_DIR") or demoguest.DEFAULT_DIR))
    work = Path(tempfile.mkdtemp(prefix="qemuwrap-bench-sr-", dir="/var/tmp"))
    try:
        xml = demo_xml(work / "bench.xml", image, name="bench", genid=GENID)
        rows: dict[str, list[float]] = {"bare save": [], "qemuwrap save": [],
                                        "bare restore": [], "qemuwrap restore": []}
        for _ in range(args.runs):
            rows["bare save"].append(bare_save(xml, work))
            rows["bare restore"].append(bare_restore(xml, work))
            s, r = qemuwrap_save_restore(xml, work)
            rows["qemuwrap save"].append(s)
            rows["qemuwrap restore"].append(r)
        med = {k: statistics.median(v) * 1000 for k, v in rows.items()}
        bare_mib = statistics.median(SIZES["bare"]) / 2**20
        qw_mib = statistics.median(SIZES["qemuwrap"]) / 2**20
        print(f"demo guest, 256 MiB RAM, streams {bare_mib:.0f} MiB (bare) and {qw_mib:.0f} "
              f"MiB (qemuwrap file); medians of {args.runs} runs")
        print(f"save:    bare QEMU (fd, uncapped, fsync) {med['bare save']:6.0f} ms   "
              f"qemuwrap save    {med['qemuwrap save']:6.0f} ms   "
              f"ratio {med['qemuwrap save'] / med['bare save']:.2f}x")
        print(f"restore: bare -incoming to running      {med['bare restore']:6.0f} ms   "
              f"qemuwrap restore {med['qemuwrap restore']:6.0f} ms   "
              f"+{med['qemuwrap restore'] - med['bare restore']:.0f} ms")
    finally:
        subprocess.run([*QW, "destroy", "bench", "--state-dir", str(work / "state")],
                       capture_output=True, env=ENV)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
