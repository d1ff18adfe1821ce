#!/usr/bin/env bash
# guardian's main job on a fresh machine: install the toolchain, build the release binary and
# run the fire drill on a local Anvil chain with chain id 138. Extra arguments go to
# `guardian rehearse`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup.sh
cargo build --release --locked --bin guardian
exec target/release/guardian rehearse "$@"
