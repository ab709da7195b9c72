#!/usr/bin/env bash
# Opt-in provisioning for `nitro attach --domain` (cargo feature `libvirt`) on Debian 12, as root:
# installs libvirt's daemon and headers (the `virt` crate links libvirt) and starts the daemons
# by hand when PID 1 is not systemd (containers, CI).
#
#   provision-libvirt.sh            install and start libvirtd + virtlogd
#   provision-libvirt.sh --start    only start the daemons (already installed)
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

log() { printf 'provision-libvirt: %s\n' "$*" >&2; }

if [ "${1:-}" != --start ]; then
	if ! dpkg -s libvirt-dev libvirt-daemon-system >/dev/null 2>&1; then
		log "installing libvirt-dev libvirt-daemon-system libvirt-clients"
		apt-get update -qq || log "warning: apt-get update reported errors; installing anyway"
		apt-get install -y -qq --no-install-recommends \
			libvirt-dev libvirt-daemon-system libvirt-clients qemu-system-x86 >/dev/null
	fi
fi

# Under systemd the packages start the daemons; otherwise start them by hand.
if ! pgrep -x virtlogd >/dev/null; then
	log "starting virtlogd"
	virtlogd -d
fi
if ! pgrep -x libvirtd >/dev/null; then
	log "starting libvirtd"
	libvirtd -d
fi
for _ in $(seq 50); do
	virsh -c qemu:///system version >/dev/null 2>&1 && exit 0
	sleep 0.1
done
log "error: libvirtd does not answer on qemu:///system"
exit 1
