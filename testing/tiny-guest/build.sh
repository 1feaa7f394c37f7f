#!/usr/bin/env bash
# testing/tiny-guest/build.sh OUTDIR — builds polyvisor's tiny test guest for libvirt/QEMU (TCG).
#
# Output (everything from stock Debian 12 packages; no loop mounts, no chroot, no host installs):
#   OUTDIR/vmlinuz         the unmodified Debian kernel (linux-image-<abi>-amd64)
#   OUTDIR/initrd.img      busybox-static + the virtio/ext4/ACPI-button modules; /init mounts
#                          /dev/vda (ext4) and switch_roots into it (runs from RAM without a disk)
#   OUTDIR/template.qcow2  64 MiB ext4 root: busybox init, DHCP (udhcpc), acpid (power button
#                          -> clean poweroff), root shell on ttyS0
#   OUTDIR/cmdline         the kernel command line domain.xml.tmpl uses
#
# Idempotent: packages and extractions are cached in OUTDIR/.cache (delete it afterwards to save
# ~900 MB); vmlinuz/initrd.img are replaced only when their bytes change; template.qcow2 is never
# overwritten once it exists (linked clones use it as backing file) unless FORCE_TEMPLATE=1.
#
# Needs: apt-get, apt-cache, dpkg-deb, qemu-img, mke2fs (>= 1.43 for -d), gzip, cmp.
# Knobs: KPKG=linux-image-6.1.0-NN-amd64 (default: what linux-image-amd64 depends on),
#        DISK_MB=64, EXTRA_MODULES="name ...".
set -euo pipefail

out="${1:?usage: build.sh OUTDIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cache="$out/.cache"
disk_mb="${DISK_MB:-64}"
modules="virtio_pci virtio_blk virtio_net crc32c_generic ext4 button evdev ${EXTRA_MODULES:-}"
say() { echo "tiny-guest: $*" >&2; }
die() { say "$*"; exit 1; }

for tool in apt-get apt-cache dpkg-deb qemu-img mke2fs gzip cmp; do
  command -v "$tool" >/dev/null || die "missing tool: $tool (see scripts/ci/apt-packages.txt)"
done
mkdir -p "$cache/debs"
apt_opts=()
# apt downloads as user _apt; as root into a root-owned directory that only warns, so say root.
[ "$(id -u)" = 0 ] && apt_opts=(-o APT::Sandbox::User=root)

# --- packages -------------------------------------------------------------------------------
if [ -z "${KPKG:-}" ]; then
  KPKG="$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"
  [ -n "$KPKG" ] || die "cannot resolve linux-image-amd64 (run apt-get update first)"
fi
deb_of() { # PACKAGE -> path of its .deb in the cache (downloaded once)
  local f
  f="$(find "$cache/debs" -maxdepth 1 -name "${1}_*.deb" | head -n1)"
  if [ -z "$f" ]; then
    say "downloading $1"
    (cd "$cache/debs" && apt-get download "${apt_opts[@]}" "$1" >&2)
    f="$(find "$cache/debs" -maxdepth 1 -name "${1}_*.deb" | head -n1)"
  fi
  [ -n "$f" ] || die "download of $1 failed"
  echo "$f"
}
unpack() { # DEB -> directory it is extracted into (once)
  local dir="$cache/x-$(basename "$1" .deb)"
  if [ ! -e "$dir/.done" ]; then
    rm -rf "$dir"; mkdir -p "$dir"; dpkg-deb -x "$1" "$dir"; touch "$dir/.done"
  fi
  echo "$dir"
}
kx="$(unpack "$(deb_of "$KPKG")")"
bx="$(unpack "$(deb_of busybox-static)")"
bb="$bx/bin/busybox"
kver="$(ls "$kx/lib/modules" | head -n1)"
moddir="$kx/lib/modules/$kver"
[ -f "$kx/boot/vmlinuz-$kver" ] || die "no kernel image in $KPKG"
[ -e "$moddir/modules.dep" ] || { say "depmod $kver (once)"; "$bb" depmod -b "$kx" "$kver"; }

