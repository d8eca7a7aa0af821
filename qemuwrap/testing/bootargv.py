"""A translated command line made bootable here, outside libvirtd, under the harness.

``virsh domxml-to-native`` prints the command libvirtd would exec, which leans on
things only libvirtd provides: file descriptors it passes, a master key it writes, a
seccomp policy. The same rules are applied to qemuwrap's command (where they do not
match, they change nothing):

1. ``-object secret,id=masterKey0,…`` (libvirt's master key file, never written by
   a dry translation) is dropped; so is ``-sandbox …``.
2. A NIC's ``tap`` or ``bridge`` netdev (libvirt passes an fd of a tap it opened;
   a bridge needs a host bridge) becomes ``user,id=SAME-ID``: the guest sees the same
   NIC, only its backend differs, and backends are not compared.
3. Other fd-passing: ``vhostfd`` of ``vhost-vsock`` is dropped (QEMU opens
   ``/dev/vhost-vsock`` itself).
4. Parent directories of every path under a tool's own directories (libvirt's embed
   root, qemuwrap's state directory) are created: both tools create them at start.
5. A missing UEFI variable store (``*.fd`` under those directories or the scratch
   directory) is created from OVMF's template (``<nvram template>`` when the XML gives
   one; else ``OVMF_VARS_4M.fd`` beside a ``_4M`` code file, ``OVMF_VARS.fd`` beside
   the 2 MiB one), as either tool would at start.
6. ``-S`` is ensured, and the harness's own QMP monitor is appended.
7. A TPM emulator (``-tpmdev emulator``) gets the companion either tool starts for it:
   ``swtpm socket --tpm2`` on the chardev's socket path (``tpm_sockets``; the boot
   starts and stops it). libvirt's dry translation gives that chardev as ``null``
   (it starts no swtpm): it becomes a socket in the scratch directory.
8. An ``-audiodev`` of a host sound system (PulseAudio, JACK, OSS, ALSA, SDL, a wav
   file …) becomes driver ``none`` with the same id (and only the generic
   per-direction settings): they are absent here, and the guest sees the sound card,
   not the backend. ``none``, ``spice`` and ``dbus`` stay (displays need them).
9. A ``-display`` that opens a window or takes the terminal (sdl, gtk, curses, cocoa,
   spice-app) becomes ``none``: the harness has no screen; only whether VNC and SPICE
   are on is compared.
10. Guest memory is never touched up front: ``prealloc`` is dropped from memory
    backends (and ``-mem-prealloc``), ``-overcommit mem-lock=on`` becomes ``off``. Two
    paused 14 GiB guests of the corpus would otherwise fill this machine's memory;
    the price is that ``prealloc`` is not compared. Shared memory files in
    ``/dev/shm`` (ivshmem) go to the scratch directory, which is removed afterwards.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

OVMF_DIR = Path("/usr/share/OVMF")
HARNESS_MONITOR_ID = "qwdiff-mon"
#: Per-direction audio settings every backend, ``none`` included, accepts.
GENERIC_AUDIO = frozenset({"mixing-engine", "fixed-settings", "frequency", "channels",
                           "voices", "format", "buffer-length"})
KEPT_AUDIO = frozenset({"none", "spice", "dbus"})
SCREEN_DISPLAYS = frozenset({"sdl", "gtk", "curses", "cocoa", "spice-app"})
_ENV_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")


class ArgvError(ValueError):
    """The translation's output is not a command line."""


@dataclass
class Translation:
    """A command: its environment and argv (``argv[0]`` is the emulator)."""

    env: dict[str, str]
    argv: list[str]


def parse_virsh(text: str) -> Translation:
    """``domxml-to-native qemu-argv`` output: ``VAR=value … /usr/bin/qemu… -opt …`` as
    one shell-quoted line (continuation backslashes allowed)."""
    try:
        words = shlex.split(text.replace("\\\n", " "))
    except ValueError as exc:
        raise ArgvError(f"cannot split libvirt's command line: {exc}") from None
    env: dict[str, str] = {}
    for i, word in enumerate(words):
        if _ENV_WORD.match(word):
            key, _, value = word.partition("=")
            env[key] = value
            continue
        return Translation(env, words[i:])
    raise ArgvError("libvirt's output has no command")


