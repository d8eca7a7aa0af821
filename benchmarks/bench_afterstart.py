"""What the after-start work costs a launch (issue 7): CPU pinning and schedulers on
QEMU's threads, and the post-start QMP commands, on the real QEMU (TCG).

Run: .venv/bin/python benchmarks/bench_afterstart.py [--runs N]
Figures only, nothing passes or fails. Needs qemu-system-x86_64, two host CPUs and the
demo guest (built on first use into /var/tmp/qemuwrap-demo).

- the step itself: ``runtime/afterstart.run`` on a paused QEMU (query-cpus-fast,
  /proc/PID/task, sched_setaffinity/sched_setscheduler on each thread, set_link,
  qom-set), timed in this process against a QMP round trip (``query-status``) on the
  same QEMU;
- a whole ``qemuwrap start`` (exec until the guest runs) of the demo guest with 2 vCPUs,
  without and with ``<vcpu cpuset>``/``<cputune>``/``<link state='down'/>``/``<stats>``,
  against bare QEMU (exec until QMP greets) with the tuned guest's argv; interleaved
  runs, medians.
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
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_launcher import ENV, QW, bare_qemu, qemuwrap_start  # noqa: E402

from qemuwrap import demoguest  # noqa: E402
from qemuwrap.conf.domain import load  # noqa: E402
from qemuwrap.qemu import afterstart as plan_after_start  # noqa: E402
from qemuwrap.qemu import capabilities  # noqa: E402
from qemuwrap.qemu.command import build_command  # noqa: E402
from qemuwrap.runtime import afterstart  # noqa: E402
from qemuwrap.runtime.qmp import QMP  # noqa: E402

from conftest import demo_xml  # noqa: E402

TUNING = ("<vcpu cpuset='0'>2</vcpu><cputune><vcpupin vcpu='1' cpuset='1'/>"
          "<emulatorpin cpuset='1'/><vcpusched vcpus='0' scheduler='batch'/></cputune>")
DEVICES = ("<interface type='user'><model type='virtio'/><link state='down'/></interface>"
           "<memballoon model='virtio'><stats period='7'/></memballoon>")


def definition(path: Path, image, name: str, *, tuned: bool) -> Path:
    demo_xml(path, image, name=name, genid="e9392370-2917-565e-692b-d057f46512d6")
    text = path.read_text()
    if tuned:
        text = text.replace("<vcpu>1</vcpu>", TUNING).replace(
            "<memballoon model='none'/>", DEVICES)
    else:
        text = text.replace("<vcpu>1</vcpu>", "<vcpu>2</vcpu>").replace(
            "<memballoon model='none'/>", "<interface type='user'><model type='virtio'/>"
            "</interface><memballoon model='virtio'/>")
    path.write_text(text)
    return path


class Paused:
    """A bare QEMU of the definition, paused, with its QMP monitor: what the supervisor
    has in hand when it runs the after-start step."""

    def __init__(self, xml: Path, state: Path):
        _data, self.dom = load(str(xml))
        cmd = build_command(self.dom, capabilities.for_domain(self.dom.devices.emulator, None),
                            state)
        state.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(cmd.argv, env=cmd.env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.pid = self.proc.pid
        self.qmp = QMP.connect(str(state / "qmp.sock"), timeout=60,
                               alive=lambda: self.proc.poll() is None)
        self.work = plan_after_start.plan(self.dom)

    def execute(self, command: str, args: dict | None = None, *, timeout: float = 5.0):
        return self.qmp.execute(command, args, timeout=timeout)

    def close(self) -> None:
        self.qmp.close()
        self.proc.kill()
        self.proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    if not shutil.which("qemu-system-x86_64"):
        print("qemu-system-x86_64 is not installed")
        return 1
    if not {0, 1} <= os.sched_getaffinity(0):
        print("needs host CPUs 0 and 1")
        return 1
    image = demoguest.build(Path(os.environ.get("QEMUWRAP_DEMO_DIR") or demoguest.DEFAULT_DIR))
    work = Path(tempfile.mkdtemp(prefix="qemuwrap-bench-"))
    root = work / "state"
    try:
        plain = definition(work / "plain.xml", image, "plain", tuned=False)
        tuned = definition(work / "tuned.xml", image, "tuned", tuned=True)
        capabilities.for_domain("/usr/bin/qemu-system-x86_64", None)  # warm the cache

        step, roundtrip, said = [], [], []
        for i in range(args.runs):
            guest = Paused(tuned, work / f"paused{i}")
            try:
                t = time.perf_counter()
                guest.execute("query-status")
                roundtrip.append(time.perf_counter() - t)
                t = time.perf_counter()
                afterstart.run(guest, guest.work, said.append)
                step.append(time.perf_counter() - t)
            finally:
                guest.close()
        s, q = statistics.median(step) * 1000, statistics.median(roundtrip) * 1000
        print(f"{said[-1]}")
        print(f"  that step: median {s:.2f} ms = {s / q:.1f} QMP round trips "
              f"({q:.2f} ms each), {args.runs} runs")

        bare, plain_run, tuned_run = [], [], []
        for _ in range(args.runs):
            bare.append(bare_qemu(tuned, work / "bare"))
            plain_run.append(qemuwrap_start(plain, root, "plain")[1])
            tuned_run.append(qemuwrap_start(tuned, root, "tuned")[1])
        b = statistics.median(bare) * 1000
        p = statistics.median(plain_run) * 1000
        t_ = statistics.median(tuned_run) * 1000
        print(f"bare qemu exec -> QMP ready (tuned argv):   median {b:.0f} ms")
        print(f"qemuwrap start -> running, no tuning:      median {p:.0f} ms ({p / b:.2f}x bare)")
        print(f"qemuwrap start -> running, with tuning:    median {t_:.0f} ms ({t_ / b:.2f}x "
              f"bare, {t_ - p:+.0f} ms against no tuning)")
    finally:
        for name in ("plain", "tuned"):
            subprocess.run([*QW, "destroy", name, "--state-dir", str(root)],
                           capture_output=True, env=ENV)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