# --- module closure (each module with what modules.dep says it needs) -------------------------
declare -A picked=()
closure=()
pick() { # relative .ko path
  [ -n "${picked[$1]:-}" ] && return 0
  picked[$1]=1; closure+=("$1")
}
need_module() { # module name
  local name="${1//-/_}" line dep
  line="$(grep -E "(^|/)${name}\.ko(\.[a-z]+)?:" "$moddir/modules.dep" || true)"
  if [ -z "$line" ]; then
    grep -qE "(^|/)${name}\.ko" "$moddir/modules.builtin" && return 0
    die "kernel module $name not found in $kver"
  fi
  for dep in ${line#*:}; do pick "$dep"; done
  pick "${line%%:*}"
}
for m in $modules; do need_module "$m"; done

# --- root file system tree --------------------------------------------------------------------
stage="$cache/stage"
rm -rf "$stage"; mkdir -p "$stage"
root="$stage/root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc/init.d,etc/acpi/PWRF,proc,sys,dev,run,tmp,root,newroot,var/log,var/run}
chmod 1777 "$root/tmp"
cp "$bb" "$root/bin/busybox"
for applet in $("$bb" --list-full); do
  [ "$applet" = bin/busybox ] && continue
  mkdir -p "$root/$(dirname "$applet")"; ln -sf /bin/busybox "$root/$applet"
done
if [ "$(id -u)" = 0 ]; then
  mknod -m 600 "$root/dev/console" c 5 1
  mknod -m 666 "$root/dev/null" c 1 3
fi
for ko in "${closure[@]}"; do
  mkdir -p "$root/lib/modules/$kver/$(dirname "$ko")"
  cp "$moddir/$ko" "$root/lib/modules/$kver/$ko"
done
cp "$moddir/modules.builtin" "$moddir/modules.order" "$root/lib/modules/$kver/" 2>/dev/null || true
"$bb" depmod -b "$root" "$kver"
printf '%s\n' $modules > "$root/etc/modules"

cat > "$root/etc/inittab" <<'INIT'
::sysinit:/etc/init.d/rcS
ttyS0::respawn:-/bin/sh
::ctrlaltdel:/sbin/reboot
::shutdown:/etc/init.d/rcK
INIT

cat > "$root/etc/init.d/rcS" <<'RCS'
#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
[ -e /proc/self ] || mount -t proc proc /proc
grep -q ' /sys ' /proc/mounts || mount -t sysfs sys /sys
grep -q ' /dev ' /proc/mounts || mount -t devtmpfs dev /dev
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=755 tmpfs /run
ln -sfn /run /var/run 2>/dev/null
for m in $(cat /etc/modules); do modprobe -q "$m"; done
name=$(cat /etc/hostname 2>/dev/null || echo tiny)
for arg in $(cat /proc/cmdline); do
  case "$arg" in tg.hostname=*) name=${arg#tg.hostname=} ;; esac
done
hostname "$name"
ip link set lo up
nic=eth0
[ -e /sys/class/net/$nic ] || nic=$(ls /sys/class/net | grep -v '^lo$' | head -n1)
if [ -n "$nic" ]; then
  ip link set "$nic" up
  # -R: release the lease on exit (rcK), so libvirt never reports a stale address
  udhcpc -R -b -i "$nic" -s /etc/udhcpc.script -x hostname:"$name" -t 10 -T 1 -A 3 -p /run/udhcpc.pid
fi
acpid -c /etc/acpi -l /run/acpid.log
echo "boot $(cat /proc/uptime) $(cat /proc/sys/kernel/random/boot_id)" >> /var/log/boots
echo "TINY-GUEST: userland up (uptime $(cut -d' ' -f1 /proc/uptime)s)" > /dev/console
RCS

cat > "$root/etc/init.d/rcK" <<'RCK'
#!/bin/sh
echo "TINY-GUEST: shutting down" > /dev/console
kill $(cat /run/udhcpc.pid 2>/dev/null) 2>/dev/null; usleep 200000
sync
mount -o remount,ro / 2>/dev/null
RCK

cat > "$root/etc/udhcpc.script" <<'DHCP'
#!/bin/sh
case "$1" in
deconfig)
  ip -4 addr flush dev "$interface"; ip link set "$interface" up ;;
