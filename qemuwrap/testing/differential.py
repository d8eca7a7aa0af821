"""The differential harness: the same definitions through libvirt 9.0 and qemuwrap,
both machines booted paused under TCG, and what QEMU reports compared.

    python -m qemuwrap.testing.differential DIR [DIR...] [--jobs N] [--json OUT]
                                            [--only NAME] [--boot-timeout S] [--keep]

For each ``*.xml`` in the directories:

1. A working copy both tools get (``workcopy``, details in its docstring):
   1. kvm -> qemu (host-passthrough -> maximum); 2. every disk source -> a
   placeholder image, block -> file (not lun); 3. kernel -> a real kernel, initrd and
   dtb -> placeholders; 4. nvram -> scratch, ACPI table and fw_cfg files ->
   placeholders; 5. unix/file/pipe chardev sources and logs -> scratch (a listener
   for connect mode, a FIFO for pipe); 6. filesystem dirs, graphics sockets, ivshmem
   server sockets -> scratch.
2. libvirt's command: ``virsh -q -c qemu:///embed?root=ROOT domxml-to-native
   qemu-argv COPY`` (one embed root per job); qemuwrap's: ``python -m qemuwrap
   dry-run --json`` (``translate``). Each may refuse: libvirt's ``error:`` lines and
   qemuwrap's one-line messages are kept.
3. When both translate, both commands are made bootable the same way (``bootargv``,
   details in its docstring): 1. masterKey0 secret and -sandbox dropped; 2. tap and
   bridge netdevs -> user with the same id; 3. vsock vhostfd dropped; 4. the tools'
   directories created; 5. missing UEFI variable stores from OVMF's template; 6. -S
   ensured, the harness's QMP monitor added; 7. swtpm for TPM emulators (libvirt's
   null chardev -> socket); 8. host audio backends -> none; 9. window and terminal
   displays -> none; 10. no prealloc, no mem-lock. They boot one after the other,
   paused at ``-S`` (``boot``; each in its own network namespace when root, bounded
   by ``--boot-timeout``, killed afterwards).
4. Each QEMU's report (``collect``: QMP queries, ``info qtree``, QOM of machine and
   vCPU) becomes facts (``facts``: name, uuid, genid, machine, CPUs, memory, PCI
   tree by topology path, block devices, chardevs, NICs, USB, ISA …, tool-chosen
   names normalised away), and the two are compared (``compare``).
   When qemuwrap refuses what libvirt translates, qemuwrap's translation is rerun
   with ``--no-host-check`` and libvirt's command is booted alone, to tell refusals
   for this host only and commands this QEMU refuses anyway; differences are
   classified against libvirt's expected command line when the corpus has one
   (``classify``).
5. The raw figures, the classified ones and every difference are printed
   (``report``); ``--json OUT`` writes every result (outcome, messages, both argvs,
   differences and their classes) for later comparison.

Exit status: 0 when the run completed (whatever it found), 2 on bad usage or a
missing tool.
"""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import json
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qemuwrap.testing import bootargv, compare, facts, report, translate, workcopy
from qemuwrap.testing import classify as classify_
from qemuwrap.testing.boot import boot, netns_available


@dataclass
class Options:
    dirs: list[Path]
    jobs: int = 2
    json_out: Path | None = None
    only: list[str] | None = None
    boot_timeout: float = 60.0
    keep: bool = False
    virsh: str = "virsh"
    quiet: bool = False


def definitions(dirs: list[Path], only: list[str] | None) -> list[tuple[str, Path]]:
    """(name, path) of every ``*.xml``; names carry the directory when several are given."""
    found = []
    for d in dirs:
        for path in sorted(d.glob("*.xml")):
            if only and not any(fnmatch.fnmatchcase(path.stem, pattern) for pattern in only):
                continue
            name = path.stem if len(dirs) == 1 else f"{d.name}/{path.stem}"
            found.append((name, path))
    return found


