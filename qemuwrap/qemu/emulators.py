"""Which emulators qemuwrap may run: one trusted list.

A definition names its ``<emulator>``; probing or starting it runs that program, as
root when qemuwrap runs as root.  So only these are run: the QEMU binaries that
Debian's ``qemu-system-*`` packages installed (from dpkg's file lists), and the paths
listed, one a line, in ``/etc/qemuwrap/emulators`` or ``$QEMUWRAP_CONFIG_DIR/emulators``
-- files the user chose: owned by root or the user, writable by nobody else, in a
directory nobody else can write.  Anything else is refused with a line saying how to
allow it.
"""

from __future__ import annotations

import os
import stat

from qemuwrap.errors import QemuwrapError

DPKG_INFO = "/var/lib/dpkg/info"
SYSTEM_CONFIG_DIR = "/etc/qemuwrap"
CONFIG_NAME = "emulators"
#: A configuration file is a short list of paths.
_MAX_CONFIG_BYTES = 64 * 1024


class UntrustedEmulatorError(QemuwrapError):
    """The definition names a program qemuwrap will not run."""


def config_files() -> list[str]:
    """Where trusted emulators are listed: the system file, then the user's own."""
    files = [os.path.join(SYSTEM_CONFIG_DIR, CONFIG_NAME)]
    user = os.environ.get("QEMUWRAP_CONFIG_DIR")
    if user:
        files.append(os.path.join(os.path.abspath(user), CONFIG_NAME))
    return files


def check(emulator: str) -> None:
    """Return if ``emulator`` may be run, else raise UntrustedEmulatorError."""
    path = os.path.normpath(os.path.abspath(emulator))
    spellings = _spellings(path)
    if debian_binaries(spellings):
        return
    for config in config_files():
        if spellings & _configured(config):
            return
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in emulator)
    where = " or ".join(config_files()) if len(config_files()) > 1 else \
        f"{config_files()[0]} (or $QEMUWRAP_CONFIG_DIR/{CONFIG_NAME})"
    raise UntrustedEmulatorError(
        f"emulator {shown} is not trusted: it is not a QEMU binary of a Debian package; to "
        f"run it, add its path to {where}, or use --caps FILE for a dry run")


def _spellings(path: str) -> set[str]:
    """``path`` and its usrmerge twin (/bin/X and /usr/bin/X) where /bin is root's link to
    usr/bin: a definition may use either."""
    out = {path}
    for short in ("/bin/", "/sbin/"):
        long = "/usr" + short
        if path.startswith(short) and _merged(short):
            out.add(long + path[len(short):])
        elif path.startswith(long) and _merged(short):
            out.add(short + path[len(long):])
    return out


def _merged(short: str) -> bool:
    link = short.rstrip("/")
    try:
        st = os.lstat(link)
        return stat.S_ISLNK(st.st_mode) and st.st_uid == 0 and \
            os.readlink(link).strip("/") == "usr" + link
    except OSError:
        return False


#: Debian's packages of QEMU system emulators, read first: listing dpkg's directory
#: (thousands of files) costs ~1 ms, and every dry run asks.
DEBIAN_PACKAGES = ("qemu-system-x86", "qemu-system-arm", "qemu-system-misc",
                   "qemu-system-ppc", "qemu-system-mips", "qemu-system-sparc",
                   "qemu-system-s390x", "qemu-system-riscv")


def debian_binaries(wanted: set[str] | None = None) -> frozenset[str]:
    """The emulators installed by Debian's qemu-system-* packages, by their dpkg lists;
    with ``wanted``, stop at the first package that has one of those paths."""
    found: set[str] = set()
    for name in _package_lists():
        found |= _binaries_in(os.path.join(DPKG_INFO, name))
        if wanted and found & wanted:
            break
    return frozenset(p for p in found if (not wanted or p in wanted) and _root_owned(p))


def _package_lists():
    """dpkg's file lists of qemu-system-* packages: the known names, then any other."""
    seen = set()
    for package in DEBIAN_PACKAGES:
        seen.add(f"{package}.list")
        yield f"{package}.list"
    try:
        names = sorted(os.listdir(DPKG_INFO))
    except OSError:
        return
    yield from (n for n in names if n.startswith("qemu-system-") and n.endswith(".list")
                and n not in seen)


def _binaries_in(listing: str) -> set[str]:
    found = set()
    try:
        with open(listing, encoding="utf-8", errors="replace") as f:
            for line in f:
                path = line.rstrip("\n")
                base = os.path.basename(path)
                if os.path.dirname(path) in ("/usr/bin", "/bin") and \
                        (base.startswith("qemu-system-") or base == "kvm"):
                    found.add(path)
    except OSError:
        pass
    return found


def _root_owned(path: str) -> bool:
    """A listed binary is only trusted while nobody but root can change it."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_uid == 0 and not st.st_mode & 0o022


def _configured(config: str) -> set[str]:
    """The paths a configuration file lists; an unsafe file is an error, a missing one
    lists nothing."""
    from qemuwrap.conf.untrusted import read_bytes
    from qemuwrap.errors import XMLError

    try:
        st = os.stat(config)
    except FileNotFoundError:
        return set()
    except OSError as exc:
        raise UntrustedEmulatorError(f"cannot read {config}: {exc.strerror}") from None
    _require_private(config, st)
    directory = os.path.dirname(config)
    _require_private(directory, os.stat(directory))
    try:
        text = read_bytes(config, limit=_MAX_CONFIG_BYTES).decode("utf-8")
    except (XMLError, UnicodeDecodeError) as exc:
        raise UntrustedEmulatorError(f"cannot read {config}: {exc}") from None
    paths = set()
    for number, line in enumerate(text.splitlines(), 1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if not entry.startswith("/"):
            raise UntrustedEmulatorError(f"{config}: line {number}: not an absolute path")
        paths |= _spellings(os.path.normpath(entry))
    return paths


def _require_private(path: str, st: os.stat_result) -> None:
    """Owned by root or the user running qemuwrap, writable by nobody else (for a
    directory: nobody else can put another file in its place)."""
    owners = {0, os.geteuid()}
    if st.st_uid not in owners:
        raise UntrustedEmulatorError(f"not trusting {path}: it belongs to uid {st.st_uid}, "
                                     "not to root or you")
    # a sticky directory of root's (/tmp) lets nobody replace another user's file
    sticky = stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX and st.st_uid == 0
    if st.st_mode & 0o022 and not sticky:
        raise UntrustedEmulatorError(f"not trusting {path}: others may write it (mode "
                                     f"{stat.S_IMODE(st.st_mode):04o})")
