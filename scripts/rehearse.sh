#!/usr/bin/env bash
# guardian's main job on a fresh machine: install the toolchain, build the release binary and
# run every rehearsal scenario on local Anvil chains with chain id 138; the report lands in
# rehearsal-report/. Extra arguments go to `guardian rehearse` (e.g. --scenario drain).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup.sh
cargo build --release --locked --bin guardian
exec "${CARGO_TARGET_DIR:-target}/release/guardian" rehearse "$@"
