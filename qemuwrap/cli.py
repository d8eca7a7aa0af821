"""The ``qemuwrap`` command: argument parsing, output (text or ``--json``), one-line
errors, exit statuses. Nothing else.

Exit status: 0 success, 1 invalid or unsupported input (or a failed operation),
2 usage; ``run`` (and ``shutdown``) 3 when QEMU crashed or the guest panicked, 4 when
the guest was stopped by force. Heavy modules are imported only by the subcommands
that need them, so a dry run starts fast (no asyncio, no lxml).

Global options (``--state-dir``, ``--caps``, ``--json``, ``-v``) are accepted before or
after the subcommand.
"""

from __future__ import annotations

import argparse
import os
import sys

from qemuwrap import __version__
from qemuwrap.errors import QemuwrapError, UsageError, debug, printable, set_debug
from qemuwrap.hints import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

#: Commands whose --json output is documented (README, "--json shapes").
JSON_COMMANDS = frozenset({"dry-run", "validate", "start", "save", "restore", "clone",
                           "snapshot", "status", "list", "shutdown", "destroy", "suspend",
                           "resume", "agent",
                           "net-define", "net-undefine", "net-start", "net-stop", "net-list",
                           "net-info"})


def _emit(args, data, lines) -> None:
    """``data`` as JSON with --json, else the text ``lines``."""
    if args.json:
        import json

        print(json.dumps(data, indent=2))
    else:
        for line in lines:
            print(line)


def translate(path: str, *, caps_file: str | None = None, state_dir: str | None = None,
              host_check: bool = True):
    """Read a definition and build its command: (raw XML, domain, command)."""
    from qemuwrap.conf.domain import load
    from qemuwrap.qemu import capabilities
    from qemuwrap.qemu.command import build_command
    from qemuwrap.statedir import guest_dir

    data, dom = load(path)
    caps = capabilities.for_domain(dom.devices.emulator, caps_file)
    if host_check:
        from qemuwrap.qemu.validate.host import drop_missing_optional, require_host

        for line in drop_missing_optional(dom):  # libvirt's startupPolicy
            print(f"qemuwrap: {printable(path)}: note: {line}", file=sys.stderr)
    gdir = guest_dir(dom.name, state_dir)
    cmd = build_command(dom, caps, gdir)
    if host_check:
        require_host(dom, cmd, gdir)  # what QEMU would otherwise fail on, here
    return data, dom, cmd


def cmd_dry_run(args) -> int:
    if args.json and args.explain:
        raise UsageError("--json and --explain exclude each other")
    data, dom, cmd = translate(args.file, caps_file=args.caps, state_dir=args.state_dir,
                               host_check=not args.no_host_check)
    if dom.genid_generated:
        print(f"qemuwrap: {printable(args.file)}: note: genid {dom.genid_str} was generated "
              "for this dry run and is not saved", file=sys.stderr)
    from qemuwrap.qemu.build import Paths
    from qemuwrap.qemu.companions import plan
    from qemuwrap.statedir import guest_dir

    companions = plan(dom, Paths(guest_dir(dom.name, args.state_dir)))
    if dom.uuid_generated and any(c.kind == "tap" for c in companions):
        print(f"qemuwrap: {printable(args.file)}: note: uuid {dom.uuid_str} was generated "
              "for this dry run and is not saved: a start names the taps from the uuid it "
              "saves", file=sys.stderr)
    if args.json:
        import json

        print(json.dumps({**cmd.to_json(), "companions": [c.to_json() for c in companions]},
                         indent=2))
        return 0
    # What runs beside QEMU, before it: as comments, so the output stays one command.
    for c in companions:
        print(f"# {c.headline()}")
    if args.explain:
        sys.stdout.write(cmd.explain(data))
        for c in companions:
            where = (f"line {c.source.line}: <{c.source.name}>" if c.source is not None
                     else "qemuwrap")
            print(f"# companion {c.kind} ({c.device})  # {where}: {c.why}")
        from qemuwrap.qemu import afterstart

        for line in afterstart.describe(afterstart.plan(dom)):  # what the supervisor sets
            print(line)
    else:
        sys.stdout.write(cmd.to_args())
    return 0