bound|renew)
  ifconfig "$interface" "$ip" netmask "${subnet:-255.255.255.0}" ${broadcast:+broadcast $broadcast}
  peer=$serverid
  if [ -n "$router" ]; then
    ip route del default 2>/dev/null
    set -- $router; ip route add default via "$1" dev "$interface"; peer=$1
  fi
  # one packet to the router / DHCP server: the host's neighbour table then knows our MAC
  [ -n "$peer" ] && ping -c 1 -W 1 "$peer" >/dev/null 2>&1 &
  : > /etc/resolv.conf.new
  [ -n "$domain" ] && echo "search $domain" >> /etc/resolv.conf.new
  for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf.new; done
  mv /etc/resolv.conf.new /etc/resolv.conf 2>/dev/null
  echo "TINY-GUEST: $interface bound $ip (uptime $(cut -d' ' -f1 /proc/uptime)s)" > /dev/console ;;
esac
exit 0
DHCP

cat > "$root/etc/acpi/PWRF/00000080" <<'PWR'
#!/bin/sh
echo "TINY-GUEST: power button -> poweroff" > /dev/console
poweroff
PWR

echo tiny > "$root/etc/hostname"
echo "root::0:0:root:/root:/bin/sh" > "$root/etc/passwd"
echo "root:x:0:" > "$root/etc/group"
echo "proc /proc proc defaults 0 0" > "$root/etc/fstab"
chmod 755 "$root/etc/init.d/rcS" "$root/etc/init.d/rcK" "$root/etc/udhcpc.script" "$root/etc/acpi/PWRF/00000080"

# --- initramfs: the same tree plus /init ------------------------------------------------------
initramfs="$stage/initramfs"
cp -a "$root" "$initramfs"
cat > "$initramfs/init" <<'INITRD'
#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /etc/modules); do modprobe -q "$m" || echo "init: modprobe $m failed"; done
rootdev=/dev/vda
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    tg.root=*) rootdev=${arg#tg.root=} ;;
    tg.noroot) rootdev= ;;
  esac
done
if [ -n "$rootdev" ]; then
  n=0
  while [ ! -b "$rootdev" ] && [ $n -lt 50 ]; do usleep 100000; n=$((n + 1)); done
  if mount -t ext4 -o rw "$rootdev" /newroot && [ -x /newroot/sbin/init ]; then
    for fs in dev proc sys; do mount --move /$fs /newroot/$fs; done
    exec switch_root /newroot /sbin/init
  fi
  echo "init: cannot use $rootdev as root; running from the initramfs"
fi
exec /sbin/init
INITRD
chmod 755 "$initramfs/init"
(cd "$initramfs" && find . | LC_ALL=C sort | "$bb" cpio -o -H newc -R 0:0 2>/dev/null) | gzip -n -6 > "$stage/initrd.img"
echo "console=ttyS0 quiet loglevel=3 panic=-1 tsc=reliable" > "$stage/cmdline"

place() { # SRC DST: replace DST only when the bytes differ
  if [ -f "$2" ] && cmp -s "$1" "$2"; then return 0; fi
  cp "$1" "$2.tmp"; chmod 644 "$2.tmp"; mv -f "$2.tmp" "$2"; say "updated $(basename "$2")"
}
place "$kx/boot/vmlinuz-$kver" "$out/vmlinuz"
place "$stage/initrd.img" "$out/initrd.img"
place "$stage/cmdline" "$out/cmdline"

# --- template disk ----------------------------------------------------------------------------
if [ ! -e "$out/template.qcow2" ] || [ "${FORCE_TEMPLATE:-0}" = 1 ]; then
  mke2fs -q -F -t ext4 -L tgroot -E root_owner=0:0 -d "$root" "$stage/rootfs.img" "${disk_mb}M"
  qemu-img convert -f raw -O qcow2 "$stage/rootfs.img" "$out/template.qcow2.tmp"
  mv -f "$out/template.qcow2.tmp" "$out/template.qcow2"
  rm -f "$stage/rootfs.img"
  say "built template.qcow2 (${disk_mb} MiB ext4)"
else
  say "template.qcow2 exists, kept (FORCE_TEMPLATE=1 rebuilds it)"
fi
chmod 755 "$out"
say "done: $out (kernel $kver)"
