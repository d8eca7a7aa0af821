"""virt-install's definitions start once a network named ``default`` is defined and
started (issue 8, "Throughout").

``scripts/virt-install-corpus`` writes virt-install 4.1's output for 12 systems in three
shapes (36 definitions; ``--network network=default``, ``bridge=br0`` or ``user``).
In a network namespace with libvirt's own ``default`` network (``net-define
/usr/share/libvirt/networks/default.xml``, as a libvirt user would) and a ``br0``
bridge:

- all 36 dry-run with every host check on, the only edit being their disk and ISO paths
  (virt-install names ``/var/lib/libvirt/images``; scratch images stand in), and each
  network or bridge NIC gets the tap its ``-netdev`` names;
- ``debian11-install`` and ``win11-install`` (UEFI, TPM 2.0 from swtpm, e1000e on the
  default network) start and are destroyed, leaving no tap, swtpm or lease.  To run
  under TCG here (``/dev/kvm`` is nested: QEMU refuses win11's SMM under it), two more
  edits: ``type='kvm'`` becomes ``'qemu'``, and ``<cpu mode='host-passthrough'>`` becomes
  ``'maximum'`` (libvirt, like qemuwrap, refuses host-passthrough without KVM).

Needs root, virtinst and python3-libvirt (Debian packages, system Python), qemu-img, and
for the starts ovmf and swtpm; skips with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import test_guest_networks
from test_guest_networks import _HOST_MARKS, NsEnv, links, wait_for

from conftest import QEMU, ROOT

pytestmark = [
    *_HOST_MARKS,
    pytest.mark.skipif(not os.path.isdir("/usr/share/virt-manager/virtinst"),
                       reason="virt-install is not installed (Debian package virtinst)"),
    pytest.mark.skipif(shutil.which("qemu-img") is None,
                       reason="qemu-img is not installed (Debian package qemu-utils)"),
]
host_ns = test_guest_networks.host_ns  # the fixture: a namespace standing in for the host
LIBVIRT_DEFAULT = Path("/usr/share/libvirt/networks/default.xml")
IMAGES = "/var/lib/libvirt/images/"


@pytest.fixture(scope="module")
def corpus() -> Path:
    """The 36 definitions.  Making them takes over a minute (virt-install runs 36
    times), so they are kept in /var/tmp (``$QEMUWRAP_VIRT_INSTALL_DIR``), keyed on the
    script and on the versions of virtinst and osinfo-db that wrote them."""
    import hashlib
    import tempfile

    script = ROOT / "scripts" / "virt-install-corpus"
    versions = subprocess.run(["dpkg-query", "-W", "-f", "${Version} ", "virtinst",
                               "osinfo-db"], capture_output=True, text=True, timeout=30,
                              check=False).stdout
    key = hashlib.sha256(script.read_bytes() + versions.encode()).hexdigest()[:16]
    base = Path(os.environ.get("QEMUWRAP_VIRT_INSTALL_DIR") or "/var/tmp")
    out = base / f"qemuwrap-virt-install-{key}"
    if len(list(out.glob("*.xml"))) == 36:
        return out
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".virt-install-", dir=base))
    done = subprocess.run([str(script), str(work)], capture_output=True, text=True,
                          timeout=900, check=False)
    if done.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
        if "No module named 'libvirt'" in done.stderr:
            pytest.skip("virt-install needs python3-libvirt (Debian package)")
    assert done.returncode == 0, done.stderr
    try:
        os.rename(work, out)
    except OSError:  # another run made it meanwhile
        shutil.rmtree(work, ignore_errors=True)
    return out


def working_copy(src: Path, scratch: Path, *, tcg: bool = False) -> Path:
    """``src`` with its images in ``scratch`` (made there with qemu-img, or empty ISOs);
    with ``tcg``, also the two edits TCG needs (see the module's text)."""
    text = src.read_text()
    for image in sorted(set(re.findall(re.escape(IMAGES) + r"[^\"']+", text))):
        local = scratch / Path(image).name
        if not local.exists():
            if local.suffix == ".iso":
                local.touch()
            else:
                fmt = "qcow2" if local.suffix == ".qcow2" else "raw"
                subprocess.run(["qemu-img", "create", "-q", "-f", fmt, str(local), "1G"],
                               check=True, timeout=60)
        text = text.replace(image, str(local))
    if tcg:
        text = text.replace('<domain type="kvm">', '<domain type="qemu">')
        text = text.replace('<cpu mode="host-passthrough"/>', '<cpu mode="maximum"/>')
    out = scratch / src.name
    out.write_text(text)
    return out


@pytest.fixture
def vnet(host_ns, tmp_path, monkeypatch):
    """qemuwrap in the namespace with ``default`` defined and started, and ``br0``; the
    state root short, as /run/qemuwrap is (virt-install's guest names are long, and
    the guest agent's socket path must fit a UNIX socket)."""
    import tempfile

    from pyroute2 import IPRoute

    env = NsEnv(tmp_path, None, host_ns)
    env.root = Path(tempfile.mkdtemp(prefix="qwvi-"))
    monkeypatch.setenv("QEMUWRAP_STATE_DIR", str(env.root))
    source = LIBVIRT_DEFAULT if LIBVIRT_DEFAULT.exists() else \
        ROOT / "data" / "networks" / "default.xml"
    env.ok("net-define", str(source))
    env.ok("net-start", "default")
    with IPRoute() as ipr:
        ipr.link("add", ifname="br0", kind="bridge")
        ipr.link("set", index=ipr.link_lookup(ifname="br0")[0], state="up")
    try:
        yield env
    finally:
        env.cleanup()
        shutil.rmtree(env.root, ignore_errors=True)


def test_all_36_dry_run_with_their_taps(corpus, vnet, tmp_path):
    scratch = tmp_path / "images"
    scratch.mkdir()
    names = sorted(p.name for p in corpus.glob("*.xml"))
    assert len(names) == 36
    # One interpreter in the namespace runs all 36 (the CLI's own main, as `qemuwrap
    # dry-run FILE --json` would), ~4 times faster than 36 processes.
    script = ("import contextlib, io, json, sys\nfrom qemuwrap.cli import main\nout = {}\n"
              "for path in sys.argv[2:]:\n"
              "    text, err = io.StringIO(), io.StringIO()\n"
              "    with contextlib.redirect_stdout(text), contextlib.redirect_stderr(err):\n"
              "        code = main(['dry-run', path, '--json', '--state-dir', sys.argv[1]])\n"
              "    out[path] = [code, text.getvalue(), err.getvalue()]\n"
              "print(json.dumps(out))\n")
    copies = [str(working_copy(corpus / name, scratch)) for name in names]
    done = subprocess.run(["ip", "netns", "exec", vnet.ns, sys.executable, "-c", script,
                           str(vnet.root), *copies], capture_output=True, text=True,
                          timeout=300, check=True)
    results = json.loads(done.stdout)
    refused = {}
    kinds = {"network": 0, "bridge": 0, "user": 0}
    for name, copy in zip(names, copies, strict=True):
        code, stdout, stderr = results[copy]
        if code != 0:
            refused[name] = stderr.strip()
            continue
        shown = json.loads(stdout)
        kind = re.search(r'<interface type="(\w+)"', (corpus / name).read_text()).group(1)
        kinds[kind] += 1
        netdevs = [shown["argv"][i + 1] for i, word in enumerate(shown["argv"])
                   if word == "-netdev"]
        taps = [c["params"]["ifname"] for c in shown["companions"] if c["kind"] == "tap"]
        if kind == "user":
            assert taps == [] and netdevs[0].startswith("user,"), name
        else:
            assert [re.search(r"ifname=([^,]+)", n).group(1) for n in netdevs] == taps, name
            assert re.fullmatch(r"qw[0-9a-f]{8}n0", taps[0]), name
    assert refused == {}
    assert kinds == {"network": 12, "bridge": 12, "user": 12}


@pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 is not installed "
                    "(Debian package qemu-system-x86)")
