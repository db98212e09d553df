#!/usr/bin/env bash
# Starts or stops a three-node Synod ensemble on loopback for the
# compatibility suites (kazoo, Curator, zkCli), with data under DIR.
#
#   tests/compat/synod-ensemble.sh start DIR   # prints the ZooKeeper hosts
#   tests/compat/synod-ensemble.sh stop DIR
#
# Ports sit below the kernel's ephemeral range, so outgoing connections
# never hold them: node i takes BASE+i (gRPC), BASE+10+i (HTTP),
# BASE+20+i (peers) and BASE+80+i (ZooKeeper), BASE from
# SYNOD_COMPAT_PORT_BASE (default 21100). The binary is target/debug/synod
# (what scripts/test builds) unless SYNOD_BIN names another.
set -euo pipefail
cd "$(dirname "$0")/../.."

action=${1:?start or stop}
dir=${2:?data directory}
base=${SYNOD_COMPAT_PORT_BASE:-21100}
bin=${SYNOD_BIN:-target/debug/synod}

hosts() {
  local out=()
  for i in 1 2 3; do out+=("127.0.0.1:$((base + 80 + i))"); done
  (IFS=,; echo "${out[*]}")
}

case "$action" in
start)
  [ -x "$bin" ] || { echo "no synod binary at $bin (cargo build --bin synod)" >&2; exit 1; }
  mkdir -p "$dir"
  peers="1=127.0.0.1:$((base + 21)),2=127.0.0.1:$((base + 22)),3=127.0.0.1:$((base + 23))"
  for i in 1 2 3; do
    SYNOD_LOG=${SYNOD_LOG:-warn} "$bin" serve \
      --node-id "$i" --peers "$peers" --peer-addr "127.0.0.1:$((base + 20 + i))" \
      --client-addr "127.0.0.1:$((base + i))" --http-addr "127.0.0.1:$((base + 10 + i))" \
      --zookeeper-addr "127.0.0.1:$((base + 80 + i))" --four-letter-words '*' \
      --admin-addr "127.0.0.1:$((base + 30 + i))" \
      --data-dir "$dir/$i" >"$dir/node-$i.log" 2>&1 &
    echo $! >"$dir/node-$i.pid"
  done
  # Ready when every member answers /readyz (knows a leader, caught up).
  for _ in $(seq 1 300); do
    ready=0
    for i in 1 2 3; do
      if python3 - "$((base + 10 + i))" <<'PY' 2>/dev/null; then ready=$((ready + 1)); fi
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/readyz", timeout=1)
PY
    done
    # Another ensemble on the same ports would answer too: ready counts
    # only while this start's own processes still run.
    for i in 1 2 3; do
      kill -0 "$(cat "$dir/node-$i.pid")" 2>/dev/null || {
        cat "$dir/node-$i.log" >&2
        echo "node $i exited (ports in use?); log above" >&2
        exit 1
      }
    done
    if [ "$ready" -eq 3 ]; then hosts; exit 0; fi
    sleep 0.1
  done
  echo "the Synod ensemble did not become ready; logs in $dir" >&2
  exit 1
  ;;
stop)
  for i in 1 2 3; do
    [ -f "$dir/node-$i.pid" ] || continue
    pid=$(cat "$dir/node-$i.pid")
    kill "$pid" 2>/dev/null || true
    # SIGTERM drains for a bounded grace period; then it is killed.
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/node-$i.pid"
  done
  ;;
hosts)
  hosts
  ;;
*)
  echo "usage: $0 start|stop|hosts DIR" >&2
  exit 2
  ;;
esac