def split_keyval(value: str) -> list[str]:
    """QEMU's ``a=b,c=d`` option string into its parts (``,,`` is a literal comma)."""
    parts, current, i = [], [], 0
    while i < len(value):
        ch = value[i]
        if ch == ",":
            if value[i + 1:i + 2] == ",":
                current.append(",")
                i += 2
                continue
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


def join_keyval(parts: Iterable[str]) -> str:
    """The inverse of ``split_keyval``: commas inside a part are doubled again."""
    return ",".join(p.replace(",", ",,") for p in parts)


def option_props(value: str) -> dict[str, object]:
    """An option's properties, from its JSON or key=value form; a bare first word (the
    type or driver in key=value form) is stored under ``""``."""
    if value.startswith("{"):
        try:
            parsed = json.loads(value)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    out: dict[str, object] = {}
    for n, part in enumerate(split_keyval(value)):
        key, sep, val = part.partition("=")
        if not sep and n == 0:
            out[""] = key
        else:
            out[key] = val if sep else "on"
    return out


def _json_scalar(value: object) -> object:
    """A key=value option's text as the JSON type QEMU expects there."""
    if isinstance(value, str):
        if value.isdigit():
            return int(value)
        if value in ("on", "true", "off", "false"):
            return value in ("on", "true")
    return value


def _silent_audiodev(value: str) -> str:
    props = option_props(value)
    out: dict[str, object] = {"id": props.get("id", "audio1"), "driver": "none"}
    if "timer-period" in props:
        out["timer-period"] = _json_scalar(props["timer-period"])
    for direction in ("in", "out"):
        settings = props.get(direction)
        if not isinstance(settings, dict):  # key=value form: in.frequency=44100
            settings = {k.split(".", 1)[1]: _json_scalar(v) for k, v in props.items()
                        if k.startswith(direction + ".")}
        kept = {k: v for k, v in settings.items() if k in GENERIC_AUDIO}
        if kept:
            out[direction] = kept
    return json.dumps(out, separators=(",", ":"))


def replaced(value: str, key: str, new: str) -> str:
    """An option's value (JSON or key=value form) with property ``key`` set to ``new``."""
    if value.startswith("{"):
        return json.dumps({**option_props(value), key: new}, separators=(",", ":"))
    return join_keyval(f"{key}={new}" if p.startswith(f"{key}=") else p
                       for p in split_keyval(value))


def without(value: str, key: str) -> str:
    """An option's value (JSON or key=value form) without property ``key``."""
    if value.startswith("{"):
        props = option_props(value)
        props.pop(key, None)
        return json.dumps(props, separators=(",", ":"))
    return join_keyval(p for p in split_keyval(value) if not p.startswith(f"{key}="))


def _driver(props: dict[str, object]) -> object:
    return props.get("driver", props.get("qom-type", props.get("type", props.get(""))))


def _object(scratch: Path) -> Callable[[str], list[str] | None]:
    def rule(value: str) -> list[str] | None:
        props = option_props(value)
        if props.get("id") == "masterKey0":
            return []
        if not str(_driver(props)).startswith("memory-backend"):
            return None
        mem_path = props.get("mem-path")
        if isinstance(mem_path, str) and mem_path.startswith("/dev/shm/"):
            value = replaced(value, "mem-path", str(scratch / f"shm-{mem_path[9:]}"))
        return ["-object", without(value, "prealloc")]
    return rule


def _netdev(value: str) -> list[str] | None:
    props = option_props(value)
    if _driver(props) in ("tap", "bridge"):
        return ["-netdev", f"user,id={props.get('id', 'hostnet0')}"]
    return None


def _device(value: str) -> list[str] | None:
    if "vhostfd" in value and _driver(option_props(value)) == "vhost-vsock-pci":
        return ["-device", without(value, "vhostfd")]
    return None


def _audiodev(value: str) -> list[str] | None:
    if _driver(option_props(value)) in KEPT_AUDIO:
        return None
    return ["-audiodev", _silent_audiodev(value)]


def _display(value: str) -> list[str] | None:
    return ["-display", "none"] if split_keyval(value)[0] in SCREEN_DISPLAYS else None


