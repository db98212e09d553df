#!/usr/bin/env bash
# bench/zookeeper-baseline.sh: measures the Apache ZooKeeper baseline that
# Synod is compared against (issue #5). It installs Debian's `zookeeper`
# package if missing, starts a three-node ensemble on 127.0.0.1 in a fresh
# temporary directory (client ports 2181-2183, each server with its own
# dataDir on disk, fsync on as ZooKeeper's default), waits until it has a
# leader and two followers, runs synod-bench --protocol zookeeper (release
# build) for set, get and create (each after a short unreported warm-up of
# the same op), prints the result lines, and always stops the ensemble and
# removes the directory (trap). Every wait is bounded.
#
# Usage: bench/zookeeper-baseline.sh
# Environment (all optional):
#   DURATION=10       seconds per op
#   WARMUP=5          seconds of the same op run before each measured run and
#                     not reported (lets the JVM compile the hot paths;
#                     0 disables)
#   SESSIONS=16       ZooKeeper sessions (connections), spread over the 3 servers
#   DEPTH=8           outstanding requests per session
#   VALUE_SIZE=100    value bytes
#   KEYS=1000         znodes that set/get touch
#   OPS="set get create"  also get-linearizable (sync, then getData)
#   JSON=1            print synod-bench's JSON lines instead of text
#   SKIP_BUILD=1      do not run cargo build (use the existing binary)
#   KEEP=1            keep the temporary directory (logs, data) after the run
#   TMPDIR=/tmp       where the temporary directory goes (must be a real disk
#                     for the fsync numbers to mean anything, not tmpfs)
# Traffic goes to 127.0.0.1 only.
set -euo pipefail

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-5}
SESSIONS=${SESSIONS:-16}
DEPTH=${DEPTH:-8}
VALUE_SIZE=${VALUE_SIZE:-100}
KEYS=${KEYS:-1000}
OPS=${OPS:-set get create}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_BIN="$ROOT/target/release/synod-bench"
ZK_JAR=/usr/share/java/zookeeper.jar
CLIENT_PORTS=(2181 2182 2183)
QUORUM_PORTS=(12888 12889 12890)
ELECTION_PORTS=(13888 13889 13890)
ENDPOINTS="127.0.0.1:2181,127.0.0.1:2182,127.0.0.1:2183"

log() { echo "zookeeper-baseline: $*" >&2; }
die() { log "error: $*"; exit 1; }

# --- ZooKeeper from Debian ------------------------------------------------
if [[ ! -f $ZK_JAR ]] || ! command -v java >/dev/null; then
    log "installing Debian's zookeeper package"
    SUDO=
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || die "not root and no sudo: install the 'zookeeper' package first"
        SUDO=sudo
    fi
    timeout 600 $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive timeout 900 $SUDO apt-get install -y zookeeper
fi
[[ -f $ZK_JAR ]] || die "$ZK_JAR missing after install"
ZK_VERSION=$(dpkg-query -W -f='${Version}' zookeeper 2>/dev/null || echo unknown)
log "ZooKeeper (Debian package) $ZK_VERSION, $(java -version 2>&1 | head -1)"

# --- the load generator ---------------------------------------------------
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    log "building synod-bench (release)"
    (cd "$ROOT" && timeout 1800 cargo build --release -p synod-tests --bin synod-bench)
fi
[[ -x $BENCH_BIN ]] || die "$BENCH_BIN missing (build it or unset SKIP_BUILD)"

# --- ports must be free: never measure some other server by mistake -------
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
for p in "${CLIENT_PORTS[@]}" "${QUORUM_PORTS[@]}" "${ELECTION_PORTS[@]}"; do
    if port_open "$p"; then die "127.0.0.1:$p is already in use"; fi
done

# --- the ensemble -------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/zk-baseline.XXXXXX")
PIDS=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
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

# Debian lays ZooKeeper out as /usr/share/java/zookeeper.jar (its manifest's
# Class-Path names the dependencies in /usr/share/java), the scripts in
# /usr/share/zookeeper/bin and one config in /etc/zookeeper/conf. Each server
# here runs what `zkServer.sh start-foreground` runs, QuorumPeerMain with
# Debian's classpath (/etc/zookeeper/conf_example/environment: the conf dir
# and zookeeper.jar), but with its own conf dir, so that the script owns the
# three processes. Logging goes through log4j 1.2 as Debian's config expects.
for i in 1 2 3; do
    dir="$WORK/zk$i"
    mkdir -p "$dir/conf" "$dir/data"
    echo "$i" >"$dir/data/myid"
    cat >"$dir/conf/zoo.cfg" <<EOF
