#!/usr/bin/env bash
# Restore the managed configs backed up at a timestamp: the operators' old
# `recover-smart-accounts-config.sh <timestamp>`, made safe. A thin wrapper over
# `guardian backup restore`, which verifies the backup's sha256 (and that the ledger recorded it)
# first, backs up the current configs (printing the timestamp that undoes the restore) and
# replaces every file, all of them or none.
#
#   scripts/recover-config.sh 20260126T101500Z                         # every config in that backup
#   scripts/recover-config.sh 20260126T101500Z smart-accounts-config   # just one (--only)
#
# A timestamp that does not exist lists the nearest ones. Set GUARDIAN_BIN to use a specific
# binary; GUARDIAN_CONFIG (default config/guardian.toml) to use another guardian.toml, GUARDIAN_DB
# another ledger database.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ $# -lt 1 || $# -gt 2 || $1 == -h || $1 == --help ]]; then
    echo "usage: $0 <timestamp> [config-name]   (list backups: guardian backup list)" >&2
    exit 2
fi

args=(backup restore "$1")
if [[ $# -eq 2 ]]; then
    args+=(--only "$2")
fi

if [[ -n ${GUARDIAN_BIN:-} ]]; then
    exec "$GUARDIAN_BIN" "${args[@]}"
elif [[ -x target/release/guardian ]]; then
    exec target/release/guardian "${args[@]}"
else
    exec cargo run --quiet --release --bin guardian -- "${args[@]}"
fi
