#!/usr/bin/env bash
# Installs guardian's pinned chain toolchain into toolchain/node_modules (git-ignored):
# Anvil, forge and cast 1.7.1, solc (solcjs, used through the toolchain/solc shim), the Safe 1.4.1
# sources and OpenZeppelin. Versions are fixed by toolchain/package-lock.json; nothing is
# downloaded at run time. Also the Debian tools the packaging and observability tests run
# (promtool and the Prometheus server, systemd-analyze, headless Chromium).
# Idempotent: when the lock file has not changed and the tools are there it does nothing.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools="$root/toolchain"
stamp="$tools/node_modules/.guardian-installed"
bins=(anvil forge cast)

need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: $1 is missing; installing $2 with apt-get" >&2
    apt-get update -qq && apt-get install -y -qq "$2" >/dev/null
  fi
  command -v "$1" >/dev/null 2>&1 || { echo "setup: $1 is required (Debian package $2)" >&2; exit 1; }
}
need node nodejs
need npm npm
need cargo cargo
# For the packaging tests (tests/e2e/packaging.rs): promtool checks and unit-tests the alert rules
# in contrib/prometheus, systemd-analyze verifies contrib/systemd/guardian.service.
need promtool prometheus
need systemd-analyze systemd
# For the observability tests (tests/e2e/observe.rs): a real Prometheus server scrapes a running
# daemon (Debian ships it with promtool, but check the server binary itself), and headless
# Chromium loads the status page.
need prometheus prometheus
need chromium chromium

lock_sum=$(sha256sum "$tools/package-lock.json" | cut -d' ' -f1)
installed() {
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$lock_sum" ] || return 1
  for b in "${bins[@]}"; do [ -x "$tools/bin/$b" ] || return 1; done
  [ -f "$tools/node_modules/solc/soljson.js" ]
}
if installed; then
  echo "setup: toolchain up to date ($tools)"
  exit 0
fi

echo "setup: installing the pinned toolchain into $tools/node_modules"
npm ci --prefix "$tools" --no-audit --no-fund --loglevel=error
mkdir -p "$tools/bin"
for b in "${bins[@]}"; do
  bin="$tools/node_modules/@foundry-rs/$b-linux-amd64/bin/$b"
  chmod +x "$bin"
  ln -sfn "../node_modules/@foundry-rs/$b-linux-amd64/bin/$b" "$tools/bin/$b"
done
ln -sfn ../solc "$tools/bin/solc"
chmod +x "$tools/solc"
"$tools/bin/anvil" --version | head -n 1
"$tools/bin/solc" --version | tail -n 1
echo "$lock_sum" > "$stamp"
echo "setup: done"