def _overcommit(value: str) -> list[str] | None:
    return ["-overcommit", value.replace("mem-lock=on", "mem-lock=off")]


def _tpm_chardev(tpm_chardevs: list[str], scratch: Path) -> Callable[[str], list[str] | None]:
    def rule(value: str) -> list[str] | None:
        props = option_props(value)
        ident = props.get("id")
        if ident not in tpm_chardevs or (props.get("") == "socket" and "path" in props):
            return None
        return ["-chardev", f"socket,id={ident},path={scratch / f'tpm-{ident}.sock'}"]
    return rule


def bootable(argv: list[str], *, tool_dirs: list[Path], scratch: Path, monitor: Path,
             nvram_template: Path | None = None) -> list[str]:
    """The rules of the module docstring applied to ``argv``; directories and variable
    stores they call for are created."""
    # option -> rule: the words that replace the option and its value ([] drops
    # them), or None to keep them as they are
    rules: dict[str, Callable[[str], list[str] | None]] = {
        "-sandbox": lambda _value: [], "-object": _object(scratch), "-netdev": _netdev,
        "-device": _device, "-audiodev": _audiodev, "-display": _display,
        "-overcommit": _overcommit, "-chardev": _tpm_chardev(_tpm_chardevs(argv), scratch),
    }
    out = [argv[0]]
    i = 1
    while i < len(argv):
        opt = argv[i]
        rule = rules.get(opt)
        words = rule(argv[i + 1]) if rule is not None and i + 1 < len(argv) else None
        if words is not None:
            out += words
            i += 2
            continue
        if opt != "-mem-prealloc":
            out.append(opt)
        i += 1
    if "-S" not in out:
        out.insert(1, "-S")
    out += ["-chardev", f"socket,id={HARNESS_MONITOR_ID},path={monitor},server=on,wait=off",
            "-mon", f"chardev={HARNESS_MONITOR_ID},mode=control"]
    roots = [str(d) for d in tool_dirs]
    _make_parent_dirs(out, roots)
    _make_var_stores(out, [*roots, str(scratch)], nvram_template)
    return out


_PATHLIKE = re.compile(r"/[^,\"'\s}\]]+")


def _paths_under(argv: list[str], roots: list[str]) -> list[str]:
    found = []
    for word in argv:
        for m in _PATHLIKE.finditer(word):
            path = m.group(0)
            if any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots):
                found.append(path)
    return found


def _make_parent_dirs(argv: list[str], roots: list[str]) -> None:
    for path in _paths_under(argv, roots):
        os.makedirs(os.path.dirname(path), exist_ok=True)


def _make_var_stores(argv: list[str], roots: list[str], template: Path | None) -> None:
    for path in _paths_under(argv, roots):
        if path.endswith(".fd") and not os.path.exists(path):
            source = template if template and template.is_file() else ovmf_vars_for(argv)
            if source is not None:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                shutil.copyfile(source, path)


def ovmf_vars_for(argv: list[str]) -> Path | None:
    """The OVMF variable-store template that fits the code file the command uses."""
    four_mb = any("_4M" in word for word in argv)
    candidate = OVMF_DIR / ("OVMF_VARS_4M.fd" if four_mb else "OVMF_VARS.fd")
    return candidate if candidate.is_file() else None


def _tpm_chardevs(argv: list[str]) -> list[str]:
    """Ids of the chardevs that ``-tpmdev emulator`` backends use."""
    wanted = []
    for opt, value in zip(argv, argv[1:], strict=False):
        if opt == "-tpmdev":
            props = option_props(value)
            chardev = props.get("chardev")
            if props.get("type", props.get("")) == "emulator" and isinstance(chardev, str):
                wanted.append(chardev)
    return wanted


def tpm_sockets(argv: list[str]) -> list[str]:
    """Socket paths of the chardevs that ``-tpmdev emulator`` backends use."""
    paths: dict[str, str] = {}
    for opt, value in zip(argv, argv[1:], strict=False):
        if opt == "-chardev":
            props = option_props(value)
            path, ident = props.get("path"), props.get("id")
            if isinstance(path, str) and isinstance(ident, str):
                paths[ident] = path
    return [paths[c] for c in _tpm_chardevs(argv) if c in paths]