def cmd_validate(args) -> int:
    from qemuwrap.conf import schema

    # The model's checks first (every problem at once), then what only the schema catches.
    translate(args.file, caps_file=args.caps, state_dir=args.state_dir,
              host_check=not args.no_host_check)
    schema.validate_file(args.file)
    _emit(args, {"file": args.file, "valid": True}, [f"{printable(args.file)}: valid"])
    return 0


def _options(args):
    from qemuwrap.options import Options

    return Options(state_dir=args.state_dir,
                   shutdown_timeout=getattr(args, "shutdown_timeout", 30.0),
                   transient=getattr(args, "transient", False),
                   console=getattr(args, "console", False), caps=args.caps,
                   allow_duplicate_genid=getattr(args, "allow_duplicate_genid", False),
                   verbose=args.debug)


def cmd_run(args) -> int:
    from qemuwrap import launcher

    return launcher.run(args.file, _options(args))


def _started(record: dict) -> dict:
    """The JSON of a guest that was just started (start, restore, snapshot revert)."""
    qemu = record.get("qemu") or {}
    sup = record.get("supervisor") or {}
    return {"name": record["name"], "uuid": record["uuid"], "genid": record.get("genid"),
            "previous_genid": record.get("previous_genid"), "qemu_pid": qemu.get("pid"),
            "supervisor_pid": sup.get("pid"), "state_dir": record["state_dir"],
            "source": record.get("source"), "console": record.get("console"),
            "vnc": record.get("vnc")}


def _genid_change(info: dict) -> str:
    return f"genid: {info['previous_genid'] or 'none'} -> {info['genid'] or 'none'}"


def cmd_start(args) -> int:
    from qemuwrap import launcher

    info = _started(launcher.start(args.file, _options(args)))
    _emit(args, info, [f"guest '{printable(info['name'])}' started: QEMU pid "
                       f"{info['qemu_pid']}, genid {info['genid'] or 'none'}, state "
                       f"{printable(info['state_dir'])}"])
    return 0


def cmd_save(args) -> int:
    from qemuwrap.ops import save

    info = save.save(args.name, args.file, _options(args))
    genid = info["genid"] or "none"
    _emit(args, info, [f"guest '{printable(args.name)}' saved to {printable(info['file'])}",
                       f"genid: {genid} -> {genid} (unchanged; a restore gives the guest a "
                       "new one)"])
    return 0


def cmd_restore(args) -> int:
    from qemuwrap.ops import save

    info = _started(save.restore(args.file, _options(args), xml=args.xml))
    lines = [f"guest '{printable(info['name'])}' restored: QEMU pid {info['qemu_pid']}",
             _genid_change(info)]
    if args.xml is None and info["genid"] and not args.json:
        print(f"qemuwrap: {printable(args.file)}: note: restored from the definition stored "
              "in the save file; the new genid is not written to any definition file "
              "(pass --xml FILE.xml for that)", file=sys.stderr)
    _emit(args, info, lines)
    return 0


