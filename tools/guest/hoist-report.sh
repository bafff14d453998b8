#!/bin/sh
# What this guest sees, printed once on the serial console after multi-user is reached, as
# one line: "HOIST-GUEST-REPORT {json}". Hoist's boot check (tools/bootcheck.py) compares it
# with the source VM, so it reports only what the kernel itself found, never what a config
# file claims: the CPUs it brought up, the RAM the firmware handed over, the MACs of the NICs
# it bound, the disks it saw (with their serials) and what is mounted from them.
set -u

json_str() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"; }

cpus=$(grep -c '^processor' /proc/cpuinfo)
sockets=$(grep '^physical id' /proc/cpuinfo | sort -u | wc -l)
[ "$sockets" -ge 1 ] || sockets=1
cores=$(awk -F: '/^cpu cores/ {gsub(/ /, "", $2); print $2; exit}' /proc/cpuinfo)
siblings=$(awk -F: '/^siblings/ {gsub(/ /, "", $2); print $2; exit}' /proc/cpuinfo)
[ -n "$cores" ] || cores=1
[ -n "$siblings" ] || siblings=$cores
threads=$((siblings / cores))

# The RAM the firmware's memory map gives the OS: closer to the VM's memory than MemTotal,
# which the kernel's own reservations shrink.
ram=0
for d in /sys/firmware/memmap/*; do
    [ "$(cat "$d/type")" = "System RAM" ] || continue
    s=$(($(cat "$d/start"))); e=$(($(cat "$d/end")))
    ram=$((ram + e - s + 1))
done

firmware=bios; secure=false
if [ -d /sys/firmware/efi ]; then
    firmware=uefi
    sb=$(ls /sys/firmware/efi/efivars/SecureBoot-* 2>/dev/null | head -n1)
    if [ -n "$sb" ] && [ "$(od -An -tu1 -j4 -N1 "$sb" | tr -d ' ')" = "1" ]; then secure=true; fi
fi

macs=""
for n in /sys/class/net/*; do
    [ "$(cat "$n/type")" = "1" ] || continue          # ethernet only: not lo
    [ -e "$n/device" ] || continue                    # a real device, not a virtual link
    macs="$macs${macs:+,}$(json_str "$(cat "$n/address")")"
done

disks=""
for b in /sys/block/*; do
    name=${b##*/}
    [ -e "$b/device" ] || continue                    # no loop or ram devices
    size=$(($(cat "$b/size") * 512))
    # SCSI: the unit serial number page (ID_SCSI_SERIAL) holds the whole serial; udev's
    # ID_SERIAL_SHORT comes from the device identification page, which QEMU cuts to 20.
    props=$(udevadm info --query=property --name="/dev/$name" 2>/dev/null)
    serial=$(printf '%s\n' "$props" | sed -n 's/^ID_SCSI_SERIAL=//p' | head -n1)
    [ -n "$serial" ] || serial=$(printf '%s\n' "$props" | sed -n 's/^ID_SERIAL_SHORT=//p' | head -n1)
    [ -n "$serial" ] || serial=$(cat "$b/serial" 2>/dev/null || true)
    bus=$(udevadm info --query=property --name="/dev/$name" 2>/dev/null | sed -n 's/^ID_BUS=//p')
    disks="$disks${disks:+,}{\"name\":$(json_str "$name"),\"size\":$size,\"serial\":$(json_str "$serial"),\"bus\":$(json_str "$bus")}"
done

mounts=""
while read -r src target fstype _; do
    case "$src" in /dev/*) ;; *) continue ;; esac
    uuid=$(blkid -s UUID -o value "$src" 2>/dev/null || true)
    disk=$(lsblk -no PKNAME "$src" 2>/dev/null | head -n1)
    [ -n "$disk" ] || disk=${src#/dev/}
    mounts="$mounts${mounts:+,}{\"target\":$(json_str "$target"),\"source\":$(json_str "$src"),\"disk\":$(json_str "$disk"),\"uuid\":$(json_str "$uuid"),\"fstype\":$(json_str "$fstype")}"
done < /proc/mounts

# Every filesystem /etc/fstab names, and whether it is mounted: a disk left behind, or one
# the guest no longer finds by its UUID, shows here (and usually as no multi-user at all).
fstab=""
while read -r spec target fstype _; do
    case "$spec" in ''|'#'*) continue ;; esac
    [ "$fstype" = swap ] && continue
    mounted=false
    awk -v t="$target" '$2 == t {found=1} END {exit !found}' /proc/mounts && mounted=true
    fstab="$fstab${fstab:+,}{\"spec\":$(json_str "$spec"),\"target\":$(json_str "$target"),\"mounted\":$mounted}"
done < /etc/fstab

state=$(systemctl is-system-running 2>/dev/null || true)
multi=$(systemctl is-active multi-user.target 2>/dev/null || true)
data=""
[ -r /data/hoist-data.txt ] && data=$(head -c 200 /data/hoist-data.txt)

line="HOIST-GUEST-REPORT {\"cpus\":$cpus,\"sockets\":$sockets,\"cores\":$cores,\"threads\":$threads,\"ram\":$ram,\"firmware\":\"$firmware\",\"secureBoot\":$secure,\"macs\":[$macs],\"disks\":[$disks],\"mounts\":[$mounts],\"fstab\":[$fstab],\"multiUser\":$(json_str "$multi"),\"state\":$(json_str "$state"),\"kernel\":$(json_str "$(uname -r)"),\"data\":$(json_str "$data")}"
for console in /dev/ttyS0 /dev/hvc0; do
    [ -w "$console" ] && printf '%s\n' "$line" > "$console"
done
printf '%s\n' "$line"
