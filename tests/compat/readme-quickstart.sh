#!/usr/bin/env bash
# Runs the README's kazoo quickstart, exactly as written there (the python
# block between the kazoo-quickstart markers), against `synod dev` on its
# documented ports, and checks what it prints. Uses the kazoo virtualenv
# that tests/compat/kazoo/run.sh builds. The ports of `synod dev` (2181-2183,
# 7001-7003, 7101-7103, 7201-7203) must be free.
set -euo pipefail
cd "$(dirname "$0")/../.."

bin=${SYNOD_BIN:-target/debug/synod}
python=${SYNOD_CACHE:-target}/kazoo-venv/bin/python
[ -x "$python" ] || { echo "no kazoo virtualenv at $python (run tests/compat/kazoo/run.sh first)" >&2; exit 1; }

example=$(mktemp "${TMPDIR:-/tmp}/readme-quickstart.XXXXXX.py")
data=$(mktemp -d "${TMPDIR:-/tmp}/readme-dev.XXXXXX")
pid=
cleanup() {
  if [ -n "$pid" ]; then
    kill -INT "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -rf "$data" "$example"
}
trap cleanup EXIT

awk '/<!-- kazoo-quickstart -->/{on=1; next} /<!-- \/kazoo-quickstart -->/{on=0} on && !/^```/' README.md >"$example"
[ -s "$example" ] || { echo "no kazoo quickstart block in README.md" >&2; exit 1; }

SYNOD_LOG=warn "$bin" dev --data-dir "$data" >"$data.log" 2>&1 &
pid=$!
ready=0
for _ in $(seq 1 300); do
  ready=0
  for port in 7201 7202 7203; do
    if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/readyz', timeout=1)" 2>/dev/null; then
      ready=$((ready + 1))
    fi
  done
  [ "$ready" -eq 3 ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$data.log" >&2; echo "synod dev exited" >&2; exit 1; }
  sleep 0.1
done
[ "$ready" -eq 3 ] || { echo "synod dev did not become ready" >&2; exit 1; }

out=$(timeout 60 "$python" "$example")
echo "$out"
grep -qx "b'my_data' 0" <<<"$out" || { echo "README quickstart: unexpected data line" >&2; exit 1; }
grep -qx "event: CHANGED /my_znode" <<<"$out" || { echo "README quickstart: no watch event" >&2; exit 1; }
rm -f "$data.log"
echo "README kazoo quickstart: ok"
