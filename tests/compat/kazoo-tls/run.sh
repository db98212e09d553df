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
. tests/compat/lib.sh
kazoo_python

data=$(mktemp -d "${TMPDIR:-/tmp}/kazoo-tls.XXXXXX")
cleanup() {
  stop_synod_dev
  rm -rf "$data"
}
trap cleanup EXIT

start_synod_dev "$data/dev" "$data/dev.log" --tls

timeout 120 "$python" tests/compat/kazoo-tls/check.py "$data/dev/tls" \
  127.0.0.1:2281,127.0.0.1:2282,127.0.0.1:2283 || { tail -30 "$data/dev.log" >&2; exit 1; }
