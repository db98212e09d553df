# Shell functions the compatibility suites share (sourced, not run). They
# read `$ensemble_script` (tests/compat/synod-ensemble.sh or a ZooKeeper
# reference script) and `$ensemble` (the running ensemble's directory).

# Refuses to run when the client ports are taken (another run, another
# suite), and checks that the servers this run started are alive: a server
# that cannot bind exits at once, and the readiness probe would then be
# answered by whatever holds the ports.
ports_free() {
  local hp
  for hp in $("$ensemble_script" hosts "$1" | tr , ' '); do
    if timeout 1 bash -c "exec 3<>/dev/tcp/${hp%:*}/${hp#*:}" 2>/dev/null; then
      echo "$hp is already in use (set SYNOD_COMPAT_PORT_BASE)" >&2
      return 1
    fi
  done
}
servers_alive() {
  local f n=0
  for f in "$ensemble"/node-*.pid "$ensemble"/zk*/pid; do
    [ -f "$f" ] || continue
    n=$((n + 1))
    kill -0 "$(cat "$f")" 2>/dev/null || { echo "the server of $f has exited" >&2; return 1; }
  done
  [ "$n" = 3 ] || { echo "$n server pid files, not 3" >&2; return 1; }
}

# `synod dev` for the suites that run against it (the README quickstart,
# kazoo over TLS): starts `$bin dev --data-dir $1 ${@:3}` with its log in
# $2, sets `dev_pid`, and waits (bounded) until its three nodes answer
# /readyz; prints the log and fails if it exits or is not ready in 30 s.
# `stop_synod_dev` stops it (ctrl-c, then kill after 10 s).
dev_pid=
start_synod_dev() {
  local data=$1 log=$2 ready=0 port
  shift 2
  SYNOD_LOG=warn "$bin" dev --data-dir "$data" "$@" >"$log" 2>&1 &
  dev_pid=$!
  for _ in $(seq 1 300); do
    ready=0
    for port in 7201 7202 7203; do
      if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/readyz', timeout=1)" 2>/dev/null; then
        ready=$((ready + 1))
      fi
    done
    [ "$ready" -eq 3 ] && return 0
    kill -0 "$dev_pid" 2>/dev/null || { cat "$log" >&2; echo "synod dev exited" >&2; return 1; }
    sleep 0.1
  done
  cat "$log" >&2
  echo "synod dev did not become ready" >&2
  return 1
}
stop_synod_dev() {
  [ -n "$dev_pid" ] || return 0
  kill -INT "$dev_pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$dev_pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$dev_pid" 2>/dev/null || true
  dev_pid=
}

# The python of the kazoo virtualenv that tests/compat/kazoo/run.sh builds,
# in `$python`, for the suites that run kazoo against `synod dev`; fails
# when it has not been built.
kazoo_python() {
  python=${SYNOD_CACHE:-target}/kazoo-venv/bin/python
  [ -x "$python" ] || { echo "no kazoo virtualenv at $python (run tests/compat/kazoo/run.sh first)" >&2; return 1; }
}
