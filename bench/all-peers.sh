#!/usr/bin/env bash
# bench/all-peers.sh: one benchmark of Synod against every peer it is
# compared with (issue 14): Synod over its gRPC API, Synod over the
# ZooKeeper wire protocol, Apache ZooKeeper 3.8 and etcd, in one invocation
# on this machine, all through the same closed-loop load generator
# (synod-bench), three members each on 127.0.0.1 with fsync on.
#
# Part 1, throughput and latency. The systems alternate round by round
# (synod-grpc, synod-zookeeper, zookeeper, etcd, then again) so that the
# machine's noise hits all of them; every round starts its system fresh:
#   synod-grpc       `synod dev` (three nodes in one process; gRPC on
#                    127.0.0.1:7001-7003), synod-bench --protocol grpc
#   synod-zookeeper  the same, loaded over its ZooKeeper listeners
#                    (127.0.0.1:2181-2183), synod-bench --protocol zookeeper
#   zookeeper        bench/zookeeper-baseline.sh (SKIP_BUILD=1 JSON=1): its
#                    own fresh three-server ensemble on 2181-2183
#   etcd             Debian's etcd-server, three members (clients on
#                    127.0.0.1:2379/22379/32379, peers on 2380/22380/32380),
#                    fresh data directories, default settings (fsync on),
#                    synod-bench --protocol etcd
# Each op runs an unreported warm-up, then a measured run. Ops: set, get
# (served by the member the session is connected to: Synod's and
# ZooKeeper's plain reads, etcd's serializable Range), get-linearizable
# (Synod's linearizable read, ZooKeeper's sync + getData, etcd's default
# Range) and create (etcd: a Txn that puts the key if it was never created).
# It prints each result as it comes, the raw rows, then per op the median
# ops/s and p99 of each system over the rounds and the ratios of Synod (each
# protocol) against the best peer: the peer (ZooKeeper or etcd) with the
# higher median ops/s for the ops ratio, the one with the lower median p99
# for the p99 ratio.
#
# Part 2, memory / restart / disk at MILLION keys, SINGLE-MEMBER deployments
# (one `synod serve`, one standalone ZooKeeper server, one etcd member; each
# is started alone with a fresh data directory): it loads MILLION keys of
# VALUE_SIZE bytes with synod-bench --op create (Synod over gRPC, ZooKeeper
# over its protocol, etcd with its put-if-absent Txn: the same stored state
# as a plain put), then reports the process's RSS (VmRSS of
# /proc/PID/status; for ZooKeeper the JVM's, and the live heap: jstat's
# used bytes after `jcmd PID GC.run`), kills it with SIGKILL, takes `du -s`
# of its data directory, restarts it on the same directory and times the
# restart until it is ready (Synod: /readyz 200; ZooKeeper: `srvr` says
# Mode: standalone; etcd: /health true), then checks that the keys are all
# there (Synod: synod_znodes of /metrics; ZooKeeper: srvr's Node count;
# etcd: the count of a Range over the prefix) and reads the RSS once more.
#
# Finally it writes every number as JSON (JSON_OUT) and draws a PNG bar
# chart (CHART) with matplotlib, pinned, from a virtualenv it creates under
# target/ (bench/all-peers-report.py draws it and prints the tables).
# It refuses to start if any of its ports is in use, bounds every wait, and
# always stops what it started and removes its temporary directory (trap;
# ctrl-c stops the running synod-bench with it, a SIGTERM to the script
# alone takes effect once that synod-bench returns, within its bound).
#
# Usage: bench/all-peers.sh
# Needs the release binaries target/release/synod and target/release/synod-bench
# (it does not build them: `cargo build --release --bin synod --bin synod-bench`),
# python3 (with venv and pip for the chart), curl, and installs Debian's
# etcd-server/etcd-client (and, through bench/zookeeper-baseline.sh, zookeeper)
# with apt-get if missing (root or sudo).
# Environment (all optional):
#   ROUNDS=3          rounds; each runs every system in SYSTEMS once
#   DURATION=10       seconds per measured op
#   WARMUP=3          seconds of the same op before each measured run, not
#                     reported (0 disables)
#   SESSIONS=16       sessions (connections), spread over the 3 members
#   DEPTH=8           outstanding requests per session
#   VALUE_SIZE=100    value bytes (also of the MILLION keys)
#   KEYS=1000         keys that set/get touch
#   OPS="set get get-linearizable create"
#   SYSTEMS="synod-grpc synod-zookeeper zookeeper etcd"
#   MILLION=1000000   keys loaded for the memory / restart / disk table (0 skips it)
#   MILLION_FILL=repeated   their values: `x` repeated, or random (different,
#                     incompressible bytes per key: a disk figure that no
#                     compression flatters)
#   CHART=docs/benchmarks-all-peers.png   where the PNG goes (relative to the repo)
#   JSON_OUT=<CHART without .png>.json    where the JSON goes
#   NO_CHART=1        write the JSON but draw no chart (no virtualenv)
#   KEEP=1            keep the temporary directory (logs, raw results)
#   TMPDIR=/tmp       where the temporary directories go (every system's
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
OPS=${OPS:-set get get-linearizable create}
SYSTEMS=${SYSTEMS:-synod-grpc synod-zookeeper zookeeper etcd}
MILLION=${MILLION:-1000000}
MILLION_FILL=${MILLION_FILL:-repeated}
export TMPDIR=${TMPDIR:-/tmp}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CHART=${CHART:-docs/benchmarks-all-peers.png}
[[ $CHART == /* ]] || CHART="$ROOT/$CHART"
JSON_OUT=${JSON_OUT:-${CHART%.png}.json}
[[ $JSON_OUT == /* ]] || JSON_OUT="$ROOT/$JSON_OUT"
SYNOD_BIN="$ROOT/target/release/synod"
BENCH_BIN="$ROOT/target/release/synod-bench"
ZK_SCRIPT="$ROOT/bench/zookeeper-baseline.sh"
REPORT="$ROOT/bench/all-peers-report.py"
VENV="$ROOT/target/bench-venv"
# Pinned: the chart's look should not change with a new matplotlib.
MATPLOTLIB_VERSION=3.10.8
ZK_JAR=/usr/share/java/zookeeper.jar

# synod dev also listens for ZooKeeper clients on 2181-2183 and the memory
# table's single members reuse the first ports of each: no two systems ever
# run at the same time.
SYNOD_PORTS=(7001 7002 7003 7101 7102 7103 7201 7202 7203 2181 2182 2183)
SYNOD_HTTP_PORTS=(7201 7202 7203)
ZK_PORTS=(2181 2182 2183 12888 12889 12890 13888 13889 13890)
ETCD_CLIENT_PORTS=(2379 22379 32379)
ETCD_PEER_PORTS=(2380 22380 32380)
ETCD_PORTS=("${ETCD_CLIENT_PORTS[@]}" "${ETCD_PEER_PORTS[@]}")

log() { echo "all-peers: $*" >&2; }
die() { log "error: $*"; exit 1; }

# --- checks before anything starts ------------------------------------------
for n in ROUNDS DURATION WARMUP SESSIONS DEPTH VALUE_SIZE KEYS MILLION; do
    [[ ${!n} =~ ^[0-9]+$ ]] || die "$n must be a whole number, not '${!n}'"
done
((ROUNDS >= 1)) || die "ROUNDS must be at least 1"
((DURATION >= 1)) || die "DURATION must be at least 1"
for op in $OPS; do
    case $op in set | get | get-linearizable | create) ;; *) die "unknown op '$op' in OPS" ;; esac
done
for s in $SYSTEMS; do
    case $s in synod-grpc | synod-zookeeper | zookeeper | etcd) ;; *) die "unknown system '$s' in SYSTEMS" ;; esac
done
[[ -n ${OPS// /} ]] || die "OPS is empty"
[[ -n ${SYSTEMS// /} ]] || die "SYSTEMS is empty"
[[ -x $SYNOD_BIN ]] || die "$SYNOD_BIN missing (cargo build --release --bin synod)"
[[ -x $BENCH_BIN ]] || die "$BENCH_BIN missing (cargo build --release --bin synod-bench)"
"$BENCH_BIN" --help | grep -q -- '- etcd' || die "$BENCH_BIN has no --protocol etcd: rebuild it"
[[ -f $ZK_SCRIPT ]] || die "$ZK_SCRIPT missing"
[[ -f $REPORT ]] || die "$REPORT missing"
command -v python3 >/dev/null || die "python3 is needed for the report"
command -v curl >/dev/null || die "curl is needed to poll /readyz, /health and /metrics"
[[ -d $TMPDIR ]] || die "TMPDIR=$TMPDIR is not a directory"
FSTYPE=$(df --output=fstype "$TMPDIR" | tail -1)
case $FSTYPE in
    tmpfs | ramfs) die "TMPDIR=$TMPDIR is $FSTYPE: fsync would mean nothing; point TMPDIR at a disk" ;;
esac

# etcd from Debian (bench/zookeeper-baseline.sh installs ZooKeeper itself;
# the memory table's standalone ZooKeeper needs it too).
need_pkgs=()
if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then need_pkgs+=(etcd-server etcd-client); fi
if ((MILLION > 0)) && { [[ ! -f $ZK_JAR ]] || ! command -v jcmd >/dev/null; }; then need_pkgs+=(zookeeper); fi
if ((${#need_pkgs[@]} > 0)); then
    log "installing Debian's ${need_pkgs[*]}"
    SUDO=
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || die "not root and no sudo: install ${need_pkgs[*]} first"
        SUDO=sudo
    fi
    timeout 600 $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive timeout 900 $SUDO apt-get install -y "${need_pkgs[@]}"
fi
command -v etcd >/dev/null || die "etcd missing after install"
ETCD_VERSION=$(etcd --version | sed -n 's/^etcd Version: //p')
ZK_VERSION=$(dpkg-query -W -f='${Version}' zookeeper 2>/dev/null || echo "not installed yet")
# Debian's etcd-server package enables a systemd unit; on a machine that
# runs it, it would hold 2379/2380 and the port check below stops the run.

# Ports must be free: never measure (or disturb) some other server by mistake.
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
check_ports() {
    local p
    for p in "$@"; do
        if port_open "$p"; then die "127.0.0.1:$p is already in use"; fi
    done
}
check_ports "${SYNOD_PORTS[@]}" "${ZK_PORTS[@]}" "${ETCD_PORTS[@]}"

# --- state and cleanup --------------------------------------------------------
WORK=$(mktemp -d "$TMPDIR/all-peers.XXXXXX")
RESULTS="$WORK/results.tsv" # system <TAB> round <TAB> synod-bench JSON line
MEMORY="$WORK/memory.jsonl" # one JSON object per system
: >"$RESULTS"
: >"$MEMORY"
declare -A RUNNING=() # pid -> name, of every server process still running
# pids of RUNNING that lead a process group of their own (timeout(1) makes
# one): they are signalled as a group, so that the servers and the
# synod-bench under them stop at once.
declare -A GROUP=()

# Stops one server: SIGTERM (SIGINT for synod: its ctrl-c handling), up to
# 30 s, then SIGKILL.
stop_pid() {
    local pid=$1 sig=${2:-TERM} how
    [[ -n ${RUNNING[$pid]:-} ]] || return 0
    local target=$pid
    if [[ -n ${GROUP[$pid]:-} ]]; then target=-$pid; fi
    how=SIG$sig
    kill "-$sig" -- "$target" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        how=SIGKILL
        log "${RUNNING[$pid]} (pid $pid) still running 30 s after SIG$sig; sending SIGKILL"
        kill -9 -- "$target" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    log "${RUNNING[$pid]} (pid $pid) stopped ($how)"
    unset "RUNNING[$pid]" "GROUP[$pid]"
}
# SIGKILL, as a crash: the restart measurement starts from this.
kill9_pid() {
    local pid=$1
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset "RUNNING[$pid]"
}
cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${!RUNNING[@]}"; do stop_pid "$pid" TERM; done
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
http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" 2>/dev/null || true; }
# The machine's load and the disk's synchronous write rate (200 x 100 B
# O_DSYNC writes in the data directory), as the other bench scripts print.
probe() {
    local secs rate="?"
    secs=$(timeout 60 dd if=/dev/zero of="$WORK/dsync-probe" bs=100 count=200 oflag=dsync 2>&1 |
        sed -n 's/.* copied, \([0-9.]*\) s,.*/\1/p') || true
    rm -f "$WORK/dsync-probe"
    if [[ -n $secs ]]; then rate=$(awk -v s="$secs" 'BEGIN { printf "%.0f", 200 / s }'); fi
    echo "load average $(cut -d' ' -f1-3 /proc/loadavg), disk $rate dsync writes/s"
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
bench() { # protocol endpoints op duration [extra synod-bench args...]
    local op=(--op "$3")
    if [[ $3 == get-linearizable ]]; then op=(--op get --linearizable); fi
    # synod-bench bounds itself (duration + 60 s drain); the timeout is a
    # backstop. --foreground keeps synod-bench in this script's process
    # group, where ctrl-c reaches it.
    timeout --foreground $(($4 + 300)) "$BENCH_BIN" --protocol "$1" --endpoints "$2" "${op[@]}" \
        --sessions "$SESSIONS" --depth "$DEPTH" --value-size "$VALUE_SIZE" \
        --keys "$KEYS" --duration "$4" "${@:5}"
}
# One result line, as it comes: system round JSON.
record() {
    printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RESULTS"
    python3 -c '
import json, sys
r = json.loads(sys.argv[3])
print("# round %s %-15s %-16s %8.0f ops/s  p50 %7.2f ms  p99 %7.2f ms  p999 %7.2f ms  errors %d" % (
    sys.argv[2], sys.argv[1], r["op"], r["ops_per_sec"], r["p50_ms"], r["p99_ms"], r["p999_ms"], r["errors"]))
' "$1" "$2" "$3"
}
# Runs every op against a running system: warm-up, then the measured run.
run_ops() { # system round protocol endpoints
    local op warm line
    for op in $OPS; do
        if ((WARMUP > 0)); then
            warm=$(bench "$3" "$4" "$op" "$WARMUP") || die "$1 warm-up of $op failed"
            log "round $2: $1 warm-up, not reported: $warm"
        fi
        echo "# round $2 $1, before $op: $(probe)"
        line=$(bench "$3" "$4" "$op" "$DURATION" --json) || die "synod-bench $op against $1 failed"
        record "$1" "$2" "$line"
    done
}

# --- Synod (synod dev: three nodes in one process) ------------------------------
synod_round() { # system round protocol endpoints
    local system=$1 round=$2 data="$WORK/$1-r$2" logf="$WORK/$1-r$2.log" pid ready code i
    check_ports "${SYNOD_PORTS[@]}"
    mkdir -p "$data"
    SYNOD_LOG=warn "$SYNOD_BIN" dev --data-dir "$data" >"$logf" 2>&1 </dev/null &
    pid=$!
    RUNNING[$pid]="synod dev"
    log "round $round: synod dev started (pid $pid) for $system, data in $data"
    ready=0
    local wait_until=$((SECONDS + 60))
    while ((SECONDS < wait_until)); do
        kill -0 "$pid" 2>/dev/null || { tail -20 "$logf" >&2; die "synod dev exited before it was ready"; }
        ready=0
        for i in "${SYNOD_HTTP_PORTS[@]}"; do
            code=$(http_code "http://127.0.0.1:$i/readyz")
            if [[ $code == 200 ]]; then ready=$((ready + 1)); fi
        done
        if ((ready == ${#SYNOD_HTTP_PORTS[@]})); then break; fi
        sleep 0.5
    done
    if ((ready != ${#SYNOD_HTTP_PORTS[@]})); then
        tail -20 "$logf" >&2
        die "synod dev: only $ready of ${#SYNOD_HTTP_PORTS[@]} nodes ready within 60 s"
    fi
    echo "# round $round $system: synod dev, 3 nodes in one process on 127.0.0.1, fsync on, loaded with synod-bench --protocol $3; $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    run_ops "$system" "$round" "$3" "$4"
    kill -0 "$pid" 2>/dev/null || die "synod dev died during the round (log: $(tail -5 "$logf"))"
    stop_pid "$pid" INT
    # With SYNOD_LOG=warn, every log line is a warning or an error; the rest
    # is synod dev's own banner on stdout.
    if grep -q -v -E '^(node [0-9]+: clients|synod dev: )' "$logf"; then
        log "round $round: synod dev logged $(grep -c -v -E '^(node [0-9]+: clients|synod dev: )' "$logf") warning/error lines, the first:"
        grep -v -E '^(node [0-9]+: clients|synod dev: )' "$logf" | head -5 >&2
    fi
    rm -rf "$data"
}

# --- Apache ZooKeeper (bench/zookeeper-baseline.sh) ---------------------------------
zk_round() {
    local round=$1 out="$WORK/zk-r$1.jsonl" err="$WORK/zk-r$1.err" nops line n=0 rc=0 pid
    nops=$(wc -w <<<"$OPS")
    check_ports "${ZK_PORTS[@]}"
    log "round $round: zookeeper (bench/zookeeper-baseline.sh)"
    # The baseline bounds each of its own waits; the timeout is a backstop.
    # In the background so that a signal to this script runs its trap at
    # once. timeout(1) leads a process group of its own: the trap's SIGTERM
    # to that group stops the baseline's servers and its synod-bench, and
    # the baseline's own trap removes its directory.
    SKIP_BUILD=1 JSON=1 DURATION=$DURATION WARMUP=$WARMUP SESSIONS=$SESSIONS DEPTH=$DEPTH \
        VALUE_SIZE=$VALUE_SIZE KEYS=$KEYS OPS=$OPS KEEP=0 \
        timeout --kill-after=60 $((1800 + nops * (WARMUP + DURATION + 700))) \
        "$ZK_SCRIPT" >"$out" 2>"$err" </dev/null &
    pid=$!
    RUNNING[$pid]="bench/zookeeper-baseline.sh"
    GROUP[$pid]=1
    wait "$pid" || rc=$?
    unset "RUNNING[$pid]" "GROUP[$pid]"
    # Its comment lines (version, load, disk) go to stderr with JSON=1.
    grep '^# ' "$err" | sed "s/^# /# round $round zookeeper: /" || true
    if ((rc != 0)); then
        tail -20 "$err" >&2
        die "bench/zookeeper-baseline.sh failed (exit $rc) in round $round"
    fi
    while IFS= read -r line; do
        [[ -n $line ]] || continue
        record zookeeper "$round" "$line"
        n=$((n + 1))
    done <"$out"
    ((n == nops)) || die "bench/zookeeper-baseline.sh printed $n result lines, expected $nops"
}

# --- etcd -----------------------------------------------------------------------------
# Starts etcd member i (0-based) of `count` in dir; prints nothing, records the pid.
etcd_start() { # dir i count token
    local dir=$1 i=$2 count=$3 token=$4 cluster="" j
    for ((j = 0; j < count; j++)); do
        cluster+="${cluster:+,}e$((j + 1))=http://127.0.0.1:${ETCD_PEER_PORTS[$j]}"
    done
    mkdir -p "$dir"
    # Defaults otherwise: the WAL is fsynced on every commit, snapshots every
    # 100,000 entries (etcd 3.4's --snapshot-count), a 2 GiB backend quota.
    etcd --name "e$((i + 1))" --data-dir "$dir/data" \
        --listen-client-urls "http://127.0.0.1:${ETCD_CLIENT_PORTS[$i]}" \
        --advertise-client-urls "http://127.0.0.1:${ETCD_CLIENT_PORTS[$i]}" \
        --listen-peer-urls "http://127.0.0.1:${ETCD_PEER_PORTS[$i]}" \
        --initial-advertise-peer-urls "http://127.0.0.1:${ETCD_PEER_PORTS[$i]}" \
        --initial-cluster "$cluster" --initial-cluster-token "$token" \
        --initial-cluster-state new \
        >>"$dir/etcd.log" 2>&1 </dev/null &
    RUNNING[$!]="etcd member e$((i + 1))"
    ETCD_LAST_PID=$!
}
# Waits (bounded) until /health of each listed client port says true.
etcd_wait_healthy() { # timeout-seconds port...
    local wait_until=$((SECONDS + $1)) healthy p body
    shift
    while ((SECONDS < wait_until)); do
        healthy=0
        for p in "$@"; do
            body=$(curl -s --max-time 2 "http://127.0.0.1:$p/health" 2>/dev/null || true)
            if [[ $body == *'"health":"true"'* ]]; then healthy=$((healthy + 1)); fi
        done
        if ((healthy == $#)); then return 0; fi
        sleep 0.1
    done
    return 1
}
etcd_round() {
    local round=$1 pids=() i endpoints=""
    check_ports "${ETCD_PORTS[@]}"
    for i in 0 1 2; do
        etcd_start "$WORK/etcd-r$round/e$((i + 1))" "$i" 3 "all-peers-r$round"
        pids+=("$ETCD_LAST_PID")
        endpoints+="${endpoints:+,}127.0.0.1:${ETCD_CLIENT_PORTS[$i]}"
    done
    log "round $round: etcd members started (pids ${pids[*]})"
    if ! etcd_wait_healthy 60 "${ETCD_CLIENT_PORTS[@]}"; then
        tail -20 "$WORK"/etcd-r"$round"/e*/etcd.log >&2
        die "etcd: the three members were not healthy within 60 s"
    fi
    echo "# round $round etcd: etcd $ETCD_VERSION (Debian), 3 members on 127.0.0.1, fsync on, loaded with synod-bench --protocol etcd; $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    run_ops etcd "$round" etcd "$endpoints"
    for i in "${pids[@]}"; do
        kill -0 "$i" 2>/dev/null || die "an etcd member died during the round (logs in $WORK/etcd-r$round)"
    done
    for i in "${pids[@]}"; do stop_pid "$i" TERM; done
    rm -rf "$WORK/etcd-r$round"
}

# --- the rounds -------------------------------------------------------------------
echo "# Synod (gRPC and ZooKeeper protocol) vs Apache ZooKeeper $ZK_VERSION vs etcd $ETCD_VERSION, 3 members each on 127.0.0.1 with fsync on, $(nproc) cores"
echo "# $SESSIONS sessions x $DEPTH outstanding, ${VALUE_SIZE}-byte values, $KEYS keys, ${DURATION} s per op after ${WARMUP} s warm-up, $ROUNDS rounds, ops: $OPS, systems: $SYSTEMS"
echo "# data under $WORK ($FSTYPE); started $(date -u '+%Y-%m-%d %H:%M:%S UTC'); $(probe)"
STARTED_AT=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
for round in $(seq 1 "$ROUNDS"); do
    for system in $SYSTEMS; do
        case $system in
            synod-grpc) synod_round synod-grpc "$round" grpc "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003" ;;
            synod-zookeeper) synod_round synod-zookeeper "$round" zookeeper "127.0.0.1:2181,127.0.0.1:2182,127.0.0.1:2183" ;;
            zookeeper) zk_round "$round" ;;
            etcd) etcd_round "$round" ;;
        esac
    done
done
echo "# rounds finished $(date -u '+%Y-%m-%d %H:%M:%S UTC'); $(probe)"

# --- memory / restart / disk at MILLION keys (single members) --------------------------
# Loads MILLION creates through synod-bench; prints its JSON line.
load_keys() { # protocol endpoint
    # At least 5 minutes, or 1,000 creates/s, whichever is longer: a bound,
    # not a target; the run stops at MILLION requests.
    local secs=$((MILLION / 1000 > 300 ? MILLION / 1000 : 300))
    timeout --foreground $((secs + 300)) "$BENCH_BIN" --protocol "$1" --endpoints "$2" --op create \
        --sessions "$SESSIONS" --depth "$DEPTH" --value-size "$VALUE_SIZE" --value-fill "$MILLION_FILL" \
        --max-requests "$MILLION" --duration "$secs" --json
}
# One memory row: system pid load-json keys-after rss-after-load heap-kb du-kb restart-ms rss-after-restart
memory_row() {
    python3 -c '
import json, sys
a = sys.argv
load = json.loads(a[3])
row = {
    "system": a[1], "deployment": a[2], "keys_loaded": load["requests"] - load["errors"],
    "load_errors": load["errors"], "load_ops_per_sec": load["ops_per_sec"],
    "rss_after_load_kb": int(a[4]), "live_heap_kb": int(a[5]) if a[5] else None,
    "disk_kb": int(a[6]), "restart_to_ready_ms": int(a[7]), "keys_after_restart": int(a[8]),
    "rss_after_restart_kb": int(a[9]),
}
print(json.dumps(row))
' "$@" >>"$MEMORY"
    tail -1 "$MEMORY" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
heap = "" if r["live_heap_kb"] is None else ", live heap %.0f MiB" % (r["live_heap_kb"] / 1024)
print("# memory %-9s %d keys loaded at %.0f/s (%d errors); RSS %.0f MiB%s; disk %.0f MiB; restart to ready %.2f s, then %d keys, RSS %.0f MiB" % (
    r["system"], r["keys_loaded"], r["load_ops_per_sec"], r["load_errors"], r["rss_after_load_kb"] / 1024, heap,
    r["disk_kb"] / 1024, r["restart_to_ready_ms"] / 1000, r["keys_after_restart"], r["rss_after_restart_kb"] / 1024))
'
}
wait_ready() { # what timeout-seconds command...: polls every 0.1 s; 0 when ready
    local what=$1 wait_until=$((SECONDS + $2))
    shift 2
    while ((SECONDS < wait_until)); do
        if "$@"; then return 0; fi
        sleep 0.1
    done
    log "$what: not ready within the bound"
    return 1
}
synod_ready() { [[ $(http_code "http://127.0.0.1:7201/readyz") == 200 ]]; }
synod_znodes() {
    curl -s --max-time 5 "http://127.0.0.1:7201/metrics" | awk '$1 == "synod_znodes" { printf "%d", $2 }'
}
memory_synod() {
    local dir="$WORK/mem-synod" pid t0 ready_ms line rss rss2 du keys
    check_ports 7001 7201
    mkdir -p "$dir"
    # One member, no peers: an ensemble of one. The root of the loaded keys
    # gets MILLION children, more than Synod's default --max-children allows.
    synod_serve() {
        SYNOD_LOG=warn "$SYNOD_BIN" serve --data-dir "$dir/data" --client-addr 127.0.0.1:7001 \
            --http-addr 127.0.0.1:7201 --zookeeper-addr off --admin-addr off --max-children $((MILLION + 1000)) \
            >>"$dir/synod.log" 2>&1 </dev/null &
        pid=$!
        RUNNING[$pid]="synod serve"
    }
    synod_serve
    wait_ready "synod serve" 60 synod_ready || { tail -20 "$dir/synod.log" >&2; die "synod serve not ready"; }
    log "memory: synod serve (pid $pid) ready; loading $MILLION keys"
    line=$(load_keys grpc 127.0.0.1:7001) || die "loading synod failed"
    rss=$(rss_kb "$pid")
    kill9_pid "$pid"
    du=$(du -sk "$dir/data" | cut -f1)
    t0=$(now_ms)
    synod_serve
    wait_ready "synod serve (restart)" 600 synod_ready || { tail -20 "$dir/synod.log" >&2; die "synod serve not ready after restart"; }
    ready_ms=$(($(now_ms) - t0))
    keys=$(synod_znodes)
    rss2=$(rss_kb "$pid")
    memory_row synod "synod serve, 1 member" "$line" "$rss" "" "$du" "$ready_ms" "${keys:-0}" "$rss2"
    stop_pid "$pid" INT
    rm -rf "$dir"
}
zk_srvr() { timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/2181 && printf srvr >&3 && cat <&3" 2>/dev/null || true; }
zk_ready() { zk_srvr | grep -q '^Mode: standalone'; }
# The JVM's live heap in KiB: a full GC, then jstat's used survivor, eden
# and old space.
zk_live_heap_kb() {
    timeout 120 jcmd "$1" GC.run >/dev/null 2>&1 || true
    timeout 60 jstat -gc "$1" 2>/dev/null | awk '
        NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
        NR == 2 { printf "%d", $col["S0U"] + $col["S1U"] + $col["EU"] + $col["OU"] }'
}
memory_zookeeper() {
    local dir="$WORK/mem-zk" pid t0 ready_ms line rss rss2 du keys heap classpath
    check_ports 2181
    mkdir -p "$dir/conf" "$dir/data"
    # As bench/zookeeper-baseline.sh starts its servers (Debian's classpath,
    # zkServer.sh's -Xmx1000m), but standalone: no server.N lines.
    cat >"$dir/conf/zoo.cfg" <<EOF
tickTime=2000
dataDir=$dir/data
clientPort=2181
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=srvr,ruok
EOF
    cat >"$dir/conf/log4j.properties" <<'EOF'
log4j.rootLogger=WARN, CONSOLE
log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender
log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout
log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} - %-5p [%t:%C{1}@%L] - %m%n
EOF
    classpath="$dir/conf:$ZK_JAR:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar"
    zk_serve() {
        java -Xmx1000m -Dzookeeper.log.dir="$dir" -Dlog4j.configuration="file:$dir/conf/log4j.properties" \
            -cp "$classpath" org.apache.zookeeper.server.ZooKeeperServerMain "$dir/conf/zoo.cfg" \
            >>"$dir/server.log" 2>&1 </dev/null &
        pid=$!
        RUNNING[$pid]="zookeeper standalone"
    }
    zk_serve
    wait_ready "zookeeper" 60 zk_ready || { tail -20 "$dir/server.log" >&2; die "zookeeper not ready"; }
    log "memory: zookeeper standalone (pid $pid) ready; loading $MILLION keys"
    line=$(load_keys zookeeper 127.0.0.1:2181) || die "loading zookeeper failed"
    rss=$(rss_kb "$pid")
    heap=$(zk_live_heap_kb "$pid")
    kill9_pid "$pid"
    du=$(du -sk "$dir/data" | cut -f1)
    t0=$(now_ms)
    zk_serve
    wait_ready "zookeeper (restart)" 600 zk_ready || { tail -20 "$dir/server.log" >&2; die "zookeeper not ready after restart"; }
    ready_ms=$(($(now_ms) - t0))
    keys=$(zk_srvr | sed -n 's/^Node count: //p')
    rss2=$(rss_kb "$pid")
    memory_row zookeeper "ZooKeeperServerMain, standalone, -Xmx1000m" "$line" "$rss" "${heap:-}" "$du" "$ready_ms" "${keys:-0}" "$rss2"
    stop_pid "$pid" TERM
    rm -rf "$dir"
}
etcd_count() { # prefix: keys under it
    # A Range's count is that of the whole range, whatever its limit
    # (etcdctl 3.4 has no --count-only).
    ETCDCTL_API=3 timeout 60 etcdctl --endpoints 127.0.0.1:2379 get "$1" --prefix --limit 1 -w json 2>/dev/null |
        python3 -c 'import json, sys; print(json.load(sys.stdin).get("count", 0))' 2>/dev/null || echo 0
}
etcd_ready1() { etcd_wait_healthy 1 "${ETCD_CLIENT_PORTS[0]}"; }
memory_etcd() {
    local dir="$WORK/mem-etcd" pid t0 ready_ms line rss rss2 du keys
    check_ports 2379 2380
    etcd_start "$dir" 0 1 all-peers-memory
    pid=$ETCD_LAST_PID
    wait_ready "etcd" 60 etcd_ready1 || { tail -20 "$dir/etcd.log" >&2; die "etcd not ready"; }
    log "memory: etcd (pid $pid) ready; loading $MILLION keys"
    line=$(load_keys etcd 127.0.0.1:2379) || die "loading etcd failed"
    rss=$(rss_kb "$pid")
    kill9_pid "$pid"
    du=$(du -sk "$dir/data" | cut -f1)
    t0=$(now_ms)
    # The same flags: --initial-cluster-state is ignored once the data
    # directory holds a member.
    etcd_start "$dir" 0 1 all-peers-memory
    pid=$ETCD_LAST_PID
    wait_ready "etcd (restart)" 600 etcd_ready1 || { tail -20 "$dir/etcd.log" >&2; die "etcd not ready after restart"; }
    ready_ms=$(($(now_ms) - t0))
    # synod-bench names its keys /bench-<pid>/...
    keys=$(etcd_count /bench-)
    rss2=$(rss_kb "$pid")
    memory_row etcd "etcd, 1 member" "$line" "$rss" "" "$du" "$ready_ms" "${keys:-0}" "$rss2"
    stop_pid "$pid" TERM
    rm -rf "$dir"
}
if ((MILLION > 0)); then
    echo "# memory / restart / disk: $MILLION keys of $VALUE_SIZE B ($MILLION_FILL) created through synod-bench ($SESSIONS x $DEPTH), ONE member of each system, fsync on; $(probe)"
    memory_synod
    memory_zookeeper
    memory_etcd
    echo "# memory table finished $(date -u '+%Y-%m-%d %H:%M:%S UTC'); $(probe)"
fi

# --- report, JSON and chart -------------------------------------------------------------
mkdir -p "$(dirname "$JSON_OUT")" "$(dirname "$CHART")"
python3 "$REPORT" report --results "$RESULTS" --memory "$MEMORY" --ops "$OPS" --systems "$SYSTEMS" \
    --json-out "$JSON_OUT" --setting "rounds=$ROUNDS" --setting "duration_s=$DURATION" \
    --setting "warmup_s=$WARMUP" --setting "sessions=$SESSIONS" --setting "depth=$DEPTH" \
    --setting "value_size=$VALUE_SIZE" --setting "keys=$KEYS" --setting "million=$MILLION" --setting "million_fill=$MILLION_FILL" \
    --setting "cores=$(nproc)" --setting "started=$STARTED_AT" \
    --setting "finished=$(date -u '+%Y-%m-%d %H:%M:%S UTC')" \
    --setting "synod_commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    --setting "zookeeper_version=$ZK_VERSION" --setting "etcd_version=$ETCD_VERSION"
log "wrote $JSON_OUT"
if [[ ${NO_CHART:-0} != 1 ]]; then
    if [[ ! -x $VENV/bin/python ]] || ! "$VENV/bin/python" -c "import matplotlib, sys; sys.exit(matplotlib.__version__ != '$MATPLOTLIB_VERSION')" 2>/dev/null; then
        log "creating $VENV with matplotlib $MATPLOTLIB_VERSION"
        timeout 120 python3 -m venv "$VENV" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
        timeout 900 "$VENV/bin/pip" install --quiet "matplotlib==$MATPLOTLIB_VERSION" || die "pip install matplotlib failed"
    fi
    timeout 300 "$VENV/bin/python" "$REPORT" chart --json "$JSON_OUT" --out "$CHART"
    log "wrote $CHART"
fi
