#!/usr/bin/env bash
# A three-node Apache ZooKeeper ensemble (Debian's zookeeper 3.8) on
# loopback: the reference the Curator and zkCli checks are validated
# against (`run.sh --zookeeper`), so that a check asserts what ZooKeeper
# itself does.
#
#   tests/compat/curator/zookeeper-reference.sh start DIR   # prints the hosts
#   tests/compat/curator/zookeeper-reference.sh stop DIR
#   tests/compat/curator/zookeeper-reference.sh hosts DIR  # the hosts string only
#
# Ports: client BASE+91..93, quorum BASE+94..96, election BASE+97..99 with
# BASE from SYNOD_COMPAT_PORT_BASE (default 21300), clear of the Synod
# ensemble's BASE+1..BASE+83. Settings the checks need: 4lw words on, TTL
# nodes (extendedTypesEnabled), containers and TTL nodes swept every 500 ms
# (znode.container.checkIntervalMs; 60 s by default), session timeouts
# 4..40 s (tickTime 2000, as Synod's defaults).
set -euo pipefail

action=${1:?start or stop}
dir=${2:?data directory}
base=${SYNOD_COMPAT_PORT_BASE:-21300}
jar=/usr/share/java/zookeeper.jar

client_port() { echo $((base + 90 + $1)); }
hosts() {
  local out=()
  for i in 1 2 3; do out+=("127.0.0.1:$(client_port "$i")"); done
  (IFS=,; echo "${out[*]}")
}
srvr() {
  timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && printf srvr >&3 && cat <&3" 2>/dev/null || true
}

case "$action" in
start)
  [ -f "$jar" ] && command -v java >/dev/null || {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      default-jre-headless libzookeeper-java libslf4j-java liblog4j1.2-java >&2
  }
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  for i in 1 2 3; do
    d="$dir/zk$i"
    mkdir -p "$d/data"
    echo "$i" >"$d/data/myid"
    {
      echo "tickTime=2000"
      echo "initLimit=5"
      echo "syncLimit=2"
      echo "dataDir=$d/data"
      echo "clientPort=$(client_port "$i")"
      echo "clientPortAddress=127.0.0.1"
      echo "maxClientCnxns=0"
      echo "admin.enableServer=false"
      echo "4lw.commands.whitelist=*"
      echo "extendedTypesEnabled=true"
      for j in 1 2 3; do
        echo "server.$j=127.0.0.1:$((base + 93 + j)):$((base + 96 + j)):participant"
      done
    } >"$d/zoo.cfg"
    printf '%s\n' 'log4j.rootLogger=WARN, F' 'log4j.appender.F=org.apache.log4j.FileAppender' \
      "log4j.appender.F.File=$d/server.log" 'log4j.appender.F.layout=org.apache.log4j.PatternLayout' \
      'log4j.appender.F.layout.ConversionPattern=%d %-5p [%t] %c{1} - %m%n' >"$d/log4j.properties"
    setsid java -Xmx256m -Dznode.container.checkIntervalMs=500 \
      -Dlog4j.configuration="file:$d/log4j.properties" \
      -cp "$jar:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar" \
      org.apache.zookeeper.server.quorum.QuorumPeerMain "$d/zoo.cfg" \
      >"$d/stdout.log" 2>&1 </dev/null &
    echo $! >"$d/pid"
  done
  for _ in $(seq 1 120); do
    modes=""
    for i in 1 2 3; do modes+=$(srvr "$(client_port "$i")" | sed -n 's/^Mode: //p')" "; done
    case "$modes" in *leader*) [ "$(grep -o follower <<<"$modes" | wc -l)" = 2 ] && { hosts; exit 0; } ;; esac
    sleep 0.5
  done
  echo "the ZooKeeper reference ensemble did not form; logs in $dir" >&2
  exit 1
  ;;
stop)
  for i in 1 2 3; do
    f="$dir/zk$i/pid"
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$f"
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
