#!/bin/sh
# /init of the qemuwrap demo guest (busybox sh, PID 1, no root filesystem).
# It prints the VM Generation ID that QEMU's vmgenid device exposes, prints it again when a
# restore from a save image changes it in place, and powers off on the ACPI power button or
# after qemuwrap.poweroff=N seconds. It also reports, from inside, what the host's companions
# gave it (EFI, TPM, virtiofs, network) and runs qemu-ga on the guest agent port.
# See qemuwrap/demoguest.py for how the image is built.
# PID 1 must never exit (the kernel would panic), so every path ends in a loop or poweroff.
#
# Kernel command line switches (all optional):
#   qemuwrap.poweroff=N          power off N seconds after the first genid line (0: never)
#   qemuwrap.reboot=N            reboot N seconds after the first genid line (0: never)
#   qemuwrap.virtiofs=TAG[:FILE] mount virtiofs TAG on /mnt/TAG, print FILE's first line
#                                (FILE relative to the share; default hello.txt)
#   qemuwrap.net=dhcp            DHCP on eth0 (busybox udhcpc), then ping the router
#   qemuwrap.net=ADDR/PREFIX[,GW] a static address on eth0 (and a default route via GW)
#   qemuwrap.ping=ADDR[,ADDR...] after the network is up, ping each address: up to 30
#                                tries a second apart (the peer may still be booting)
#   qemuwrap.mount=DEV           mount /dev/DEV (a disk with a file system) on /mnt/DEV
#   qemuwrap.agent=0             do not start qemu-ga even when its port exists
#
# Lines on the serial console. Each is one line, "WORD: ...", printed whole; hosts match
# whole lines (kernel messages are kept off the console). In boot order:
#   demo: up
#   modules: cannot load PATH             (only on failure)
#   efi: yes | efi: no                    (/sys/firmware/efi present)
#   tpm: version V pcr0 HEX | tpm: version V | tpm: none
#                                         (tpm_version_major of tpm0; for a TPM 2 the sha256
#                                          PCR 0 read through the kernel, i.e. a real command)
#   mount: DEV: mounted | mount: DEV: failed
#   virtiofs: TAG: mounted | virtiofs: TAG: mount failed
#   virtiofs: TAG: FILE: FIRST-LINE | virtiofs: TAG: FILE: unreadable
#   net: eth0 lease ADDR/PREFIX router GW dns DNS... | net: eth0 no lease | net: eth0 missing
#   net: eth0 static ADDR/PREFIX router GW
#   net: ping ADDR ok | net: ping ADDR failed  (the router first, then each qemuwrap.ping)
#   agent: running on /dev/vportNpM | agent: no port | agent: not in this image
#   agent: fsfreeze freeze | agent: fsfreeze thaw  (qemu-ga's fsfreeze hook: before it freezes
#                                          the file systems, after it thawed them; any time)
#   genid: GUID | genid: none
#   tpm: ...                              (again after every later genid line: a restore)
#   demo: powering off | demo: rebooting

export PATH=/bin:/sbin
echo "demo: up"
# Keep kernel messages off the console from here on, so they cannot split the lines we print.
/bin/busybox dmesg -n 1

# The applet links come after the mounts: busybox --install may need /proc/self/exe.
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
# devtmpfs provides /dev/mem (for devmem), the /dev/input nodes acpid listens on, /dev/vport*.
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox --install -s /bin
mkdir -p /tmp /etc/acpi /run /mnt

# One way to power off, shared by the power button handler, the timer and qemu-ga's
# guest-shutdown (which runs /sbin/shutdown). The sleep lets the serial port drain the
# message before the machine is gone.
cat >/etc/acpi/powerbtn <<'EOF'
#!/bin/sh
echo "demo: powering off" >/dev/console
sleep 0.2
poweroff -f
EOF
chmod 0755 /etc/acpi/powerbtn
# qemu-ga's guest-shutdown runs "/sbin/shutdown -h|-P|-r +0 MESSAGE"; busybox has no shutdown.
cat >/sbin/shutdown <<'EOF'
#!/bin/sh
case " $* " in
    *" -r "*) echo "demo: rebooting" >/dev/console; sleep 0.2; reboot -f ;;
    *) exec /etc/acpi/powerbtn ;;
