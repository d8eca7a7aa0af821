"""The ``qemuwrap`` command: argument parsing, one-line errors, exit statuses.

Exit status: 0 success, 1 invalid or unsupported input (or a failed operation),
2 usage. Heavy modules (lxml, qemu.qmp, asyncio) are imported only by the
subcommands that need them, so a dry run starts fast.
"""

from __future__ import annotations

import argparse
import os
import sys

from qemuwrap.errors import QemuwrapError, UsageError


def translate(path: str, *, caps_file: str | None = None, state_dir: str | None = None):
    """Read a definition and build its command: (raw XML, domain, command)."""
    from qemuwrap.conf.domain import load
    from qemuwrap.qemu import capabilities
    from qemuwrap.qemu.command import build_command
    from qemuwrap.statedir import guest_dir

    data, dom = load(path)
    caps = capabilities.for_domain(dom.devices.emulator, caps_file)
    return data, dom, build_command(dom, caps, guest_dir(dom.name, state_dir))


def cmd_dry_run(args) -> int:
    data, dom, cmd = translate(args.file, caps_file=args.caps, state_dir=args.state_dir)
    if dom.genid_generated:
        print(f"qemuwrap: {args.file}: note: genid {dom.genid_str} was generated for this "
              "dry run and is not saved", file=sys.stderr)
    if args.json:
        import json

        print(json.dumps(cmd.to_json(), indent=2))
    elif args.explain:
        sys.stdout.write(cmd.explain(data))
    else:
        sys.stdout.write(cmd.to_args())
    return 0


def cmd_validate(args) -> int:
    from qemuwrap.conf import schema

    schema.validate_file(args.file)
    translate(args.file, caps_file=args.caps, state_dir=args.state_dir)
    print(f"{args.file}: valid")
    return 0


def _options(args):
    from qemuwrap.launcher import Options

    return Options(state_dir=args.state_dir,
                   shutdown_timeout=getattr(args, "shutdown_timeout", 30.0),
                   transient=getattr(args, "transient", False),
                   console=getattr(args, "console", False), caps=getattr(args, "caps", None))


def cmd_run(args) -> int:
    from qemuwrap import launcher

    return launcher.run(args.file, _options(args))


def _print_genid_change(rec: dict) -> None:
    print(f"genid: {rec.get('previous_genid') or 'none'} -> {rec.get('genid') or 'none'}")


def cmd_save(args) -> int:
    from qemuwrap import lifecycle

    print(lifecycle.save(args.name, args.file, _options(args)))
    return 0


def cmd_restore(args) -> int:
    from qemuwrap import lifecycle

    rec = lifecycle.restore(args.file, _options(args), xml=args.xml)
    print(f"guest '{rec['name']}' restored: QEMU pid {rec['qemu_pid']}")
    _print_genid_change(rec)
    return 0


def cmd_clone(args) -> int:
    from qemuwrap import clone

    result = clone.clone(args.file, args.new_file, args.new_name, copy=args.copy,
                         state_dir=args.state_dir)
    for line in clone.describe(result):
        print(line)
    for note in result.warnings:
        print(f"qemuwrap: {args.new_file}: note: {note}", file=sys.stderr)
    return 0


def cmd_demo_build(args) -> int:
    from qemuwrap import demoguest

    try:
        image = demoguest.build(demoguest.Path(args.dir))
    except demoguest.DemoBuildError as exc:
        raise QemuwrapError(str(exc)) from None
    print(f"demo guest: {image.kernel} {image.initrd}")
    return 0


def cmd_snapshot(args) -> int:
    from qemuwrap import lifecycle

    opts = _options(args)
    if args.action == "list":
        for snap in lifecycle.snapshot_list(args.name, opts):
            print(snap["name"])
        return 0
    if not args.snap:
        raise UsageError(f"snapshot {args.action} needs a snapshot name")
    if args.action == "create":
        print(lifecycle.snapshot_create(args.name, args.snap, opts))
    elif args.action == "delete":
        print(lifecycle.snapshot_delete(args.name, args.snap, opts))
    else:
        rec = lifecycle.snapshot_revert(args.name, args.snap, opts)
        print(f"guest '{rec['name']}' reverted to snapshot '{args.snap}': QEMU pid "
              f"{rec['qemu_pid']}")
        _print_genid_change(rec)
    return 0


def cmd_start(args) -> int:
    from qemuwrap import launcher

    rec = launcher.start(args.file, _options(args))
    print(f"guest '{rec['name']}' started: QEMU pid {rec['qemu_pid']}, "
          f"genid {rec['genid'] or 'none'}, state {rec['state_dir']}")
    return 0


def cmd_adopt(args) -> int:
    from qemuwrap import launcher

    return launcher.adopt(args.name, _options(args))


def cmd_shutdown(args) -> int:
    from qemuwrap import launcher

    print(launcher.shutdown(args.name, _options(args)))
    return 0


def cmd_destroy(args) -> int:
    from qemuwrap import launcher

    print(launcher.destroy(args.name, _options(args)))
    return 0


def cmd_status(args) -> int:
    import json

    from qemuwrap import launcher

    st = launcher.status(args.name, _options(args))
    if args.json:
        print(json.dumps(st, indent=2))
    else:
        for key, value in st.items():
            print(f"{key + ':':16}{'' if value is None else value}")
    return 0


