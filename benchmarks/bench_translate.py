"""Translation speed: in-process translations per second, and the dry-run CLI's wall time.

Run: .venv/bin/python benchmarks/bench_translate.py [--seconds N] [--runs N]
Figures only: nothing here passes or fails. The CLI is timed with the real capabilities
cache (probed once before timing), as a user's repeated dry runs would see it.
"""

from __future__ import annotations

import argparse
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

from qemuwrap.conf import guid  # noqa: E402
from qemuwrap.conf.domain import loads  # noqa: E402
from qemuwrap.qemu.capabilities import Capabilities  # noqa: E402
from qemuwrap.qemu.command import build_command  # noqa: E402

GENID = ROOT / "data" / "xml2argv" / "genid.xml"
CAPS = ROOT / "data" / "caps" / "qemu-7.2.0.x86_64.json"


def translations_per_second(seconds: float) -> tuple[float, float]:
    """(best, median) rate over rounds of 200 translations: parse, model, validate,
    build, format as .args. The best round is the least disturbed by the rest of the
    machine (this is a shared VM); the median is shown beside it."""
    xml = GENID.read_bytes()
    caps = Capabilities.from_file(CAPS)
    rates, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        for _ in range(200):
            dom = loads(xml, random=guid.system_random)
            build_command(dom, caps, "/run/qemuwrap/QEMUGuest1").to_args()
        rates.append(200 / (time.perf_counter() - t))
    return max(rates), statistics.median(rates)


def wall_times(argv: list[str], runs: int, env: dict) -> list[float]:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
        times.append(time.perf_counter() - t)
    return times


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--runs", type=int, default=40)
    args = ap.parse_args()
    best, median = translations_per_second(args.seconds)
    print(f"in-process translations of genid.xml: {best:,.0f}/s best round, "
          f"{median:,.0f}/s median (one core)")
    cache = tempfile.mkdtemp(prefix="qemuwrap-bench-")
    env = {**os.environ, "QEMUWRAP_CACHE_DIR": cache}
    exe = shutil.which("qemuwrap", path=str(Path(sys.executable).parent)) or "qemuwrap"
    cli = [exe, "dry-run", str(GENID)]
    if shutil.which("qemu-system-x86_64"):
        wall_times(cli, 1, env)  # probe once; the timed runs hit the cache
        t = wall_times(cli, args.runs, env)
        print(f"dry-run CLI (capabilities cached): median {statistics.median(t) * 1000:.1f} ms, "
              f"min {min(t) * 1000:.1f} ms over {args.runs} runs")
    t = wall_times([*cli, "--caps", str(CAPS)], args.runs, env)
    print(f"dry-run CLI (--caps file):          median {statistics.median(t) * 1000:.1f} ms, "
          f"min {min(t) * 1000:.1f} ms over {args.runs} runs")
    t = wall_times([sys.executable, "-c", "pass"], args.runs, env)
    print(f"bare python for comparison:         median {statistics.median(t) * 1000:.1f} ms")
    shutil.rmtree(cache, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