def cmd_clone(args) -> int:
    from qemuwrap import clone

    result = clone.clone(args.file, args.new_file, args.new_name, copy=args.copy,
                         state_dir=args.state_dir)
    data = {"file": result.path, "name": {"old": result.old_name, "new": result.new_name},
            "uuid": {"old": result.old_uuid, "new": result.new_uuid},
            "genid": {"old": result.old_genid, "new": result.new_genid},
            "macs": [{"old": o, "new": n} for o, n in result.macs],
            "disks": [{"target": d.target, "old": d.old_path, "new": d.new_path,
                       "format": d.format, "overlay": d.overlay} for d in result.disks],
            "nvram": None if result.nvram is None else {
                "old": result.nvram.old_path, "new": result.nvram.new_path,
                "copied": result.nvram.copied},
            "tpm": None if result.tpm is None else {
                "old": result.tpm.old_dir, "new": result.tpm.new_dir},
            "warnings": list(result.warnings)}
    _emit(args, data, clone.describe(result))
    if not args.json:
        for note in result.warnings:
            print(f"qemuwrap: {printable(args.new_file)}: note: {note}", file=sys.stderr)
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
    from qemuwrap.ops import snapshots

    opts = _options(args)
    if args.quiesce and args.action != "create":
        raise UsageError("--quiesce is for snapshot create")
    if args.action == "list":
        snaps = snapshots.snapshot_list(args.name, opts)
        _emit(args, snaps, [s["name"] for s in snaps])
        return 0
    if not args.snap:
        raise UsageError(f"snapshot {args.action} needs a snapshot name")
    name, snap = printable(args.name), printable(args.snap)
    if args.action == "create":
        info = snapshots.snapshot_create(args.name, args.snap, opts, quiesce=args.quiesce)
        genid = info["genid"] or "none"
        quiesced = (f" (guest file systems frozen meanwhile: {info['quiesced']})"
                    if args.quiesce else "")
        _emit(args, info, [f"snapshot '{snap}' of guest '{name}' created{quiesced}",
                           f"genid: {genid} -> {genid} (unchanged; a revert gives the guest "
                           "a new one)"])
    elif args.action == "delete":
        info = snapshots.snapshot_delete(args.name, args.snap, opts)
        _emit(args, info, [f"snapshot '{snap}' of guest '{name}' deleted"])
    else:
        info = _started(snapshots.snapshot_revert(args.name, args.snap, opts))
        info["snapshot"] = args.snap
        _emit(args, info, [f"guest '{name}' reverted to snapshot '{snap}': QEMU pid "
                           f"{info['qemu_pid']}", _genid_change(info)])
    return 0


def cmd_adopt(args) -> int:
    from qemuwrap import launcher

    return launcher.adopt(args.name, _options(args))


def cmd_shutdown(args) -> int:
    from qemuwrap.ops import guests

    info = guests.shutdown(args.name, args.state_dir, args.shutdown_timeout, args.mode)
    name = printable(args.name)
    text = {"acpi": f"guest '{name}' is shut down (it powered off)",
            "agent": f"guest '{name}' is shut down (it powered off, asked by its guest agent)",
            "forced": f"guest '{name}' did not power off within {args.shutdown_timeout:g} s; "
                      "forced off",
            "crashed": f"guest '{name}' ended by crashing"}[info["outcome"]]
    if info["exit_status"] and not args.json:
        print(f"qemuwrap: {name}: {text}", file=sys.stderr)
        return info["exit_status"]
    _emit(args, info, [text])
    return info["exit_status"]


def cmd_destroy(args) -> int:
    from qemuwrap.ops import guests

    info = guests.destroy(args.name, args.state_dir)
    _emit(args, info, [f"guest '{printable(args.name)}' destroyed"])
    return 0


def cmd_suspend(args) -> int:
    from qemuwrap.ops import guests

    fn = guests.suspend if args.command == "suspend" else guests.resume
    info = fn(args.name, args.state_dir)
    _emit(args, info, [f"guest '{printable(args.name)}' is {info['state']}"])
    return 0


def cmd_status(args) -> int:
    from qemuwrap.ops import guests

    st = guests.status(args.name, args.state_dir)
    lines = []
    for key, value in st.items():
        if key == "companions":
            value = ", ".join(f"{c['kind']} {c['id']} (pid {c['pid']})" for c in value)
        elif key == "addresses" and value is not None:
            value = "; ".join(f"{iface} {' '.join(found) or '-'}"
                              for iface, found in value.items()) or "-"
        lines.append(f"{key + ':':18}{'' if value is None else printable(str(value))}")
    _emit(args, st, lines)
    return 0


def cmd_list(args) -> int:
    from qemuwrap.ops import guests

    found = guests.list_guests(args.state_dir)
    lines = [f"{'NAME':20} {'STATE':12} {'QEMU PID':>8}  GENID"]
    lines += [f"{printable(g['name']):20} {g['state']:12} {g['qemu_pid']:>8}  "
              f"{g['genid'] or '-'}" for g in found]
    _emit(args, found, lines)
    return 0


