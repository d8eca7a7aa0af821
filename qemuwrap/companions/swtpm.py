"""A TPM 2.0 for the guest: swtpm, started before QEMU and stopped after it.

The TPM's state (its seeds, EK and certificates, NV indices, the guest's sealed secrets)
belongs to the guest for good, so it lives in a persistent per-guest directory named by the
guest's uuid, as libvirt's ``/var/lib/libvirt/swtpm/UUID/tpm2``: as root
``/var/lib/qemuwrap/swtpm/UUID/tpm2``, otherwise under ``$XDG_DATA_HOME/qemuwrap/swtpm``.
It is manufactured once with ``swtpm_setup`` and libvirt's flags (EK, EK and platform
certificates, NVRAM locked, never overwritten). Each start runs ``swtpm socket`` on a
control socket in the guest's runtime state directory; QEMU's tpm-emulator backend
connects to it, and ``--terminate`` makes swtpm end when QEMU lets go. QEMU migrates the
TPM's volatile state itself, so ``save``/``restore`` need nothing more than the same state
directory; ``clone`` copies the directory to the new uuid's (:func:`clone_state`).

The pure functions (paths, command lines) serve the plan ``dry-run`` shows
(``qemu/companions.py``); QEMU's side is built in ``qemu/build/companion_devices.py``.
:class:`Swtpm` does the work (``prepare``, ``start``, ``stop``); after a killed
supervisor, ``runtime/companions.clean_up`` stops it from the guest record.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping

from qemuwrap.companions.daemon import CompanionError, Daemon
from qemuwrap.companions.storage import persistent_dir

SWTPM = "swtpm"
SWTPM_SETUP = "swtpm_setup"
#: The file swtpm keeps a TPM 2's permanent state in (its presence: manufactured).
STATE_FILE = "tpm2-00.permall"
STATE_FILE_1_2 = "tpm-00.permall"  # a TPM 1.2's
SETUP_TIMEOUT = 60.0  # swtpm_setup takes ~2 s here (RSA and ECC EKs, certificates)
MODELS = ("tpm-crb", "tpm-tis")


def state_root(privileged: bool | None = None, environ: Mapping[str, str] | None = None) -> str:
    """Where TPM states live: ``/var/lib/qemuwrap/swtpm`` or the user's data directory."""
    return persistent_dir("swtpm", privileged, environ)


def state_dir(uuid: str, privileged: bool | None = None,
              environ: Mapping[str, str] | None = None, version: str = "2.0") -> str:
    """``ROOT/UUID/tpm2`` (``tpm1.2`` for a TPM 1.2): the guest's TPM state directory
    (``uuid`` in canonical form), as libvirt names it."""
    return os.path.join(state_root(privileged, environ), uuid,
                        "tpm1.2" if version == "1.2" else "tpm2")


def setup_argv(tpm_dir: str, vmid: str, logfile: str, swtpm_setup: str = SWTPM_SETUP,
               version: str = "2.0", pcr_banks: list[str] | None = None) -> list[str]:
    """Manufacture a TPM once (libvirt's qemuTPMEmulatorRunSetup): ``vmid`` is
    ``NAME:UUID``; ``--not-overwrite`` keeps a state that exists; ``pcr_banks`` are
    ``<active_pcr_banks>`` (TPM 2.0)."""
    argv = [swtpm_setup, *(["--tpm2"] if version != "1.2" else []), "--tpm-state", tpm_dir,
            "--vmid", vmid, "--logfile", logfile, "--createek", "--create-ek-cert",
            "--create-platform-cert", "--lock-nvram", "--not-overwrite"]
    if pcr_banks and version != "1.2":
        argv += ["--pcr-banks", ",".join(pcr_banks)]
    return argv


def swtpm_argv(tpm_dir: str, sock: str, logfile: str, pidfile: str,
               swtpm: str = SWTPM, version: str = "2.0") -> list[str]:
    """``swtpm socket`` as libvirt runs it (control socket and state files owner-only),
    in the foreground: the supervisor spawns it in its own session and knows its pid."""
    return [swtpm, "socket", "--ctrl", f"type=unixio,path={sock},mode=0600",
            "--tpmstate", f"dir={tpm_dir},mode=0600", "--log", f"file={logfile}",
            "--terminate", *(["--tpm2"] if version != "1.2" else []),
            "--pid", f"file={pidfile}"]


def cancel_path(device: str = "/dev/tpm0") -> str:
    """The sysfs file that cancels a running command of a host TPM, as libvirt's
    virTPMCreateCancelPath finds it (``misc`` first, then ``tpm``), ``/dev/null`` when the
    host has none (a TPM 2.0 has no cancel file; QEMU then writes its cancels nowhere)."""
    name = os.path.basename(device)
    for prefix in ("/sys/class/misc", "/sys/class/tpm"):
        path = os.path.join(prefix, name, "device", "cancel")
        if os.path.exists(path):
            return path
    return "/dev/null"


def check_passthrough(device: str = "/dev/tpm0") -> None:
    """The host TPM a passthrough backend hands to the guest must exist and open (a host
    check: ``qemu/validate/companion_devices.host_tpms``). One line otherwise, in
    QEMU's words."""
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        raise CompanionError(f"tpm: Could not open TPM device {device}: "
                             f"{exc.strerror}") from None
    os.close(fd)


