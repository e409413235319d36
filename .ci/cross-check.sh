#!/usr/bin/env bash
# Cross-build check: installs the cross toolchain (cross/setup.sh), builds
# static musl cairnd + cairn-agent for amd64, arm64 and armv7 (cross/build.sh),
# then runs every binary: amd64 natively, arm64 and armv7 under qemu-user
# (there is no binfmt_misc here, so qemu is called explicitly).
#
#   `cairn-agent once`  must exit 0 and print one JSON object with objects
#                       "cpu" (total_percent, ...) and "memory" (total_bytes > 0, ...)
#   `cairnd version`    must exit 0; what it prints must start "cairnd <version>"
#   .ci/dist-e2e.py     each arch's agent enrolls with the amd64 cairnd, delivers
#                       a snapshot (node online) and exits 0 on SIGTERM
#   the e2e suite       tests/ run against the amd64 static cairnd and agent
#                       (CAIRN_E2E_BIN_DIR)
#   agent size          each arch's cairn-agent is at most 1,500,000 bytes
#
# Environment: CROSS_TARGETS (default "x86_64 aarch64 armv7"), CROSS_OUT
# (default dist), CROSS_SKIP_SETUP=1 to skip cross/setup.sh, CROSS_BUILD_ARGS
# (extra cross/build.sh arguments, e.g. "--mode serial").
# Machine-readable lines: "TIME step=<name> seconds=<n>",
# "SIZE arch=<arch> bin=<name> bytes=<n>", and a closing "N passed, N failed".
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGETS="${CROSS_TARGETS:-x86_64 aarch64 armv7}"
OUT="${CROSS_OUT:-$ROOT/dist}"
case "$OUT" in /*) ;; *) OUT="$ROOT/$OUT" ;; esac

# The agent's static binary, per arch (docs/BENCHMARKS.md §5).
AGENT_MAX_BYTES=1500000

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
say() { printf '[cross-check] %s\n' "$*"; }
T_ALL="$(now)"

if [ "${CROSS_SKIP_SETUP:-0}" != 1 ]; then
    t0="$(now)"
    bash cross/setup.sh
    echo "TIME step=setup seconds=$(elapsed "$t0")"
fi

t0="$(now)"
read -r -a BUILD_ARGS <<<"${CROSS_BUILD_ARGS:-}"
bash cross/build.sh --targets "$TARGETS" --out "$OUT" "${BUILD_ARGS[@]}"
echo "TIME step=build seconds=$(elapsed "$t0")"

passed=0
failed=0
ok() { passed=$((passed + 1)); say "PASS $*"; }
bad() { failed=$((failed + 1)); say "FAIL $*"; }

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# Asserts that file $1 holds one JSON object with "cpu" and "memory" objects.
check_snapshot_json() {
    python3 - "$1" <<'PY'
import json, sys
with open(sys.argv[1], "rb") as f:
    raw = f.read()
try:
    snap = json.loads(raw)
except ValueError as e:
    sys.exit(f"stdout is not JSON ({e}); first 300 bytes: {raw[:300]!r}")
if not isinstance(snap, dict):
    sys.exit(f"top level is {type(snap).__name__}, not an object")
cpu, mem = snap.get("cpu"), snap.get("memory")
if not isinstance(cpu, dict):
    sys.exit(f"'cpu' is not an object: {cpu!r}")
if not isinstance(mem, dict):
    sys.exit(f"'memory' is not an object: {mem!r}")
tp = cpu.get("total_percent")
if not isinstance(tp, (int, float)) or isinstance(tp, bool):
    sys.exit(f"cpu.total_percent is not a number: {tp!r}")
tb = mem.get("total_bytes")
if not isinstance(tb, int) or isinstance(tb, bool) or tb <= 0:
    sys.exit(f"memory.total_bytes is not a positive integer: {tb!r}")
print(f"cpu.total_percent={tp} memory.total_bytes={tb}")
PY
}

for t in $TARGETS; do
    case "$t" in
        x86_64|amd64) arch=amd64; runner=() ;;
        # Pi 3 (64-bit OS) and Pi 2 / Pi 3 on a 32-bit OS: run on those CPUs,
        # so an instruction they lack fails here.
        aarch64|arm64) arch=arm64; runner=(qemu-aarch64-static -cpu cortex-a53) ;;
        armv7|armhf) arch=armv7; runner=(qemu-arm-static -cpu cortex-a7) ;;
        *) say "unknown target $t"; exit 2 ;;
    esac

    bin="$OUT/$arch/cairn-agent"
    t0="$(now)"
    rc=0
    timeout 120 "${runner[@]}" "$bin" once >"$TMP/out" 2>"$TMP/err" || rc=$?
    echo "TIME step=run-$arch-cairn-agent-once seconds=$(elapsed "$t0")"
    if [ "$rc" -ne 0 ]; then
        bad "$arch cairn-agent once: exit $rc; stderr: $(head -c 600 "$TMP/err")"
    elif msg="$(check_snapshot_json "$TMP/out" 2>&1)"; then
        ok "$arch cairn-agent once: $msg"
    else
        bad "$arch cairn-agent once: $msg"
    fi

    bin="$OUT/$arch/cairnd"
    t0="$(now)"
    rc=0
    timeout 60 "${runner[@]}" "$bin" version >"$TMP/out" 2>"$TMP/err" || rc=$?
    echo "TIME step=run-$arch-cairnd-version seconds=$(elapsed "$t0")"
    first="$(head -n 1 "$TMP/out")"
    if [ "$rc" -ne 0 ]; then
        bad "$arch cairnd version: exit $rc; stderr: $(head -c 600 "$TMP/err")"
    elif [ -z "$first" ]; then
        ok "$arch cairnd version: exit 0 (printed nothing)"
    elif grep -Eq '^cairnd [0-9A-Za-z.+-]+' <<<"$first"; then
        ok "$arch cairnd version: $first"
    else
        bad "$arch cairnd version: unexpected output: $first"
    fi
done

# The shipped agents against the shipped amd64 cairnd: enroll, deliver, stop.
if [ -x "$OUT/amd64/cairnd" ]; then
    ARCHES=()
    for t in $TARGETS; do
        case "$t" in x86_64|amd64) ARCHES+=(amd64) ;; aarch64|arm64) ARCHES+=(arm64) ;; *) ARCHES+=(armv7) ;; esac
    done
    t0="$(now)"
    python3 .ci/dist-e2e.py "$OUT" "${ARCHES[@]}" >"$TMP/e2e" 2>&1 || true
    echo "TIME step=dist-e2e seconds=$(elapsed "$t0")"
    while IFS= read -r line; do
        case "$line" in
            "PASS "*) ok "${line#PASS }" ;;
            "FAIL "*) bad "${line#FAIL }" ;;
            *) say "$line" ;;
        esac
    done <"$TMP/e2e"
    reported="$(grep -c '^PASS \|^FAIL ' "$TMP/e2e" || true)"
    [ "$reported" -ge "${#ARCHES[@]}" ] || bad "dist-e2e.py reported $reported of ${#ARCHES[@]} arches: $(tail -c 600 "$TMP/e2e")"
fi

# The whole end-to-end suite against the shipped amd64 binaries: their
# allocator (dlmalloc with own mappings, SQLite routed through it) and libc
# differ from the glibc debug builds the test command runs.
if [ -x "$OUT/amd64/cairnd" ] && [ -x "$OUT/amd64/cairn-agent" ]; then
    t0="$(now)"
    rc=0
    CAIRN_E2E_BIN_DIR="$OUT/amd64" cargo test -p cairn-e2e --locked >"$TMP/suite" 2>&1 || rc=$?
    echo "TIME step=e2e-suite-static-amd64 seconds=$(elapsed "$t0")"
    results="$(grep -E '^test result:' "$TMP/suite" | awk '{p += $4; f += $6} END {print p+0, f+0}')"
    if [ "$rc" -eq 0 ]; then
        ok "e2e suite on the static amd64 binaries: ${results% *} tests passed"
    else
        bad "e2e suite on the static amd64 binaries (exit $rc): $(grep -E 'FAILED|panicked' "$TMP/suite" | head -n 20)"
    fi
fi

for t in $TARGETS; do
    case "$t" in x86_64|amd64) arch=amd64 ;; aarch64|arm64) arch=arm64 ;; *) arch=armv7 ;; esac
    for b in cairnd cairn-agent; do
        echo "SIZE arch=$arch bin=$b bytes=$(stat -c %s "$OUT/$arch/$b")"
    done
    # Issue 3's size target for the agent with TLS: 1.5 MB. A size is not a
    # timing, so it is checked here rather than only reported by bench/.
    size="$(stat -c %s "$OUT/$arch/cairn-agent")"
    if [ "$size" -le "$AGENT_MAX_BYTES" ]; then
        ok "$arch cairn-agent is $size bytes (at most $AGENT_MAX_BYTES)"
    else
        bad "$arch cairn-agent is $size bytes, over the $AGENT_MAX_BYTES-byte target"
    fi
done
echo "TIME step=cross-check-total seconds=$(elapsed "$T_ALL")"
echo "cross-check: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
