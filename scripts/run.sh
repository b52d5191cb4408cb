#!/usr/bin/env bash
# The main job, for now: build the presence module and run a redis-server with it loaded, in the
# foreground, on 127.0.0.1 (port $PORT, default 6399). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
PRESENCE_SKIP_BROWSER=1 scripts/prerequisites.sh
cargo build --release -q -p presence-module

# A private copy: overwriting a loaded .so later (by a rebuild) would crash the running server.
dir=$(mktemp -d -t presence-redis-XXXXXX)
trap 'rm -rf "$dir"' EXIT
cp target/release/libpresence.so "$dir/"
port=${PORT:-6399}
cat <<INFO
redis-server with the presence module on 127.0.0.1:$port (data in $dir). Try, in another terminal:
  redis-cli -p $port PRESENCE.JOIN /presence/room client-1 alice '{"name":"Alice"}' WITHROSTER
  redis-cli -p $port PRESENCE.JOIN /presence/room client-2 bob '{"name":"Bob"}'
  redis-cli -p $port PRESENCE.ROSTER /presence/room
  redis-cli -p $port SSUBSCRIBE /presence/room      # watch changes as they happen
  redis-cli -p $port PRESENCE.LEAVE /presence/room client-1
INFO
redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save "" --loadmodule "$dir/libpresence.so" "$@"