tickTime=2000
initLimit=10
syncLimit=5
dataDir=$dir/data
clientPort=${CLIENT_PORTS[$((i - 1))]}
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=srvr,ruok
# forceSync=yes is ZooKeeper's default: every txn log write is fsynced.
server.1=127.0.0.1:${QUORUM_PORTS[0]}:${ELECTION_PORTS[0]}
server.2=127.0.0.1:${QUORUM_PORTS[1]}:${ELECTION_PORTS[1]}
server.3=127.0.0.1:${QUORUM_PORTS[2]}:${ELECTION_PORTS[2]}
EOF
    cat >"$dir/conf/log4j.properties" <<'EOF'
log4j.rootLogger=INFO, CONSOLE
log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender
log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout
log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} - %-5p [%t:%C{1}@%L] - %m%n
EOF
    classpath="$dir/conf:$ZK_JAR:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar"
    # -Xmx1000m is zkServer.sh's default server heap.
    java -Xmx1000m -Dzookeeper.log.dir="$dir" -Dlog4j.configuration="file:$dir/conf/log4j.properties" \
        -cp "$classpath" org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/conf/zoo.cfg" \
        >"$dir/server.log" 2>&1 </dev/null &
    PIDS+=($!)
done
log "started servers (pids ${PIDS[*]}) in $WORK"

# srvr over /dev/tcp: prints the server's status, or nothing.
srvr() {
    timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && printf srvr >&3 && cat <&3" 2>/dev/null || true
}
leader_port=
wait_until=$((SECONDS + 60))
while ((SECONDS < wait_until)); do
    leaders=0 followers=0
    for p in "${CLIENT_PORTS[@]}"; do
        mode=$(srvr "$p" | sed -n 's/^Mode: //p')
        case $mode in
            leader) leaders=$((leaders + 1)) leader_port=$p ;;
            follower) followers=$((followers + 1)) ;;
        esac
    done
    if [[ $leaders == 1 && $followers == 2 ]]; then break; fi
    for pid in "${PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null || { tail -20 "$WORK"/zk*/server.log >&2; die "server pid $pid exited"; }
    done
    sleep 0.5
done
if [[ ${leaders:-0} != 1 || ${followers:-0} != 2 ]]; then
    tail -20 "$WORK"/zk*/server.log >&2
    die "no leader with two followers within 60 s"
fi
SERVER_VERSION=$(srvr "$leader_port" | sed -n 's/^Zookeeper version: //p')
log "ensemble up: leader on 127.0.0.1:$leader_port; server reports: $SERVER_VERSION"

# --- the runs -------------------------------------------------------------
# Context for the numbers: the machine's load and the disk's synchronous
# write rate (200 x 100 B O_DSYNC writes in the servers' directory), which
# bounds how many fsyncs/s the txn logs get.
probe() {
    local secs
    secs=$(timeout 60 dd if=/dev/zero of="$WORK/dsync-probe" bs=100 count=200 oflag=dsync 2>&1 |
        sed -n 's/.* copied, \([0-9.]*\) s,.*/\1/p')
    rm -f "$WORK/dsync-probe"
    local rate="?"
    if [[ -n $secs ]]; then rate=$(awk -v s="$secs" 'BEGIN { printf "%.0f", 200 / s }'); fi
    echo "load average $(cut -d' ' -f1-3 /proc/loadavg), disk $rate dsync writes/s"
}
# Comment lines go to stdout with the text results, to stderr with JSON=1 so
# that stdout is JSON lines only.
note() { if [[ ${JSON:-0} == 1 ]]; then echo "# $*" >&2; else echo "# $*"; fi; }
note "Apache ZooKeeper $ZK_VERSION (Debian), 3 nodes on 127.0.0.1, fsync on; $(date -u '+%Y-%m-%d %H:%M UTC')"
note "$SESSIONS sessions x $DEPTH outstanding, ${VALUE_SIZE}-byte values, ${DURATION} s per op after ${WARMUP} s warm-up, endpoints $ENDPOINTS"
json=()
if [[ ${JSON:-0} == 1 ]]; then json=(--json); fi
bench() { # op duration [--json]
    local op=(--op "$1")
    if [[ $1 == get-linearizable ]]; then op=(--op get --linearizable); fi
    # synod-bench bounds itself (duration + 60 s drain); the timeout is a backstop.
    # --foreground keeps synod-bench in this script's process group, so that
    # ctrl-c, or a signal to the group (bench/all-peers.sh), reaches it too.
    timeout --foreground $((${2%.*} + 300)) "$BENCH_BIN" --protocol zookeeper --endpoints "$ENDPOINTS" \
        "${op[@]}" --sessions "$SESSIONS" --depth "$DEPTH" --value-size "$VALUE_SIZE" \
        --keys "$KEYS" --duration "$2" "${@:3}"
}
for op in $OPS; do
    if [[ $WARMUP != 0 ]]; then
        warm=$(bench "$op" "$WARMUP")
        log "warm-up, not reported: $warm"
    fi
    note "before $op: $(probe)"
    bench "$op" "$DURATION" "${json[@]}"
done
note "after: $(probe)"
