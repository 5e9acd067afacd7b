#!/usr/bin/env bash
# Create or refresh the project's virtualenv (.venv) with an editable install of the gateway.
#
#   scripts/setup.sh          runtime dependencies (what scripts/serve needs)
#   scripts/setup.sh --test   plus the `test` extra (pytest, numpy, ...) -- what scripts/test needs
#
# Idempotent and fast when nothing changed: the install is skipped when a stamp in .venv records the
# same pyproject.toml hash (and extras). Needs Python >= 3.11 (PYTHON=/path/to/python to choose one).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VG_VENV:-$ROOT/.venv}"
EXTRAS=runtime
for arg in "$@"; do
    case "$arg" in
        --test) EXTRAS=test ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "setup.sh: unknown argument '$arg' (expected --test)" >&2; exit 2 ;;
    esac
done

log() { echo "setup.sh: $*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else log "need root (or sudo) to run: $*"; return 1
    fi
}

py_ok() {  # is "$1" a Python >= 3.11?
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1
}

find_python() {
    local c
    for c in ${PYTHON:-} python3.11 python3.12 python3.13 python3; do
        if command -v "$c" >/dev/null 2>&1 && py_ok "$(command -v "$c")"; then
            command -v "$c"; return 0
        fi
    done
    return 1
}

make_venv() {
    local py
    if ! py="$(find_python)"; then
        if command -v apt-get >/dev/null 2>&1; then
            log "no Python >= 3.11 found; installing Debian's python3 + python3-venv"
            as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -q \
                --no-install-recommends python3 python3-venv
            py="$(find_python)" || { log "still no Python >= 3.11"; exit 1; }
        else
            log "no Python >= 3.11 found (set PYTHON=/path/to/python3.11)"; exit 1
        fi
    fi
    log "creating $VENV with $py ($("$py" -V 2>&1))"
    rm -rf "$VENV"
    if ! "$py" -m venv "$VENV" 2>/dev/null; then
        # Debian's system python3 ships venv/ensurepip in a separate package
        if [ "$py" = /usr/bin/python3 ] || [ "$py" = /usr/bin/python3.11 ]; then
            log "python3 -m venv failed; installing python3-venv"
            as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -q \
                --no-install-recommends python3-venv
            rm -rf "$VENV"
            "$py" -m venv "$VENV"
        else
            "$py" -m venv "$VENV"   # show the real error
        fi
    fi
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
}

if [ ! -x "$VENV/bin/python" ] || ! py_ok "$VENV/bin/python"; then
    make_venv
fi

STAMP="$VENV/.voice-gateway-setup"
HASH="$( (cat "$ROOT/pyproject.toml"; "$VENV/bin/python" -V) 2>&1 | sha256sum | cut -d' ' -f1)"
stamped() { [ -f "$STAMP" ] && grep -qx "$1 $HASH" "$STAMP"; }
installed() {  # the editable install still resolves (e.g. not broken by a moved checkout)
    "$VENV/bin/python" -c 'import importlib.util as u, sys; sys.exit(0 if u.find_spec("gateway") else 1)' \
        >/dev/null 2>&1
}

if installed && { stamped test || { [ "$EXTRAS" = runtime ] && stamped runtime; }; }; then
    exit 0
fi

log "installing voice-gateway ($EXTRAS) into $VENV"
if [ "$EXTRAS" = test ]; then
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[test]"
else
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT"
fi
echo "$EXTRAS $HASH" > "$STAMP"   # a "test" stamp also satisfies a later runtime-only setup
