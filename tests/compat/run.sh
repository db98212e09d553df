#!/usr/bin/env bash
# Runs the ZooKeeper client compatibility suites against a real three-node
# Synod ensemble (tests/compat/synod-ensemble.sh, the debug binary that
# scripts/test builds): kazoo's own test suite (tests/compat/kazoo) and the
# README's kazoo quickstart against `synod dev`
# (tests/compat/readme-quickstart.sh). Stops what it started, always.
set -euo pipefail
cd "$(dirname "$0")/../.."

dir=$(mktemp -d "${TMPDIR:-/tmp}/synod-compat.XXXXXX")
cleanup() {
  tests/compat/synod-ensemble.sh stop "$dir" || true
  rm -rf "$dir"
}
trap cleanup EXIT

hosts=$(tests/compat/synod-ensemble.sh start "$dir/ensemble")
echo "== kazoo's test suite against Synod at $hosts"
tests/compat/kazoo/run.sh --servers "$hosts"
tests/compat/synod-ensemble.sh stop "$dir/ensemble"

echo "== the README's kazoo quickstart against synod dev"
tests/compat/readme-quickstart.sh
