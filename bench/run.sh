#!/usr/bin/env bash
# Cairn's benchmarks: builds the release binaries, then runs the parts on
# 127.0.0.1 with temporary data directories. Figures and method:
# docs/BENCHMARKS.md.
#
#   bench/run.sh                     # every part (about 27 minutes on 2 cores)
#   bench/run.sh ingest              # some parts: machine ingest alerts heartbeats checks rss query disk agent
#   bench/run.sh rss --rss-hours 6   # --options go to cairn-bench (list: bench/src/main.rs)
#
# Environment
#   CAIRND=PATH      measure this cairnd instead of building target/release-daemon/cairnd
#                    (e.g. CAIRND=dist/amd64/cairnd for the static musl build)
#   AGENT=PATH       measure this cairn-agent (default: dist/amd64/cairn-agent if
#                    cross/build.sh made it, else a static x86_64 musl build made here)
#   BENCH_WORK=DIR   data directories (default target/bench/work); must be a real
#                    disk, not tmpfs, or the durability and disk figures mean nothing
#   NO_BUILD=1       use the binaries as they are
#
# Output: the console, target/bench/run.log, and target/bench/<part>.json.
# prometheus-node-exporter (for the agent comparison) is used from
# /usr/bin when installed; otherwise its Debian package is downloaded with
# `apt-get download` and unpacked under target/bench/, never installed or
# started as a service.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
say() { printf '[bench] %s\n' "$*"; }

parts=()
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        --*) [ $# -ge 2 ] || { echo "bench/run.sh: $1 needs a value" >&2; exit 2; }
             args+=("$1" "$2"); shift 2 ;;
        all|machine|ingest|alerts|heartbeats|checks|rss|query|disk|agent) parts+=("$1"); shift ;;
        *) echo "bench/run.sh: unknown part '$1' (all machine ingest alerts heartbeats checks rss query disk agent)" >&2; exit 2 ;;
    esac
done
[ ${#parts[@]} -gt 0 ] || parts=(all)
wants() {
    local p
    for p in "${parts[@]}"; do
        if [ "$p" = all ] || [ "$p" = "$1" ]; then return 0; fi
    done
    return 1
}

OUT="$ROOT/target/bench"
WORK="${BENCH_WORK:-$OUT/work}"
mkdir -p "$OUT" "$WORK"
if [ "$(stat -f -c %T "$WORK" 2>/dev/null || true)" = tmpfs ]; then
    say "WARNING: $WORK is on tmpfs: fsync is free there and write_bytes stays 0; set BENCH_WORK to a real disk"
fi

if [ "${NO_BUILD:-0}" != 1 ]; then
    if [ -z "${CAIRND:-}" ]; then
        say "building cairnd (profile release-daemon)"
        cargo build --profile release-daemon -p cairnd
    fi
    say "building cairn-bench (profile release-daemon, so the in-process SQLite runs the daemon's code)"
    cargo build --profile release-daemon -p cairn-bench
fi
CAIRND="${CAIRND:-$ROOT/target/release-daemon/cairnd}"

agent_args=()
if wants agent; then
    if [ -z "${AGENT:-}" ] && [ "$(uname -m)" = x86_64 ] && [ -x "$ROOT/dist/amd64/cairn-agent" ]; then
        AGENT="$ROOT/dist/amd64/cairn-agent"
    fi
    if [ -z "${AGENT:-}" ]; then
        MUSL="$ROOT/target/x86_64-unknown-linux-musl/release/cairn-agent"
        if [ "${NO_BUILD:-0}" != 1 ] && rustup target list --installed 2>/dev/null | grep -x x86_64-unknown-linux-musl >/dev/null; then
            # ring needs a C compiler for the target: zig (cross/setup.sh) or musl-gcc.
            if command -v cargo-zigbuild >/dev/null 2>&1; then
                say "building a static x86_64 musl cairn-agent with cargo zigbuild"
                cargo zigbuild --release --target x86_64-unknown-linux-musl -p cairn-agent || true
            else
                say "building a static x86_64 musl cairn-agent"
                cargo build --release --target x86_64-unknown-linux-musl -p cairn-agent || true
            fi
        fi
        if [ -x "$MUSL" ]; then
            AGENT="$MUSL"
        else
            say "WARNING: no static musl agent (run cross/setup.sh for zig); measuring the glibc release build"
            [ "${NO_BUILD:-0}" = 1 ] || cargo build --release -p cairn-agent
            AGENT="$ROOT/target/release/cairn-agent"
        fi
    fi
    agent_args+=(--agent "$AGENT")
    NE="$(command -v prometheus-node-exporter || true)"
    if [ -z "$NE" ]; then
        NE="$OUT/node-exporter/usr/bin/prometheus-node-exporter"
        if [ ! -x "$NE" ] && command -v apt-get >/dev/null 2>&1; then
            say "fetching Debian's prometheus-node-exporter package (unpacked here, not installed)"
            mkdir -p "$OUT/pkgs" "$OUT/node-exporter"
            (cd "$OUT/pkgs" && apt-get download prometheus-node-exporter) &&
                dpkg-deb -x "$(ls -t "$OUT"/pkgs/prometheus-node-exporter_*.deb | head -n1)" "$OUT/node-exporter" ||
                say "WARNING: could not fetch prometheus-node-exporter; the comparison will be skipped"
        fi
    fi
    [ -x "$NE" ] && agent_args+=(--node-exporter "$NE")
fi

say "cairnd: $CAIRND"
[ -z "${AGENT:-}" ] || say "agent: $AGENT"
set -o pipefail
"$ROOT/target/release-daemon/cairn-bench" "${parts[@]}" \
    --cairnd "$CAIRND" --dist "$ROOT/dist" --work "$WORK" --out "$OUT" \
    ${agent_args[@]+"${agent_args[@]}"} ${args[@]+"${args[@]}"} 2>&1 | tee "$OUT/run.log"
