#!/usr/bin/env bash
# Starts virtlogd + libvirtd without systemd (idempotent), builds the tiny TCG guest
# (testing/tiny-guest/build.sh), defines the isolated networks `tg-net` and `pv-vlan-42`
# (VLAN 42 of a bridge-per-VLAN host, driver setting `vlan_networks`) and the storage pool
# `polyvisor` used by the libvirt driver's tests (crates/libvirt/tests,
# crates/cli/tests/libvirt_qemu.rs), defines the contract guests `pv-contract-source` (stopped
# VM) and `pv-contract-tmpl` (Flag template), and writes /run/polyvisor-test/libvirt.json
# (the backend contract, scripts/ci/README.md).
#
# Environment (all optional):
#   POLYVISOR_TINY_DIR      artifacts dir (default /var/lib/polyvisor-tiny)
#   POLYVISOR_POOL_DIR      pool directory (default /var/lib/polyvisor-pool)
#   POLYVISOR_TEST_RUN_DIR  where the contract file goes (default /run/polyvisor-test)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
top="$(cd "$here/../.." && pwd)"
guest_dir="$top/testing/tiny-guest"
run="${POLYVISOR_TEST_RUN_DIR:-/run/polyvisor-test}"
tiny="${POLYVISOR_TINY_DIR:-/var/lib/polyvisor-tiny}"
pooldir="${POLYVISOR_POOL_DIR:-/var/lib/polyvisor-pool}"
uri=qemu:///system
log() { echo "start-libvirt: $*"; }

# QEMU: Debian's qemu-system-x86 with the qemu-utils of the same version (a preinstalled
# newer qemu-utils from backports Breaks qemu-system-common 7.2, so allow the downgrade).
if ! command -v qemu-system-x86_64 >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  v="$(apt-cache madison qemu-system-x86 | awk 'NR==1{print $3}')"
  log "installing qemu-system-x86 $v"
  apt-get install -y -q --no-install-recommends --allow-downgrades "qemu-system-x86=$v" "qemu-utils=$v"
fi

command -v libvirtd >/dev/null || { echo "start-libvirt: libvirtd missing (apt-get install libvirt-daemon-system; see scripts/ci/apt-packages.txt)" >&2; exit 1; }

mkdir -p /run/libvirt /var/log/libvirt/qemu
# /dev/kvm as udev would set it (group kvm, 0660). Without udev the node stays root-only
# (0600): libvirtd then finds its cached QEMU capabilities (probed with KVM) invalid for the
# qemu user on every lookup and re-probes QEMU twice per call — seconds each on a loaded
# host, holding the capabilities lock, so defines, starts, snapshots and even `virsh version`
# queue behind it (issue 8 item 9; seen as qemu-system-x86_64 -machine none probes every few
# seconds and the cache file in /var/cache/libvirt/qemu/capabilities rewritten).
if [ -c /dev/kvm ] && getent group kvm >/dev/null; then
  if [ "$(stat -c '%G %a' /dev/kvm)" != "kvm 660" ]; then
    log "setting /dev/kvm to group kvm, mode 0660 (as udev does)"
    chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
  fi
fi
# A live daemon of that name (zombies do not count: a killed daemon whose parent never
# reaps it still answers `kill -0`).
running() { # running NAME
  local pid st
  for pid in $(pgrep -x "$1" || true); do
    st="$(awk '/^State:/{print $2}' "/proc/$pid/status" 2>/dev/null || true)"
    [ -n "$st" ] && [ "$st" != "Z" ] && return 0
  done
  return 1
}
if ! running virtlogd; then
  log "starting virtlogd"; rm -f /run/virtlogd.pid; virtlogd -d
fi
if ! running libvirtd; then
  log "starting libvirtd"; rm -f /run/libvirtd.pid; libvirtd -d
fi
for _ in $(seq 1 60); do
  timeout 5 virsh -c "$uri" version >/dev/null 2>&1 && break
  sleep 0.5
done
timeout 5 virsh -c "$uri" version >/dev/null || { echo "start-libvirt: libvirtd does not answer on $uri" >&2; exit 1; }

if [ ! -f "$tiny/template.qcow2" ] || [ ! -f "$tiny/vmlinuz" ]; then
  log "building tiny guest into $tiny"
  bash "$guest_dir/build.sh" "$tiny"
fi
chmod 0755 "$tiny"

