#!/usr/bin/env bash
# Sets up everything (packages, guest kernels, initramfs) and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/provision.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo test --workspace --release 2>&1
