#!/usr/bin/env bash
# bench/footprint.sh: the footprint of one durable `synod serve` holding N
# znodes of 100 bytes (issue #14), measured as a user would: load it with
# `synod-bench --op create --max-requests N`, then print
#   * its RSS (VmRSS) and RSS per znode, and the peak (VmHWM), right after
#     the load and again after SETTLE_SECS (10) of light traffic;
#   * the data directory's size (log and snapshots, `du`), per znode;
#   * after kill -9, the time from starting it again to /readyz answering
#     200, the recovery breakdown the node logs ("recovered state"), and
#     the RSS once ready and again after SETTLE_SECS of light traffic.
#
# Usage: bench/footprint.sh            (N=1000000)
# Needs target/release/synod and target/release/synod-bench
# (`cargo build --release --bin synod --bin synod-bench`; under
# $CARGO_TARGET_DIR when that is set, or wherever SYNOD and BENCH point)
# and python3.
# Environment: N=1000000 znodes, VALUE_SIZE=100, VALUE_FILL=repeated
# (or random: different incompressible bytes per znode), PORT_BASE=7650 (client
# PORT_BASE, HTTP PORT_BASE+1, ZooKeeper protocol PORT_BASE+2), TMPDIR (a
# real disk), KEEP=1 keeps the directory. Every wait is bounded; the node is stopped on exit.
set -euo pipefail

N=${N:-1000000}
VALUE_SIZE=${VALUE_SIZE:-100}
VALUE_FILL=${VALUE_FILL:-repeated}
PORT_BASE=${PORT_BASE:-7650}
CLIENT="127.0.0.1:${PORT_BASE}"
HTTP="127.0.0.1:$((PORT_BASE + 1))"
ZOOKEEPER="127.0.0.1:$((PORT_BASE + 2))"
cd "$(dirname "$0")/.."
SYNOD=${SYNOD:-${CARGO_TARGET_DIR:-target}/release/synod}
BENCH=${BENCH:-${CARGO_TARGET_DIR:-target}/release/synod-bench}
for bin in "$SYNOD" "$BENCH"; do
  [[ -x $bin ]] || { echo "missing $bin: cargo build --release --bin synod --bin synod-bench" >&2; exit 1; }
done
DIR=$(mktemp -d "${TMPDIR:-/tmp}/synod-footprint.XXXXXX")
PID=
cleanup() {
  [[ -n $PID ]] && kill -9 "$PID" 2>/dev/null || true
  [[ -n ${KEEP:-} ]] || rm -rf "$DIR"
}
trap cleanup EXIT

ready() {
  python3 - "$HTTP" <<'EOF'
import sys, urllib.request
try:
    sys.exit(0 if urllib.request.urlopen(f"http://{sys.argv[1]}/readyz", timeout=1).status == 200 else 1)
except Exception:
    sys.exit(1)
EOF
}

# Starts the node (PID) and waits until it is ready; READY_SECS is how long
# that took.
start() {
  SYNOD_LOG=${SYNOD_LOG:-info} "$SYNOD" serve --client-addr "$CLIENT" --http-addr "$HTTP" \
    --zookeeper-addr "$ZOOKEEPER" --admin-addr off --data-dir "$DIR/data" >>"$DIR/node.log" 2>&1 &
  PID=$!
  local started=$EPOCHREALTIME
  for _ in $(seq 1 1200); do
    if ready; then
      READY_SECS=$(python3 -c "print(f'{$EPOCHREALTIME - $started:.2f}')")
      return
    fi
    sleep 0.05
  done
  echo "not ready after 60 s; log: $DIR/node.log" >&2
  exit 1
}

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$PID/status"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$PID/status"; }
per_znode() { python3 -c "print(f'{$1 * 1024 / $N:.0f}')"; }
# KiB as "X MiB (Y MB)": the issue's targets are in MB (10^6 bytes).
size() { python3 -c "print(f'{$1 / 1024:.0f} MiB ({$1 * 1024 / 1e6:.0f} MB)')"; }

start
"$BENCH" --endpoints "$CLIENT" --op create --max-requests "$N" --duration 3600 \
  --value-size "$VALUE_SIZE" --value-fill "$VALUE_FILL" >"$DIR/load.txt"
sleep 2
rss=$(rss_kb)
hwm=$(hwm_kb)
du_log=$(du -sk "$DIR/data/log" 2>/dev/null | cut -f1 || echo 0)
du_snap=$(du -sk "$DIR/data/snapshot" 2>/dev/null | cut -f1 || echo 0)
du_all=$(du -sk "$DIR/data" | cut -f1)
echo "footprint: znodes=$N value_size=$VALUE_SIZE value_fill=$VALUE_FILL"
echo "footprint: load: $(grep -m1 -E 'ops/s|throughput' "$DIR/load.txt" || head -1 "$DIR/load.txt")"
echo "footprint: steady RSS $(size "$rss") = $(per_znode "$rss") bytes per znode (peak $(size "$hwm"))"
echo "footprint: data dir $(size "$du_all") = $(per_znode "$du_all") bytes per znode (log $(size "$du_log"), snapshots $(size "$du_snap"))"
# Settled: after SETTLE_SECS of light traffic (sets on 100 keys at depth 1)
# the allocator has had frees to purge what the load and the last
# snapshot left resident.
"$BENCH" --endpoints "$CLIENT" --op set --keys 100 --sessions 1 --depth 1 \
  --duration "${SETTLE_SECS:-10}" --value-size "$VALUE_SIZE" --value-fill "$VALUE_FILL" >/dev/null
rss=$(rss_kb)
echo "footprint: settled RSS (after ${SETTLE_SECS:-10} s of light sets) $(size "$rss") = $(per_znode "$rss") bytes per znode"
kill -9 "$PID"
wait "$PID" 2>/dev/null || true
PID=
start
restart=$READY_SECS
sleep 1
rss=$(rss_kb)
echo "footprint: restart to ready ${restart} s; RSS after restart $(size "$rss") = $(per_znode "$rss") bytes per znode (peak $(size "$(hwm_kb)"))"
grep 'recovered state' "$DIR/node.log" | tail -1 | sed 's/^/footprint: /'
"$BENCH" --endpoints "$CLIENT" --op set --keys 100 --sessions 1 --depth 1 \
  --duration "${SETTLE_SECS:-10}" --value-size "$VALUE_SIZE" --value-fill "$VALUE_FILL" >/dev/null
rss=$(rss_kb)
echo "footprint: settled RSS after restart $(size "$rss") = $(per_znode "$rss") bytes per znode"
