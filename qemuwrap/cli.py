"""The ``qemuwrap`` command: argument parsing, one-line errors, exit statuses.

Exit status: 0 success, 1 invalid or unsupported input (or a failed operation),
2 usage. Heavy modules (lxml, qemu.qmp, asyncio) are imported only by the
subcommands that need them, so a dry run starts fast.
"""

from __future__ import annotations

import argparse
import sys

from qemuwrap.errors import QemuwrapError


def _caps_for(dom, caps_file: str | None):
    from qemuwrap.qemu import capabilities

    if caps_file:
        return capabilities.Capabilities.from_file(caps_file)
    emulator = dom.devices.emulator or "/usr/bin/qemu-system-x86_64"
    return capabilities.load(emulator)


def translate(path: str, *, caps_file: str | None = None, state_dir: str | None = None):
    """Read a definition and build its command: (raw XML, domain, command)."""
    from qemuwrap.conf.domain import load
    from qemuwrap.qemu.command import build_command
    from qemuwrap.statedir import guest_dir

    data, dom = load(path)
    caps = _caps_for(dom, caps_file)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qemuwrap", description="Start QEMU guests from "
                                     "libvirt domain XML, without libvirtd.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except QemuwrapError as exc:
        where = getattr(args, "file", None) or getattr(args, "name", None)
        prefix = f"qemuwrap: {where}: " if where else "qemuwrap: "
        print(prefix + str(exc).replace("\n", " "), file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        return 130
