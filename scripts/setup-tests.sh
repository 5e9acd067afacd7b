#!/usr/bin/env bash
# Everything the test suite needs on a Debian 12 machine, idempotent:
#   1. the real SIP peers from Debian (kamailio, baresip, SIPp = package sip-tester, tshark, sox);
#      apt is skipped entirely when all their binaries are already there;
#   2. .venv with the gateway and its `test` extra (scripts/setup.sh --test);
#   3. the Node CometD client in tests/e2e/node when that directory has a package.json.
# Runs apt as root, or through sudo when not root.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NODE_DIR="$ROOT/tests/e2e/node"
log() { echo "setup-tests.sh: $*" >&2; }

have() {  # binary on PATH or in the sbin dirs a non-root PATH may lack
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]
}

# binary -> Debian package
declare -A PKG=(
    [kamailio]=kamailio [kamcmd]=kamailio
    [baresip]=baresip-core
    [sipp]=sip-tester
    [tshark]=tshark
    [sox]=sox
)
if [ -f "$NODE_DIR/package.json" ]; then
    PKG[node]=nodejs
    PKG[npm]=npm
fi

missing=()
for bin in "${!PKG[@]}"; do
    have "$bin" || missing+=("$bin")
done

if [ "${#missing[@]}" -gt 0 ]; then
    # Always install the full peer set (one apt transaction), plus node/npm only when they are missing.
    packages=(kamailio baresip-core sip-tester tshark sox)
    for bin in node npm; do
        if [[ " ${missing[*]} " == *" $bin "* ]]; then packages+=("${PKG[$bin]}"); fi
    done
    log "missing: ${missing[*]} -> apt-get install ${packages[*]}"
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=()
    elif command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        log "need root or sudo to install ${packages[*]}"; exit 1
    fi
    APT=("${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 -q)

    # No service may start during the install: on a systemd machine the kamailio package would
    # otherwise launch the system kamailio on 0.0.0.0:5060. policy-rc.d exit 101 = "action forbidden"
    # (honoured by invoke-rc.d and deb-systemd-invoke). Only ours is removed afterwards.
    POLICY=/usr/sbin/policy-rc.d
    if [ ! -e "$POLICY" ]; then
        printf '#!/bin/sh\n# temporary, from voice-gateway scripts/setup-tests.sh\nexit 101\n' \
            | "${SUDO[@]}" tee "$POLICY" >/dev/null
        "${SUDO[@]}" chmod 755 "$POLICY"
        trap '"${SUDO[@]}" rm -f "$POLICY"' EXIT
    fi
    # tshark would otherwise ask whether non-root users may capture
    echo "wireshark-common wireshark-common/install-setuid boolean false" | "${SUDO[@]}" debconf-set-selections
    "${APT[@]}" update
    "${APT[@]}" install -y --no-install-recommends "${packages[@]}"

    still=()
    for bin in "${!PKG[@]}"; do have "$bin" || still+=("$bin"); done
    if [ "${#still[@]}" -gt 0 ]; then
        log "still missing after apt-get install: ${still[*]}"; exit 1
    fi
fi

"$ROOT/scripts/setup.sh" --test

if [ -f "$NODE_DIR/package.json" ]; then
    stamp="$NODE_DIR/node_modules/.package-lock.json"   # npm writes it on every install
    if [ -f "$stamp" ] && [ "$stamp" -nt "$NODE_DIR/package.json" ] \
        && { [ ! -f "$NODE_DIR/package-lock.json" ] || [ "$stamp" -nt "$NODE_DIR/package-lock.json" ]; }; then
        :   # node_modules is up to date
    elif [ -f "$NODE_DIR/package-lock.json" ]; then
        log "npm ci in tests/e2e/node"
        (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error)
    else
        log "npm install in tests/e2e/node (no package-lock.json)"
        (cd "$NODE_DIR" && npm install --no-audit --no-fund --loglevel=error)
    fi
fi
