#!/usr/bin/env bash
# Sets up everything (packages, guest kernels, initramfs, libvirt) and runs the whole test suite:
# the workspace's tests, then the libvirt attach test (cargo feature `libvirt`) against a real
# libvirtd. This is what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/provision.sh
bash scripts/provision-libvirt.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo test --workspace --release --no-fail-fast 2>&1
cargo test --release -p nitro-listener --features libvirt --test libvirt 2>&1
