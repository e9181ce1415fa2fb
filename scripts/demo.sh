#!/usr/bin/env bash
# The Troupe walk-through (the tutorial's act 6 on one node): start a node, load the encoders,
# send requests, load a second version beside the first, change a capability, unload the first
# version (drained, then really unloaded), stop. Only `troupe` commands; run by `make demo`.
set -euo pipefail
T=${TROUPE:-target/release/troupe}
PORT=${DEMO_PORT:-1900}
export TROUPE_HOME=${TROUPE_HOME:-$(mktemp -d -t troupe-demo.XXXXXX)}
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
cleanup() { "$T" stop "$PORT" >/dev/null 2>&1 || true; }
trap cleanup EXIT

step "start a node with every capability the encoders need"
run "$T" start "$PORT" "morse,Caesar cipher,64bit encoder"

step "pack the encoders (v1) and load them: the hash is the sha256 of the zip"
run "$T" pack -o "$TROUPE_HOME/v1.zip" --build encoders
H1=$("$T" load "$PORT" "$TROUPE_HOME/v1.zip"); echo "v1 = $H1"

step "requests: one line per encoder, in arrival order"
echo '$ echo hello | troupe app '"${H1:0:12}"
echo hello | "$T" app "${H1:0:12}" --port "$PORT"
echo '$ echo "Hello, World! K k" | troupe app '"${H1:0:12}"
echo "Hello, World! K k" | "$T" app "${H1:0:12}" --port "$PORT"

step "a second version side by side (its Encoder reverses the text)"
run "$T" pack -o "$TROUPE_HOME/v2.zip" --build tests/plugins/encoders-v2
H2=$("$T" load "$PORT" "$TROUPE_HOME/v2.zip"); echo "v2 = $H2"
echo '$ echo hello | troupe app v1; echo hello | troupe app v2'
echo hello | "$T" app "$H1" --port "$PORT"
echo hello | "$T" app "$H2" --port "$PORT"

step "capabilities change at run time: without '64bit encoder' the Base64Encoder is stopped and cannot be re-created"
run "$T" chgcap "$PORT" - "64bit encoder"
echo '$ echo hello | troupe app v2'
echo hello | "$T" app "$H2" --port "$PORT" || echo "(exit $?: one encoder could not be placed)"
run "$T" chgcap "$PORT" + "64bit encoder"
echo hello | "$T" app "$H2" --port "$PORT"

step "unload v1: it drains — no new actors from it, living ones keep serving"
run "$T" unload "$PORT" "${H1:0:8}"
echo '$ echo hello | troupe app v1'
echo hello | "$T" app "$H1" --port "$PORT" || echo "(exit $?: v1 creates nothing new)"

step "unload v1 with a grace period: its remaining actors are asked to exit, then the library is closed and its files deleted"
run "$T" unload "$PORT" "${H1:0:8}" --grace 1s
run "$T" status "$PORT"
echo '$ echo hello | troupe app v2   # v2 is untouched'
echo hello | "$T" app "$H2" --port "$PORT"

step "stop: actors exit, versions unload, the store is removed"
run "$T" stop "$PORT"
trap - EXIT
echo
echo "demo finished; logs are under $TROUPE_HOME"
