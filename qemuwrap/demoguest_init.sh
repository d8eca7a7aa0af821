#!/bin/sh
# /init of the qemuwrap demo guest (busybox sh, PID 1, no root filesystem).
# It prints the VM Generation ID that QEMU's vmgenid device exposes, prints it again when a
# restore from a save image changes it in place, and powers off on the ACPI power button or
# after qemuwrap.poweroff=N seconds. See qemuwrap/demoguest.py for how the image is built.
# PID 1 must never exit (the kernel would panic), so every path ends in a loop or poweroff.

export PATH=/bin:/sbin
echo "demo: up"
# Keep kernel messages off the console from here on, so they cannot split the lines we print.
/bin/busybox dmesg -n 1

# The applet links come after the mounts: busybox --install may need /proc/self/exe.
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
# devtmpfs provides /dev/mem (for devmem) and the /dev/input nodes acpid listens on.
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox --install -s /bin
mkdir -p /tmp /etc/acpi

# One way to power off, shared by the power button handler and the timer. The sleep lets the
# serial port drain the message before the machine is gone.
cat >/etc/acpi/powerbtn <<'EOF'
#!/bin/sh
echo "demo: powering off" >/dev/console
sleep 0.2
poweroff -f
EOF
chmod 0755 /etc/acpi/powerbtn

# Power button: the cloud kernel builds the ACPI button driver and evdev as modules; once they
# are loaded, system_powerdown becomes a KEY_POWER input event that acpid turns into a poweroff.
# acpid opens /dev/input/event0, 1, ... until one is missing, so all nodes must exist first.
start_acpid() {
    insmod /lib/modules/evdev.ko || return 1
    insmod /lib/modules/button.ko || return 1
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

# qemuwrap.poweroff=N on the kernel command line: power off N seconds after boot (0: never);
# qemuwrap.reboot=N: reboot N seconds after boot (for testing on_reboot).
delay=0
reboot_delay=0
for word in $(cat /proc/cmdline); do
    case "$word" in
        qemuwrap.poweroff=*) delay=${word#*=} ;;
        qemuwrap.reboot=*) reboot_delay=${word#*=} ;;
    esac
done
case "$delay" in
    '' | *[!0-9]*) delay=0 ;;
esac
case "$reboot_delay" in
    '' | *[!0-9]*) reboot_delay=0 ;;
esac
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

# A restore hands the running guest a new GUID in place (no reboot): poll and report changes.
last=
while :; do
    guid=$(read_guid "$addr")
    if [ -n "$guid" ] && [ "$guid" != "$last" ]; then
        echo "genid: $guid"
        [ -z "$last" ] && start_timer
        last=$guid
    fi
    usleep 200000
done
