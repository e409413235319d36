#!/usr/bin/env bash
# Static musl builds of cairnd and cairn-agent for x86_64, aarch64 and armv7
# (Raspberry Pi 2/3, 32-bit), with zig (cargo-zigbuild) as C compiler and linker.
#
#   bash cross/setup.sh                      # once per machine (idempotent)
#   bash cross/build.sh                      # all three targets into dist/<arch>/
#   bash cross/build.sh --targets "armv7" --out /tmp/dist
#
# Options
#   --targets "LIST"  any of: x86_64 (amd64), aarch64 (arm64), armv7 (armhf);
#                     default "x86_64 aarch64 armv7"
#   --out DIR         output root; binaries land in DIR/<amd64|arm64|armv7>/
#                     (default: dist/ at the workspace root)
#   --bins "LIST"     cairnd and/or cairn-agent (default both)
#   --mode serial     (default) one cargo run per target and binary, one at
#                     a time; prints a time for each
#   --mode lanes      cairnd and cairn-agent build side by side, each in one
#                     cargo run for x86_64+aarch64, then one for armv7. Measured
#                     no faster on 2 cores (more CPU time in all), kept for
#                     machines with more cores
#
# Environment
#   CROSS_TARGET_DIR  cargo target dir (default target/cross, apart from the
#                     dev build so the two never invalidate each other; armv7
#                     uses its build-std/ subdirectory, see tdir_of)
#   CROSS_CARGO_ARGS  extra cargo arguments, e.g. "--locked"
#
# Profiles (root Cargo.toml): cairn-agent uses `release` (panic=abort),
# cairnd uses `release-daemon` (panic=unwind, catch_unwind in handlers).
#
# std from source (-Zbuild-std, from the rust-src component, on the stable
# toolchain with RUSTC_BOOTSTRAP=1 set for those cargo runs only):
#   cairn-agent, every target: -Zbuild-std=std,panic_abort
#       -Zbuild-std-features=optimize_for_size, RUSTFLAGS
#       -C force-unwind-tables=no -Zlocation-detail=none, and on x86_64
#       -Cllvm-args=-enable-machine-outliner=always (LLVM already outlines
#       at opt-level z on aarch64 and arm). Size is an agent target (<= 1.5 MB
#       with TLS); measured on x86_64 (docs/BENCHMARKS.md): prebuilt std
#       2,065,472 B; build-std + optimize_for_size + no unwind tables
#       1,565,608; + no panic locations (panic messages stay, only "file:line"
#       goes) + outliner 1,484,024.
#   cairnd on armv7 only (no prebuilt std for armv7-unknown-linux-musleabihf
#       in this toolchain): -Zbuild-std=std,panic_unwind (unwinding works:
#       libunwind comes from zig, ARM EHABI).
# armv7 also gets -C link-self-contained=no, because rustc's self-contained
# musl crt1.o/crti.o/libunwind.a ship only with a prebuilt rust-std; zig
# supplies crt files, musl and libunwind for the target instead.
#
# Parallelism (--mode lanes, not the default): cargo runs for different profiles lock different
# dirs (target/cross/release vs target/cross/release-daemon), so the agent and
# the daemon build at the same time, and x86_64+aarch64 share one cargo run per
# binary. Each final link is a single-threaded fat-LTO job (codegen-units=1),
# which leaves one of the two cores idle at the end of every cargo run. Yet on
# this 2-core machine lanes took as long or longer than serial (cold, whole
# set: 657 s vs 620 s, and 14m CPU vs 15.5m), so serial is the default.
#
# Every binary is checked: right ELF machine, no PT_INTERP, no DT_NEEDED
# (static or static-pie); the script fails if any check fails.
# Machine-readable lines: "TIME step=<name> seconds=<n>" and
# "SIZE arch=<arch> bin=<name> bytes=<n>".
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"

TARGETS="x86_64 aarch64 armv7"
OUT="$ROOT/dist"
BINS="cairnd cairn-agent"
MODE=serial
while [ $# -gt 0 ]; do
    case "$1" in
        --targets) TARGETS="$2"; shift 2 ;;
        --targets=*) TARGETS="${1#*=}"; shift ;;
        --out) OUT="$2"; shift 2 ;;
        --out=*) OUT="${1#*=}"; shift ;;
        --bins) BINS="$2"; shift 2 ;;
        --bins=*) BINS="${1#*=}"; shift ;;
        --mode) MODE="$2"; shift 2 ;;
        --mode=*) MODE="${1#*=}"; shift ;;
        --serial) MODE=serial; shift ;;
        --lanes) MODE=lanes; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "cross/build.sh: unknown argument: $1 (try --help)" >&2; exit 2 ;;
    esac
done
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

