#!/usr/bin/env bash
# The whole test suite: formatting, lints, then every test of the workspace (unit, property, module tests
# against real redis-server processes, cluster, and the real Faye/CometD clients end to end).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/prerequisites.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# The shim's core builds without our Bayeux server, for other Rust Bayeux servers.
cargo clippy -p presence-shim --no-default-features --lib --quiet -- -D warnings

log=$(mktemp -t presence-test-XXXXXX.log)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --no-fail-fast 2>&1 | tee "$log" || status=$?

# One closing line for the whole run: cargo prints a result line per test binary, the last of which is
# often a crate's empty doc-test run.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "workspace: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
