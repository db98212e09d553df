#!/usr/bin/env bash
# Runs the ZooKeeper client compatibility suites against real three-node
# Synod ensembles (tests/compat/synod-ensemble.sh, the debug binary that
# scripts/test builds): kazoo's own test suite (tests/compat/kazoo), Apache
# Curator 5 recipes (tests/compat/curator) and zkCli (tests/compat/zkcli),
# both from Debian's packages, which they install when missing, and the
# README's kazoo quickstart against `synod dev`
# (tests/compat/readme-quickstart.sh), and kazoo's TLS options against
# `synod dev --tls` (tests/compat/kazoo-tls). Stops what it started, always.
set -euo pipefail
cd "$(dirname "$0")/../.."

dir=$(mktemp -d "${TMPDIR:-/tmp}/synod-compat.XXXXXX")
cleanup() {
  # The ensemble lives in "$dir/ensemble": a suite that fails must not
  # leave it running (and holding its ports for the next run).
  tests/compat/synod-ensemble.sh stop "$dir/ensemble" || true
  rm -rf "$dir"
}
trap cleanup EXIT

hosts=$(tests/compat/synod-ensemble.sh start "$dir/ensemble")
echo "== kazoo's test suite against Synod at $hosts"
tests/compat/kazoo/run.sh --servers "$hosts"
tests/compat/synod-ensemble.sh stop "$dir/ensemble"

echo "== Apache Curator 5 recipes against Synod"
tests/compat/curator/run.sh

echo "== zkCli against Synod"
tests/compat/zkcli/run.sh

echo "== the README's kazoo quickstart against synod dev"
tests/compat/readme-quickstart.sh

echo "== kazoo over TLS against synod dev --tls (ZooKeeper secure ports)"
tests/compat/kazoo-tls/run.sh
