"""What the user sees and touches: graphics, video, audio, sound, input, USB hubs and
redirection.  The model and builders are checked on their own, then each feature group
is started in the real QEMU (paused, TCG) and asked over QMP what the guest got."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess

import pytest

from qemuwrap.conf import guid
from qemuwrap.conf.devices.audio import AudioType, default_audio_type
from qemuwrap.conf.devices.redirdev import USBVersion
from qemuwrap.conf.domain import loads
from qemuwrap.errors import QemuwrapError
from qemuwrap.qemu.build import graphics as build_graphics
from qemuwrap.qemu.capabilities import Capabilities
from qemuwrap.qemu.command import build_command

from conftest import DEFAULT_CAPS, needs_qemu, qmp_at


def domain(devices: str, machine: str = "pc") -> str:
    return (f"<domain type='qemu'><name>disp</name><memory unit='MiB'>128</memory>"
            f"<os><type arch='x86_64' machine='{machine}'>hvm</type></os>"
            f"<devices>{devices}</devices></domain>")


def build(xml: str, state_dir: str = "/run/qemuwrap/disp"):
    dom = loads(xml, random=guid.counting_random)
    return dom, build_command(dom, Capabilities.from_file(DEFAULT_CAPS), state_dir)


def options(cmd, option: str) -> list[str]:
    return [a.value for a in cmd.args if a.option == option and a.value is not None]


# ------------------------------------------------------------------ model and builders
@pytest.mark.parametrize(("graphics", "expected"), [
    ([], AudioType.NONE),
    (["vnc"], AudioType.NONE),
    (["spice"], AudioType.SPICE),
    (["spice", "vnc"], AudioType.NONE),  # the last one decides, as in libvirt
    (["vnc", "spice"], AudioType.SPICE),
    (["sdl"], None),  # host audio passthrough: libvirt without QEMU_AUDIO_DRV adds none
    (["egl-headless"], None),
    (["dbus"], None),
])
def test_default_audio_is_libvirts(graphics, expected):
    assert default_audio_type(graphics) == expected


def test_default_audio_is_added_once_and_named():
    _dom, cmd = build(domain("<graphics type='vnc'/>"))
    assert options(cmd, "-audiodev") == ["none,id=audio1"]
    assert options(cmd, "-vnc")[0].endswith(",audiodev=audio1")
    _dom, cmd = build(domain("<graphics type='vnc'/><audio id='7' type='none'/>"))
    assert options(cmd, "-audiodev") == ["none,id=audio7"]  # the first backend, by id
    assert options(cmd, "-vnc")[0].endswith(",audiodev=audio7")


def test_sdl_gets_no_default_audio_so_a_sound_card_is_refused():
    with pytest.raises(QemuwrapError, match="needs an <audio> backend"):
        build(domain("<graphics type='sdl' display=':0'/><sound model='ac97'/>"))


@pytest.mark.parametrize(("text", "bcd", "formatted"), [
    ("1.10", 0x0110, "1.10"), ("1.1", 0x0110, "1.10"), ("2.0", 0x0200, "2.00"),
    ("9.4", 0x0940, "9.40"), ("1.09", 0x0109, "1.09"), ("-1", -1, "-1")])
def test_usb_filter_versions_read_as_libvirt(text, bcd, formatted):
    kind = USBVersion()
    assert kind.parse(text, "version") == bcd
    assert kind.format(bcd) == formatted


def test_primary_video_goes_first_with_libvirts_defaults():
    dom, cmd = build(domain("<video><model type='qxl' heads='2'/></video>"
                            "<video><model type='vga' vram='9000' primary='yes'/></video>"))
    first, second = dom.devices.videos
    assert (first.type, first.model.primary, first.model.vram) == ("vga", True, 16384)
    assert (second.model.ram, second.model.vram, second.model.vgamem) == (65536, 65536, 16384)
    devices = [d for d in options(cmd, "-device") if "id=video" in d]
    assert devices[0].startswith("VGA,id=video0,vgamem_mb=16,")
    assert devices[1].startswith("qxl,id=video1,max_outputs=2,ram_size=67108864,")


def test_passwords_are_in_files_never_in_the_command():
    xml = domain("<graphics type='vnc' passwd='s3cr,et'/><graphics type='spice' autoport='no' "
                 "passwd='sp1ce pw'/>")
    dom, cmd = build(xml, "/run/qemuwrap/disp")
    argv = " ".join(cmd.argv)
    assert "s3cr" not in argv and "sp1ce" not in argv
    assert "password-secret=vnc0-secret" in options(cmd, "-vnc")[0]
    assert "password-secret=spice1-secret" in options(cmd, "-spice")[0]
    assert "disable-ticketing" not in options(cmd, "-spice")[0]
    assert [o for o in options(cmd, "-object") if o.startswith("secret,")] == [
        "secret,id=vnc0-secret,format=raw,file=/run/qemuwrap/disp/vnc0.secret",
        "secret,id=spice1-secret,format=raw,file=/run/qemuwrap/disp/spice1.secret"]
    assert build_graphics.graphics_secrets(dom.devices.graphics, "/run/qemuwrap/disp") == {
        "/run/qemuwrap/disp/vnc0.secret": "s3cr,et",
        "/run/qemuwrap/disp/spice1.secret": "sp1ce pw"}


def test_spice_autoport_takes_the_first_free_port(monkeypatch):
    monkeypatch.setattr(build_graphics, "spice_autoport", lambda host: 5977)
    _dom, cmd = build(domain("<graphics type='spice' autoport='yes'/>"))
    assert options(cmd, "-spice") == [
        "port=5977,addr=127.0.0.1,disable-ticketing=on,seamless-migration=on"]


def test_free_port_skips_a_port_in_use():
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert build_graphics.free_port("127.0.0.1", port) != port


# ------------------------------------------------------------------ in QEMU
async def _ask(sock: str, qmp_commands: list[tuple[str, dict]], hmp: list[str]) -> list:
    async with qmp_at(sock) as qmp:
        out = [await qmp.execute(name, args) for name, args in qmp_commands]
        out += [await qmp.execute("human-monitor-command", {"command-line": line})
                for line in hmp]
    return out


def run_paused(xml: str, tmp_path, qmp_commands=(), hmp=(), *, secrets: bool = False) -> list:
    """Start the command of ``xml`` paused, answer the QMP/HMP questions, stop it."""
    state = tmp_path / "state"
    state.mkdir()
    dom, cmd = build(xml, str(state))
    if secrets:  # what the launcher does before it starts QEMU
        for path, password in build_graphics.graphics_secrets(dom.devices.graphics,
                                                              str(state)).items():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(password)
    proc = subprocess.Popen(cmd.argv, env=cmd.env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        try:
            answers = asyncio.run(_ask(str(state / "qmp.sock"), list(qmp_commands), list(hmp)))
        except AssertionError:
            proc.wait(timeout=10)
            raise AssertionError(proc.stderr.read().decode(errors="replace")) from None
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    assert proc.returncode == 0, stderr
    assert "warning" not in stderr, stderr
    return answers


def qtree_devices(qtree: str) -> dict[str, str]:
    """Each device of ``info qtree`` that has an id: its type, then its block of
    properties up to the next such device (so a virtio proxy's inner device, which has
    no id, stays with it)."""
    qtree = qtree.replace("\r", "")
    heads = list(re.finditer(r'dev: ([\w-]+), id "([^"]+)"', qtree))
    return {m.group(2): f"{m.group(1)}\n{qtree[m.end():nxt.start() if nxt else None]}"
            for m, nxt in zip(heads, [*heads[1:], None], strict=True)}


def pci_ids(query_pci: list) -> dict[int, str]:
    """slot -> vendor:device of the root bus's devices."""
    return {d["slot"]: f"{d['id']['vendor']:04x}:{d['id']['device']:04x}"
            for bus in query_pci for d in bus["devices"]}