esac
EOF
chmod 0755 /sbin/shutdown
# What qemu-ga's guest-get-osinfo reports besides uname (os-release's defaults for Linux).
cat >/etc/os-release <<'EOF'
NAME="Linux"
ID=linux
PRETTY_NAME="qemuwrap demo guest (Debian cloud kernel, busybox)"
VARIANT_ID=qemuwrap-demo
EOF

# insmod each module a list names, in its order (dependencies first).
load_modules() {
    [ -r "$1" ] || return 0
    while read -r ko; do
        [ -n "$ko" ] || continue
        insmod "/lib/modules/$ko" 2>/dev/null || echo "modules: cannot load $ko"
    done <"$1"
}

# Power button: the cloud kernel builds the ACPI button driver and evdev as modules; once they
# are loaded, system_powerdown becomes a KEY_POWER input event that acpid turns into a poweroff.
# acpid opens /dev/input/event0, 1, ... until one is missing, so all nodes must exist first.
start_acpid() {
    load_modules /lib/modules/power.order
    [ -d /sys/module/button ] && [ -d /sys/module/evdev ] || return 1
    i=0
    while [ $i -lt 50 ]; do
        missing=0
        for ev in /sys/class/input/input*/event*; do
            [ -e "/dev/input/${ev##*/}" ] || missing=1
        done
        found=0
        for name in /sys/class/input/input*/name; do
            [ "$(cat "$name" 2>/dev/null)" = "Power Button" ] && found=1
        done
        [ $found = 1 ] && [ $missing = 0 ] && break
        usleep 20000
        i=$((i + 1))
    done
    # Map the key press (EV_KEY=1, KEY_POWER=116, value 1) to the handler script above.
    echo "EV_KEY 01 KEY_POWER 116 1 button/power" >/etc/acpi.map
    echo "button/power powerbtn" >/etc/acpid.conf
    acpid -f -c /etc/acpi -l /tmp/acpid.log -a /etc/acpid.conf -M /etc/acpi.map \
        -p /tmp/acpid.pid &
    # acpid writes its pid file only after it has opened the event devices: once it is there,
    # a press is no longer lost, so tests may press the button as soon as they see "genid:".
    i=0
    while [ ! -s /tmp/acpid.pid ] && [ $i -lt 100 ]; do
        usleep 20000
        i=$((i + 1))
    done
    [ -s /tmp/acpid.pid ]
}
start_acpid || echo "demo: power button not available"

