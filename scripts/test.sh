#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs the pinned toolchain, checks formatting and
# lints, then runs every unit and end-to-end test (the latter against a real Anvil and Safe).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The end-to-end tests mostly wait for Anvil's blocks (half the cores idle with one test per
# core): four at a time finish in 160 s instead of 250 s on 2 cores. GUARDIAN_TEST_THREADS
# overrides it.
cargo test --workspace --locked -- --test-threads "${GUARDIAN_TEST_THREADS:-4}"
