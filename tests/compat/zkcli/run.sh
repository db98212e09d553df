#!/usr/bin/env bash
# ZooKeeper's own command line (zkCli.sh from Debian's zookeeper 3.8
# package, unchanged) against a three-node Synod ensemble: one piped session
# that runs most commands in order (ephemerals, auth and watches need one
# session), then one-command invocations (`zkCli.sh -server HOST cmd args`)
# that look at the result from other members and from other sessions.
# Prints one line per check and exits non-zero when any check fails.
#
#   tests/compat/zkcli/run.sh               # against target/debug/synod (SYNOD_BIN to change)
#   tests/compat/zkcli/run.sh --zookeeper   # the reference: Apache ZooKeeper 3.8, three nodes
#
# A check named in known-incompatible.txt may fail against Synod (it is
# printed as KNOWN with the reason); if it passes, the run fails so that
# the list stays true. Against ZooKeeper every check must pass.
# SYNOD_COMPAT_PORT_BASE picks the ports (default here 21400).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
export SYNOD_COMPAT_PORT_BASE=${SYNOD_COMPAT_PORT_BASE:-21400}
target=synod
ensemble_script="$repo/tests/compat/synod-ensemble.sh"
if [ "${1:-}" = --zookeeper ]; then
  target=zookeeper
  ensemble_script="$repo/tests/compat/curator/zookeeper-reference.sh"
fi

zkcli=${ZKCLI:-/usr/share/zookeeper/bin/zkCli.sh}
if [ ! -x "$zkcli" ]; then
  echo "installing Debian's zookeeper package (zkCli.sh)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends zookeeper >&2
fi

work=$(mktemp -d /tmp/synod-zkcli.XXXXXX)
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
  if [ "$rc" != 0 ] || [ -n "${ZKCLI_KEEP:-}" ]; then
    echo "transcripts kept in $work" >&2
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT

# ports_free and servers_alive: shared with the other suites.
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

started=$(date +%s%N)
ports_free "$work/ensemble"
ensemble="$work/ensemble"
hosts=$("$ensemble_script" start "$ensemble")
sleep 0.3
servers_alive
IFS=, read -r m1 m2 m3 <<<"$hosts"
echo "zkCli $(dpkg-query -W -f '${Version}' zookeeper 2>/dev/null || echo '?') against $target at $hosts"

