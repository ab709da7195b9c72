#!/usr/bin/env bash
# Provision nitro's guests on a Debian 12 host (run as root; a rerun does nothing heavy).
#
#   provision.sh [--guest NAME]... [--no-i386] [--refresh]   provision (default: every guest)
#   provision.sh --print-cache                               print the cache dir and exit
#
# Cache layout (${NITRO_CACHE:-$HOME/.cache/nitro}):
#   guests/<guest>/vmlinuz    the Debian cloud kernel's bzImage (copied, never installed)
#   guests/<guest>/config     its /boot/config-<release>
#   guests/<guest>/release    its kernel release string (uname -r), one line
#   guests/<guest>/package    "<package> <version>" it came from, one line
#   initramfs.cpio.gz         shared initramfs: newc cpio, gzip, zero-padded to a multiple of 4
#   initramfs.stamp           sha256 of the initramfs inputs (rebuild only when they change)
#   busybox-i386              optional static i386 busybox (placed at /bin32/busybox)
#   initramfs-strace.cpio.gz  optional: initramfs.cpio.gz plus Debian's strace at
#                             /opt/strace/bin/strace with the libraries ldd lists (for the
#                             nitro-versus-strace benchmark, benches/benches/vs_strace.rs)
#
# The initramfs runs scripts/guest/init as /init; see that file for the serial ports and the
# control protocol. At run time the host appends a second, uncompressed newc archive holding
# nitro/args (and optionally nitro/env); /nitro already exists in the base archive.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${NITRO_CACHE:-$HOME/.cache/nitro}
ALL_GUESTS=(debian-6.1 debian-6.12)
# Bump when the initramfs layout built below changes (part of the rebuild stamp).
INITRAMFS_FORMAT=1
export DEBIAN_FRONTEND=noninteractive LC_ALL=C

log() { printf 'provision: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
	sed -n '2,6p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

# The meta package whose (single, versioned) dependency is the kernel image for a guest.
meta_package() {
	case $1 in
	debian-6.1) echo linux-image-cloud-amd64 ;;
	debian-6.12) echo linux-image-6.12-cloud-amd64 ;;
	*) return 1 ;;
	esac
}

TMP_DIRS=()
cleanup() {
	local d
	for d in "${TMP_DIRS[@]+"${TMP_DIRS[@]}"}"; do rm -rf -- "$d"; done
}
trap cleanup EXIT

# Sets TMP to a new scratch dir under the cache, removed at exit (not in a subshell: the
# list must survive).
new_tmp() {
	TMP=$(mktemp -d "$CACHE/.tmp.XXXXXX")
	TMP_DIRS+=("$TMP")
}

APT_UPDATED=0
apt_update() {
	if [[ $APT_UPDATED == 0 || ${1:-} == force ]]; then
		log "apt-get update"
		apt-get update -qq >&2 || return 1
		APT_UPDATED=1
	fi
}

installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'
}

