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
