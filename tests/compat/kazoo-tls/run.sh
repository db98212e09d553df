#!/usr/bin/env bash
# tests/compat/kazoo-tls/run.sh: kazoo with its TLS options against the
# ZooKeeper secure ports of `synod dev --tls` (2281-2283), which also makes
# the throwaway CA and the client certificate kazoo presents; see check.py
# for what is checked. Uses the kazoo virtualenv that
# tests/compat/kazoo/run.sh builds. The ports of `synod dev` (2181-2183,
# 2281-2283, 7001-7003, 7101-7103, 7201-7203, 7301-7303) must be free.
set -euo pipefail
cd "$(dirname "$0")/../../.."

bin=${SYNOD_BIN:-target/debug/synod}
python=${SYNOD_CACHE:-target}/kazoo-venv/bin/python
[ -x "$python" ] || { echo "no kazoo virtualenv at $python (run tests/compat/kazoo/run.sh first)" >&2; exit 1; }

data=$(mktemp -d "${TMPDIR:-/tmp}/kazoo-tls.XXXXXX")
pid=
cleanup() {
  if [ -n "$pid" ]; then
    kill -INT "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -rf "$data"
}
trap cleanup EXIT

SYNOD_LOG=warn "$bin" dev --tls --data-dir "$data/dev" >"$data/dev.log" 2>&1 &
pid=$!
ready=0
for _ in $(seq 1 300); do
  ready=0
  for port in 7201 7202 7203; do
    if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/readyz', timeout=1)" 2>/dev/null; then
      ready=$((ready + 1))
    fi
  done
  [ "$ready" -eq 3 ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$data/dev.log" >&2; echo "synod dev --tls exited" >&2; exit 1; }
  sleep 0.1
done
[ "$ready" -eq 3 ] || { cat "$data/dev.log" >&2; echo "synod dev --tls did not become ready" >&2; exit 1; }

timeout 120 "$python" tests/compat/kazoo-tls/check.py "$data/dev/tls" \
  127.0.0.1:2281,127.0.0.1:2282,127.0.0.1:2283 || { tail -30 "$data/dev.log" >&2; exit 1; }