def cmd_agent(args) -> int:
    from qemuwrap.ops import agent

    info = agent.command(args.name, args.state_dir, args.command_json, args.timeout)
    if args.json:
        _emit(args, info, [])
    elif info["reply"] is not None:  # as virsh prints it; nothing for a silent success
        import json

        print(json.dumps(info["reply"]))
    return 0


def cmd_console(args) -> int:
    from qemuwrap.ops import console

    _collect_again()
    return console.console(args.name, args.state_dir)


def cmd_logs(args) -> int:
    from qemuwrap.ops import console

    if args.follow:
        _collect_again()
    return console.logs(args.name, args.state_dir, follow=args.follow)


def cmd_completion(args) -> int:
    import shtab

    print(shtab.complete(build_parser(), shell=args.shell))
    return 0


# -- networks (libvirt's net-* commands) -----------------------------------------------
def cmd_net_define(args) -> int:
    from qemuwrap import networks

    net = networks.define(args.file)
    _emit(args, {"name": net.name, "uuid": net.uuid_str, "bridge": net.bridge,
                 "path": networks.definition_path(net.name)},
          [f"network '{net.name}' defined (bridge {net.bridge}) in "
           f"{printable(networks.definition_path(net.name))}"])
    return 0


def cmd_net_undefine(args) -> int:
    from qemuwrap import networks

    networks.undefine(args.name)
    _emit(args, {"name": args.name, "defined": False}, [f"network '{args.name}' undefined"])
    return 0


def cmd_net_start(args) -> int:
    from qemuwrap import networks

    info = networks.start(args.name, root=args.state_dir)
    _emit(args, info, [f"network '{args.name}' started (bridge {info.get('bridge')})"])
    return 0


def cmd_net_stop(args) -> int:
    from qemuwrap import networks

    networks.stop(args.name, root=args.state_dir)
    _emit(args, {"name": args.name, "state": "inactive"},
          [f"network '{args.name}' stopped"])
    return 0


def cmd_net_list(args) -> int:
    from qemuwrap import networks

    nets = networks.list_networks(root=args.state_dir)
    lines = [f"{'NAME':20} {'STATE':10} {'BRIDGE':12} {'FORWARD':8} PERSISTENT"]
    lines += [f"{n['name']:20} {n['state']:10} {n['bridge'] or '-':12} "
              f"{n['forward'] or '-':8} {'yes' if n['persistent'] else 'no'}" for n in nets]
    _emit(args, nets, lines)
    return 0


def cmd_net_info(args) -> int:
    from qemuwrap import networks

    info = networks.info(args.name, root=args.state_dir)
    _emit(args, info, [f"{k + ':':20}{'' if v is None else v}" for k, v in info.items()])
    return 0


def cmd_net_dumpxml(args) -> int:
    from qemuwrap import networks

    sys.stdout.write(networks.dumpxml(args.name, inactive=args.inactive, root=args.state_dir))
    return 0


def _global_options(p: argparse.ArgumentParser, *, top: bool) -> None:
    """Options every command takes, before or after the subcommand: on the subparsers
    their default is SUPPRESS, so a value given before the subcommand stays."""
    kw: dict = {} if top else {"default": argparse.SUPPRESS}
    p.add_argument("--state-dir", metavar="DIR", help="state directory root (default: "
                   "$QEMUWRAP_STATE_DIR, /run/qemuwrap as root, else "
                   "$XDG_RUNTIME_DIR/qemuwrap or /tmp/qemuwrap-UID)", **kw)
    p.add_argument("--caps", metavar="FILE", help="use this QEMU capabilities file "
                   "instead of probing the emulator", **kw)
    p.add_argument("--json", action="store_true", help="machine-readable output "
                   "(reporting commands; shapes in README)", **kw)
    p.add_argument("-v", "--debug", action="store_true", help="say what qemuwrap does, on "
                   "stderr", **kw)


