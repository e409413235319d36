# Shared by packaging/test-deb.sh and packaging/test-install.sh (sourced):
# a fresh Debian bookworm chroot from a cached debootstrap tarball, PASS/FAIL
# bookkeeping, polling, and a small client for cairnd's API.
#
# The chroot is debootstrapped once (minbase + what the tests use) and kept
# as a tarball in target/chroot/ (CHROOT_CACHE); every test unpacks it fresh.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CACHE="${CHROOT_CACHE:-$ROOT/target/chroot/bookworm-minbase-v3.tar.gz}"
CHROOT_PACKAGES=adduser,systemd,ca-certificates,procps,busybox,curl,openrc
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
passed=0 failed=0
PIDS=()
ok() { passed=$((passed + 1)); echo "PASS $*"; }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
in_root() { chroot "$R" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin SYSTEMD_OFFLINE=1 LANG=C.UTF-8 "$@"; }

chroot_cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for m in proc dev; do umount -l "$R/$m" 2>/dev/null || true; done
}

# fresh_chroot DIR: unpacks the cached chroot into DIR (debootstrapping it first
# if there is no cache), mounts /proc and /dev, and sets R.
fresh_chroot() {
    R="$1"
    for tool in debootstrap curl python3; do
        command -v "$tool" >/dev/null || { echo "$tool missing (apt-get install debootstrap curl)" >&2; exit 1; }
    done
    if [ ! -f "$CACHE" ]; then
        local t0
        t0="$(now)"
        echo "[chroot] debootstrap bookworm minbase (once; cached in $CACHE)"
        mkdir -p "$(dirname "$CACHE")"
        rm -rf "$R.build"
        debootstrap --variant=minbase --include="$CHROOT_PACKAGES" bookworm "$R.build" \
            http://deb.debian.org/debian >"$(dirname "$CACHE")/debootstrap.log" 2>&1 \
            || { tail -n 30 "$(dirname "$CACHE")/debootstrap.log" >&2; exit 1; }
        tar -C "$R.build" -czf "$CACHE.tmp" . && mv "$CACHE.tmp" "$CACHE"
        rm -rf "$R.build"
        echo "FIGURE debootstrap_seconds=$(elapsed "$t0")"
    fi
    chroot_cleanup
    # Never delete through a mount left behind (a bind mount of the host's
    # /dev above all): stop instead, and let rm stay on one file system.
    if grep -q " $R/" /proc/mounts; then
        echo "[chroot] mounts remain under $R: $(grep " $R/" /proc/mounts | cut -d' ' -f2 | tr '\n' ' ')" >&2
        exit 1
    fi
    rm -rf --one-file-system "$R" && mkdir -p "$R"
    tar -C "$R" -xzf "$CACHE"
    mount -t proc proc "$R/proc"
    mount --bind /dev "$R/dev"
}

# poll SECONDS CMD...: runs CMD until it succeeds or SECONDS pass.
poll() {
    local limit="$1"; shift
    local end=$(( $(date +%s) + limit ))
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$end" ] || return 1
        sleep 0.2
    done
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# api METHOD PATH [JSON]: cairnd at $BASE with $TOKEN.
api() {
    curl -fsS -X "$1" -H "Authorization: Bearer ${TOKEN:-}" -H 'Content-Type: application/json' \
        ${3:+--data "$3"} "$BASE$2"
}
json_field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
# admin_login PASSWORD_FILE: sets TOKEN.
admin_login() {
    TOKEN="$(api POST /api/v1/auth/login "{\"username\":\"admin\",\"password\":\"$(cat "$1")\"}" | json_field token)"
}
new_code() { api POST /api/v1/enrollment-codes '{}' | json_field code; }
node_online() {
    api GET "/api/v1/nodes/$1" | python3 -c 'import json,sys; n=json.load(sys.stdin); sys.exit(0 if n["status"]=="online" and n.get("latest") else 1)'
}
# expect_stat PATH "MODE USER:GROUP" (inside the chroot)
expect_stat() {
    local got
    got="$(in_root stat -c '%a %U:%G' "$1" 2>&1)" || true
    if [ "$got" = "$2" ]; then ok "$1 is $2"; else bad "$1 is '$got', want '$2'"; fi
}