class Harness:
    """One run: scratch space, a pool of libvirt embed roots, and the results."""

    def __init__(self, opts: Options, scratch: Path):
        self.opts = opts
        self.scratch = scratch
        self.netns = netns_available()
        self.roots: asyncio.Queue[Path] = asyncio.Queue()
        for n in range(opts.jobs):
            root = scratch / f"lv{n}"
            root.mkdir()
            self.roots.put_nowait(root)

    async def one(self, index: int, name: str, src: Path) -> dict[str, Any]:
        work = self.scratch / f"{index:04d}"
        work.mkdir()
        result: dict[str, Any] = {"name": name, "file": str(src), "libvirt": None,
                                  "qemuwrap": None, "boot": {}, "differences": [],
                                  "refusal_groups": [], "argv": {}}
        try:
            copy = workcopy.make(src, work)
        except (workcopy.WorkCopyError, OSError) as exc:
            result["outcome"] = "unreadable"
            result["error"] = str(exc)
            return result
        root = await self.roots.get()
        try:
            expected = classify_.expected_argv(src)
            lv = await translate.libvirt(copy.path, root, self.opts.virsh)
            qw = await translate.qemuwrap(copy.path, work / "s", src, work / "d")
            result["libvirt"], result["qemuwrap"] = lv.to_json(), qw.to_json()
            result["refusal_groups"] = [translate.refusal_group(m, src) for m in qw.messages]
            result["outcome"] = classify(lv.ok, qw.ok)
            result["expected_args"] = expected is not None
            if lv.ok and qw.ok:
                assert lv.translation is not None and qw.translation is not None
                await self._boot_both(result, copy, work, root, lv.translation,
                                      qw.translation)
                result["difference_classes"] = classify_.classify_differences(
                    result["differences"], expected=expected, libvirt=lv.translation.argv,
                    qemuwrap=qw.translation.argv, shared_transient=copy.shared_transient,
                    vcpus=copy.vcpus)
            elif lv.ok:
                assert lv.translation is not None
                rerun = await translate.qemuwrap(copy.path, work / "s2", src, work / "d2",
                                                 host_check=False)
                result["qemuwrap_no_host_check"] = rerun.to_json()
                # does libvirt's own command start here at all?
                await self._boot_side(result, "libvirt", lv.translation, [root], copy, work)
        finally:
            copy.close()
            self.roots.put_nowait(root)
            if not self.opts.keep:
                shutil.rmtree(work, ignore_errors=True)
        return result

    async def _boot_both(self, result: dict[str, Any], copy: workcopy.WorkCopy, work: Path,
                         root: Path, lv: bootargv.Translation,
                         qw: bootargv.Translation) -> None:
        ctx = facts.Context(macs=copy.macs, has_uuid=copy.has_uuid, genid=copy.genid,
                            scratch=str(work))
        reports = {}
        for side, trans, dirs in (("libvirt", lv, [root]),
                                  ("qemuwrap", qw, [work / "s", work / "d"])):
            raw = await self._boot_side(result, side, trans, dirs, copy, work)
            if raw is not None:
                try:
                    reports[side] = facts.normalise(raw, ctx)
                except Exception as exc:  # noqa: BLE001 - a report we cannot read
                    result["boot"][side].update(ok=False, error=f"unreadable report: {exc}")
        if self.opts.keep:
            for side, facts_of_side in reports.items():
                (work / f"{side}.facts.json").write_text(json.dumps(facts_of_side, indent=1))
        if len(reports) == 2:
            diffs = compare.compare(reports["libvirt"], reports["qemuwrap"])
            result["differences"] = [d.to_json() for d in diffs]
            result["outcome"] = "different" if diffs else "alike"
        else:
            result["outcome"] = "boot-failed"

    async def _boot_side(self, result: dict[str, Any], side: str,
                         trans: bootargv.Translation, dirs: list[Path],
                         copy: workcopy.WorkCopy, work: Path) -> dict[str, Any] | None:
        """One side's command made bootable and booted; its raw report, or None."""
        monitor = work / f"{side[0]}.qmp"
        argv = bootargv.bootable(trans.argv, tool_dirs=dirs, scratch=work,
                                 monitor=monitor, nvram_template=copy.nvram_template)
        result["argv"][side] = argv
        booted = await boot(argv, trans.env, monitor=monitor, log=work / f"{side}.log",
                            timeout=self.opts.boot_timeout, netns=self.netns,
                            tpm_sockets=bootargv.tpm_sockets(argv))
        result["boot"][side] = {"ok": booted.ok, "error": booted.error,
                                "seconds": booted.seconds, "warnings": booted.warnings}
        if booted.raw is not None and self.opts.keep:
            (work / f"{side}.raw.json").write_text(json.dumps(booted.raw, indent=1))
        return booted.raw


