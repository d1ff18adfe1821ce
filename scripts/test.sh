#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs the pinned toolchain, checks formatting and
# lints, then runs every unit and end-to-end test (the latter against a real Anvil and Safe).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
