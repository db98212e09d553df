#!/usr/bin/env bash
# tests/compat/kazoo/run.sh: runs kazoo's own test suite (kazoo/tests from the
# pinned kazoo sdist, see requirements.txt) against an external, already
# running ZooKeeper-protocol ensemble, less the tests named in excluded.txt.
#
# Usage:
#   run.sh --servers host:port,host:port,host:port [-- PYTEST_ARGS...]
#   KAZOO_SERVERS=host:port,... run.sh [-- PYTEST_ARGS...]
#   run.sh --zookeeper [-- PYTEST_ARGS...]
#       starts Apache ZooKeeper 3.8 (Debian) with zookeeper-ensemble.sh in a
#       temporary directory, runs against it, and stops it (the reference run)
#   PYTEST_ARGS go to pytest, e.g. `-- -k test_lock -x`.
#
# The virtualenv lives in ${SYNOD_CACHE:-<repo>/target}/kazoo-venv; it is
# built on first use and rebuilt when requirements.txt or the Python version
# changes. Results (JUnit XML) go to ${SYNOD_CACHE:-<repo>/target}/kazoo-results.
# Prints "kazoo: N passed, N failed, N skipped" and the excluded count; exits
# non-zero on any failure or error, or if no test ran.
#
# Environment (all optional):
#   PYTHON=python3          interpreter for the virtualenv
#   KAZOO_RUN_TIMEOUT=1200  seconds for the whole pytest run (each test also
#                           has a 120 s limit, pytest.ini)
#   SYNOD_CACHE             where the virtualenv and results go
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
CACHE=${SYNOD_CACHE:-$REPO/target}
VENV=$CACHE/kazoo-venv
RESULTS=$CACHE/kazoo-results
PYTHON=${PYTHON:-python3}
RUN_TIMEOUT=${KAZOO_RUN_TIMEOUT:-1200}

log() { echo "kazoo-compat: $*" >&2; }
die() {
    log "error: $*"
    exit 2
}

SERVERS=${KAZOO_SERVERS:-}
WITH_ZOOKEEPER=0
PYTEST_ARGS=()
while (($#)); do
    case $1 in
        --servers)
            [[ $# -ge 2 ]] || die "--servers needs host:port,..."
            SERVERS=$2
            shift 2
            ;;
        --servers=*)
            SERVERS=${1#--servers=}
            shift
            ;;
        --zookeeper)
            WITH_ZOOKEEPER=1
            shift
            ;;
        --)
            shift
            PYTEST_ARGS=("$@")
            break
            ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
if [[ $WITH_ZOOKEEPER == 1 && -n $SERVERS ]]; then die "give --servers or --zookeeper, not both"; fi
if [[ $WITH_ZOOKEEPER == 0 && -z $SERVERS ]]; then die "give --servers host:port,... (or KAZOO_SERVERS), or --zookeeper"; fi

# --- the virtualenv ---------------------------------------------------------
REQ=$HERE/requirements.txt
command -v "$PYTHON" >/dev/null || die "$PYTHON not found"
stamp="$(sha256sum "$REQ" | cut -d' ' -f1) $("$PYTHON" -c 'import sys; print(sys.version.split()[0])')"
if [[ ! -x $VENV/bin/python || "$(cat "$VENV/.synod-stamp" 2>/dev/null)" != "$stamp" ]]; then
    log "building the virtualenv in $VENV"
    rm -rf "$VENV"
    mkdir -p "$CACHE"
    timeout 120 "$PYTHON" -m venv "$VENV"
    export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
    # pinned pip and setuptools first; the sdists (kazoo, twofish) then build
    # with them, not with whatever build isolation would fetch.
    timeout 600 "$VENV/bin/python" -m pip install -q $(grep -E '^(pip|setuptools)==' "$REQ")
    timeout 1200 "$VENV/bin/python" -m pip install -q --no-build-isolation -r "$REQ"
    timeout 120 "$VENV/bin/python" -m pip check
    echo "$stamp" >"$VENV/.synod-stamp"
fi
KAZOO_VERSION=$("$VENV/bin/python" -c 'import kazoo.version; print(kazoo.version.__version__)')
[[ -f $("$VENV/bin/python" -c 'import kazoo.tests, os; print(os.path.join(os.path.dirname(kazoo.tests.__file__), "test_client.py"))') ]] ||
    die "the installed kazoo has no kazoo/tests (not built from the sdist?)"

# --- the ensemble (for --zookeeper) ----------------------------------------
ZK_DIR=
cleanup() {
    local rc=$?
    trap - EXIT
    if [[ -n $ZK_DIR ]]; then
        "$HERE/zookeeper-ensemble.sh" stop "$ZK_DIR" || true
        if [[ $rc -ne 0 ]]; then
            log "ZooKeeper logs kept in $ZK_DIR"
        else
            rm -rf "$ZK_DIR"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
if [[ $WITH_ZOOKEEPER == 1 ]]; then
    ZK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/kazoo-zk.XXXXXX")
    SERVERS=$("$HERE/zookeeper-ensemble.sh" start "$ZK_DIR")
fi

# --- the run -----------------------------------------------------------------
mkdir -p "$RESULTS"
JUNIT=$RESULTS/junit.xml
rm -f "$JUNIT"
log "kazoo $KAZOO_VERSION against $SERVERS"
started=$SECONDS
set +e
# CI=true: kazoo's test_build then asks the server its version (envi) the same
# way locally and in CI; ZOOKEEPER_VERSION unset: every version check asks the
# server (envi) instead of trusting the environment.
(
    cd "$HERE" &&
        env -u ZOOKEEPER_VERSION CI=true PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$HERE" \
            timeout --kill-after=30 "$RUN_TIMEOUT" "$VENV/bin/python" -m pytest \
            -c "$HERE/pytest.ini" -p kazoo_external --servers "$SERVERS" \
            --excluded "$HERE/excluded.txt" --junitxml "$JUNIT" \
            --pyargs kazoo.tests "${PYTEST_ARGS[@]}" </dev/null
)
rc=$?
set -e
elapsed=$((SECONDS - started))
if [[ $rc -eq 124 || $rc -eq 137 ]]; then log "pytest did not finish within ${RUN_TIMEOUT}s"; fi
[[ -f $JUNIT ]] || die "pytest wrote no results (exit $rc)"

# Counts from the JUnit XML; "excluded" is the number of names in excluded.txt
# (deselected before the run).
read -r tests failed errors skipped < <("$VENV/bin/python" - "$JUNIT" <<'EOF'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else list(root)
t = sum(int(s.get("tests", 0)) for s in suites)
f = sum(int(s.get("failures", 0)) for s in suites)
e = sum(int(s.get("errors", 0)) for s in suites)
k = sum(int(s.get("skipped", 0)) for s in suites)
print(t, f, e, k)
EOF
)
excluded=$(sed 's/#.*//' "$HERE/excluded.txt" | grep -c '[^[:space:]]' || true)
passed=$((tests - failed - errors - skipped))
echo
echo "kazoo $KAZOO_VERSION against $SERVERS: ${elapsed}s, $excluded excluded (excluded.txt), $errors errors"
echo "kazoo: $passed passed, $((failed + errors)) failed, $skipped skipped"
if [[ $rc -ne 0 || $failed -ne 0 || $errors -ne 0 || $tests -eq 0 ]]; then
    log "FAILED (pytest exit $rc)"
    exit 1
fi
