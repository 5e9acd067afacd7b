#!/usr/bin/env bash
# Run every benchmark of bench/ one after the other and print their figures (nothing is asserted).
# Needs the project venv (.venv, see README) and SIPp (Debian package sip-tester) for sipp_cps.py.
# Arguments are not passed on; run a script by itself to change its options (each has --help).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3

run() {
    echo
    echo "=== $* ($(date -u +%H:%M:%S) UTC) ==="
    "$PY" "$@"
}

echo "host: $(nproc) CPU(s), load average $(cut -d' ' -f1-3 /proc/loadavg), $(uname -sr)"
run bench/media_legs.py
run bench/sipp_cps.py
run bench/api_latency.py