def no_host_check(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-host-check", action="store_true",
                   help="translate only, as for another host: do not check that disk "
                        "images exist, socket paths fit, the state directory is usable")


def _definition(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE.xml", help="domain definition")


def _timeout(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shutdown-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="how long a guest gets to power off before it is forced off "
                        "(default 30)")


def _launch(p: argparse.ArgumentParser) -> None:
    _timeout(p)
    p.add_argument("--transient", action="store_true",
                   help="start even if a generated genid, uuid or MAC cannot be saved "
                        "into the definition")
    p.add_argument("--allow-duplicate-genid", action="store_true",
                   help="start even if another running guest has the same genid")


def _by_name(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="NAME", help="guest name")


def _network(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="NETWORK", help="network name")


def _args_dry_run(p: argparse.ArgumentParser) -> None:
    _definition(p)
    p.add_argument("--explain", action="store_true",
                   help="print each option beside the XML element it came from")
    no_host_check(p)


def _args_validate(p: argparse.ArgumentParser) -> None:
    _definition(p)
    no_host_check(p)


def _args_net_define(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="NETWORK.xml", help="libvirt network definition")


def _args_net_dumpxml(p: argparse.ArgumentParser) -> None:
    _network(p)
    p.add_argument("--inactive", action="store_true",
                   help="the stored definition, not the one it runs with")


def _args_run(p: argparse.ArgumentParser) -> None:
    _definition(p)
    _launch(p)
    p.add_argument("--console", action="store_true",
                   help="show the guest's serial console (port 0, pty) on stdout")


def _args_start(p: argparse.ArgumentParser) -> None:
    _definition(p)
    _launch(p)


def _args_shutdown(p: argparse.ArgumentParser) -> None:
    _by_name(p)
    _timeout(p)
    p.add_argument("--mode", choices=("acpi", "agent"), default="acpi",
                   help="how to ask the guest: acpi (the power button, default) or agent "
                        "(guest-shutdown through the guest agent)")


def _args_adopt(p: argparse.ArgumentParser) -> None:
    _by_name(p)
    _timeout(p)


def _args_save(p: argparse.ArgumentParser) -> None:
    _by_name(p)
    p.add_argument("file", metavar="FILE", help="save file to write")


def _args_restore(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="save file written by 'qemuwrap save'")
    p.add_argument("--xml", metavar="FILE.xml", help="definition to restore with (checked "
                   "against the saved one; the new genid is saved into it); default: the "
                   "definition stored in the save file")
    _launch(p)


def _args_snapshot(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("create", "list", "revert", "delete"))
    _by_name(p)
    p.add_argument("snap", metavar="SNAP", nargs="?", help="snapshot name")
    p.add_argument("--quiesce", action="store_true",
                   help="create: freeze the guest's file systems (guest agent) while the "
                        "snapshot is taken")
    _launch(p)


def _args_clone(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="SRC.xml", help="definition of the guest to clone")
    p.add_argument("new_file", metavar="NEW.xml", help="definition to write (must not exist)")
    p.add_argument("--name", dest="new_name", metavar="NEW", required=True,
                   help="the clone's guest name")
    p.add_argument("--copy", action="store_true", help="copy the writable disks in full "
                   "instead of making qcow2 overlays backed by them")


def _args_agent(p: argparse.ArgumentParser) -> None:
    _by_name(p)
    p.add_argument("command_json", metavar="JSON", help="the command, e.g. "
                   "'{\"execute\":\"guest-ping\"}'")
    p.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                   help="how long the agent gets to answer (default 5)")


def _args_logs(p: argparse.ArgumentParser) -> None:
    _by_name(p)
    p.add_argument("-f", "--follow", action="store_true", help="keep showing what is "
                   "appended")


def _args_demo_build(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", nargs="?", default="/var/tmp/qemuwrap-demo",
                   help="where to put it (default /var/tmp/qemuwrap-demo, as "
                        "examples/demo.xml expects)")


def _args_completion(p: argparse.ArgumentParser) -> None:
    p.add_argument("shell", choices=("bash", "zsh", "tcsh"))