# The virtio drivers, only when the machine has a virtio PCI device (vendor 0x1af4): loading
# them costs boot time under TCG that a guest without such devices need not pay.
if cat /sys/bus/pci/devices/*/vendor 2>/dev/null | grep -q '^0x1af4$'; then
    load_modules /lib/modules/virtio.order
fi

delay=0
reboot_delay=0
virtiofs=
net=
pings=
disk=
agent=1
for word in $(cat /proc/cmdline); do
    case "$word" in
        qemuwrap.poweroff=*) delay=${word#*=} ;;
        qemuwrap.reboot=*) reboot_delay=${word#*=} ;;
        qemuwrap.virtiofs=*) virtiofs=${word#*=} ;;
        qemuwrap.net=*) net=${word#*=} ;;
        qemuwrap.ping=*) pings=${word#*=} ;;
        qemuwrap.mount=*) disk=${word#*=} ;;
        qemuwrap.agent=*) agent=${word#*=} ;;
    esac
done
case "$delay" in
    '' | *[!0-9]*) delay=0 ;;
esac
case "$reboot_delay" in
    '' | *[!0-9]*) reboot_delay=0 ;;
esac

# --- reports ----------------------------------------------------------------------------------

report_efi() {
    if [ -d /sys/firmware/efi ]; then echo "efi: yes"; else echo "efi: no"; fi
}

report_tpm() {
    t=/sys/class/tpm/tpm0
    if [ ! -d $t ]; then
        echo "tpm: none"
        return
    fi
    v=$(cat $t/tpm_version_major 2>/dev/null)
    # Reading a PCR makes the kernel send TPM2_PCR_Read: the TPM answers now, not just at boot.
    pcr=$(cat $t/pcr-sha256/0 2>/dev/null)
    if [ -n "$pcr" ]; then echo "tpm: version $v pcr0 $pcr"; else echo "tpm: version $v"; fi
}

# A disk's file system, e.g. for guest-fsfreeze-freeze to have something to freeze.
report_mount() {
    i=0
    while [ ! -b "/dev/$1" ] && [ $i -lt 100 ]; do
        usleep 20000
        i=$((i + 1))
    done
    mkdir -p "/mnt/$1"
    if mount "/dev/$1" "/mnt/$1" 2>/dev/null; then
        echo "mount: $1: mounted"
    else
        echo "mount: $1: failed"
    fi
}

report_virtiofs() {
    tag=${1%%:*}
    file=hello.txt
    case "$1" in *:*) file=${1#*:} ;; esac
    mkdir -p "/mnt/$tag"
    if ! mount -t virtiofs "$tag" "/mnt/$tag" 2>/dev/null; then
        echo "virtiofs: $tag: mount failed"
        return
    fi
    echo "virtiofs: $tag: mounted"
    if line=$(head -n 1 "/mnt/$tag/$file" 2>/dev/null); then
        echo "virtiofs: $tag: $file: $line"
    else
        echo "virtiofs: $tag: $file: unreadable"
    fi
}

# udhcpc runs this on each DHCP event with the lease in its environment.
cat >/etc/udhcpc.script <<'EOF'
#!/bin/sh
case "$1" in
    bound | renew)
        ip addr flush dev "$interface"
        ip addr add "$ip/$mask" dev "$interface"
        [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
        echo "$ip/$mask ${router%% *} $dns" >/tmp/lease
        ;;
esac
exit 0
EOF
chmod 0755 /etc/udhcpc.script

ping_until() {
    i=0
    while [ $i -lt "$2" ]; do
        if ping -c 1 -W 1 "$1" >/dev/null 2>&1; then
            echo "net: ping $1 ok"
            return 0
        fi
        i=$((i + 1))
        [ $i -lt "$2" ] && sleep 1
    done
    echo "net: ping $1 failed"
    return 1
}

report_net() {
    ip link set lo up
    i=0
    while [ ! -d /sys/class/net/eth0 ] && [ $i -lt 100 ]; do
        usleep 20000
        i=$((i + 1))
    done
    if [ ! -d /sys/class/net/eth0 ]; then
        echo "net: eth0 missing"
        return
    fi
    ip link set eth0 up
    router=
    case "$1" in
        dhcp)
            rm -f /tmp/lease
            udhcpc -i eth0 -n -q -t 10 -T 1 -s /etc/udhcpc.script >/dev/null 2>&1
            if [ ! -s /tmp/lease ]; then
                echo "net: eth0 no lease"
                return
            fi
            read -r addr router dns </tmp/lease
            echo "net: eth0 lease $addr router $router dns $dns"
            ;;
        *)
            addr=${1%%,*}
            case "$1" in *,*) router=${1#*,} ;; esac
            ip addr add "$addr" dev eth0
            [ -n "$router" ] && ip route replace default via "$router" dev eth0
            echo "net: eth0 static $addr router ${router:-none}"
            ;;
    esac
    [ -n "$router" ] && ping_until "$router" 5
    for peer in $(echo "$pings" | tr ',' ' '); do
        ping_until "$peer" 30
    done
}

# qemu-ga runs its fsfreeze hook with "freeze" before it freezes the file systems and with
# "thaw" once they are thawed: the console shows both.
cat >/etc/qemu-ga-fsfreeze-hook <<'EOF'
#!/bin/sh
echo "agent: fsfreeze $1" >/dev/console
EOF
chmod 0755 /etc/qemu-ga-fsfreeze-hook

start_agent() {
    if [ ! -x /sbin/qemu-ga ]; then
        echo "agent: not in this image"
        return
    fi
    # The port's name arrives from the host shortly after virtio_console binds the device.
    i=0
    while [ $i -lt 50 ]; do
        for port in /sys/class/virtio-ports/*; do
            [ "$(cat "$port/name" 2>/dev/null)" = "org.qemu.guest_agent.0" ] || continue
            dev=/dev/${port##*/}
            /sbin/qemu-ga -m virtio-serial -p "$dev" -f /run/qemu-ga.pid -t /run \
                -l /tmp/qemu-ga.log -F/etc/qemu-ga-fsfreeze-hook &
            echo "agent: running on $dev"
            return
        done
        # No virtio-serial controller at all: there will be no port.
        [ -d /sys/class/virtio-ports ] || break
        usleep 40000
        i=$((i + 1))
    done
    echo "agent: no port"
}

