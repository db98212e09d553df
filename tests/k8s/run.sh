#!/usr/bin/env bash
# tests/k8s/run.sh: offline checks of the Helm chart, the CRD and the objects
# the operator builds (tests/k8s/check.py), with pinned PyPI packages in
# ${SYNOD_CACHE:-<repo>/target}/k8s-venv (built on first use, rebuilt when
# requirements.txt or the Python version changes).
#
# Uses the operator binary that scripts/test already built
# (target/debug/synod-operator, or $SYNOD_OPERATOR_BIN); it does not build.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${SYNOD_CACHE:-$REPO/target}
VENV=$CACHE/k8s-venv
PYTHON=${PYTHON:-python3}
BIN=${SYNOD_OPERATOR_BIN:-$REPO/target/debug/synod-operator}
REQ=$HERE/requirements.txt

log() { echo "k8s-check: $*" >&2; }

if [[ ! -x $BIN ]]; then
    log "error: $BIN is missing: build it first (cargo build -p synod-operator)"
    exit 2
fi

stamp="$(sha256sum "$REQ" | cut -d' ' -f1) $("$PYTHON" -c 'import sys; print(sys.version.split()[0])')"
if [[ ! -x $VENV/bin/python || "$(cat "$VENV/.synod-stamp" 2>/dev/null)" != "$stamp" ]]; then
    log "creating $VENV"
    rm -rf "$VENV"
    timeout 120 "$PYTHON" -m venv "$VENV"
    timeout 900 "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ"
    timeout 120 "$VENV/bin/python" -m pip check
    echo "$stamp" >"$VENV/.synod-stamp"
fi

exec timeout 300 "$VENV/bin/python" "$HERE/check.py" "$REPO" "$BIN"
