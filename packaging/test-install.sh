#!/usr/bin/env bash
# The one-line installer for real: dist/amd64/cairnd serves /install.sh and
# the agents from dist/ on 127.0.0.1; inside a Debian bookworm chroot the
# script runs
#   1. under dash, with the chroot's tools (curl, coreutils, useradd,
#      systemctl: systemd installed but not running, so the unit is enabled
#      for the next boot): install + enroll; then the agent, started as the
#      unit would start it, reports;
#   2. again without a code: an upgrade that keeps the node identity;
#   3. with --uninstall;
#   4. under busybox sh with only busybox applets on PATH (wget, sha256sum,
#      no init system; the user exists already, Debian's busybox has no
#      adduser applet): install + enroll, --uninstall;
#   5. on a machine whose `uname -m` is not amd64/arm64/armv7: a clear error.
#
#   bash packaging/test-install.sh     # after cross/build.sh (dist/ filled)
set -euo pipefail
# shellcheck source=packaging/chroot-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/chroot-lib.sh"
for f in dist/amd64/cairnd dist/amd64/cairn-agent; do
    [ -x "$f" ] || { echo "$f missing: run cross/build.sh" >&2; exit 1; }
done
trap chroot_cleanup EXIT
fresh_chroot "$ROOT/target/chroot/install"

PORT="$(free_port)"
BASE="http://127.0.0.1:$PORT"
DATA="$ROOT/target/chroot/install-data"
rm -rf "$DATA"
CAIRN_AGENTS_DIR="$ROOT/dist" dist/amd64/cairnd serve --listen "127.0.0.1:$PORT" --data-dir "$DATA" \
    --no-local-agent >"$ROOT/target/chroot/install-cairnd.log" 2>&1 &
PIDS+=($!)
poll 30 curl -fsS "$BASE/api/v1/health" || { bad "cairnd did not start"; exit 1; }
admin_login "$DATA/initial-admin-password"

# run_installer SHELL PATH ARGS...: fetches install.sh inside the chroot and
# pipes it to SHELL, as the README's one-liner does.
run_installer() {
    local shell="$1" path="$2"; shift 2
    local fetch="curl -fsSL $BASE/install.sh"
    case "$path" in /opt/bb) fetch="wget -qO- $BASE/install.sh" ;; esac
    chroot "$R" /usr/bin/env -i PATH="$path" HOME=/root "$shell" -c "$fetch | $shell -s -- $*"
}
identity_node() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["node_id"])' "$R/var/lib/cairn-agent/identity.json"; }

# --- 1. dash, Debian tools -------------------------------------------------
CODE="$(new_code)"
if run_installer dash /usr/sbin:/usr/bin:/sbin:/bin --code "$CODE" >"$R/tmp/install1.log" 2>&1; then
    ok "install.sh under dash: $(grep -c '^cairn:' "$R/tmp/install1.log") progress lines"
else
    bad "install.sh under dash: $(tail -c 800 "$R/tmp/install1.log")"
fi
grep -q 'enabled and starts at the next boot' "$R/tmp/install1.log" \
    && ok "systemd installed but not running: says the unit starts at the next boot" \
    || bad "no next-boot message: $(tail -c 300 "$R/tmp/install1.log")"
expect_stat /usr/local/bin/cairn-agent "755 root:root"
expect_stat /etc/cairn/agent.toml "640 root:cairn"
expect_stat /var/lib/cairn-agent "700 cairn:cairn"
expect_stat /var/lib/cairn-agent/identity.json "600 cairn:cairn"
expect_stat /etc/systemd/system/cairn-agent.service "644 root:root"
[ -L "$R/etc/systemd/system/multi-user.target.wants/cairn-agent.service" ] \
    && ok "cairn-agent.service enabled" || bad "cairn-agent.service not enabled"
if out="$(in_root systemd-analyze verify /etc/systemd/system/cairn-agent.service 2>&1)" && [ -z "$out" ]; then
    ok "the installed unit passes systemd-analyze verify"
else
    bad "systemd-analyze verify: $out"
