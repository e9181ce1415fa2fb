#!/usr/bin/env bash
# The Troupe walk-through — the tutorial's act 6 on three local nodes: start a convention, load
# the encoders on the leader (members fetch the code when they need it), send requests, load a
# second version beside the first, move an encoder by changing capabilities, unload the first
# version everywhere (drained, then really unloaded), stop. Only `troupe` commands; `make demo`
# runs it. Ports: DEMO_PORTS="1900 10000 10101" by default (the first one leads).
set -euo pipefail
T=${TROUPE:-target/release/troupe}
read -r LEADER M1 M2 <<<"${DEMO_PORTS:-1900 10000 10101}"
export TROUPE_HOME=${TROUPE_HOME:-$(mktemp -d -t troupe-demo.XXXXXX)}
CONV="--convention 127.0.0.1:$LEADER"
bold() { if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then printf '\n\033[1m== %s\033[0m\n' "$*"; else printf '\n== %s\n' "$*"; fi; }
run() { printf '$ %s\n' "$*"; "$@"; }
app() { printf '$ echo %q | troupe app %s\n' "$1" "${2:0:12}"; echo "$1" | "$T" app "$2" --port "$LEADER"; }
placement() {
  "$T" status "$LEADER" --convention --json | python3 -c '
import json, sys
for n in json.load(sys.stdin):
    actors = [a["type_name"] for a in (n["status"] or {}).get("actors", [])]
    versions = ["%s %s" % (v["hash"][:8], v["state"]) for v in (n["status"] or {}).get("versions", [])]
    print("   %-16s %-6s caps=%-32s actors=%s versions=%s" % (n["node"], n["role"], ",".join((n["status"] or {}).get("capabilities", [])) or "-", ",".join(a.split(".")[1] for a in actors) or "-", ",".join(versions) or "-"))
' 2>/dev/null || "$T" status "$LEADER" --convention
}
cleanup() { "$T" stop "$M2" "$M1" "$LEADER" >/dev/null 2>&1 || true; }
trap cleanup EXIT

bold "start three nodes: the leader (no capabilities) and two members with capabilities"
run "$T" start "$LEADER" $CONV
run "$T" start "$M1" "morse,Caesar cipher" $CONV
run "$T" start "$M2" "64bit encoder" $CONV

bold "pack the encoders (v1) and load them on the leader only: the hash is the sha256 of the zip"
run "$T" pack -o "$TROUPE_HOME/v1.zip" --build encoders
H1=$("$T" load "$LEADER" "$TROUPE_HOME/v1.zip"); echo "v1 = $H1"

bold "requests: each encoder runs on a node with its capability; members fetched v1 on demand"
app hello "$H1"
app "Hello, World! K k" "$H1"
placement

bold "a second version side by side (its Encoder reverses the text)"
run "$T" pack -o "$TROUPE_HOME/v2.zip" --build tests/plugins/encoders-v2
H2=$("$T" load "$LEADER" "$TROUPE_HOME/v2.zip"); echo "v2 = $H2"
app hello "$H1"
app hello "$H2"

bold "capabilities change at run time: '64bit encoder' moves from $M2 to the leader"
run "$T" chgcap "$M2" - "64bit encoder"
app hello "$H1" || echo "(exit $?: no node has '64bit encoder' now)"
run "$T" chgcap "$LEADER" + "64bit encoder"
app hello "$H1"
placement

bold "unload v1 (on the leader; it spreads to every node): it drains, living actors keep serving"
run "$T" unload "$LEADER" "${H1:0:8}"
app hello "$H1" || echo "(exit $?: v1 creates nothing new)"
bold "unload v1 with a grace period: its actors are asked to exit, then its libraries are closed and deleted everywhere"
run "$T" unload "$LEADER" "${H1:0:8}" --grace 1s
placement
app hello "$H2"

bold "stop: actors exit (children on other nodes too), versions unload, stores are removed"
run "$T" stop "$M2" "$M1" "$LEADER"
trap - EXIT
echo
echo "demo finished; node logs are under $TROUPE_HOME"