@needs_qemu
def test_video_adapters_the_guest_sees(tmp_path):
    xml = domain("<video><model type='qxl' ram='65536' vram='32768' vgamem='8192'/></video>"
                 "<video><model type='virtio' heads='2'/></video>"
                 "<video><model type='qxl' heads='3'><resolution x='1280' y='720'/></model>"
                 "</video>")
    pci, qtree = run_paused(xml, tmp_path, [("query-pci", {})], ["info qtree"])
    ids = pci_ids(pci)
    # libvirt's slots: the primary card at 2, the balloon before the other cards
    assert (ids[2], ids[4], ids[5]) == ("1b36:0100", "1af4:1050", "1b36:0100")
    devs = qtree_devices(qtree["return"] if isinstance(qtree, dict) else qtree)
    assert devs["video0"].startswith("qxl-vga")
    assert "ram_size = 67108864" in devs["video0"] and "vram_size = 33554432" in devs["video0"]
    assert "vgamem_mb = 8" in devs["video0"]
    assert devs["video1"].startswith("virtio-gpu-pci")
    assert "max_outputs = 2 " in devs["video1"]
    assert devs["video2"].startswith("qxl\n")
    assert "max_outputs = 3" in devs["video2"] and "xres = 1280" in devs["video2"]


@needs_qemu
def test_sound_cards_and_codecs_the_guest_sees(tmp_path):
    pcislots = "<address type='pci' domain='0x0000' bus='0x00' slot='0x{:02x}' function='0x0'/>"
    xml = domain(
        "<controller type='usb' index='0' model='piix3-uhci'/>"
        f"<sound model='ich6'><codec type='micro'/><codec type='output'/><audio id='2'/>"
        f"{pcislots.format(0x1a)}</sound>"
        f"<sound model='ich9'>{pcislots.format(0x1b)}</sound>"
        f"<sound model='es1370'>{pcislots.format(0x1c)}</sound>"
        f"<sound model='ac97'>{pcislots.format(0x1d)}</sound>"
        "<sound model='sb16'/><sound model='usb'/><sound model='pcspk'/>"
        "<audio id='1' type='none'/><audio id='2' type='none'/>")
    pci, speaker, qtree = run_paused(xml, tmp_path, [("query-pci", {}), ("qom-get", {
        "path": "/machine", "property": "pcspk-audiodev"})], ["info qtree"])
    assert speaker == "audio1"  # the PC speaker sounds through the first backend
    ids = pci_ids(pci)
    assert (ids[0x1a], ids[0x1b], ids[0x1c], ids[0x1d]) == (
        "8086:2668", "8086:293e", "1274:5000", "8086:2415")
    devs = qtree_devices(qtree)
    assert "cad = 0" in devs["sound0-codec0"] and devs["sound0-codec0"].startswith("hda-micro")
    assert "cad = 1" in devs["sound0-codec1"] and devs["sound0-codec1"].startswith("hda-output")
    assert 'audiodev = "audio2"' in devs["sound0-codec0"]
    assert devs["sound1-codec0"].startswith("hda-duplex")
    assert devs["sound4"].startswith("sb16") and 'audiodev = "audio1"' in devs["sound4"]
    assert devs["sound5"].startswith("usb-audio")


