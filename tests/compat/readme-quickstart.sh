#!/usr/bin/env bash
# Runs the README's kazoo quickstart, exactly as written there (the python
# block between the kazoo-quickstart markers), against `synod dev` on its
# documented ports, and checks what it prints. Uses the kazoo virtualenv
# that tests/compat/kazoo/run.sh builds. The ports of `synod dev` (2181-2183,
# 7001-7003, 7101-7103, 7201-7203) must be free.
set -euo pipefail
cd "$(dirname "$0")/../.."

bin=${SYNOD_BIN:-target/debug/synod}
. tests/compat/lib.sh
kazoo_python

example=$(mktemp "${TMPDIR:-/tmp}/readme-quickstart.XXXXXX.py")
data=$(mktemp -d "${TMPDIR:-/tmp}/readme-dev.XXXXXX")
cleanup() {
  stop_synod_dev
  rm -rf "$data" "$example"
}
trap cleanup EXIT

awk '/<!-- kazoo-quickstart -->/{on=1; next} /<!-- \/kazoo-quickstart -->/{on=0} on && !/^```/' README.md >"$example"
[ -s "$example" ] || { echo "no kazoo quickstart block in README.md" >&2; exit 1; }

start_synod_dev "$data" "$data.log"

out=$(timeout 60 "$python" "$example")
echo "$out"
grep -qx "b'my_data' 0" <<<"$out" || { echo "README quickstart: unexpected data line" >&2; exit 1; }
grep -qx "event: CHANGED /my_znode" <<<"$out" || { echo "README quickstart: no watch event" >&2; exit 1; }
rm -f "$data.log"
echo "README kazoo quickstart: ok"
