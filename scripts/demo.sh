#!/usr/bin/env bash
# Sets up everything and traces `cat /proc/version` in a real Debian guest.
# Any arguments replace the default: scripts/demo.sh --guest debian-6.12 --format text -- /bin/ls /
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/provision.sh >&2
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release -q -p nitro
if [ $# -eq 0 ]; then
  set -- --guest debian-6.1 --format text -- /bin/cat /proc/version
fi
exec target/release/nitro trace "$@"