fi
NODE1="$(identity_node 2>/dev/null || true)"
# Start it the way the unit does: as cairn, with the installed config.
chroot --userspec=cairn:cairn "$R" /usr/bin/env -i CAIRN_STATE_DIR=/var/lib/cairn-agent CAIRN_AGENT_INTERVAL_S=1 \
    /usr/local/bin/cairn-agent run --config /etc/cairn/agent.toml >"$R/tmp/agent.log" 2>&1 &
AGENT=$!
if [ -n "$NODE1" ] && poll 60 node_online "$NODE1"; then ok "installed agent reports: node $NODE1 online"; else bad "node never online: $(tail -c 400 "$R/tmp/agent.log")"; fi
kill -TERM "$AGENT"; wait "$AGENT" || bad "agent exit status $? on SIGTERM"

# --- 2. upgrade in place ----------------------------------------------------
echo stale >"$R/usr/local/bin/cairn-agent.marker"
if run_installer dash /usr/sbin:/usr/bin:/sbin:/bin >"$R/tmp/install2.log" 2>&1 \
    && grep -q "keeping this node's identity" "$R/tmp/install2.log" && grep -q 'upgraded' "$R/tmp/install2.log"; then
    ok "second run without a code upgrades in place"
else
    bad "upgrade run: $(tail -c 600 "$R/tmp/install2.log")"
fi
[ "$(identity_node 2>/dev/null)" = "$NODE1" ] && ok "upgrade kept node $NODE1" || bad "upgrade changed the identity"
rm -f "$R/usr/local/bin/cairn-agent.marker"

# --- 3. uninstall -------------------------------------------------------------
if run_installer dash /usr/sbin:/usr/bin:/sbin:/bin --uninstall >"$R/tmp/uninstall1.log" 2>&1; then ok "--uninstall under dash"; else bad "--uninstall: $(tail -c 400 "$R/tmp/uninstall1.log")"; fi
for gone in /usr/local/bin/cairn-agent /etc/cairn/agent.toml /var/lib/cairn-agent /etc/systemd/system/cairn-agent.service \
    /etc/systemd/system/multi-user.target.wants/cairn-agent.service; do
    if [ -e "$R$gone" ] || [ -L "$R$gone" ]; then bad "$gone left after --uninstall"; else ok "$gone removed"; fi
done

# --- 4. busybox only ------------------------------------------------------------
# Debian's busybox has no adduser/addgroup applets (Alpine's has), so the
# cairn user from the first run stays: this run takes the existing-user path.
in_root mkdir -p /opt/bb
in_root busybox --install -s /opt/bb
CODE="$(new_code)"
if run_installer sh /opt/bb --code "$CODE" >"$R/tmp/install3.log" 2>&1; then
    ok "install.sh under busybox sh with busybox applets only"
else
    bad "install.sh under busybox: $(tail -c 800 "$R/tmp/install3.log")"
fi
grep -q 'no systemd or OpenRC here' "$R/tmp/install3.log" && ok "no init system: says how to start it" || bad "no-init message missing"
expect_stat /var/lib/cairn-agent/identity.json "600 cairn:cairn"
NODE2="$(identity_node 2>/dev/null || true)"
[ -n "$NODE2" ] && [ "$NODE2" != "$NODE1" ] && ok "enrolled as a new node $NODE2" || bad "busybox run did not enroll"
if run_installer sh /opt/bb --uninstall >"$R/tmp/uninstall2.log" 2>&1 && [ ! -e "$R/usr/local/bin/cairn-agent" ]; then
    ok "--uninstall under busybox sh"
else
    bad "--uninstall under busybox: $(tail -c 400 "$R/tmp/uninstall2.log")"
fi

# --- a machine the agent is not built for ------------------------------------------
if out="$(printf '#!/bin/sh\necho mips\n' >"$R/tmp/uname" && chmod +x "$R/tmp/uname" \
    && chroot "$R" /usr/bin/env -i PATH=/tmp:/usr/bin:/bin dash -c "curl -fsSL $BASE/install.sh | dash -s -- --code X" 2>&1)"; then
    bad "install.sh accepted uname -m = mips"
elif grep -q "unsupported architecture 'mips'" <<<"$out"; then
    ok "uname -m = mips: clear error"
else
    bad "mips: unexpected output: $out"
fi

echo "test-install: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
