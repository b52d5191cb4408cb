#!/usr/bin/env bash
# The whole test suite: formatting, lints, then every test of the workspace (unit, property, module tests
# against real redis-server processes, cluster, and the real Faye/CometD clients end to end).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/prerequisites.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace --no-fail-fast
