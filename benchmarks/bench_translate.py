"""Translation speed: in-process translations per second, and the dry-run CLI's wall time
against libvirt's own translation (``virsh domxml-to-native``, the peer) in the same run.

Run: .venv/bin/python benchmarks/bench_translate.py [--seconds N] [--runs N]
Figures only: nothing here passes or fails. Two definitions: the seed's genid.xml (small,
pc) and a virt-install definition as users bring it (win11: q35 with 14 root ports, UEFI,
TPM, SCSI; ``data/xml2argv/virt-install-win11-uefi-headless.xml``). The CLI is timed with
the real capabilities cache (probed once before timing), as a user's repeated dry runs
would see it; libvirt with its embedded driver (``qemu:///embed``, no daemon) and
/dev/kvm usable, as its README says (~40 ms a call; ~40 s without).
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
WIN11 = ROOT / "data" / "xml2argv" / "virt-install-win11-uefi-headless.xml"
CAPS = ROOT / "data" / "caps" / "qemu-7.2.0.x86_64.json"


def translations_per_second(path: Path, seconds: float) -> tuple[float, float]:
    """(best, median) rate over rounds of 50 translations: parse, model, validate,
    assign addresses, build, format as .args. The best round is the least disturbed by
    the rest of the machine (this is a shared VM); the median is shown beside it."""
    xml = path.read_bytes()
    caps = Capabilities.from_file(CAPS)
    rates, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        for _ in range(50):
            dom = loads(xml, random=guid.system_random)
            build_command(dom, caps, "/run/qemuwrap/QEMUGuest1").to_args()
        rates.append(50 / (time.perf_counter() - t))
    return max(rates), statistics.median(rates)


def wall_times(argv: list[str], runs: int, env: dict) -> list[float]:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
        times.append(time.perf_counter() - t)
    return times


def libvirt_argv(path: Path, root: str) -> list[str] | None:
    """libvirt's translation of ``path`` as a command, or None without virsh."""
    if shutil.which("virsh") is None:
        return None
    return ["virsh", "-q", "-c", f"qemu:///embed?root={root}", "domxml-to-native",
            "qemu-argv", str(path)]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    cache = tempfile.mkdtemp(prefix="qemuwrap-bench-")
    env = {**os.environ, "QEMUWRAP_CACHE_DIR": cache}
    exe = shutil.which("qemuwrap", path=str(Path(sys.executable).parent)) or "qemuwrap"
    for path in (GENID, WIN11):
        best, median = translations_per_second(path, args.seconds)
        print(f"{path.name}: in-process {best:,.0f}/s best round, {median:,.0f}/s median "
              "(one core)")
        cli = [exe, "dry-run", "--no-host-check", str(path)]
        if shutil.which("qemu-system-x86_64"):
            wall_times(cli, 1, env)  # probe once; the timed runs hit the cache
        else:
            cli += ["--caps", str(CAPS)]
        peer = libvirt_argv(path, cache + "/libvirt")
        if peer is not None:
            wall_times(peer, 1, env)  # libvirt probes QEMU once too, into its root
        ours, theirs = [], []
        for _ in range(args.runs):  # interleaved: both see the same machine
            ours += wall_times(cli, 1, env)
            if peer is not None:
                theirs += wall_times(peer, 1, env)
        line = f"  dry-run CLI: median {statistics.median(ours) * 1000:.1f} ms"
        if theirs:
            ratio = statistics.median(ours) / statistics.median(theirs)
            line += (f"; libvirt domxml-to-native: median "
                     f"{statistics.median(theirs) * 1000:.1f} ms; ratio {ratio:.2f}")
        print(line + f" ({args.runs} interleaved runs)")
    t = wall_times([sys.executable, "-c", "pass"], args.runs, env)
    print(f"bare python for comparison: median {statistics.median(t) * 1000:.1f} ms")
    shutil.rmtree(cache, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
