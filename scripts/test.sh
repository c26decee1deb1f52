#!/usr/bin/env bash
# The whole sansrtc test suite, browser tests included, as a newcomer or CI runs it.
#
# On a fresh Debian machine it first installs what is missing: Chromium and Firefox ESR
# (the real peers of the browser tests), coturn (the TURN server of the TURN tests: only
# its binary, which each test starts on 127.0.0.1), iproute2 and util-linux (for the
# loopback-only network namespace; its `tc` also limits bandwidth there), nftables (random
# loss in that namespace), Node.js and the pinned node packages in tests/browser. Then it checks
# formatting and lints, builds every test outside the namespace (cargo may need the
# registry), and runs the whole suite inside `unshare -n` with only loopback up, so no test
# can reach any other address. Browser tests are never skipped: a missing browser fails.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v firefox-esr >/dev/null 2>&1 || missing+=(firefox-esr)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v turnserver >/dev/null 2>&1 || missing+=(coturn)
command -v nft >/dev/null 2>&1 || missing+=(nftables)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "== installing ${missing[*]}"
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  # The tests start their own turnserver on loopback ports; the system service the
  # package may have started is not wanted.
  if [[ " ${missing[*]} " == *" coturn "* ]] && command -v systemctl >/dev/null 2>&1; then
    as_root systemctl disable --now coturn >/dev/null 2>&1 || true
  fi
fi
if [ ! -d tests/browser/node_modules/playwright-core ] || [ ! -d tests/browser/node_modules/puppeteer-core ]; then
  echo "== installing node packages"
  (cd tests/browser && npm ci --no-audit --no-fund)
fi

echo "== fmt"
cargo fmt --all -- --check
echo "== clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== build tests"
cargo test --workspace --locked --no-run

echo "== test (loopback-only network namespace)"
if [ "$(id -u)" -eq 0 ]; then ns=(unshare -n); else ns=(unshare -r -n); fi
"${ns[@]}" sh -c 'ip link set lo up && exec cargo test --workspace --locked --offline'