ensure_packages() {
	local missing=() pkg
	for pkg in qemu-system-x86 busybox-static cpio; do
		installed "$pkg" || missing+=("$pkg")
	done
	# boot-check.sh drives the control channel with python3.
	command -v python3 >/dev/null || missing+=(python3)
	if ((${#missing[@]})); then
		[[ $(id -u) == 0 ]] || die "missing packages (${missing[*]}); run as root"
		apt_update
		log "installing ${missing[*]}"
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	fi
}

ensure_cargo() {
	if ! command -v cargo >/dev/null && [[ -x $HOME/.cargo/bin/cargo ]]; then
		export PATH=$HOME/.cargo/bin:$PATH
		log "cargo found in $HOME/.cargo/bin (add it to your PATH)"
	fi
	command -v cargo >/dev/null || die "no Rust toolchain: cargo is not on PATH nor in ~/.cargo/bin"
}

# Print the kernel image package a guest's meta package depends on (candidate version).
kernel_package() {
	local meta=$1 deps
	deps=$(apt-cache show --no-all-versions "$meta" 2>/dev/null | sed -n 's/^Depends: //p') ||
		true
	tr ',' '\n' <<<"$deps" | sed -n 's/^ *\(linux-image-[0-9][^ ]*\).*/\1/p' | head -n 1
}

fetch_kernel() {
	local guest=$1 dir=$CACHE/guests/$1 meta pkg version tmp vmlinuz release
	if [[ ${REFRESH:-0} == 0 && -s $dir/vmlinuz && -s $dir/config && -s $dir/release ]]; then
		return 0
	fi
	meta=$(meta_package "$guest")
	# A fresh machine may have no package lists yet.
	apt-cache show --no-all-versions "$meta" >/dev/null 2>&1 || apt_update
	pkg=$(kernel_package "$meta")
	[[ -n $pkg ]] || die "$guest: cannot resolve the kernel package $meta depends on"
	version=$(apt-cache show --no-all-versions "$pkg" | sed -n 's/^Version: //p' | head -n 1)
	log "$guest: downloading $pkg $version"
	new_tmp && tmp=$TMP
	(cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root "$pkg") ||
		die "$guest: apt-get download $pkg failed"
	mkdir "$tmp/x"
	# Extract /boot only (like dpkg-deb -x, without writing the modules out).
	dpkg-deb --fsys-tarfile "$tmp"/*.deb | tar -x -C "$tmp/x" --wildcards './boot/*'
	vmlinuz=$(find "$tmp/x/boot" -maxdepth 1 -name 'vmlinuz-*' | head -n 1)
	[[ -n $vmlinuz ]] || die "$guest: $pkg has no /boot/vmlinuz-*"
	release=${vmlinuz##*/vmlinuz-}
	[[ -s $tmp/x/boot/config-$release ]] || die "$guest: $pkg has no /boot/config-$release"
	mkdir -p "$tmp/out"
	cp "$vmlinuz" "$tmp/out/vmlinuz"
	cp "$tmp/x/boot/config-$release" "$tmp/out/config"
	printf '%s\n' "$release" >"$tmp/out/release"
	printf '%s %s\n' "$pkg" "$version" >"$tmp/out/package"
	mkdir -p "$CACHE/guests"
	rm -rf "$dir"
	mv "$tmp/out" "$dir"
	rm -rf "$tmp"
}

# Optional: a static i386 busybox for 32-bit tests. Every failure here is a warning.
fetch_busybox_i386() {
	local out=$CACHE/busybox-i386 tmp
	[[ -s $out ]] && return 0
	new_tmp && tmp=$TMP
	if ! (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root busybox-static:i386) \
		2>/dev/null; then
		[[ $(id -u) == 0 ]] || return 1
		if ! dpkg --print-foreign-architectures | grep -qx i386; then
			log "dpkg --add-architecture i386 (for busybox-static:i386)"
			dpkg --add-architecture i386 || return 1
		fi
		# A partial update (one index failing) may still have fetched what we need.
		apt_update force || log "warning: apt-get update failed; trying the download anyway"
		(cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root busybox-static:i386) ||
			return 1
	fi
	mkdir "$tmp/x"
	dpkg-deb --fsys-tarfile "$tmp"/*.deb | tar -x -C "$tmp/x" ./bin/busybox || return 1
	[[ -s $tmp/x/bin/busybox ]] || return 1
	cp "$tmp/x/bin/busybox" "$out.new" && mv "$out.new" "$out"
	rm -rf "$tmp"
}

build_initramfs() {
	local init=$SCRIPT_DIR/guest/init bb=/bin/busybox bb32=$CACHE/busybox-i386
	local out=$CACHE/initramfs.cpio.gz stamp tmp root applet size pad
	[[ -s $init ]] || die "missing $init"
	[[ -x $bb ]] || die "missing $bb (busybox-static)"
	stamp=$({
		echo "format $INITRAMFS_FORMAT"
		sha256sum "$init" "$bb" | cut -d' ' -f1
		[[ -s $bb32 ]] && sha256sum "$bb32" | cut -d' ' -f1
		true
	} | sha256sum | cut -d' ' -f1)
	if [[ -s $out && -s $CACHE/initramfs.stamp && $(<"$CACHE/initramfs.stamp") == "$stamp" ]]; then
		return 0
	fi
	log "building $out"
	new_tmp && tmp=$TMP
	root=$tmp/root
	mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,root,etc,nitro}
	chmod 1777 "$root/tmp"
	install -m 0755 "$bb" "$root/bin/busybox"
	install -m 0755 "$init" "$root/init"
	# Applet links at build time (no --install at boot): bin/ls -> /bin/busybox, ...
	while read -r applet; do
		[[ -n $applet && $applet != bin/busybox && $applet != linuxrc ]] || continue
		[[ -e $root/$applet ]] || ln -s /bin/busybox "$root/$applet"
	done < <("$bb" --list-full)
	if [[ -s $bb32 ]]; then
		mkdir -p "$root/bin32"
		install -m 0755 "$bb32" "$root/bin32/busybox"
	fi
	# The kernel's built-in archive already has /dev/console; keep one for early output anyway.
	if [[ $(id -u) == 0 ]]; then mknod -m 0600 "$root/dev/console" c 5 1; fi
	find "$root" -exec touch -h -d @0 {} +
	(cd "$root" && find . -mindepth 1 -printf '%P\n' | sort |
		cpio -o -H newc -R 0:0 --reproducible --quiet) | gzip -9 -n >"$tmp/initramfs"
	# The kernel only takes an appended uncompressed cpio at a 4-byte aligned offset; zero
	# bytes between archives are skipped. Pad so that `cat base args.cpio` just works.
	size=$(stat -c %s "$tmp/initramfs")
	pad=$(((4 - size % 4) % 4))
	if ((pad)); then head -c "$pad" /dev/zero >>"$tmp/initramfs"; fi
	mv "$tmp/initramfs" "$out"
	printf '%s\n' "$stamp" >"$CACHE/initramfs.stamp"
	rm -rf "$tmp"
}

# Optional: Debian's dynamically linked strace with its libraries, as a second archive
# appended to the base initramfs (the kernel unpacks concatenated archives in order). The
# default initramfs stays small; only the benchmark boots this one. Failures are warnings.
build_strace_initramfs() {
	local base=$CACHE/initramfs.cpio.gz out=$CACHE/initramfs-strace.cpio.gz
	local strace stamp tmp root lib size pad
	strace=$(command -v strace || true)
	if [[ -z $strace ]]; then
		[[ $(id -u) == 0 ]] || return 1
		apt_update && apt-get install -y -qq --no-install-recommends strace >/dev/null || return 1
		strace=$(command -v strace) || return 1
	fi
	stamp=$({
		sha256sum "$base" "$strace" | cut -d' ' -f1
		ldd "$strace" | grep -o '/[^ ]*' | xargs -r readlink -f | xargs -r sha256sum | cut -d' ' -f1
	} | sha256sum | cut -d' ' -f1)
	if [[ -s $out && -s $out.stamp && $(<"$out.stamp") == "$stamp" ]]; then
		return 0
	fi
	log "building $out"
	new_tmp && tmp=$TMP
	root=$tmp/root
	mkdir -p "$root/opt/strace/bin"
	install -m 0755 "$strace" "$root/opt/strace/bin/strace"
	# Each library at the path the dynamic loader looks for it (the loader itself at the
	# path written in strace's PT_INTERP, /lib64/ld-linux-x86-64.so.2).
	while read -r lib; do
		[[ -e $lib ]] || continue
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done < <(ldd "$strace" | grep -o '/[^ ]*')
	find "$root" -exec touch -h -d @0 {} +
	cp "$base" "$tmp/initramfs"
	(cd "$root" && find . -mindepth 1 -printf '%P\n' | sort |
		cpio -o -H newc -R 0:0 --reproducible --quiet) | gzip -6 -n >>"$tmp/initramfs"
	size=$(stat -c %s "$tmp/initramfs")
	pad=$(((4 - size % 4) % 4))
	if ((pad)); then head -c "$pad" /dev/zero >>"$tmp/initramfs"; fi
	mv "$tmp/initramfs" "$out"
	printf '%s\n' "$stamp" >"$out.stamp"
	rm -rf "$tmp"
}

main() {
	local guests=() want_i386=1 g
	REFRESH=0
	while (($#)); do
		case $1 in
		--guest)
			(($# >= 2)) || die "--guest needs a name"
			meta_package "$2" >/dev/null || die "unknown guest '$2' (known: ${ALL_GUESTS[*]})"
			guests+=("$2")
			shift 2
			;;
		--guest=*)
			g=${1#--guest=}
			meta_package "$g" >/dev/null || die "unknown guest '$g' (known: ${ALL_GUESTS[*]})"
			guests+=("$g")
			shift
			;;
		--print-cache)
			printf '%s\n' "$CACHE"
			return 0
			;;
		--no-i386) want_i386=0 && shift ;;
		--refresh) REFRESH=1 && shift ;;
		-h | --help) usage && return 0 ;;
		*) usage >&2 && die "unknown argument '$1'" ;;
		esac
	done
	((${#guests[@]})) || guests=("${ALL_GUESTS[@]}")

	mkdir -p "$CACHE"
	# Several test runs may provision at once: one at a time.
	exec 9>"$CACHE/.lock"
	flock 9

	ensure_packages
	ensure_cargo
	for g in "${guests[@]}"; do fetch_kernel "$g"; done
	if ((want_i386)) && ! fetch_busybox_i386; then
		log "warning: busybox-static:i386 unavailable; initramfs built without /bin32/busybox"
	fi
	build_initramfs
	if ! build_strace_initramfs; then
		log "warning: strace unavailable; no initramfs-strace.cpio.gz (only the benchmark needs it)"
	fi
	for g in "${guests[@]}"; do
		printf '%s: %s %s\n' "$g" "$(<"$CACHE/guests/$g/release")" "$CACHE/guests/$g/vmlinuz"
	done
}

main "$@"