def cmd_list(args) -> int:
    import json

    from qemuwrap import launcher

    guests = launcher.list_guests(_options(args))
    if args.json:
        print(json.dumps(guests, indent=2))
        return 0
    print(f"{'NAME':20} {'STATE':12} {'QEMU PID':>8}  GENID")
    for g in guests:
        print(f"{g['name']:20} {g['state']:12} {g['qemu_pid']:>8}  {g['genid'] or '-'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qemuwrap", description="Start QEMU guests from "
                                     "libvirt domain XML, without libvirtd.")
    # prog given: argparse would otherwise build a help formatter (and import shutil).
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                prog="qemuwrap")

    def common(p):
        p.add_argument("file", metavar="FILE.xml", help="domain definition")
        p.add_argument("--caps", metavar="FILE", help="use this QEMU capabilities file "
                       "instead of probing the emulator")
        p.add_argument("--state-dir", metavar="DIR", help="state directory root "
                       "(default: $QEMUWRAP_STATE_DIR, /run/qemuwrap or "
                       "$XDG_RUNTIME_DIR/qemuwrap)")

    p = sub.add_parser("dry-run", help="print the QEMU command for FILE.xml, run nothing")
    common(p)
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help='print {"env": ..., "argv": ...}')
    fmt.add_argument("--explain", action="store_true",
                     help="print each option beside the XML element it came from")
    p.set_defaults(func=cmd_dry_run)

    p = sub.add_parser("validate", help="check FILE.xml against the schema and this QEMU")
    common(p)
    p.set_defaults(func=cmd_validate)

    def lifecycle(p):
        p.add_argument("--shutdown-timeout", type=float, default=30.0, metavar="SECONDS",
                       help="how long a guest gets to power off before it is forced off "
                            "(default 30)")

    p = sub.add_parser("run", help="start FILE.xml and supervise it in the foreground")
    common(p)
    lifecycle(p)
    p.add_argument("--transient", action="store_true",
                   help="start even if a generated genid cannot be saved into FILE.xml")
    p.add_argument("--console", action="store_true",
                   help="show the guest's serial console (port 0, pty) on stdout")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("start", help="start FILE.xml with a supervisor in the background")
    common(p)
    lifecycle(p)
    p.add_argument("--transient", action="store_true",
                   help="start even if a generated genid cannot be saved into FILE.xml")
    p.set_defaults(func=cmd_start)

    def by_name(p):
        p.add_argument("name", metavar="NAME", help="guest name")
        p.add_argument("--state-dir", metavar="DIR", help="state directory root")

    for cmd, func, text in (("shutdown", cmd_shutdown, "power the guest off (ACPI), force "
                             "after the timeout"),
                            ("destroy", cmd_destroy, "stop the guest's QEMU now"),
                            ("adopt", cmd_adopt, "supervise a guest whose supervisor died")):
        p = sub.add_parser(cmd, help=text)
        by_name(p)
        if cmd != "destroy":
            lifecycle(p)
        if cmd == "adopt":
            p.add_argument("--caps", metavar="FILE", help=argparse.SUPPRESS)
        p.set_defaults(func=func)

    p = sub.add_parser("save", help="save a running guest's state to FILE and stop it")
    by_name(p)
    p.add_argument("file", metavar="FILE", help="save file to write")
    p.set_defaults(func=cmd_save)

    p = sub.add_parser("restore", help="start a saved guest again, with a new genid")
    p.add_argument("file", metavar="FILE", help="save file written by 'qemuwrap save'")
    p.add_argument("--xml", metavar="FILE.xml", help="definition to restore with "
                   "(default: the one the guest was started from)")
    p.add_argument("--state-dir", metavar="DIR", help="state directory root")
    p.add_argument("--transient", action="store_true",
                   help="restore even if the new genid cannot be saved into the definition")
    p.add_argument("--caps", metavar="FILE", help=argparse.SUPPRESS)
    lifecycle(p)
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser("snapshot", help="internal snapshots on qcow2 disks: create, list, "
                       "revert (new genid), delete")
    p.add_argument("action", choices=("create", "list", "revert", "delete"))
    by_name(p)
    p.add_argument("snap", metavar="SNAP", nargs="?", help="snapshot name")
    p.add_argument("--transient", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--caps", metavar="FILE", help=argparse.SUPPRESS)
    lifecycle(p)
    p.set_defaults(func=cmd_snapshot)

    p = sub.add_parser("clone", help="copy a guest: new name, uuid, genid and MACs, "
                       "disks as qcow2 overlays (or --copy)")
    p.add_argument("file", metavar="SRC.xml", help="definition of the guest to clone")
    p.add_argument("new_file", metavar="NEW.xml", help="definition to write (must not exist)")
    p.add_argument("--name", dest="new_name", metavar="NEW", required=True,
                   help="the clone's guest name")
    p.add_argument("--copy", action="store_true", help="copy the writable disks in full "
                   "instead of making qcow2 overlays backed by them")
    p.add_argument("--state-dir", metavar="DIR", help="state directory root (where to "
                   "check that the source guest is not running)")
    p.set_defaults(func=cmd_clone)

    p = sub.add_parser("demo-build", help="build the demo guest (Debian's cloud kernel and "
                       "busybox) that prints its generation ID")
    p.add_argument("dir", nargs="?", default="/var/tmp/qemuwrap-demo",
                   help="where to put it (default /var/tmp/qemuwrap-demo, as "
                        "examples/demo.xml expects)")
    p.set_defaults(func=cmd_demo_build)

    p = sub.add_parser("status", help="show a guest's state")
    by_name(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("list", help="list running guests")
    p.add_argument("--state-dir", metavar="DIR", help="state directory root")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except QemuwrapError as exc:
        where = getattr(args, "name", None) or getattr(args, "file", None)
        prefix = f"qemuwrap: {where}: " if where else "qemuwrap: "
        for line in str(exc).split("\n"):  # one line per problem (see errors.Problems)
            print(prefix + line, file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `qemuwrap status NAME | head -1`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
