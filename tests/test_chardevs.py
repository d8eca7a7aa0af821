"""Character devices: libvirt's reading of a host end, its port numbering and console
compatibility, the options built, the refusals, and what QEMU makes of them."""

from __future__ import annotations

import pytest
from goldenvm import build_checked, paused

from qemuwrap.conf import guid
from qemuwrap.conf.devices.chardev import CharType, ConsoleTargetType, chr_spec
from qemuwrap.conf.domain import loads
from qemuwrap.errors import QemuwrapError, XMLError
from qemuwrap.qemu.build import chardev as build_chardev
from qemuwrap.qemu.capabilities import Capabilities
from qemuwrap.qemu.command import build_command

from conftest import DEFAULT_CAPS, needs_qemu

CAPS = Capabilities.from_file(DEFAULT_CAPS)


def dom(devices: str, machine: str = "pc"):
    return loads(f"<domain type='qemu'><name>c</name><memory unit='MiB'>64</memory><os>"
                 f"<type arch='x86_64' machine='{machine}'>hvm</type></os><devices>{devices}"
                 "</devices></domain>", random=guid.counting_random)


def argv(devices: str, machine: str = "pc") -> list[str]:
    return build_checked(dom(devices, machine), CAPS, "/run/qemuwrap/c").argv


def values(args: list[str], option: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == option]


def test_udp_reads_both_sources_tcp_and_unix_default_to_connect():
    d = dom("<serial type='udp'><source mode='connect' host='1.2.3.4' service='5'/>"
            "<source mode='bind' host='0.0.0.0' service='6'/></serial>"
            "<serial type='tcp'><source host='h' service='7'/></serial>"
            "<serial type='unix'><source path='/s'/></serial>")
    udp, tcp, unix = (chr_spec(s) for s in d.devices.serials)
    assert (udp.host, udp.service, udp.bind_host, udp.bind_service) == ("1.2.3.4", "5",
                                                                        "0.0.0.0", "6")
    assert not tcp.listen and not unix.listen


def test_a_missing_type_is_a_pty_and_its_path_is_dropped():
    d = dom("<serial><source path='/dev/pts/4'/></serial>")
    serial = d.devices.serials[0]
    assert serial.type == CharType.PTY and serial.sources == []


@pytest.mark.parametrize(("devices", "message"), [
    ("<serial type='tcp'><source host='h' service='1'/><source host='h' service='2'/>"
     "</serial>", "only one source element"),
    ("<serial type='file'/>", "needs <source path=.../>"),
    ("<serial type='tcp'><source mode='bind' host='h' service='1'><reconnect "
     "enabled='yes' timeout='1'/></source></serial>", "only for mode='connect'"),
    ("<serial type='spicevmc'/>", "cannot be of type 'spicevmc'"),
    ("<serial type='spiceport'><source channel='a/b'/></serial>", "not a valid channel name"),
    ("<console type='pty'/><console type='pty'/>", "only the first console"),
    ("<serial type='pty'><target type='isa-serial'><model name='pci-serial'/></target>"
     "</serial>", "requires target type 'pci-serial'"),
    ("<serial type='pty'><target type='pci-serial'/><address type='isa'/></serial>",
     "requires address type 'pci'"),
    ("<channel type='pty'><target type='guestfwd' port='1'/></channel>", "target address"),
])
def test_libvirts_parse_rules(devices, message):
    with pytest.raises(XMLError, match=message):
        dom(devices)


def test_ports_are_numbered_as_libvirt_does():
    """Explicit isa-serial targets take the lowest free port first; the others one past
    the highest (virDomainChrIsaSerialDefPostParse, virDomainChrDefPostParse)."""
    d = dom("<serial type='pty'/><serial type='pty'><target type='isa-serial'/></serial>"
            "<serial type='pty'><target port='2'/></serial><serial type='pty'/>"
            "<parallel type='pty'/><parallel type='pty'/>")
    assert [s.port for s in d.devices.serials] == [3, 0, 2, 4]
    assert [p.port for p in d.devices.parallels] == [0, 1]


