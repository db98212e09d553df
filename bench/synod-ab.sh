#!/usr/bin/env bash
# bench/synod-ab.sh: measures two builds of Synod against each other in one
# invocation, on this machine, with the same load generator: a baseline
# build A (for example the commit before a change) and a build B (the
# change). Each round starts A's `synod dev` (three nodes in one process on
# 127.0.0.1:7001-7003, fresh data directory on disk, fsync on), waits until
# all three /readyz answer 200, runs for each op an unreported warm-up and a
# measured `synod-bench` against all three endpoints, stops it with SIGINT,
# then does the same with B; rounds alternate so the machine's noise hits
# both. It prints every run, then per op the median ops/s and p99 of each
# build over the rounds and the ratios B/A.
#
# Usage: bench/synod-ab.sh A_DIR B_DIR
#   where each DIR holds a release `synod`; the load comes from one
#   `synod-bench` for both (BENCH, default B_DIR/synod-bench)
#   (for example: git worktree add /tmp/base <commit> &&
#    (cd /tmp/base && CARGO_TARGET_DIR=/tmp/base-target cargo build --release
#     --bin synod --bin synod-bench); then A_DIR=/tmp/base-target/release,
#    B_DIR=target/release after `cargo build --release --bin synod --bin synod-bench`).
# Environment (all optional): ROUNDS=3, DURATION=10, WARMUP=3, SESSIONS=16,
# DEPTH=8, OPS="set get get-linearizable", TMPDIR=/tmp (a real disk),
# A_TLS=0, B_TLS=0: 1 runs that side as `synod dev --tls` (TLS on the
# client and peer ports, a throwaway CA) and loads it over TLS, so
#   B_TLS=1 bench/synod-ab.sh target/release target/release
# measures what TLS costs, the same build with TLS off (A) and on (B).
# PROTOCOL=grpc (default) or zookeeper: how synod-bench loads both builds
# (the ZooKeeper protocol on synod dev's 127.0.0.1:2181-2183; not with TLS).
# Traffic goes to 127.0.0.1 only; the script stops what it started (trap).
set -euo pipefail

A_DIR=${1:?usage: bench/synod-ab.sh A_DIR B_DIR}
B_DIR=${2:?usage: bench/synod-ab.sh A_DIR B_DIR}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
SESSIONS=${SESSIONS:-16}
DEPTH=${DEPTH:-8}
OPS=${OPS:-set get get-linearizable}
A_TLS=${A_TLS:-0}
B_TLS=${B_TLS:-0}
BENCH=${BENCH:-$B_DIR/synod-bench}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/synod-ab.XXXXXX")
PROTOCOL=${PROTOCOL:-grpc}
case $PROTOCOL in
    grpc) ENDPOINTS=127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 ;;
    zookeeper) ENDPOINTS=127.0.0.1:2181,127.0.0.1:2182,127.0.0.1:2183 ;;
    *) echo "PROTOCOL must be grpc or zookeeper" >&2; exit 1 ;;
esac
PID=""

log() { echo "[synod-ab] $*" >&2; }
die() { log "$*"; exit 1; }

stop() {
    [ -n "$PID" ] || return 0
    kill -INT "$PID" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    PID=""
}
trap 'stop; rm -rf "$WORK"' EXIT

for dir in "$A_DIR" "$B_DIR"; do
    [ -x "$dir/synod" ] || die "$dir lacks a synod binary"
done
[ -x "$BENCH" ] || die "no load generator at $BENCH"
for port in 7001 7002 7003 7101 7102 7103 7201 7202 7203 7301 7302 7303 2181 2182 2183 2281 2282 2283; do
    if timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null; then
        die "port $port is in use; stop what uses it first"
    fi
done

readyz() {
    timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 &&
        printf 'GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3 && head -1 <&3" 2>/dev/null |
        awk '{print $2}'
}

# run BUILD DIR ROUND TLS: one round of every op against a fresh synod dev
# (with --tls when TLS is 1).
run() {
    local build=$1 dir=$2 round=$3 tls=$4 data="$WORK/$1-$3"
    local dev=(dev --data-dir "$data") load_tls=()
    if [ "$tls" = 1 ]; then
        dev+=(--tls)
        load_tls=(--tls-ca "$data/tls/ca.crt")
    fi
    mkdir -p "$data"
    SYNOD_LOG=warn "$dir/synod" "${dev[@]}" >"$WORK/$build-$round.log" 2>&1 </dev/null &
    PID=$!
    local ready=0
    for _ in $(seq 1 600); do
        ready=0
        for port in 7201 7202 7203; do
            [ "$(readyz "$port")" = 200 ] && ready=$((ready + 1))
        done
        [ "$ready" = 3 ] && break
        kill -0 "$PID" 2>/dev/null || die "$build: synod dev exited before it was ready"
        sleep 0.1
    done
    [ "$ready" = 3 ] || die "$build: not ready within 60 s"
    for op in $OPS; do
        local args=(--protocol "$PROTOCOL" --endpoints "$ENDPOINTS" --sessions "$SESSIONS" --depth "$DEPTH" "${load_tls[@]}")
        case $op in
            get-linearizable) args+=(--op get --linearizable) ;;
            *) args+=(--op "$op") ;;
        esac
        if [ "$WARMUP" != 0 ]; then
            "$BENCH" "${args[@]}" --duration "$WARMUP" --json >/dev/null
        fi
        local line
        line=$("$BENCH" "${args[@]}" --duration "$DURATION" --json)
        echo "$build $round $op $line" | tee -a "$WORK/results"
    done
    stop
}

for round in $(seq 1 "$ROUNDS"); do
    run A "$A_DIR" "$round" "$A_TLS"
    run B "$B_DIR" "$round" "$B_TLS"
done

python3 - "$WORK/results" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    build, _round, op, js = line.split(" ", 3)
    r = json.loads(js)
    rows.setdefault((op, build), []).append((r["ops_per_sec"], r["p99_ms"]))
ops = sorted({op for op, _ in rows})
print(f"{'op':<18}{'A ops/s':>12}{'B ops/s':>12}{'B/A':>8}{'A p99 ms':>11}{'B p99 ms':>11}{'B/A':>8}")
for op in ops:
    a = rows.get((op, "A"), [])
    b = rows.get((op, "B"), [])
    if not a or not b:
        continue
    ao, bo = statistics.median(x for x, _ in a), statistics.median(x for x, _ in b)
    ap, bp = statistics.median(y for _, y in a), statistics.median(y for _, y in b)
    print(f"{op:<18}{ao:>12.0f}{bo:>12.0f}{bo / ao:>8.2f}{ap:>11.2f}{bp:>11.2f}{bp / ap:>8.2f}")
PY
