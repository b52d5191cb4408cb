#!/usr/bin/env bash
# Checks, and installs where missing, what building and testing need on a Debian machine with Rust:
# redis-server 7 and redis-cli (the module's host), libclang-dev (bindgen, for redis-module), Node.js with
# npm and the pinned real clients (tests/js/package-lock.json), and Chromium for the browser test.
# Installs only what is missing, so a second run is quick. Needs root (or sudo) the first time.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
# bindgen needs the headers too, not only libclang1: stddef.h comes with libclang-dev.
ls /usr/lib/llvm-*/lib/clang/*/include/stddef.h >/dev/null 2>&1 || need+=(libclang-dev)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
if [ "${PRESENCE_SKIP_BROWSER:-}" != 1 ]; then
  command -v chromium >/dev/null || need+=(chromium)
fi

if [ ${#need[@]} -gt 0 ]; then
  echo "prerequisites: installing ${need[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

version=$(redis-server --version | sed -n 's/.*v=\([0-9]*\)\..*/\1/p')
if [ "${version:-0}" -lt 7 ]; then
  echo "prerequisites: redis-server $version found, Redis 7 or newer is required (shard pub/sub)" >&2
  exit 1
fi

# The real Faye and CometD clients, exactly as pinned in the lockfile.
if [ -f tests/js/package-lock.json ]; then
  stamp=tests/js/node_modules/.package-lock.json
  if [ ! -f "$stamp" ] || [ tests/js/package-lock.json -nt "$stamp" ]; then
    echo "prerequisites: npm ci in tests/js"
    npm ci --prefix tests/js --no-audit --no-fund --loglevel=error >/dev/null
  fi
fi
# Node Faye with faye-presence 0.0.3: the benchmark's rival, and the old server the client library's
# compatibility test (tests/tests/presence_grace.rs) runs against.
if [ -f shim/bench/package-lock.json ]; then
  stamp=shim/bench/node_modules/.package-lock.json
  if [ ! -f "$stamp" ] || [ shim/bench/package-lock.json -nt "$stamp" ]; then
    echo "prerequisites: npm ci in shim/bench"
    npm ci --prefix shim/bench --no-audit --no-fund --loglevel=error >/dev/null
  fi
fi
