#!/usr/bin/env bash
# The main job: the Bayeux server with presence channels, at http://127.0.0.1:8000/faye (override with
# --listen ADDR and any other flag of `faye-presence --help`). With no --redis it starts its own
# redis-server with the freshly built presence module, and stops it on exit. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
PRESENCE_SKIP_BROWSER=1 scripts/prerequisites.sh
cargo build --release -q -p presence-module -p faye-presence
exec target/release/faye-presence "$@"