if ! virsh -c "$uri" net-info tg-net >/dev/null 2>&1; then
  virsh -c "$uri" net-define "$guest_dir/network.xml" >/dev/null
fi
# (capture first: `virsh … | grep -q` under pipefail fails when grep exits early)
net_info="$(virsh -c "$uri" net-info tg-net)"
grep -q 'Active:.*yes' <<<"$net_info" || virsh -c "$uri" net-start tg-net >/dev/null
# VLAN 42 of a bridge-per-VLAN host (driver setting vlan_networks=pv-vlan-{vlan}; CloudShell L2).
if ! virsh -c "$uri" net-info pv-vlan-42 >/dev/null 2>&1; then
  virsh -c "$uri" net-define "$guest_dir/vlan-network.xml" >/dev/null
fi
net_info="$(virsh -c "$uri" net-info pv-vlan-42)"
grep -q 'Active:.*yes' <<<"$net_info" || virsh -c "$uri" net-start pv-vlan-42 >/dev/null

mkdir -p "$pooldir"; chmod 0755 "$pooldir"
if ! virsh -c "$uri" pool-info polyvisor >/dev/null 2>&1; then
  virsh -c "$uri" pool-define-as polyvisor dir --target "$pooldir" >/dev/null
fi
pool_info="$(virsh -c "$uri" pool-info polyvisor)"
grep -q 'State:.*running' <<<"$pool_info" || virsh -c "$uri" pool-start polyvisor >/dev/null
virsh -c "$uri" pool-refresh polyvisor >/dev/null || log "pool-refresh skipped (a volume job is running); the driver refreshes on use"
# The contract guests: copies of the tiny disk in the pool (never the build's template.qcow2).
define_guest() { # NAME -> prints its UUID; defines it when missing
  local name="$1" disk="$pooldir/$1.qcow2" xml
  if ! virsh -c "$uri" domuuid "$name" >/dev/null 2>&1; then
    [ -f "$disk" ] || cp "$tiny/template.qcow2" "$disk"
    xml="$(mktemp)"
    sed -e "s|@NAME@|$name|g" -e "s|@MEM_MIB@|128|g" -e "s|@VMLINUZ@|$tiny/vmlinuz|g" \
        -e "s|@INITRD@|$tiny/initrd.img|g" -e "s|@CMDLINE_EXTRA@|tg.hostname=$name|g" \
        -e "s|@DISK@|$disk|g" -e "s|@NETWORK@|tg-net|g" \
        -e "s|@SERIAL_LOG@|/var/log/libvirt/qemu/$name-serial.log|g" "$guest_dir/domain.xml.tmpl" > "$xml"
    virsh -c "$uri" define "$xml" >/dev/null
    rm -f "$xml"
    virsh -c "$uri" pool-refresh polyvisor >/dev/null 2>&1 || true
  fi
  virsh -c "$uri" domuuid "$name" | tr -d '[:space:]'
}
source_uuid="$(define_guest pv-contract-source)"
tmpl_uuid="$(define_guest pv-contract-tmpl)"
ns=https://polyvisor.dev/xmlns/libvirt/1
if ! virsh -c "$uri" metadata pv-contract-tmpl "$ns" 2>/dev/null | grep -q 'template="1"'; then
  virsh -c "$uri" metadata pv-contract-tmpl "$ns" --key polyvisor --set '<meta template="1"/>' --config >/dev/null
fi
mkdir -p "$run"; chmod 0700 "$run"
cat > "$run/libvirt.json.tmp" <<JSON
{
  "settings": {"driver": "libvirt", "uri": "$uri", "pool": "polyvisor", "network": "tg-net",
               "domain_type": "qemu", "shutdown_timeout_secs": "10"},
  "cloudstack": {
    "extension": {"uri": "$uri", "pool": "polyvisor", "network": "tg-net", "domain_type": "qemu",
                  "shutdown_timeout_secs": "10"},
    "host": {},
    "virtualmachine": {},
    "untagged_networks": true
  },
  "source_guest": "$source_uuid",
  "template_id": "$tmpl_uuid"
}
JSON
mv -f "$run/libvirt.json.tmp" "$run/libvirt.json"
log "contract: $run/libvirt.json (source $source_uuid, template $tmpl_uuid)"
log "ready: $(virsh -c "$uri" version | grep -i 'running hypervisor' || true); tiny guest in $tiny; pool polyvisor at $pooldir"