# --- results --------------------------------------------------------------
passed=0
known_seen=0
failed=()
problems=()
declare -A known=()
if [ "$target" = synod ] && [ -f "$here/known-incompatible.txt" ]; then
  while read -r name reason; do
    [[ -z $name || $name == \#* ]] && continue
    known[$name]=$reason
  done <"$here/known-incompatible.txt"
fi

expect_line() { grep -qxF -- "$2" "$1" || problems+=("no line '$2'"); }
expect_re() { grep -qE -- "$2" "$1" || problems+=("no line matching /$2/"); }
expect_no() { if grep -qE -- "$2" "$1"; then problems+=("a line matches /$2/"); fi; }

# verdict NAME DETAIL FILE: the check's result from the problems gathered.
verdict() {
  local name=$1 detail=$2 file=$3
  if [ ${#problems[@]} -eq 0 ]; then
    if [ -n "${known[$name]:-}" ]; then
      echo "XPASS $name: passes but is listed in known-incompatible.txt; take it off the list"
      failed+=("$name")
    else
      echo "PASS $name: $detail"
      passed=$((passed + 1))
    fi
  else
    local why
    why=$(printf '%s; ' "${problems[@]}")
    if [ -n "${known[$name]:-}" ]; then
      echo "KNOWN $name: ${why%; } -- ${known[$name]}"
      known_seen=$((known_seen + 1))
    else
      echo "FAIL $name: ${why%; }"
      grep -v '^SLF4J:' "$file" | sed 's/^/    | /' | head -n 40
      failed+=("$name")
    fi
  fi
  problems=()
}

# oneshot FILE MEMBER CMD...: `zkCli.sh -server MEMBER CMD...`; its exit
# code in $rc, its output (both streams) in FILE.
oneshot() {
  local file=$1 member=$2
  shift 2
  set +e
  timeout 30 "$zkcli" -server "$member" "$@" >"$file" 2>&1 </dev/null
  rc=$?
  set -e
}

# gone_within SECONDS MEMBER PATH: polls `stat PATH` until it is gone.
gone_within() {
  local deadline=$((SECONDS + $1))
  while [ "$SECONDS" -lt "$deadline" ]; do
    oneshot "$work/poll" "$2" stat "$3"
    grep -qxF "Node does not exist: $3" "$work/poll" && return 0
    sleep 0.3
  done
  return 1
}

# --- the piped session ----------------------------------------------------
# `stat /zkcli-mark/NAME` answers "Node does not exist: /zkcli-mark/NAME",
# which cuts the transcript into one section per check.
alice=$(python3 -c 'import base64,hashlib;print(base64.b64encode(hashlib.sha1(b"alice:secret").digest()).decode())')
bob=$(python3 -c 'import base64,hashlib;print(base64.b64encode(hashlib.sha1(b"bob:bobpw").digest()).decode())')
cat >"$work/session.txt" <<EOF
stat /zkcli-mark/create
create /zc v1
create /zc/p plain
create -e /zc/eph e
create -s /zc/seq- s
create -s /zc/seq- s
create -c /zc/cont
create /zc/cont/child x
create -t 60000 /zc/ttl t
create /zc/nulldata
create /zc v1
create /none/x
create /zc/eph/x
stat /zkcli-mark/get
get /zc
get -s /zc
stat /zkcli-mark/null-data
get /zc/nulldata
stat /zkcli-mark/set
set /zc v2
get -s /zc
set -v 0 /zc stale
set -s -v 1 /zc v3
get /zc
stat /zkcli-mark/stat
stat /zc
stat /zkcli-mark/stat-ephemeral
stat /zc/eph
stat /zkcli-mark/stat-ttl
stat /zc/ttl
stat /zkcli-mark/stat-missing
stat /zc/none
stat /zkcli-mark/ls
ls /zc
ls /zookeeper
stat /zkcli-mark/ls-R
ls -R /zc
stat /zkcli-mark/ls-s
ls -s /zc
stat /zkcli-mark/getEphemerals
getEphemerals /zc
getEphemerals /nothing-here
stat /zkcli-mark/getAllChildrenNumber
getAllChildrenNumber /zc
getAllChildrenNumber /
stat /zkcli-mark/delete
delete /zc/p
delete /zc/p
delete /zc/cont
delete -v 5 /zc/ttl
stat /zkcli-mark/deleteall
deleteall /zc/cont
ls /zc
stat /zkcli-mark/getAcl
getAcl /zc
stat /zkcli-mark/addauth-whoami
whoami
addauth digest alice:secret
whoami
stat /zkcli-mark/setAcl
create /zc/acl a
setAcl /zc/acl auth:alice:cdrwa
getAcl /zc/acl
setAcl -s /zc/acl digest:bob:$bob:r,auth::cdrwa
getAcl /zc/acl
stat /zkcli-mark/setAcl-read-only
create /zc/ro r
setAcl /zc/ro world:anyone:r
set /zc/ro x
get /zc/ro
getAcl /zc/ro
stat /zkcli-mark/sync
sync /zc
stat /zkcli-mark/watches
addWatch /zc
create /zc/w 1
set /zc/w 2
delete /zc/w
addWatch -m PERSISTENT /zc/p2
create /zc/p2 x
get -w /zc/acl
set /zc/acl b
ls -w /zc/acl
create /zc/acl/k 1
removewatches /zc
create /zc/after-remove 1
sync /zc
stat /zkcli-mark/config
config
stat /zkcli-mark/reap-setup
create -c /zc/c2
create /zc/c2/k k
delete /zc/c2/k
create -t 500 /zc/ttl-short s
stat /zkcli-mark/quota
create /zq q
create /zq/k k
setquota -n 10 /zq
listquota /zq
stat /zkcli-mark/end
quit
EOF
set +e
timeout 90 "$zkcli" -server "$hosts" <"$work/session.txt" >"$work/transcript" 2>&1
session_rc=$?
set -e
sections="$work/sections"
mkdir -p "$sections"
awk -v dir="$sections" '
  /^Node does not exist: \/zkcli-mark\// { name = substr($0, length("Node does not exist: /zkcli-mark/") + 1); next }
  name != "" { print > (dir "/" name) }
' "$work/transcript"
for s in create get null-data set stat stat-ephemeral stat-ttl stat-missing ls ls-R ls-s getEphemerals \
  getAllChildrenNumber delete deleteall getAcl addauth-whoami setAcl setAcl-read-only sync watches config \
  reap-setup quota end; do
  touch "$sections/$s"
done
t=$work/transcript

# (The session's exit code is that of its last failing command, and the
# final Closed event races the JVM's exit: neither is checked.)
expect_line "$t" "WatchedEvent state:SyncConnected type:None path:null"
expect_line "$t" "Node does not exist: /zkcli-mark/end"
[ "$session_rc" != 124 ] || problems+=("zkCli timed out")
verdict session "piped session through $hosts ran all $(grep -c . "$work/session.txt") commands" "$t"

s=$sections/create
for p in /zc /zc/p /zc/eph /zc/seq-0000000002 /zc/seq-0000000003 /zc/cont /zc/cont/child /zc/ttl /zc/nulldata; do
  expect_line "$s" "Created $p"
done
expect_line "$s" "Node already exists: /zc"
expect_line "$s" "Node does not exist: /none/x"
expect_line "$s" "Ephemerals cannot have children: /zc/eph/x"
verdict create "plain, -e, -s (suffixes 2 and 3: the parent counts every child), -c, -t; NodeExists, NoNode, NoChildrenForEphemerals" "$s"

s=$sections/get
expect_line "$s" "v1"
expect_line "$s" "dataVersion = 0"
expect_line "$s" "dataLength = 2"
expect_line "$s" "numChildren = 7"
expect_line "$s" "cversion = 7"
expect_line "$s" "ephemeralOwner = 0x0"
expect_re "$s" "^cZxid = 0x[0-9a-f]+$"
expect_re "$s" "^ctime = [A-Z][a-z]{2} [A-Z][a-z]{2} [ 0-9]{2} [0-9:]{8} [A-Z]+ [0-9]{4}$"
verdict get "get and get -s: data and the Stat (version 0, 7 children, cversion 7)" "$s"

s=$sections/null-data
expect_line "$s" "null"
verdict null-data "a node created without data reads back as null" "$s"

s=$sections/set
expect_line "$s" "v2"
expect_line "$s" "dataVersion = 1"
expect_line "$s" "version No is not valid : /zc"
expect_line "$s" "dataVersion = 2"
expect_line "$s" "v3"
verdict set "set, set -v with a stale version (BadVersion), set -s -v with the right one" "$s"

s=$sections/stat
expect_line "$s" "dataVersion = 2"
expect_line "$s" "numChildren = 7"
expect_line "$s" "dataLength = 2"
verdict stat "stat of a persistent node" "$s"

s=$sections/stat-ephemeral
expect_re "$s" "^ephemeralOwner = 0x[0-9a-f]*[1-9a-f][0-9a-f]*$"
verdict stat-ephemeral "an ephemeral's owner is the session: $(sed -n 's/^ephemeralOwner = //p' "$s")" "$s"

s=$sections/stat-ttl
expect_line "$s" "ephemeralOwner = 0x0"
expect_line "$s" "dataLength = 1"
verdict stat-ttl "a TTL node shows owner 0" "$s"

s=$sections/stat-missing
expect_line "$s" "Node does not exist: /zc/none"
verdict stat-missing "stat of a missing node" "$s"

s=$sections/ls
expect_line "$s" "[cont, eph, nulldata, p, seq-0000000002, seq-0000000003, ttl]"
expect_line "$s" "[config, quota]"
verdict ls "ls /zc and ls /zookeeper" "$s"

s=$sections/ls-R
for p in /zc /zc/cont /zc/cont/child /zc/eph /zc/nulldata /zc/p /zc/seq-0000000002 /zc/seq-0000000003 /zc/ttl; do
  expect_line "$s" "$p"
done
[ "$(grep -c '^/' "$s")" = 9 ] || problems+=("$(grep -c '^/' "$s") paths, not 9")
verdict ls-R "ls -R lists the 9 paths of the subtree" "$s"

s=$sections/ls-s
expect_line "$s" "[cont, eph, nulldata, p, seq-0000000002, seq-0000000003, ttl]"
expect_line "$s" "numChildren = 7"
verdict ls-s "ls -s: children and the Stat" "$s"

s=$sections/getEphemerals
expect_line "$s" "[/zc/eph]"
expect_line "$s" "[]"
verdict getEphemerals "the session's ephemerals under a prefix; none under another" "$s"

s=$sections/getAllChildrenNumber
expect_line "$s" "8"
expect_line "$s" "12"
verdict getAllChildrenNumber "8 below /zc, 12 below / (with /zookeeper, /zookeeper/config, /zookeeper/quota)" "$s"

s=$sections/delete
expect_line "$s" "Node does not exist: /zc/p"
expect_line "$s" "Node not empty: /zc/cont"
expect_line "$s" "version No is not valid : /zc/ttl"
verdict delete "delete, delete again (NoNode), delete of a parent (NotEmpty), delete -v stale (BadVersion)" "$s"

s=$sections/deleteall
expect_line "$s" "[eph, nulldata, seq-0000000002, seq-0000000003, ttl]"
verdict deleteall "deleteall removed the container and its child" "$s"

s=$sections/getAcl
expect_line "$s" "'world,'anyone"
expect_line "$s" ": cdrwa"
verdict getAcl "the open ACL" "$s"

s=$sections/addauth-whoami
expect_line "$s" "Auth scheme: User"
expect_line "$s" "ip: 127.0.0.1"
expect_line "$s" "digest: alice"
[ "$(grep -c '^ip: 127.0.0.1$' "$s")" = 2 ] || problems+=("ip identity not shown by both whoami")
[ "$(grep -c '^digest: alice$' "$s")" = 1 ] || problems+=("digest identity not shown only after addauth")
verdict addauth-whoami "whoami before (ip) and after addauth digest (ip, digest alice)" "$s"

s=$sections/setAcl
expect_line "$s" "'digest,'alice:$alice"
expect_line "$s" "'digest,'bob:$bob"
expect_line "$s" ": r"
expect_line "$s" "aclVersion = 2"
[ "$(grep -c "^'digest,'alice:$alice\$" "$s")" = 2 ] || problems+=("alice's id not in both getAcl outputs")
verdict setAcl "auth:alice expands to digest alice:sha1; setAcl -s with two entries (aclVersion 2)" "$s"

s=$sections/setAcl-read-only
expect_line "$s" "Insufficient permission : /zc/ro"
expect_line "$s" "r"
expect_line "$s" ": r"
verdict setAcl-read-only "world:anyone:r refuses set, allows get" "$s"

s=$sections/sync
expect_line "$s" "Sync is OK"
verdict sync "sync" "$s"

# Events are printed by the client's event thread, so they may land a
# section later: look in the whole transcript.
ev="WatchedEvent state:SyncConnected type"
expect_line "$t" "$ev:NodeCreated path:/zc/w"
expect_line "$t" "$ev:NodeDataChanged path:/zc/w"
expect_line "$t" "$ev:NodeDeleted path:/zc/w"
expect_line "$t" "$ev:NodeCreated path:/zc/p2"
expect_line "$t" "$ev:NodeDataChanged path:/zc/acl"
expect_line "$t" "$ev:NodeChildrenChanged path:/zc/acl"
expect_line "$t" "$ev:PersistentWatchRemoved path:/zc"
expect_no "$t" "path:/zc/after-remove$"
expect_no "$t" "type:NodeChildrenChanged path:/zc$"
verdict watches "addWatch (recursive: created/changed/deleted, no child events), addWatch -m PERSISTENT, get -w, ls -w, removewatches" "$t"

s=$sections/config
expect_no "$s" "Exception|Insufficient|not exist|not valid|rror"
if grep -vqE '^(server\.[0-9]+=.*|version=[0-9a-f]+|)$' "$s"; then problems+=("config has lines other than server.N= and version="); fi
verdict config "config answered ($(grep -c '^server\.' "$s" || true) server lines)" "$s"

s=$sections/reap-setup
expect_line "$s" "Created /zc/c2"
expect_line "$s" "Created /zc/ttl-short"
verdict reap-setup "a used container and a 500 ms TTL node" "$s"

s=$sections/quota
expect_no "$s" "not valid|does not exist"
expect_line "$s" "Output quota for /zq count=10,bytes=-1=;byteHardLimit=-1;countHardLimit=-1"
expect_line "$s" "Output stat for /zq count=2,bytes=2"
verdict quota "setquota -n writes /zookeeper/quota/zq; listquota shows the limit and the server's count of the subtree" "$s"

# --- one command per invocation, on each member ---------------------------
f=$work/out
oneshot "$f" "$m1" create /one one-data
expect_line "$f" "Created /one"
[ "$rc" = 0 ] || problems+=("exit $rc")
# Another member may not have applied the create yet: sync, then read.
printf 'sync /one\nget /one\nquit\n' >"$work/sync-get.txt"
set +e
timeout 30 "$zkcli" -server "$m3" <"$work/sync-get.txt" >"$f.3" 2>&1
set -e
expect_line "$f.3" "Sync is OK"
expect_line "$f.3" "one-data"
oneshot "$f.2" "$m2" get /no-such-node
expect_line "$f.2" "Node does not exist: /no-such-node"
[ "$rc" != 0 ] || problems+=("get of a missing node exited 0")
verdict one-command "create on $m1, read on $m3; a missing node exits non-zero on $m2" "$f.2"

gone_within 10 "$m2" /zc/eph || problems+=("/zc/eph still there 10 s after its session closed")
verdict ephemeral-gone "the session's ephemeral went with its session" "$work/poll"

oneshot "$f" "$m3" get /zc/acl
expect_line "$f" "Insufficient permission : /zc/acl"
oneshot "$f.2" "$m3" getAcl /zc/acl
expect_line "$f.2" "Insufficient permission : /zc/acl"
printf 'addauth digest bob:bobpw\nsync /zc/acl\ngetAcl /zc/acl\nget /zc/acl\nset /zc/acl x\nquit\n' >"$work/bob.txt"
set +e
timeout 30 "$zkcli" -server "$m2" <"$work/bob.txt" >"$f.3" 2>&1
set -e
expect_line "$f.3" "'digest,'bob:x"
expect_line "$f.3" "'digest,'alice:x"
expect_line "$f.3" "b"
expect_line "$f.3" "Insufficient permission : /zc/acl"
verdict acl-other-sessions "no auth: get and getAcl refused; bob (read only): ids masked as user:x, get ok, set refused" "$f.3"

if gone_within 15 "$m1" /zc/c2; then :; else problems+=("/zc/c2 still there after 15 s"); fi
verdict container-reaped "a container emptied of its child is removed" "$work/poll"
if gone_within 15 "$m1" /zc/ttl-short; then :; else problems+=("/zc/ttl-short still there after 15 s"); fi
oneshot "$f" "$m2" stat /zc/ttl
expect_line "$f" "ephemeralOwner = 0x0"
verdict ttl-reaped "a 500 ms TTL node is removed; the 60 s one stays" "$f"

servers_alive || failed+=(servers-alive)
elapsed_ms=$((($(date +%s%N) - started) / 1000000))
summary="zkcli against $target: $passed passed, ${#failed[@]} failed"
[ "$known_seen" = 0 ] || summary+=", $known_seen known incompatibilities"
echo "$summary${failed[*]:+ (${failed[*]})} in $((elapsed_ms / 1000)).$((elapsed_ms % 1000 / 100)) s"
[ ${#failed[@]} -eq 0 ]