def test_console_only_becomes_serial_port_0():
    d = dom("<console type='file'><source path='/var/log/c.log'/>"
            "<target type='serial' port='3'/></console>")
    (serial,), (console,) = d.devices.serials, d.devices.consoles
    assert serial.port == 0 and serial.path == "/var/log/c.log"
    assert console.port == 0 and console.target_type == ConsoleTargetType.SERIAL


def test_serial_ports_get_a_serial_console_first_and_virtio_consoles_follow():
    """libvirt inserts console 0 (serial port 0's alias), so a virtio console is
    console1: the id QEMU sees."""
    args = argv("<controller type='virtio-serial'/><serial type='pty'/>"
                "<console type='pty'><target type='virtio'/></console>")
    assert "virtconsole,chardev=charconsole1,id=console1" in values(args, "-device")
    assert sum(a.startswith("isa-serial") for a in values(args, "-device")) == 1


def test_a_console_that_differs_from_serial_port_0_becomes_its_alias():
    d = dom("<serial type='null'/><console type='file'><source path='/x'/></console>")
    assert d.devices.consoles[0].type == CharType.NULL


def test_unix_channel_without_path_listens_in_the_state_directory():
    args = argv("<controller type='virtio-serial'/><channel type='unix'><target "
                "type='virtio' name='org.qemu.guest_agent.0'/></channel>"
                "<channel type='unix'><target type='virtio'/>"
                "<address type='virtio-serial' controller='0' bus='0' port='3'/></channel>")
    chardevs = values(args, "-chardev")
    assert ("socket,id=charchannel0,path=/run/qemuwrap/c/channel.org.qemu.guest_agent.0,"
            "server=on,wait=off") in chardevs
    assert ("socket,id=charchannel1,path=/run/qemuwrap/c/vioser-00-00-03.sock,server=on,"
            "wait=off") in chardevs


def test_tls_builds_credentials_before_the_socket(tmp_path, monkeypatch):
    monkeypatch.setattr(build_chardev, "TLS_DIRS", (str(tmp_path),))
    monkeypatch.setattr("qemuwrap.qemu.validate.chardev.TLS_DIRS", (str(tmp_path),))
    args = argv("<serial type='tcp'><source mode='connect' host='127.0.0.1' service='5555' "
                "tls='yes'><reconnect enabled='yes' timeout='3'/></source></serial>")
    objects, chardevs = values(args, "-object"), values(args, "-chardev")
    assert (f"tls-creds-x509,id=objcharserial0_tls0,dir={tmp_path},endpoint=client,"
            "verify-peer=on") in objects
    assert ("socket,id=charserial0,host=127.0.0.1,port=5555,reconnect=3,"
            "tls-creds=objcharserial0_tls0") in chardevs


def test_tls_without_certificates_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("qemuwrap.qemu.validate.chardev.TLS_DIRS", (str(tmp_path / "no"),))
    with pytest.raises(QemuwrapError, match="TLS for a chardev needs certificates"):
        argv("<serial type='tcp'><source mode='bind' host='127.0.0.1' service='5555' "
             "tls='yes'/></serial>")


def test_host_end_refusals(tmp_path):
    with pytest.raises(QemuwrapError) as exc:
        argv(f"<serial type='unix'><source mode='bind' path='/{'x' * 120}'/></serial>"
             "<serial type='tcp'><source host='h' service='1'><reconnect enabled='yes' "
             "timeout='0'/></source></serial>")
    lines = str(exc.value).splitlines()
    assert len(lines) == 2
    assert "longer than a UNIX socket allows" in lines[0]
    assert "timeout above 0" in lines[1]