def _no_args(p: argparse.ArgumentParser) -> None:
    pass


#: Every subcommand, in the order --help lists them: name, function, help text, and what
#: adds its own arguments.
COMMANDS: tuple[tuple[str, Callable[[Any], int], str,
                      Callable[[argparse.ArgumentParser], None]], ...] = (
    ("dry-run", cmd_dry_run, "print the QEMU command for FILE.xml, run nothing",
     _args_dry_run),
    ("validate", cmd_validate, "check FILE.xml against the schema and this QEMU",
     _args_validate),
    ("net-define", cmd_net_define, "store a libvirt <network> definition "
     "(/etc/qemuwrap/networks or $QEMUWRAP_CONFIG_DIR/networks)", _args_net_define),
    ("net-undefine", cmd_net_undefine, "remove a stopped network's definition", _network),
    ("net-start", cmd_net_start, "bring a network up: bridge, address, dnsmasq "
     "(DHCP, DNS), nftables NAT", _network),
    ("net-stop", cmd_net_stop, "take a network down, leaving nothing behind", _network),
    ("net-info", cmd_net_info, "a network's state, addresses, leases", _network),
    ("net-dumpxml", cmd_net_dumpxml, "print a network's definition", _args_net_dumpxml),
    ("net-list", cmd_net_list, "list networks, defined or active", _no_args),
    ("run", cmd_run, "start FILE.xml and supervise it in the foreground", _args_run),
    ("start", cmd_start, "start FILE.xml with a supervisor in the background", _args_start),
    ("shutdown", cmd_shutdown, "power the guest off (ACPI), force after the timeout; exit "
     "status 4 when it had to be forced", _args_shutdown),
    ("destroy", cmd_destroy, "stop the guest's QEMU now", _by_name),
    ("suspend", cmd_suspend, "pause the guest's vCPUs", _by_name),
    ("resume", cmd_suspend, "let a paused guest run again", _by_name),
    ("adopt", cmd_adopt, "supervise a guest whose supervisor died", _args_adopt),
    ("save", cmd_save, "save a running guest's state to FILE and stop it", _args_save),
    ("restore", cmd_restore, "start a saved guest again, with a new genid", _args_restore),
    ("snapshot", cmd_snapshot, "internal snapshots on qcow2 disks: create, list, revert "
     "(new genid), delete", _args_snapshot),
    ("clone", cmd_clone, "copy a guest: new name, uuid, genid and MACs, disks as qcow2 "
     "overlays (or --copy)", _args_clone),
    ("status", cmd_status, "show a guest's state (exit status 1 for a guest unknown here)",
     _by_name),
    ("list", cmd_list, "list running guests", _no_args),
    ("agent", cmd_agent, "send one command to the guest agent and print its reply (as "
     "virsh qemu-agent-command)", _args_agent),
    ("console", cmd_console, "attach to the guest's serial console (Ctrl-] leaves)",
     _by_name),
    ("logs", cmd_logs, "show the guest's logs (supervisor, QEMU, serial, companions)",
     _args_logs),
    ("demo-build", cmd_demo_build, "build the demo guest (Debian's cloud kernel and "
     "busybox) that prints its generation ID", _args_demo_build),
    ("completion", cmd_completion, "print a shell completion script (bash: "
     "'source <(qemuwrap completion bash)')", _args_completion),
)