say() { printf '[cross/build] %s\n' "$*"; }
die() { printf '[cross/build] ERROR: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

for tool in cargo cargo-zigbuild readelf; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found: run bash cross/setup.sh first"
done

export CARGO_TARGET_DIR="${CROSS_TARGET_DIR:-$ROOT/target/cross}"
# Call the zig binary directly rather than through `python3 -m ziglang` for
# every C file (ring and SQLite compile dozens): cargo-zigbuild honours this.
if [ -z "${CARGO_ZIGBUILD_ZIG_PATH:-}" ] && ! command -v zig >/dev/null 2>&1; then
    zig_bin="$(python3 -c 'import ziglang, os; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))' 2>/dev/null || true)"
    [ -n "$zig_bin" ] && [ -x "$zig_bin" ] && export CARGO_ZIGBUILD_ZIG_PATH="$zig_bin"
fi
# User RUSTFLAGS would override the per-target flags below; fold them in instead.
USER_RUSTFLAGS="${RUSTFLAGS:-}"
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS
read -r -a EXTRA_ARGS <<<"${CROSS_CARGO_ARGS:-}"

triple_of() {
    case "$1" in
        x86_64|amd64) echo x86_64-unknown-linux-musl ;;
        aarch64|arm64) echo aarch64-unknown-linux-musl ;;
        armv7|armhf) echo armv7-unknown-linux-musleabihf ;;
        *) die "unknown target '$1' (x86_64, aarch64, armv7)" ;;
    esac
}
arch_of() {
    case "$1" in
        x86_64-*) echo amd64 ;;
        aarch64-*) echo arm64 ;;
        armv7-*) echo armv7 ;;
    esac
}
# What `readelf -h` says in "Machine:" for each triple.
machine_of() {
    case "$1" in
        x86_64-*) echo "X86-64" ;;
        aarch64-*) echo "AArch64" ;;
        armv7-*) echo "ARM" ;;
    esac
}

# Checks that $1 is a static ELF for triple $2; prints a one-line verdict.
check_static() {
    local f="$1" triple="$2" hdr kind
    [ -f "$f" ] || die "$f missing"
    hdr="$(readelf -hW "$f")" || die "$f is not an ELF file"
    grep -q "Machine:.*$(machine_of "$triple")" <<<"$hdr" \
        || die "$f: wrong machine for $triple: $(grep Machine: <<<"$hdr")"
    if [ "${triple#armv7}" != "$triple" ]; then
        grep -q "hard-float ABI" <<<"$hdr" || die "$f: armv7 binary is not hard-float"
    fi
    if readelf -lW "$f" | grep 'INTERP' >/dev/null; then
        die "$f is dynamically linked (has a PT_INTERP program header)"
    fi
    if readelf -dW "$f" 2>/dev/null | grep '(NEEDED)' >/dev/null; then
        die "$f needs shared libraries: $(readelf -dW "$f" | grep '(NEEDED)' | tr -s ' ' | tr '\n' ';')"
    fi
    kind="$(sed -n 's/^ *Type: *\([A-Z]*\).*/\1/p' <<<"$hdr")"
    case "$kind" in
        EXEC) echo "static" ;;
        DYN) echo "static-pie" ;;
        *) die "$f: unexpected ELF type $kind" ;;
    esac
}

# Builds one binary for one or more triples of the same kind (all build-std or
# none) in one cargo run, logging to $3; reports through its exit code.
build_one() {
    local triples="$1" bin="$2" log="$3"
    local pkg profile buildstd=() envs=() targs=() triple first flags
    case "$bin" in
        cairnd) pkg=cairnd; profile=release-daemon; buildstd=(-Zbuild-std=std,panic_unwind) ;;
        cairn-agent)
            pkg=cairn-agent; profile=release
            buildstd=(-Zbuild-std=std,panic_abort -Zbuild-std-features=optimize_for_size)
            ;;
        *) echo "unknown binary '$bin' (cairnd, cairn-agent)" >"$log"; return 1 ;;
    esac
    for triple in $triples; do
        targs+=(--target "$triple")
        first="${first:-$triple}"
        local tvar
        tvar="CARGO_TARGET_$(tr 'a-z-' 'A-Z_' <<<"$triple")_RUSTFLAGS"
        flags="$USER_RUSTFLAGS"
        if [ "$bin" = cairn-agent ]; then
            flags="$flags -C force-unwind-tables=no -Zlocation-detail=none"
            case "$triple" in x86_64-*) flags="$flags -Cllvm-args=-enable-machine-outliner=always" ;; esac
        fi
        case "$triple" in armv7-*) flags="$flags -C link-self-contained=no" ;; esac
        flags="${flags# }"
        if [ -n "$flags" ]; then envs+=("$tvar=$flags"); fi
    done
    if needs_build_std "$first" "$bin"; then
        envs+=(RUSTC_BOOTSTRAP=1 "CARGO_TARGET_DIR=$(tdir_of "$first" "$bin")")
    else
        buildstd=()
    fi
    (
        cd "$ROOT"
        echo "+ ${envs[*]} cargo zigbuild --profile $profile -p $pkg --bin $bin ${targs[*]} ${buildstd[*]} ${EXTRA_ARGS[*]}"
        env "${envs[@]}" cargo zigbuild --profile "$profile" -p "$pkg" --bin "$bin" \
            "${targs[@]}" "${buildstd[@]}" "${EXTRA_ARGS[@]}"
    ) >"$log" 2>&1
}

