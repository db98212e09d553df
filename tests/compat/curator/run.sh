#!/usr/bin/env bash
# Apache Curator 5 recipes (Debian's jars, unchanged) against a three-node
# Synod ensemble: installs what is missing, compiles CuratorCheck.java,
# starts the ensemble, runs the checks, stops the ensemble. Exits non-zero
# when any check fails. See README.md in this folder.
#
#   tests/compat/curator/run.sh            # against target/debug/synod
#   SYNOD_BIN=/path/to/synod tests/compat/curator/run.sh
#   tests/compat/curator/run.sh --zookeeper   # the reference: Apache ZooKeeper 3.8 (Debian), three nodes
#   CURATOR_HOSTS=h1:p1,h2:p2,h3:p3 tests/compat/curator/run.sh   # a running ensemble, none started
#
# SYNOD_COMPAT_PORT_BASE picks the ensemble's ports (default here 21300).
# CURATOR_LOG=warn (or info) shows more of the clients' own logging (default error).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
export SYNOD_COMPAT_PORT_BASE=${SYNOD_COMPAT_PORT_BASE:-21300}
ensemble_script="$repo/tests/compat/synod-ensemble.sh"
if [ "${1:-}" = --zookeeper ]; then
  ensemble_script="$here/zookeeper-reference.sh"
fi

jars=(curator-recipes curator-framework curator-client zookeeper zookeeper-jute slf4j-api slf4j-simple)
missing=0
command -v javac >/dev/null || missing=1
for j in "${jars[@]}"; do [ -f "/usr/share/java/$j.jar" ] || missing=1; done
if [ "$missing" = 1 ]; then
  echo "installing Java, Curator and ZooKeeper client packages from Debian" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends default-jdk-headless \
    libcurator-recipes-java libcurator-framework-java libcurator-client-java \
    libzookeeper-java libslf4j-java liblog4j1.2-java >&2
fi

classpath=$(printf '/usr/share/java/%s.jar:' "${jars[@]}")
work=$(mktemp -d /tmp/synod-curator.XXXXXX)
ensemble=""
cleanup() {
  local rc=$?
  if [ -n "$ensemble" ]; then
    "$ensemble_script" stop "$ensemble" || true
    if [ "$rc" != 0 ]; then
      for log in "$ensemble"/node-*.log "$ensemble"/zk*/server.log; do
        [ -s "$log" ] && { echo "--- $log (last 20 lines)"; tail -n 20 "$log"; }
      done >&2
    fi
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT

# ports_free and servers_alive: shared with the other suites.
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

started=$(date +%s%N)
javac -nowarn -d "$work/classes" -cp "$classpath" "$here/CuratorCheck.java"

if [ -n "${CURATOR_HOSTS:-}" ]; then
  hosts=$CURATOR_HOSTS
else
  ports_free "$work/ensemble"
  ensemble="$work/ensemble"
  hosts=$("$ensemble_script" start "$ensemble")
  sleep 0.3
  servers_alive
fi
echo "curator $(dpkg-query -W -f '${Version}' libcurator-framework-java 2>/dev/null || echo '?'), zookeeper client $(dpkg-query -W -f '${Version}' libzookeeper-java 2>/dev/null || echo '?'), against $hosts"

set +e
timeout 150 java -cp "$work/classes:$classpath" \
  -Dorg.slf4j.simpleLogger.defaultLogLevel="${CURATOR_LOG:-error}" \
  -Dorg.slf4j.simpleLogger.logFile=System.err \
  CuratorCheck "$hosts"
rc=$?
set -e
if [ -n "$ensemble" ] && ! servers_alive; then rc=1; fi
elapsed_ms=$((($(date +%s%N) - started) / 1000000))
echo "curator compatibility run: exit $rc in $((elapsed_ms / 1000)).$((elapsed_ms % 1000 / 100)) s"
exit "$rc"