def _terminal_columns() -> int:
    """``shutil.get_terminal_size().columns``, as shutil works it out (COLUMNS, else the
    terminal on stdout, else 80), without importing shutil: see :class:`_HelpFormatter`."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 80
    return columns or 80


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's own formatter, sized without importing shutil: argparse makes one for
    every argument added (to check its metavar), and shutil, imported for the terminal's
    width, brings bz2, lzma and fnmatch with it: 6 M instructions, 3 % of a dry run."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        if width is None:
            width = _terminal_columns() - 2
        super().__init__(prog, indent_increment, max_help_position, width)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser; ``only``: with that one subcommand, not all of them
    (see :func:`command_in`: the others' ~90 arguments cost a run ~40 M instructions,
    more than reading and translating a small definition)."""
    parser = argparse.ArgumentParser(prog="qemuwrap", description="Start QEMU guests from "
                                     "libvirt domain XML, without libvirtd.",
                                     formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"qemuwrap {__version__}")
    _global_options(parser, top=True)
    shared = argparse.ArgumentParser(add_help=False, formatter_class=_HelpFormatter)
    _global_options(shared, top=False)
    # prog given: argparse would otherwise build a help formatter (and import shutil).
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                prog="qemuwrap")
    for name, func, text, arguments in COMMANDS:
        if only is None or name == only:
            p = sub.add_parser(name, help=text, description=text, parents=[shared],
                               formatter_class=_HelpFormatter)
            p.set_defaults(func=func)
            arguments(p)
    return parser


#: The top-level options, and those of them that take a value.
_TOP_OPTIONS = ("--help", "--version", "--state-dir", "--caps", "--json", "--debug")
_TOP_VALUED = ("--state-dir", "--caps")


def command_in(argv: list[str]) -> str | None:
    """The subcommand ``argv`` names, found as argparse finds it (the first positional
    after the top-level options and their values); None when argv is anything else
    (help, no or an unknown command, a spelling this does not follow): the full parser
    then parses it, and says what is wrong."""
    names = {c[0] for c in COMMANDS}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in names:
            return arg
        if arg == "-v":
            i += 1
            continue
        if not arg.startswith("--"):
            return None
        option, eq, _ = arg.partition("=")
        matches = [o for o in _TOP_OPTIONS if o == option] or [
            o for o in _TOP_OPTIONS if o.startswith(option)]  # argparse's abbreviations
        if len(matches) != 1 or matches[0] in ("--help", "--version") or option == "--":
            return None
        if matches[0] not in _TOP_VALUED:
            if eq:
                return None
            i += 1
        elif eq:
            i += 1
        elif i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            i += 2
        else:
            return None
    return None


def _where(args) -> str | None:
    where = getattr(args, "name", None) or getattr(args, "file", None)
    return printable(str(where)) if where else None


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # the program: a short life, see _quick_gc
        return _quick_gc(lambda: _main(None))
    return _main(argv)


def _quick_gc(body: Callable[[], int]) -> int:
    """Run a command with the cyclic garbage collector off, and its objects frozen at
    the end so the interpreter's exit does not walk them all. A command lives a fraction
    of a second and makes almost no cycles; the collector's passes over the model and
    the imports cost 11 ms of a 62 ms start (measured: load + build of the demo
    definition, 10 runs). Commands that stay (console, logs --follow) turn it back on."""
    import gc

    gc.disable()
    try:
        return body()
    finally:
        gc.freeze()


def _collect_again() -> None:
    """A command that runs on (console, logs --follow): the collector back on."""
    import gc

    gc.enable()


def _main(argv: list[str] | None) -> int:
    args = build_parser(command_in(sys.argv[1:] if argv is None else argv)).parse_args(argv)
    if args.debug:
        set_debug(True)
    if args.json and args.command not in JSON_COMMANDS:
        print(f"qemuwrap: {args.command} has no --json output", file=sys.stderr)
        return 2
    debug(f"qemuwrap {__version__}: {args.command}")
    where = _where(args)
    prefix = f"qemuwrap: {where}: " if where else "qemuwrap: "
    try:
        return args.func(args)
    except QemuwrapError as exc:
        for line in str(exc).split("\n"):  # one line per problem (see errors.Problems)
            print(prefix + printable(line), file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        if args.debug:
            import traceback

            traceback.print_exc()
        print(prefix + "interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `qemuwrap status NAME | head -1`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:  # an unforeseen path: still one line, never a traceback
        if args.debug:
            raise
        what = exc.strerror or str(exc)
        path = f" ({printable(str(exc.filename))})" if exc.filename else ""
        print(prefix + f"{what}{path}", file=sys.stderr)
        return 1
