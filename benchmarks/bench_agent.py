"""A guest agent command on the demo guest: through its supervisor against the bare
exchange on the agent socket, side by side.

Run: .venv/bin/python benchmarks/bench_agent.py [--runs N]
Figures only, nothing passes or fails. Needs qemu-system-x86_64 and the demo guest built
with qemu-ga (Debian package qemu-guest-agent).

- bare: this process on the agent socket itself (``guestagent.command``: connect, the
  guest-sync-delimited handshake, guest-ping), the supervisor idle meanwhile.
- supervisor: the same command as an ``agent`` request on the control socket (the
  supervisor's worker thread does the bare exchange, the loop hands the reply back).
- ``qemuwrap agent``: the command's wall time (a new interpreter, the request, output).
- ``qemuwrap status``: with its agent probe (guest-ping, guest-network-get-interfaces)
  against ``status`` of the same guest without the probe (in-process, ``ask_agent``).
Interleaved runs (each first in turn), medians and 10th percentiles; ratios are against
the bare figure of the same run.
"""

from __future__ import annotations

import argparse
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

from qemuwrap import demoguest, guestagent  # noqa: E402
from qemuwrap.ops import guests  # noqa: E402
from qemuwrap.runtime import control  # noqa: E402

from conftest import demo_xml  # noqa: E402

QW = [sys.executable, "-m", "qemuwrap"]
ENV = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
       "PYTHONPATH": str(ROOT)}
CHANNEL = ("<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/>"
           "</channel>")
PING = '{"execute":"guest-ping"}'


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    image = demoguest.build(Path(os.environ.get("QEMUWRAP_DEMO_DIR")
                                 or demoguest.DEFAULT_DIR))
    if not image.agent:
        sys.exit("the demo image has no qemu-ga (apt-get install qemu-guest-agent)")
    with tempfile.TemporaryDirectory(prefix="qw-bench-agent-") as tmp:
        state = os.path.join(tmp, "state")
        xml = demo_xml(Path(tmp) / "demo.xml", image, extra_devices=CHANNEL)

        def qw(*words: str) -> subprocess.CompletedProcess:
            return subprocess.run([*QW, *words, "--state-dir", state], capture_output=True,
                                  text=True, check=True, env=ENV)

        qw("start", str(xml))
        try:
            gdir = guests.guest("demo", state)
            sock = gdir.file(f"channel.{guestagent.CHANNEL_NAME}")
            deadline = time.monotonic() + 60
            while True:  # until qemu-ga answers
                try:
                    guestagent.ping(sock, timeout=1)
                    break
                except guestagent.AgentError:
                    if time.monotonic() > deadline:
                        sys.exit("qemu-ga did not answer within 60 s")
            figures: dict[str, list[float]] = {k: [] for k in (
                "bare", "supervisor", "qemuwrap agent", "status", "status without agent")}
            request = {"request": "agent", "command": {"execute": "guest-ping"}, "timeout": 5}
            runs = {
                "bare": lambda: guestagent.command(sock, PING),
                "supervisor": lambda: control.request(gdir.file(control.SOCKET), request,
                                                      timeout=10),
                "qemuwrap agent": lambda: qw("agent", "demo", PING),
                "status": lambda: guests.status("demo", state),
                "status without agent": lambda: guests.status("demo", state, ask_agent=False),
            }
            order = list(runs)
            for i in range(args.runs):  # each goes first in turn: the guest's idle wake-up
                for name in order[i % len(order):] + order[:i % len(order)]:
                    figures[name].append(timed(runs[name]))
        finally:
            subprocess.run([*QW, "destroy", "demo", "--state-dir", state],
                           capture_output=True, env=ENV)
    bare = statistics.median(figures["bare"])
    bare_p10 = sorted(figures["bare"])[len(figures["bare"]) // 10]
    print(f"guest-ping on the demo guest (TCG), {args.runs} interleaved runs: median "
          "(and 10th percentile: the guest's vCPU wake-up under TCG is most of the spread)")
    for name, values in figures.items():
        med = statistics.median(values)
        p10 = sorted(values)[len(values) // 10]
        print(f"  {name:22} {med * 1000:8.2f} ms ({med / bare:5.1f}x bare)   "
              f"p10 {p10 * 1000:7.2f} ms ({p10 / bare_p10:5.1f}x bare)")


if __name__ == "__main__":
    main()