def manufactured(tpm_dir: str) -> bool:
    return any(os.path.isfile(os.path.join(tpm_dir, f)) for f in (STATE_FILE, STATE_FILE_1_2))


def clone_state(src_dir: str, dst_dir: str) -> None:
    """Copy a guest's TPM state for a new guest (``clone``): same seeds and EK, as a disk
    copy keeps its sealed secrets working. Refuses to overwrite another TPM."""
    if os.path.lexists(dst_dir):
        raise CompanionError(f"swtpm: {dst_dir} already exists; not overwriting another "
                             "guest's TPM")
    if not manufactured(src_dir):
        raise CompanionError(f"swtpm: {src_dir} holds no TPM state to copy")
    parent = os.path.dirname(dst_dir)
    os.makedirs(parent, mode=0o700, exist_ok=True)
    tmp = dst_dir + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(src_dir, tmp, ignore=shutil.ignore_patterns(".lock"))
        os.chmod(tmp, 0o700)
        os.rename(tmp, dst_dir)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CompanionError(f"swtpm: cannot copy {src_dir} to {dst_dir}: "
                             f"{exc.strerror or exc}") from None


class Swtpm(Daemon):
    """One guest's swtpm: ``refusals()`` (checked before anything is spawned), ``prepare()``
    (state directory, manufactured once), ``start`` (ready when its control socket
    accepts), ``stop``."""

    name = "swtpm"

    def __init__(self, tpm_dir: str, sock: str, logfile: str, pidfile: str, vmid: str,
                 swtpm: str = SWTPM, swtpm_setup: str = SWTPM_SETUP, version: str = "2.0",
                 pcr_banks: list[str] | None = None):
        super().__init__(swtpm_argv(tpm_dir, sock, logfile, pidfile, swtpm, version))
        self.version = version
        self.pcr_banks = pcr_banks
        self.tpm_dir = tpm_dir
        self.sock = sock
        self.logfile = self.own_log = logfile
        self.pidfile = pidfile
        self.vmid = vmid
        self.swtpm_setup = swtpm_setup

    def refusals(self) -> list[str]:
        """What keeps it from starting here, one line each, before anything is spawned:
        its programs (``swtpm_setup`` only while the TPM is still to be manufactured)."""
        lines = []
        if shutil.which(self.argv[0]) is None:
            lines.append(f"swtpm: {self.argv[0]} not found (Debian package swtpm)")
        if not manufactured(self.tpm_dir) and shutil.which(self.swtpm_setup) is None:
            lines.append(f"swtpm: {self.swtpm_setup} not found (Debian package swtpm-tools)")
        return lines

    def prepare(self, deadline: float | None = None) -> bool:
        """Make the state directory and manufacture the TPM unless it was; True if now."""
        try:
            os.makedirs(self.tpm_dir, mode=0o700, exist_ok=True)
            os.makedirs(os.path.dirname(self.sock), mode=0o700, exist_ok=True)
        except OSError as exc:
            raise CompanionError(f"swtpm: cannot make {exc.filename}: {exc.strerror}") from None
        if manufactured(self.tpm_dir):
            return False
        timeout = SETUP_TIMEOUT if deadline is None else max(deadline - time.monotonic(), 0.1)
        if os.geteuid() != 0:
            # An unprivileged user's swtpm_setup needs its own CA configuration (libvirt does
            # the same); it is written once into ~/.config.
            self._run_setup([self.swtpm_setup, "--create-config-files", "skip-if-exist"],
                            timeout)
        self._run_setup(setup_argv(self.tpm_dir, self.vmid, self.logfile, self.swtpm_setup,
                                   self.version, self.pcr_banks), timeout)
        if not manufactured(self.tpm_dir):
            raise CompanionError(f"swtpm: {self.swtpm_setup} left no TPM state in "
                                 f"{self.tpm_dir} (see {self.logfile})")
        return True

    def _run_setup(self, argv: list[str], timeout: float) -> None:
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, timeout=timeout, check=False)
        except FileNotFoundError:
            raise CompanionError(f"swtpm: {argv[0]} not found (Debian package swtpm-tools)"
                                 ) from None
        except subprocess.TimeoutExpired:
            raise CompanionError(f"swtpm: {argv[0]} did not finish within {timeout:.0f} s"
                                 ) from None
        if proc.returncode != 0:
            lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
            detail = lines[-1] if lines else f"see {self.logfile}"
            raise CompanionError(f"swtpm: {argv[0]} failed (status {proc.returncode}): "
                                 f"{detail}")

    def start(self, log_fd: int | None, deadline: float) -> int:
        """Spawn swtpm; return its pid once its control socket accepts connections."""
        for stale in (self.sock, self.pidfile):
            try:
                os.unlink(stale)
            except FileNotFoundError:
                pass
        pid = self.spawn(log_fd)
        self.wait_ready(self._accepts, deadline, log_fd, "listening")
        return pid

    def _accepts(self) -> bool:
        """A connection to the control channel that is closed again leaves swtpm running
        (``--terminate`` watches the data channel QEMU sets up)."""
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            probe.connect(self.sock)
        except OSError:
            return False
        finally:
            probe.close()
        return True

    def stop(self, deadline: float) -> None:
        """After QEMU: swtpm usually ended with it (``--terminate``); else SIGTERM, then
        SIGKILL. Its socket and pid file go."""
        super().stop(deadline)
        for path in (self.sock, self.pidfile):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
