#!/usr/bin/env bash
# tests/compat/kazoo/zookeeper-ensemble.sh: a three-node Apache ZooKeeper
# ensemble (Debian's `zookeeper` package, 3.8) on 127.0.0.1, the reference
# that kazoo's test suite is checked against (run.sh --zookeeper uses it).
#
# Usage:
#   zookeeper-ensemble.sh start DIR   write a config per server under DIR/zkN,
#                                     start the three servers, wait (bounded)
#                                     until all three answer `srvr` with one
#                                     leader and two followers
#   zookeeper-ensemble.sh stop DIR    stop the servers started in DIR (TERM,
#                                     then KILL after 10 s); DIR is kept
#
# Client ports 22181, 22182, 22183 (servers "127.0.0.1:22181,127.0.0.1:22182,
# 127.0.0.1:22183"); quorum ports 22881-22883, election ports 23881-23883.
# The servers run with the settings kazoo's own harness
# (kazoo/testing/harness.py, common.py) gives its clusters, where they concern
# the plain-TCP listener: tickTime=2000, initLimit=4, syncLimit=2,
# maxClientCnxns=0, 4lw.commands.whitelist=*, reconfigEnabled=true,
# localSessionsEnabled=false, the superuser digest "super:test"
# (-Dzookeeper.DigestAuthenticationProvider.superDigest), readonlymode.enabled
# and file.encoding=UTF-8; plus extendedTypesEnabled=true (TTL nodes). No TLS
# port, no SASL/JAAS, no AdminServer (kazoo's tests that need TLS or SASL are
# in excluded.txt). Installs Debian's zookeeper package if it is missing
# (root or sudo). Every wait is bounded. Traffic stays on 127.0.0.1.
set -euo pipefail

ZK_JAR=/usr/share/java/zookeeper.jar
HOST=127.0.0.1
CLIENT_PORTS=(22181 22182 22183)
QUORUM_PORTS=(22881 22882 22883)
ELECTION_PORTS=(23881 23882 23883)
START_TIMEOUT=${ZK_START_TIMEOUT:-90}

log() { echo "zookeeper-ensemble: $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

usage() { die "usage: $0 start|stop DIR"; }
[[ $# -eq 2 ]] || usage
CMD=$1
DIR=$2

# srvr over /dev/tcp: the server's status text, or nothing.
srvr() {
    timeout 3 bash -c "exec 3<>/dev/tcp/$HOST/$1 && printf srvr >&3 && cat <&3" 2>/dev/null || true
}
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null; }

# The pid in DIR/zkN/pid, if that process is still the java started for DIR.
server_pid() {
    local f="$DIR/zk$1/pid" pid
    [[ -f $f ]] || return 1
    pid=$(cat "$f")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$DIR/zk$1/conf/zoo.cfg" || return 1
    echo "$pid"
}

stop_servers() {
    local i pid pids=()
    for i in 1 2 3; do
        if pid=$(server_pid "$i"); then
            kill "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
        rm -f "$DIR/zk$i/pid"
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    done
    if ((${#pids[@]})); then log "stopped pids ${pids[*]}"; fi
}

case $CMD in
    stop)
        [[ -d $DIR ]] || die "$DIR does not exist"
        DIR=$(cd "$DIR" && pwd)
        stop_servers
        exit 0
        ;;
    start) ;;
    *) usage ;;
esac

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

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
for i in 1 2 3; do
    if server_pid "$i" >/dev/null; then die "a server is already running from $DIR (stop it first)"; fi
done
for p in "${CLIENT_PORTS[@]}" "${QUORUM_PORTS[@]}" "${ELECTION_PORTS[@]}"; do
    if port_open "$p"; then die "$HOST:$p is already in use"; fi
done

# Debian: /usr/share/java/zookeeper.jar (its manifest's Class-Path names the
# dependencies in /usr/share/java); logging through log4j 1.2 as Debian's
# config expects. Each server gets its own conf dir (dynamic reconfig rewrites
# zoo.cfg and writes zoo.cfg.dynamic.* there) and data dir.
trap 'stop_servers' ERR
for i in 1 2 3; do
    d="$DIR/zk$i"
    rm -rf "$d"
    mkdir -p "$d/conf" "$d/data"
    echo "$i" >"$d/data/myid"
    cat >"$d/conf/zoo.cfg" <<EOF
tickTime=2000
initLimit=4
syncLimit=2
dataDir=$d/data
clientPort=${CLIENT_PORTS[$((i - 1))]}
clientPortAddress=$HOST
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=*
reconfigEnabled=true
localSessionsEnabled=false
localSessionsUpgradingEnabled=false
extendedTypesEnabled=true
server.1=$HOST:${QUORUM_PORTS[0]}:${ELECTION_PORTS[0]}:participant
server.2=$HOST:${QUORUM_PORTS[1]}:${ELECTION_PORTS[1]}:participant
server.3=$HOST:${QUORUM_PORTS[2]}:${ELECTION_PORTS[2]}:participant
EOF
    cat >"$d/conf/log4j.properties" <<'EOF'
log4j.rootLogger=INFO, CONSOLE
log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender
log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout
log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} [myid:%X{myid}] - %-5p [%t:%C{1}@%L] - %m%n
EOF
    classpath="$d/conf:$ZK_JAR:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar"
    # setsid: the server does not share the caller's process group, so a
    # ctrl-c in the caller's terminal does not reach it; `stop` ends it.
    setsid java -Xmx512m -Dfile.encoding=UTF-8 -Djava.awt.headless=true \
        -Dreadonlymode.enabled=true \
        -Dzookeeper.DigestAuthenticationProvider.superDigest=super:D/InIHSb7yEEbrWz8b9l71RjZJU= \
        -Dzookeeper.log.dir="$d" -Dlog4j.configuration="file:$d/conf/log4j.properties" \
        -cp "$classpath" org.apache.zookeeper.server.quorum.QuorumPeerMain "$d/conf/zoo.cfg" \
        >"$d/server.log" 2>&1 </dev/null &
    echo $! >"$d/pid"
done
log "started servers in $DIR"

deadline=$((SECONDS + START_TIMEOUT))
while :; do
    leaders=0 followers=0 version=
    for p in "${CLIENT_PORTS[@]}"; do
        out=$(srvr "$p")
        case $(sed -n 's/^Mode: //p' <<<"$out") in
            leader) leaders=$((leaders + 1)) ;;
            follower) followers=$((followers + 1)) ;;
        esac
        [[ -n $version ]] || version=$(sed -n 's/^Zookeeper version: //p' <<<"$out")
    done
    if [[ $leaders == 1 && $followers == 2 ]]; then break; fi
    for i in 1 2 3; do
        if ! server_pid "$i" >/dev/null; then
            tail -20 "$DIR/zk$i/server.log" >&2 || true
            stop_servers
            die "server $i exited"
        fi
    done
    if ((SECONDS >= deadline)); then
        tail -20 "$DIR"/zk*/server.log >&2 || true
        stop_servers
        die "no leader with two followers within ${START_TIMEOUT}s"
    fi
    sleep 0.5
done
log "ensemble up (one leader, two followers): $version"
echo "$HOST:${CLIENT_PORTS[0]},$HOST:${CLIENT_PORTS[1]},$HOST:${CLIENT_PORTS[2]}"