@pytest.mark.skipif(not os.path.exists("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"),
                    reason="win11's UEFI firmware is missing (Debian package ovmf)")
@pytest.mark.skipif(shutil.which("swtpm") is None or shutil.which("swtpm_setup") is None,
                    reason="win11's TPM needs swtpm (Debian packages swtpm, swtpm-tools)")
def test_debian11_and_win11_start_on_the_default_network(corpus, vnet, tmp_path):
    scratch = tmp_path / "images"
    scratch.mkdir()
    started = {}
    for name in ("debian11-install", "win11-install"):
        path = working_copy(corpus / f"{name}.xml", scratch, tcg=True)
        dry = json.loads(vnet.ok("dry-run", str(path), "--json"))
        vnet.ok("start", str(path))
        record = vnet.record(name)
        assert record["argv"] == dry["argv"]
        kinds = [c["kind"] for c in vnet.status(name)["companions"]]
        assert kinds == (["swtpm", "tap"] if name.startswith("win11") else ["tap"])
        tap = next(c for c in record["companions"] if c["kind"] == "tap")["link"]["name"]
        assert links()[tap]["master"] == "virbr0"
        started[name] = tap
    assert wait_for(lambda: all(vnet.status(n)["state"] == "running" for n in started), 10)
    for name, tap in started.items():
        vnet.ok("destroy", name)
        assert tap not in links()
    assert set(links()) == {"lo", "virbr0", "br0"}
    swtpms = [p for p in os.listdir("/proc") if p.isdigit() and _is_swtpm_of(p, tmp_path)]
    assert swtpms == []


def _is_swtpm_of(pid: str, tmp_path: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return cmdline.startswith("swtpm") and str(tmp_path) in cmdline
