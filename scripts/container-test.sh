#!/usr/bin/env bash
# The container setup, tested without a Docker engine: what the images of Dockerfile contain, run the
# way docker-compose.yml runs them.
#   1. the build stage's command, exactly: cargo build --release -p presence-module -p faye-presence
#   2. the Redis stage's command: redis-server --loadmodule <the module, copied as COPY does>
#      --appendonly yes (in a temporary /data)
#   3. the server stage's entrypoint (faye-presence, with the stage's ENV) twice, with the compose
#      file's FAYE_PRESENCE_* environment read from docker-compose.yml (the host `redis` becomes the
#      loopback, and each process its own port: two containers both have their own 8000)
#   4. the compose healthcheck's command (curl -fsS .../readyz) until both are ready, then the real
#      Faye client across the two processes (tests/js/container_smoke.js), /metrics, and docker
#      stop's SIGTERM: both exit 0 within the drain.
# Run by tests/tests/server_ops.rs; exits non-zero on any failure. Every process it starts is stopped
# by pid on exit.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "container-test: $*" >&2; for f in "$work"/*.log; do echo "--- $f" >&2; tail -20 "$f" >&2; done; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# 1. The build stage.
build_cmd=$(sed -n 's/^RUN \(cargo build .*\)$/\1/p' Dockerfile)
[ "$build_cmd" = "cargo build --release -p presence-module -p faye-presence" ] || fail "the Dockerfile builds with: $build_cmd"
$build_cmd -j 2 --quiet
target=${CARGO_TARGET_DIR:-$root/target}/release

# 2. The Redis stage: the module where COPY puts it, the CMD's arguments, /data as its working dir.
mkdir -p "$work/modules" "$work/data"
cp "$target/libpresence.so" "$work/modules/libpresence.so"
redis_port=$(free_port)
(cd "$work/data" && exec redis-server --loadmodule "$work/modules/libpresence.so" --appendonly yes \
    --port "$redis_port" --bind 127.0.0.1 --save '' >"$work/redis.log" 2>&1) &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.05; done
redis-cli -p "$redis_port" ping >/dev/null || fail "redis-server did not start"

# 3. The server stage: its ENV, then the compose file's environment, as a container gets them.
mapfile -t stage_env < <(sed -n '/^FROM .* AS server/,$p' Dockerfile | grep -oE 'FAYE_PRESENCE_[A-Z_]+=[^ \\]+')
mapfile -t compose_env < <(sed -n 's/^ *\(FAYE_PRESENCE_[A-Z_]*\): *"\{0,1\}\([^"]*\)"\{0,1\}$/\1=\2/p' docker-compose.yml \
    | sed "s#redis://redis:6379#redis://127.0.0.1:$redis_port#")
[ "${#compose_env[@]}" -ge 2 ] || fail "no FAYE_PRESENCE_* environment in docker-compose.yml"
entrypoint=$(sed -n 's/^ENTRYPOINT \["\([^"]*\)"\]$/\1/p' Dockerfile)
[ -x "$target/$entrypoint" ] || fail "the entrypoint $entrypoint is not a built binary"
ports=()
for i in 1 2; do
    port=$(free_port)
    ports+=("$port")
    listen=()
    for kv in "${stage_env[@]}"; do
        # The stage listens on 0.0.0.0:8000; each process here keeps 0.0.0.0 with a port of its own.
        if [[ $kv == FAYE_PRESENCE_LISTEN=* ]]; then listen+=("FAYE_PRESENCE_LISTEN=${kv#*=}"); fi
    done
    [ "${listen[0]:-}" = "FAYE_PRESENCE_LISTEN=0.0.0.0:8000" ] || fail "the server stage does not listen on 0.0.0.0:8000"
    env -i PATH="$PATH" HOME="$work" "${stage_env[@]}" "${compose_env[@]}" "FAYE_PRESENCE_LISTEN=0.0.0.0:$port" \
        "$target/$entrypoint" >"$work/server$i.log" 2>&1 &
    pids+=($!)
done
server_pids=("${pids[1]}" "${pids[2]}")

# 4. The compose healthcheck, until both are ready.
health=$(sed -n 's/^ *test: \["CMD", "curl", "-fsS", "http:\/\/127.0.0.1:8000\(\/[a-z]*\)"\]$/\1/p' docker-compose.yml)
[ "$health" = "/readyz" ] || fail "the compose healthcheck does not GET /readyz"
for port in "${ports[@]}"; do
    for _ in $(seq 200); do curl -fsS "http://127.0.0.1:$port$health" >/dev/null 2>&1 && break; sleep 0.05; done
    curl -fsS "http://127.0.0.1:$port$health" >/dev/null || fail "127.0.0.1:$port$health is not ready"
done
# Reachable on an address other than the loopback too, when the machine has one (0.0.0.0 bound).
other=$(hostname -I 2>/dev/null | awk '{print $1}')
if [ -n "$other" ]; then
    curl -fsS "http://$other:${ports[0]}/healthz" >/dev/null || fail "not reachable on $other (not bound to 0.0.0.0?)"
fi

channel="/presence/container-$$-$RANDOM"
node tests/js/container_smoke.js "http://127.0.0.1:${ports[0]}/faye" "http://127.0.0.1:${ports[1]}/faye" "$channel" \
    >"$work/smoke.log" 2>&1 || fail "the Faye smoke test failed: $(cat "$work/smoke.log")"
grep -q 'container smoke ok' "$work/smoke.log" || fail "the Faye smoke test said nothing"
curl -fsS "http://127.0.0.1:${ports[0]}/metrics" | grep -q '^bayeux_handshakes_total [1-9]' \
    || fail "/metrics counts no handshake"
# JSON logs (the stage's FAYE_PRESENCE_LOG_FORMAT): every line one object.
grep -v '^listening on ' "$work/server1.log" | python3 -c '
import json, sys
lines = [json.loads(line) for line in sys.stdin if line.strip()]
assert lines and all("level" in line for line in lines)' || fail "the server's log is not JSON lines"

# docker stop: SIGTERM, then exit 0 within the drain (FAYE_PRESENCE_DRAIN from the compose file).
for pid in "${server_pids[@]}"; do kill -TERM "$pid"; done
for pid in "${server_pids[@]}"; do
    timeout 15 tail --pid="$pid" -f /dev/null || fail "pid $pid still running after SIGTERM"
    wait "$pid" || fail "pid $pid exited with $?"
done
grep -q panicked "$work"/server*.log && fail "a server panicked"
echo "container test ok: redis on $redis_port, servers on ${ports[*]}"