@needs_qemu
def test_inputs_the_guest_sees(tmp_path):
    xml = domain(
        "<controller type='usb' index='0' model='piix3-uhci'/>"
        "<input type='mouse' bus='ps2'/><input type='tablet' bus='usb'/>"
        "<input type='keyboard' bus='usb'/>"
        "<input type='mouse' bus='virtio'><address type='pci' domain='0x0000' bus='0x00' "
        "slot='0x1c' function='0x0'/></input>"
        "<input type='keyboard' bus='virtio'><driver packed='on'/><address type='pci' "
        "domain='0x0000' bus='0x00' slot='0x1d' function='0x0'/></input>")
    mice, pci, qtree = run_paused(xml, tmp_path, [("query-mice", {}), ("query-pci", {})],
                                  ["info qtree"])
    names = {m["name"] for m in mice}
    assert {"QEMU PS/2 Mouse", "QEMU HID Tablet", "QEMU Virtio Mouse"} <= names
    ids = pci_ids(pci)
    assert ids[0x1c] == ids[0x1d] == "1af4:1052"  # virtio-input
    devs = qtree_devices(qtree)
    assert devs["input2"].startswith("usb-kbd")
    assert "packed = true" in devs["input4"]


@needs_qemu
def test_vnc_server_and_its_password(tmp_path):
    xml = domain("<graphics type='vnc' passwd='pw'><listen type='address' "
                 "address='127.0.0.1'/></graphics>")
    (vnc,) = run_paused(xml, tmp_path, [("query-vnc", {})], secrets=True)
    assert vnc["enabled"] and vnc["host"] == "127.0.0.1"
    assert vnc["auth"] == "vnc"  # the password from the owner-only file
    assert 5900 <= int(vnc["service"]) <= 5999  # autoport: QEMU's first free display
    assert oct(os.stat(tmp_path / "state" / "vnc0.secret").st_mode & 0o777) == "0o600"


@needs_qemu
def test_spice_server_on_a_free_port(tmp_path):
    xml = domain("<graphics type='spice' autoport='yes'><mouse mode='client'/></graphics>"
                 "<video><model type='qxl'/></video>")
    (spice,) = run_paused(xml, tmp_path, [("query-spice", {})])
    assert spice["enabled"] and spice["host"] == "127.0.0.1" and spice["port"] >= 5900
    assert spice["auth"] == "none"


@needs_qemu
def test_usb_hub_and_redirected_devices(tmp_path):
    xml = domain(
        "<controller type='usb' index='0' model='piix3-uhci'/>"
        "<graphics type='spice' autoport='no'/>"
        "<hub type='usb'><address type='usb' bus='0' port='1'/></hub>"
        "<input type='tablet' bus='usb'><address type='usb' bus='0' port='1.2'/></input>"
        "<redirdev bus='usb' type='spicevmc'><boot order='2'/>"
        "<address type='usb' bus='0' port='1.3'/></redirdev>"
        "<redirfilter><usbdev class='0x08' allow='no'/><usbdev allow='yes'/></redirfilter>")
    chardevs, bootindex, qtree = run_paused(
        xml, tmp_path, [("query-chardev", {}), ("qom-get", {
            "path": "/machine/peripheral/redir0", "property": "bootindex"})], ["info qtree"])
    assert bootindex == 2
    assert any(c["label"] == "charredir0" and "spicevmc" in c["filename"] for c in chardevs)
    devs = qtree_devices(qtree)
    assert devs["hub0"].startswith("usb-hub") and 'port = "1"' in devs["hub0"]
    assert 'port = "1.2"' in devs["input0"]
    redir = devs["redir0"]
    assert 'port = "1.3"' in redir
    assert 'filter = "0x08:-1:-1:-1:0|-1:-1:-1:-1:1"' in redir


def test_password_expiry_is_qmp_and_refused_until_sent():
    xml = domain("<graphics type='vnc' passwd='pw' passwdValidTo='2031-05-31T16:11:22'/>")
    dom = loads(xml, random=guid.counting_random)
    assert build_graphics.password_expiry_commands(dom.devices.graphics) == [
        ("expire_password", {"protocol": "vnc", "time": "1938010282"})]
    with pytest.raises(QemuwrapError, match="passwdValidTo"):
        build(xml)