def test_what_this_host_lacks_is_a_host_check(tmp_path):
    """Translated as for any host; dry-run, validate and start refuse it here."""
    from qemuwrap.qemu.validate.devhost import check_host_devices

    (tmp_path / "fifo.in").touch()
    d = dom(f"<serial type='unix'><source mode='connect' path='{tmp_path}/none'/></serial>"
            "<serial type='dev'><source path='/dev/qemuwrap-none'/></serial>"
            f"<serial type='pipe'><source path='{tmp_path}/fifo'/></serial>"
            f"<serial type='unix'><source mode='connect' path='{tmp_path}/r'><reconnect "
            "enabled='yes' timeout='2'/></source></serial>")
    build_command(d, CAPS, "/run/qemuwrap/c")
    lines = [str(e) for e in check_host_devices(d)]
    assert len(lines) == 3
    assert "needs a listening peer" in lines[0]
    assert "host device /dev/qemuwrap-none does not exist" in lines[1]
    assert "make them with mkfifo" in lines[2]


def test_explain_says_seclabels_are_not_enforced():
    d = dom("<serial type='file'><source path='/var/log/s'><seclabel model='dac' "
            "relabel='no'/></source></serial>")
    cmd = build_checked(d, CAPS, "/run/qemuwrap/c")
    chardev = next(a for a in cmd.args if a.option == "-chardev" and "charserial0" in a.value)
    assert "not enforced" in chardev.why


@needs_qemu
def test_qemu_sees_the_chardevs_as_libvirt_builds_them(tmp_path, request):
    """The host ends QEMU opened (query-chardev) and the ports the guest gets."""
    with paused("channel-virtio", tmp_path, request) as guest:
        chardevs = {c["label"]: c["filename"] for c in guest.cmd("query-chardev")}
        agent = chardevs["charchannel0"]
        assert agent.startswith("disconnected:unix:") and agent.endswith(
            "/state/channel.org.qemu.guest_agent.0,server=on")
        assert chardevs["charchannel2"].startswith("pty:")
        assert chardevs["charchannel3"] == "qemu-vdagent"
        qtree = guest.hmp("info qtree")
        assert 'name = "org.qemu.guest_agent.0"' in qtree
        assert 'name = "com.redhat.spice.0"' in qtree
        port = guest.cmd("qom-get", path="/machine/peripheral/channel1", property="nr")
        assert port == 3


@needs_qemu
def test_qemu_sees_serial_port_models(tmp_path, request):
    with paused("serial-pci-usb-debugcon", tmp_path, request) as guest:
        assert guest.pci()["serial0"] == (0x1B36, 0x0002)  # QEMU's PCI serial
        qtree = guest.hmp("info qtree")
        assert 'dev: usb-serial, id "serial1"' in qtree
        assert 'dev: isa-debugcon, id "serial2"' in qtree and "iobase = 1026" in qtree
    (tmp_path / "isa").mkdir()
    with paused("serial-isa-ports", tmp_path / "isa", request) as guest:
        qtree = guest.hmp("info qtree")
        for index, base in ((0, "0x3f8"), (1, "0x2f8"), (2, "0x3e8"), (3, "0x2e8")):
            assert f"index = {index}" in qtree and f"iobase = {int(base, 16)}" in qtree


def test_serial_ids_follow_the_list_not_the_ports():
    """libvirt names serial ports by their place among the <serial>s (serial0 may be
    COM2); the serial console is that port's other name."""
    d = dom("<serial type='pty'><target port='1'/></serial><serial type='null'><target "
            "port='0'/></serial><console type='pty'><target type='serial' port='1'/>"
            "</console>")
    args = build_checked(d, CAPS, "/run/qemuwrap/c").argv
    devices = values(args, "-device")
    assert "isa-serial,chardev=charserial0,id=serial0,index=1" in devices
    assert "isa-serial,chardev=charserial1,id=serial1,index=0" in devices
    assert d.devices.consoles[0].alias_name == "serial0"
