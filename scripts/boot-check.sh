#!/usr/bin/env bash
# Developer tool (not used by nitro): boot a provisioned guest under plain QEMU TCG, play the
# host side of the control protocol (scripts/guest/init), print the command's output on stdout
# and the protocol lines plus timings on stderr. Exits with the guest command's status
# (127 for NITRO-NOTFOUND, 125 for NITRO-ERROR or a timeout).
#
#   boot-check.sh [--env NAME=VALUE]... [--timeout SECS] [--keep] [--no-pad] [--no-dir-entry]
#                 [--gzip-args] GUEST COMMAND [ARG]...
#
#   --keep          keep the work dir (console.log, out.log, initrd.img) and print its path
#   --no-pad        do not re-pad the base archive to 4 bytes before appending (shows the
#                   alignment rule: the kernel then fails to unpack the appended archive)
#   --no-dir-entry  omit the "nitro" directory entry from the appended archive
#   --gzip-args     gzip the appended archive (default: uncompressed newc, as nitro writes it)
set -euo pipefail

CACHE=${NITRO_CACHE:-$HOME/.cache/nitro}
TIMEOUT=60 KEEP=0 PAD=1 DIR_ENTRY=1 GZIP_ARGS=0
ENVS=()

die() { printf 'boot-check: %s\n' "$*" >&2; exit 125; }
usage() { sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

# Quote one word for the guest's `set --` line: 'it'\''s'.
squote() { local s=${1//\'/\'\\\'\'}; printf "'%s'" "$s"; }

while (($#)); do
	case $1 in
	--env) (($# >= 2)) || die "--env needs NAME=VALUE"; ENVS+=("$2"); shift 2 ;;
	--timeout) (($# >= 2)) || die "--timeout needs seconds"; TIMEOUT=$2; shift 2 ;;
	--keep) KEEP=1; shift ;;
	--no-pad) PAD=0; shift ;;
	--no-dir-entry) DIR_ENTRY=0; shift ;;
	--gzip-args) GZIP_ARGS=1; shift ;;
	-h | --help) usage; exit 0 ;;
	--) shift; break ;;
	-*) die "unknown option '$1'" ;;
	*) break ;;
	esac
done
(($# >= 2)) || { usage >&2; exit 125; }
GUEST=$1
shift

KERNEL=$CACHE/guests/$GUEST/vmlinuz
BASE=$CACHE/initramfs.cpio.gz
[[ -s $KERNEL ]] || die "no $KERNEL (run scripts/provision.sh --guest $GUEST)"
[[ -s $BASE ]] || die "no $BASE (run scripts/provision.sh)"

WORK=$(mktemp -d /tmp/nitro-boot-check.XXXXXX)
if ((KEEP)); then
	printf 'boot-check: work dir %s\n' "$WORK" >&2
else
	trap 'rm -rf -- "$WORK"' EXIT
fi

# The appended archive: nitro/args (and nitro/env), newc, owned by root.
mkdir -p "$WORK/extra/nitro"
{
	printf 'set --'
	for a in "$@"; do printf ' %s' "$(squote "$a")"; done
	printf '\n'
} >"$WORK/extra/nitro/args"
names=()
((DIR_ENTRY)) && names+=(nitro)
names+=(nitro/args)
if ((${#ENVS[@]})); then
	for e in "${ENVS[@]}"; do
		[[ $e == *=* ]] || die "--env wants NAME=VALUE, got '$e'"
		printf 'export %s=%s\n' "${e%%=*}" "$(squote "${e#*=}")"
	done >"$WORK/extra/nitro/env"
	names+=(nitro/env)
fi
(cd "$WORK/extra" && printf '%s\n' "${names[@]}" |
	cpio -o -H newc -R 0:0 --reproducible --quiet) >"$WORK/args.cpio"
((GZIP_ARGS)) && gzip -n "$WORK/args.cpio" && mv "$WORK/args.cpio.gz" "$WORK/args.cpio"

if ((PAD)); then
	cp "$BASE" "$WORK/initrd.img"
	size=$(stat -c %s "$WORK/initrd.img")
	pad=$(((4 - size % 4) % 4))
	((pad == 0)) || head -c "$pad" /dev/zero >>"$WORK/initrd.img"
else
	# Strip provision.sh's zero padding (exactly what follows the gzip member) to show what an
	# unaligned append does.
	python3 - "$BASE" "$WORK/initrd.img" <<'PY'
import sys, zlib
data = open(sys.argv[1], "rb").read()
d = zlib.decompressobj(wbits=31)
d.decompress(data)
end = len(data) - len(d.unused_data)
open(sys.argv[2], "wb").write(data[:end])
print(f"boot-check: base gzip member is {end} bytes ({end % 4} mod 4)", file=sys.stderr)
PY
fi
cat "$WORK/args.cpio" >>"$WORK/initrd.img"

QEMU=(
	qemu-system-x86_64 -machine pc -accel tcg -cpu qemu64 -m 256 -smp 1
	-nodefaults -display none -no-reboot -nic none
	-kernel "$KERNEL" -initrd "$WORK/initrd.img"
	-append "console=ttyS0 quiet nokaslr panic=-1"
	-serial "file:$WORK/console.log"
	-serial "file:$WORK/out.log"
	-serial "unix:$WORK/ctl.sock"
)

# python3 listens on ctl.sock first; QEMU connects to it as a client at startup, so no guest
# byte can be lost before the host is there.
set +e
python3 - "$WORK" "$TIMEOUT" "${QEMU[@]}" <<'EOF'
import os, socket, subprocess, sys, time

work, timeout, qemu = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
path = os.path.join(work, "ctl.sock")
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path)
srv.listen(1)
t0 = time.monotonic()
proc = subprocess.Popen(qemu, stdin=subprocess.DEVNULL)
srv.settimeout(timeout)
status = 125

def note(msg):
    print(f"boot-check: {time.monotonic() - t0:7.3f}s {msg}", file=sys.stderr, flush=True)

try:
    conn, _ = srv.accept()
    conn.settimeout(timeout)
    buf = b""
    done = False
    while not done:
        chunk = conn.recv(4096)
        if not chunk:
            note("control channel closed")
            break
        buf += chunk
        while b"\n" in buf and not done:
            line, buf = buf.split(b"\n", 1)
            text = line.decode("utf-8", "replace")
            note(text)
            if text == "NITRO-READY":
                conn.sendall(b"GO\n")
            elif text.startswith("NITRO-EXIT "):
                status = int(text.split()[1])
                done = True
            elif text.startswith("NITRO-NOTFOUND"):
                status, done = 127, True
            elif text.startswith("NITRO-ERROR"):
                status, done = 125, True
except socket.timeout:
    note("timeout on the control channel")
try:
    proc.wait(timeout=timeout)
    note(f"qemu exited with {proc.returncode}")
except subprocess.TimeoutExpired:
    note("qemu did not exit; killing it")
    proc.kill()
    proc.wait()
    status = 125
sys.exit(status)
EOF
rc=$?
set -e
cat "$WORK/out.log"
if ((rc == 125)); then
	printf 'boot-check: console.log:\n' >&2
	tail -n 30 "$WORK/console.log" >&2
fi
printf 'boot-check: exit status %d\n' "$rc" >&2
exit "$rc"