# needs_build_std TRIPLE BIN: the agent always (size), cairnd on armv7 only.
needs_build_std() {
    [ "$2" = cairn-agent ] && return 0
    case "$1" in armv7-*) return 0 ;; *) return 1 ;; esac
}

# build-std runs get a target dir of their own: RUSTC_BOOTSTRAP=1 reruns the
# build scripts of proc-macro2, serde & co. (they probe for nightly), which
# would otherwise rebuild the shared host artifacts on every switch.
tdir_of() {
    if needs_build_std "$1" "$2"; then
        echo "$CARGO_TARGET_DIR/build-std"
    else
        echo "$CARGO_TARGET_DIR"
    fi
}

profile_of() {
    case "$1" in
        cairnd) echo release-daemon ;;
        cairn-agent) echo release ;;
        *) die "unknown binary '$1' (cairnd, cairn-agent)" ;;
    esac
}

LOGDIR="$CARGO_TARGET_DIR/logs"
mkdir -p "$LOGDIR"
TRIPLES=()
for t in $TARGETS; do TRIPLES+=("$(triple_of "$t")"); done
for bin in $BINS; do profile_of "$bin" >/dev/null; done
say "workspace $ROOT; target dir $CARGO_TARGET_DIR; output $OUT; targets: ${TRIPLES[*]}; bins: $BINS; mode: $MODE"
T_ALL="$(now)"

# Runs build_one in the foreground and prints its time, or dies with its log.
run_build() {
    local triples="$1" bin="$2" name="$3" t0
    t0="$(now)"
    say "building $bin for $triples (log: $LOGDIR/$name.log)"
    if build_one "$triples" "$bin" "$LOGDIR/$name.log"; then
        echo "TIME step=build-$name seconds=$(elapsed "$t0")"
    else
        tail -n 40 "$LOGDIR/$name.log" >&2
        say "build of $bin for $triples FAILED (full log: $LOGDIR/$name.log)"
        return 1
    fi
}

case "$MODE" in
    serial)
        # One cargo run at a time: slowest, but gives a time per target and binary.
        for triple in "${TRIPLES[@]}"; do
            for bin in $BINS; do
                run_build "$triple" "$bin" "$(arch_of "$triple")-$bin" || die "build failed"
            done
        done
        ;;
    lanes)
        # One lane per binary, the lanes side by side. In each lane, one cargo
        # run for all prebuilt-std targets (so cargo overlaps their compiles
        # and their final LTO links), then one for the build-std target.
        pids=() lanes=()
        for bin in $BINS; do
            plain="" std=""
            for triple in "${TRIPLES[@]}"; do
                if needs_build_std "$triple" "$bin"; then std="$std $triple"; else plain="$plain $triple"; fi
            done
            (
                set -e
                if [ -n "$plain" ]; then run_build "${plain# }" "$bin" "prebuilt-std-$bin"; fi
                for triple in $std; do run_build "$triple" "$bin" "$(arch_of "$triple")-$bin"; done
            ) &
            pids+=($!) lanes+=("$bin")
            # Let the first cargo-zigbuild write its per-target wrapper scripts
            # before the second one looks for them.
            sleep 2
        done
        failed=0
        for i in "${!pids[@]}"; do
            wait "${pids[$i]}" || { say "lane ${lanes[$i]} failed"; failed=1; }
        done
        [ "$failed" = 0 ] || die "build failed"
        ;;
    *) die "unknown --mode $MODE (lanes, serial)" ;;
esac

SIZES=()
for triple in "${TRIPLES[@]}"; do
    arch="$(arch_of "$triple")"
    mkdir -p "$OUT/$arch"
    for bin in $BINS; do
        src="$(tdir_of "$triple" "$bin")/$triple/$(profile_of "$bin")/$bin"
        cp -f "$src" "$OUT/$arch/$bin"
        verdict="$(check_static "$OUT/$arch/$bin" "$triple")"
        bytes="$(stat -c %s "$OUT/$arch/$bin")"
        say "$OUT/$arch/$bin: $verdict, $bytes bytes"
        SIZES+=("SIZE arch=$arch bin=$bin bytes=$bytes")
    done
done
echo "TIME step=build-all seconds=$(elapsed "$T_ALL")"
printf '%s\n' "${SIZES[@]}"