def classify(libvirt_ok: bool, qemuwrap_ok: bool) -> str:
    if libvirt_ok:
        return "translated" if qemuwrap_ok else "qemuwrap-refused"
    return "qemuwrap-only" if qemuwrap_ok else "both-refused"


async def run(opts: Options, defs: list[tuple[str, Path]], scratch: Path,
              progress=None) -> list[dict[str, Any]]:
    """Every definition through the harness, ``opts.jobs`` at a time, in input order."""
    main_task = asyncio.current_task()
    assert main_task is not None
    # SIGTERM as Ctrl-C: the tasks are cancelled and each stops what it started
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    harness = Harness(opts, scratch)
    slots = asyncio.Semaphore(opts.jobs)
    done = 0

    async def limited(i: int, name: str, path: Path) -> dict[str, Any]:
        nonlocal done
        async with slots:
            result = await harness.one(i, name, path)
        done += 1
        if progress is not None:
            progress(f"[{done}/{len(defs)}] {report.progress(result)}")
        return result

    return list(await asyncio.gather(*(limited(i, n, p) for i, (n, p) in enumerate(defs))))


def parse_args(argv: list[str] | None) -> Options:
    p = argparse.ArgumentParser(prog="python -m qemuwrap.testing.differential",
                                description="Compare qemuwrap's machines with libvirt's.")
    p.add_argument("dirs", nargs="+", type=Path, metavar="DIR",
                   help="directories of domain definitions (*.xml)")
    p.add_argument("--jobs", "-j", type=int, default=2, help="definitions at a time (2)")
    p.add_argument("--json", dest="json_out", type=Path, metavar="OUT",
                   help="write every result as JSON")
    p.add_argument("--only", action="append", metavar="NAME",
                   help="only definitions whose name matches (glob; repeatable)")
    p.add_argument("--boot-timeout", type=float, default=60.0, metavar="S",
                   help="seconds for one QEMU to start and report (60)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    p.add_argument("--virsh", default="virsh", help="the virsh to run")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    a = p.parse_args(argv)
    if a.jobs < 1:
        p.error("--jobs must be at least 1")
    for d in a.dirs:
        if not d.is_dir():
            p.error(f"{d}: not a directory")
    return Options(dirs=a.dirs, jobs=a.jobs, json_out=a.json_out, only=a.only,
                   boot_timeout=a.boot_timeout, keep=a.keep, virsh=a.virsh, quiet=a.quiet)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    for tool in (opts.virsh, "qemu-img"):
        if shutil.which(tool) is None:
            print(f"differential: '{tool}' is not installed (virsh: Debian package "
                  "libvirt-clients with libvirt-daemon-system; qemu-img: qemu-utils)",
                  file=sys.stderr)
            return 2
    warning = translate.kvm_warning()
    if warning:
        print(f"differential: warning: {warning}", file=sys.stderr)
    if not netns_available():
        print("differential: note: not root (or no unshare/ip): QEMUs share the network "
              "namespace, so fixed VNC/TCP ports can collide under --jobs > 1",
              file=sys.stderr)
    defs = definitions(opts.dirs, opts.only)
    if not defs:
        print("differential: no *.xml definitions found", file=sys.stderr)
        return 2
    scratch = Path(tempfile.mkdtemp(prefix="qwdiff-", dir="/tmp"))  # short: socket paths
    start = time.monotonic()
    try:
        results = asyncio.run(run(opts, defs, scratch, progress=None if opts.quiet else (
            lambda line: print(line, file=sys.stderr, flush=True))))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("differential: interrupted", file=sys.stderr)
        return 130
    finally:
        if opts.keep:
            print(f"differential: scratch kept in {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    elapsed = time.monotonic() - start
    summary = report.summarise(results)
    summary["seconds"] = round(elapsed, 1)
    summary["jobs"] = opts.jobs
    sys.stdout.write(report.text(results, summary))
    print(f"\n{len(results)} definitions in {elapsed:.0f} s with {opts.jobs} jobs")
    if opts.json_out is not None:
        opts.json_out.write_text(json.dumps({"summary": summary, "results": results},
                                            indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