# The loopback interface is up on any Linux system (127.0.0.1, what qemu-ga reports of lo).
ip link set lo up
report_efi
report_tpm
[ -n "$disk" ] && report_mount "$disk"
[ -n "$virtiofs" ] && report_virtiofs "$virtiofs"
[ -n "$net" ] && report_net "$net"
[ "$agent" != 0 ] && [ -d /sys/class/virtio-ports ] && start_agent

# Started after the first genid line, so a short timer cannot cut the guest off before it.
start_timer() {
    if [ "$delay" -gt 0 ]; then
        (sleep "$delay"; /etc/acpi/powerbtn) &
    fi
    if [ "$reboot_delay" -gt 0 ]; then
        (sleep "$reboot_delay"; echo "demo: rebooting" >/dev/console; sleep 0.2; reboot -f) &
    fi
}

# QEMU's SSDT declares Name(VGIA, DWORD): bytes 08 "VGIA" 0c, then the buffer address
# (little-endian). The GUID is the 16 bytes at VGIA+40, little-endian in its first three groups.
find_guid_addr() {
    for table in /sys/firmware/acpi/tables/SSDT*; do
        [ -r "$table" ] || continue
        hex=" $(od -An -v -tx1 "$table" | tr -s ' \n' '  ') "
        case "$hex" in
            *" 08 56 47 49 41 0c "*) ;;
            *) continue ;;
        esac
        # shellcheck disable=SC2086 # split the bytes after the match into $1..$4
        set -- ${hex#* 08 56 47 49 41 0c }
        printf '0x%x\n' $((0x$4$3$2$1 + 40))
        return 0
    done
    return 1
}

read_guid() {
    w0=$(devmem "$1" 32) || return 1
    w1=$(devmem $(($1 + 4)) 32) || return 1
    w2=$(devmem $(($1 + 8)) 32) || return 1
    w3=$(devmem $(($1 + 12)) 32) || return 1
    printf '%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x\n' \
        $((w0)) $((w1 & 0xffff)) $((w1 >> 16 & 0xffff)) \
        $((w2 & 0xff)) $((w2 >> 8 & 0xff)) $((w2 >> 16 & 0xff)) $((w2 >> 24 & 0xff)) \
        $((w3 & 0xff)) $((w3 >> 8 & 0xff)) $((w3 >> 16 & 0xff)) $((w3 >> 24 & 0xff))
}

addr=$(find_guid_addr)
if [ -z "$addr" ]; then
    echo "genid: none"
    start_timer
    while :; do sleep 3600; done
fi

# A restore hands the running guest a new GUID in place (no reboot): poll and report changes,
# and check again that the TPM answers (its state came back with the restore).
last=
while :; do
    guid=$(read_guid "$addr")
    if [ -n "$guid" ] && [ "$guid" != "$last" ]; then
        echo "genid: $guid"
        if [ -z "$last" ]; then start_timer; else report_tpm; fi
        last=$guid
    fi
    usleep 200000
done
