#!/usr/bin/env bash
# bench/ensemble-vs-zookeeper.sh: measures Synod's three-node ensemble against
# Apache ZooKeeper's three-node ensemble in one invocation, on this machine,
# with the same load generator (synod-bench), and prints the ratios (issue
# #5). The two systems alternate round by round (synod, zookeeper, synod,
# zookeeper, ...) so that the machine's noise hits both; every round starts
# its system fresh.
#
# A Synod round starts `synod dev` (three nodes in one process; clients on
# 127.0.0.1:7001-7003, peers on 7101-7103, HTTP on 7201-7203) with SYNOD_LOG=warn
# and a fresh data directory on disk, waits until all three /readyz answer
# 200, runs for each op an unreported warm-up and then a measured
# `synod-bench --protocol $SYNOD_PROTOCOL` against all three endpoints, and stops the
# process with SIGINT (SIGKILL if it has not exited 30 s later). A ZooKeeper
# round runs bench/zookeeper-baseline.sh (SKIP_BUILD=1 JSON=1, same knobs),
# which starts and stops its own fresh three-node ensemble on 127.0.0.1.
# Both systems keep fsync on. The script prints each round's results as they
# come, then the raw per-round lines and, per op, the median ops/s and median
# p99 of each system over the rounds with the ratios synod/zookeeper.
# It refuses to start if any of its ports is in use, and always stops what it
# started and removes its temporary directory (trap). Every wait is bounded.
#
# Usage: bench/ensemble-vs-zookeeper.sh
# Needs the release binaries target/release/synod and
# target/release/synod-bench (it does not build them:
# `cargo build --release --bin synod --bin synod-bench`), python3 (standard
# library only) and what bench/zookeeper-baseline.sh needs (it installs
# Debian's zookeeper package if missing).
# Environment (all optional):
#   ROUNDS=3          rounds; each runs Synod, then ZooKeeper
#   DURATION=10       seconds per measured op
#   WARMUP=3          seconds of the same op run before each measured run and
#                     not reported, on both systems (0 disables)
#   SESSIONS=16       sessions (connections), spread over the 3 servers
#   DEPTH=8           outstanding requests per session
#   VALUE_SIZE=100    value bytes
#   KEYS=1000         znodes that set/get touch
#   OPS="set get create"
#   SYNOD_PROTOCOL=grpc  how synod-bench loads Synod: grpc (each session's
#                     calls on one Pipeline stream, as the Rust client does),
#                     grpc-unary (one unary call per request), or zookeeper
#                     (the ZooKeeper wire protocol on `synod dev`'s
#                     127.0.0.1:2181-2183: the same client stack as the
#                     ZooKeeper rounds)
#   KEEP=1            keep the temporary directory (Synod logs, raw JSON)
#   TMPDIR=/tmp       where the temporary directories go (both systems'
#                     data; must be a real disk, not tmpfs)
# Traffic goes to 127.0.0.1 only.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
SESSIONS=${SESSIONS:-16}
DEPTH=${DEPTH:-8}
VALUE_SIZE=${VALUE_SIZE:-100}
KEYS=${KEYS:-1000}
OPS=${OPS:-set get create}
SYNOD_PROTOCOL=${SYNOD_PROTOCOL:-grpc}
export TMPDIR=${TMPDIR:-/tmp}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SYNOD_BIN="$ROOT/target/release/synod"
BENCH_BIN="$ROOT/target/release/synod-bench"
ZK_SCRIPT="$ROOT/bench/zookeeper-baseline.sh"
# synod dev also listens for ZooKeeper clients on 2181-2183: the two
# systems never run at the same time.
SYNOD_PORTS=(7001 7002 7003 7101 7102 7103 7201 7202 7203 2181 2182 2183)
SYNOD_HTTP_PORTS=(7201 7202 7203)
ZK_PORTS=(2181 2182 2183 12888 12889 12890 13888 13889 13890)
if [ "$SYNOD_PROTOCOL" = zookeeper ]; then
  ENDPOINTS="127.0.0.1:2181,127.0.0.1:2182,127.0.0.1:2183"
else
  ENDPOINTS="127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"
fi

log() { echo "ensemble-vs-zookeeper: $*" >&2; }
die() { log "error: $*"; exit 1; }

# --- checks before anything starts ------------------------------------------
for n in ROUNDS DURATION WARMUP SESSIONS DEPTH VALUE_SIZE KEYS; do
    [[ ${!n} =~ ^[0-9]+$ ]] || die "$n must be a whole number, not '${!n}'"
done
((ROUNDS >= 1)) || die "ROUNDS must be at least 1"
((DURATION >= 1)) || die "DURATION must be at least 1"
[[ -n ${OPS// /} ]] || die "OPS is empty"
[[ -x $SYNOD_BIN ]] || die "$SYNOD_BIN missing (cargo build --release --bin synod)"
[[ -x $BENCH_BIN ]] || die "$BENCH_BIN missing (cargo build --release --bin synod-bench)"
[[ -f $ZK_SCRIPT ]] || die "$ZK_SCRIPT missing"
command -v python3 >/dev/null || die "python3 is needed to parse the results"
[[ -d $TMPDIR ]] || die "TMPDIR=$TMPDIR is not a directory"
FSTYPE=$(df --output=fstype "$TMPDIR" | tail -1)
case $FSTYPE in
    tmpfs | ramfs) die "TMPDIR=$TMPDIR is $FSTYPE: fsync would mean nothing; point TMPDIR at a disk" ;;
esac

# Ports must be free: never measure (or disturb) some other server by mistake.
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
check_ports() {
    local p
    for p in "$@"; do
        if port_open "$p"; then die "127.0.0.1:$p is already in use"; fi
    done
}
check_ports "${SYNOD_PORTS[@]}" "${ZK_PORTS[@]}"

# --- state and cleanup --------------------------------------------------------
WORK=$(mktemp -d "$TMPDIR/ensemble-vs-zk.XXXXXX")
RESULTS="$WORK/results.tsv" # system <TAB> round <TAB> synod-bench JSON line
: >"$RESULTS"
SYNOD_PID=

# Stops synod dev: SIGINT (its ctrl-c handling), up to 30 s, then SIGKILL.
stop_synod() {
    [[ -n $SYNOD_PID ]] || return 0
    local pid=$SYNOD_PID how=SIGINT
    SYNOD_PID=
    kill -INT "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        how=SIGKILL
        log "synod dev (pid $pid) still running 30 s after SIGINT; sending SIGKILL"
        kill -9 "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    log "synod dev (pid $pid) stopped ($how)"
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_synod
    if [[ ${KEEP:-0} == 1 ]]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- helpers ----------------------------------------------------------------------
# Status code of GET http://127.0.0.1:<port>/readyz, or 000 if no answer.
readyz() {
    if command -v curl >/dev/null; then
        curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$1/readyz" 2>/dev/null || true
    else
        timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 &&
            printf 'GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3 && head -1 <&3" 2>/dev/null |
            awk '{ print $2 }' || true
    fi
}
# The machine's load and the disk's synchronous write rate (200 x 100 B
# O_DSYNC writes in the data directory), as bench/zookeeper-baseline.sh prints.
probe() {
    local secs rate="?"
    secs=$(timeout 60 dd if=/dev/zero of="$WORK/dsync-probe" bs=100 count=200 oflag=dsync 2>&1 |
        sed -n 's/.* copied, \([0-9.]*\) s,.*/\1/p') || true
    rm -f "$WORK/dsync-probe"
    if [[ -n $secs ]]; then rate=$(awk -v s="$secs" 'BEGIN { printf "%.0f", 200 / s }'); fi
    echo "load average $(cut -d' ' -f1-3 /proc/loadavg), disk $rate dsync writes/s"
}
synod_bench() { # op duration [--json]
    # synod-bench bounds itself (duration + 60 s drain); the timeout is a backstop.
    timeout $(($2 + 300)) "$BENCH_BIN" --protocol "$SYNOD_PROTOCOL" --endpoints "$ENDPOINTS" \
        --op "$1" --sessions "$SESSIONS" --depth "$DEPTH" --value-size "$VALUE_SIZE" \
        --keys "$KEYS" --duration "$2" "${@:3}"
}
# One result line, as it comes: system round JSON.
record() {
    printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RESULTS"
    python3 -c '
import json, sys
r = json.loads(sys.argv[3])
print("# round %s %-9s %-6s %8.0f ops/s  p50 %7.2f ms  p99 %7.2f ms  p999 %7.2f ms  errors %d" % (
    sys.argv[2], sys.argv[1], r["op"], r["ops_per_sec"], r["p50_ms"], r["p99_ms"], r["p999_ms"], r["errors"]))
' "$1" "$2" "$3"
}

# --- one Synod round ----------------------------------------------------------------
synod_round() {
    local round=$1 data="$WORK/synod-r$1" logf="$WORK/synod-r$1.log" op line warm code ready i
    check_ports "${SYNOD_PORTS[@]}"
    mkdir -p "$data"
    SYNOD_LOG=warn "$SYNOD_BIN" dev --data-dir "$data" >"$logf" 2>&1 </dev/null &
    SYNOD_PID=$!
    log "round $round: synod dev started (pid $SYNOD_PID), data in $data"
    ready=0
    local wait_until=$((SECONDS + 60))
    while ((SECONDS < wait_until)); do
        if ! kill -0 "$SYNOD_PID" 2>/dev/null; then
            tail -20 "$logf" >&2
            SYNOD_PID=
            die "synod dev exited before it was ready"
        fi
        ready=0
        for i in "${SYNOD_HTTP_PORTS[@]}"; do
            code=$(readyz "$i")
            if [[ $code == 200 ]]; then ready=$((ready + 1)); fi
        done
        if ((ready == ${#SYNOD_HTTP_PORTS[@]})); then break; fi
        sleep 0.5
    done
    if ((ready != ${#SYNOD_HTTP_PORTS[@]})); then
        tail -20 "$logf" >&2
        die "synod dev: only $ready of ${#SYNOD_HTTP_PORTS[@]} nodes ready within 60 s"
    fi
    log "round $round: synod ensemble ready (3 x /readyz 200)"
    echo "# round $round synod: synod dev, 3 nodes in one process on 127.0.0.1, fsync on; $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    for op in $OPS; do
        if ((WARMUP > 0)); then
            warm=$(synod_bench "$op" "$WARMUP") || die "synod warm-up of $op failed"
            log "round $round: synod warm-up, not reported: $warm"
        fi
        echo "# round $round synod, before $op: $(probe)"
        line=$(synod_bench "$op" "$DURATION" --json) || die "synod-bench $op against synod failed"
        record synod "$round" "$line"
    done
    kill -0 "$SYNOD_PID" 2>/dev/null || die "synod dev died during the round (log: $(tail -5 "$logf"))"
    stop_synod
    # With SYNOD_LOG=warn, every log line is a warning or an error; the rest
    # is synod dev's own "node i: ..." banner on stdout.
    if grep -q -v -E '^(node [0-9]+: clients|synod dev: )' "$logf"; then
        log "round $round: synod dev logged $(grep -c -v -E '^(node [0-9]+: clients|synod dev: )' "$logf") warning/error lines, the first:"
        grep -v -E '^(node [0-9]+: clients|synod dev: )' "$logf" | head -5 >&2
    fi
    rm -rf "$data"
}

# --- one ZooKeeper round ------------------------------------------------------------
zk_round() {
    local round=$1 out="$WORK/zk-r$1.jsonl" err="$WORK/zk-r$1.err" nops line n=0 rc=0
    nops=$(wc -w <<<"$OPS")
    log "round $round: zookeeper (bench/zookeeper-baseline.sh)"
    # The baseline bounds each of its own waits; this is a backstop (it may
    # have to install the zookeeper package first).
    SKIP_BUILD=1 JSON=1 DURATION=$DURATION WARMUP=$WARMUP SESSIONS=$SESSIONS DEPTH=$DEPTH \
        VALUE_SIZE=$VALUE_SIZE KEYS=$KEYS OPS=$OPS KEEP=0 \
        timeout --kill-after=60 $((1800 + nops * (WARMUP + DURATION + 700))) \
        "$ZK_SCRIPT" >"$out" 2>"$err" </dev/null || rc=$?
    # Its comment lines (version, load, disk) go to stderr with JSON=1.
    grep '^# ' "$err" | sed "s/^# /# round $round zookeeper: /" || true
    if ((rc != 0)); then
        tail -20 "$err" >&2
        die "bench/zookeeper-baseline.sh failed (exit $rc) in round $round"
    fi
    while IFS= read -r line; do
        [[ -n $line ]] || continue
        # Twice (2026-12-01 and -02) a line here was not JSON and the run
        # died in `record`; the line was not kept. Show it, and count only
        # the JSON lines: a result missing still fails below.
        if [[ $line != \{* ]]; then
            log "round $round: bench/zookeeper-baseline.sh printed a line that is not a result: $line"
            continue
        fi
        record zookeeper "$round" "$line"
        n=$((n + 1))
    done <"$out"
    ((n == nops)) || die "bench/zookeeper-baseline.sh printed $n result lines, expected $nops"
}

# --- the rounds -------------------------------------------------------------------
echo "# Synod 3-node ensemble (synod dev) vs Apache ZooKeeper 3-node ensemble, both on 127.0.0.1 with fsync on, $(nproc) cores"
echo "# $SESSIONS sessions x $DEPTH outstanding, ${VALUE_SIZE}-byte values, $KEYS keys, ${DURATION} s per op after ${WARMUP} s warm-up, $ROUNDS rounds, ops: $OPS"
echo "# data under $WORK ($FSTYPE); started $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
for round in $(seq 1 "$ROUNDS"); do
    synod_round "$round"
    zk_round "$round"
done
echo "# finished $(date -u '+%Y-%m-%d %H:%M:%S UTC'); after: $(probe)"

# --- report -------------------------------------------------------------------------
python3 - "$RESULTS" "$OPS" <<'EOF'
import json, statistics, sys

rows = []
with open(sys.argv[1]) as f:
    for line in f:
        system, rnd, js = line.rstrip("\n").split("\t", 2)
        rows.append((system, int(rnd), json.loads(js)))
ops = sys.argv[2].split()

print()
print("raw results, per round:")
print("%5s  %-9s  %-6s  %9s  %8s  %8s  %8s  %9s  %6s" % (
    "round", "system", "op", "ops/s", "p50 ms", "p99 ms", "p999 ms", "requests", "errors"))
for system, rnd, r in rows:
    print("%5d  %-9s  %-6s  %9.0f  %8.2f  %8.2f  %8.2f  %9d  %6d" % (
        rnd, system, r["op"], r["ops_per_sec"], r["p50_ms"], r["p99_ms"], r["p999_ms"],
        r["requests"], r["errors"]))

def med(system, op, key):
    vals = [r[key] for s, _, r in rows if s == system and r["op"] == op]
    return statistics.median(vals) if vals else float("nan")

def ratio(a, b):
    return a / b if b else float("nan")

print()
print("medians over the rounds (ratio = synod / zookeeper):")
print("%-6s  %11s  %11s  %10s  %12s  %12s  %9s" % (
    "op", "synod ops/s", "zk ops/s", "ops ratio", "synod p99 ms", "zk p99 ms", "p99 ratio"))
for op in ops:
    so, zo = med("synod", op, "ops_per_sec"), med("zookeeper", op, "ops_per_sec")
    sp, zp = med("synod", op, "p99_ms"), med("zookeeper", op, "p99_ms")
    print("%-6s  %11.0f  %11.0f  %9.2fx  %12.2f  %12.2f  %8.2fx" % (
        op, so, zo, ratio(so, zo), sp, zp, ratio(sp, zp)))

errors = sum(r["errors"] for _, _, r in rows)
if errors:
    print()
    print("WARNING: %d requests failed across the runs (see the errors column)" % errors)
EOF
