#!/usr/bin/env bash
# The OpenRC scripts for real, with Debian's openrc in a bookworm chroot:
# `openrc-run ... describe`, then start / status / stop of cairnd and of an
# enrolled cairn-agent under supervise-daemon, as their users, with the conf.d
# files in place. (Alpine's apk-tools cannot be fetched here; the .apk files
# are checked structurally by packaging/verify_apk.py. These are the scripts
# they carry.) Debian's openrc in a chroot needs /run/openrc/softlevel and
# --nodeps (there is no `net` provider).
#
#   bash packaging/test-openrc.sh     # after cross/build.sh (dist/ filled)
set -euo pipefail
# shellcheck source=packaging/chroot-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/chroot-lib.sh"
for f in dist/amd64/cairnd dist/amd64/cairn-agent; do
    [ -x "$f" ] || { echo "$f missing: run cross/build.sh" >&2; exit 1; }
done
trap 'in_root /etc/init.d/cairn-agent --nodeps stop >/dev/null 2>&1 || true; in_root /etc/init.d/cairnd --nodeps stop >/dev/null 2>&1 || true; chroot_cleanup' EXIT
fresh_chroot "$ROOT/target/chroot/openrc"

PORT="$(free_port)"
BASE="http://127.0.0.1:$PORT"
# What the .apk installs, from the same files, and what its pre-install does.
mkdir -p "$R/etc/conf.d" "$R/etc/init.d"
install -m 0755 dist/amd64/cairnd "$R/usr/bin/cairnd"
install -m 0755 dist/amd64/cairn-agent "$R/usr/bin/cairn-agent"
for a in amd64 arm64 armv7; do
    install -D -m 0755 "dist/$a/cairn-agent" "$R/usr/lib/cairn/agents/$a/cairn-agent"
done
install -m 0755 openrc/cairnd "$R/etc/init.d/cairnd"
install -m 0755 openrc/cairn-agent "$R/etc/init.d/cairn-agent"
install -m 0644 openrc/cairnd.confd "$R/etc/conf.d/cairnd"
install -m 0644 openrc/cairn-agent.confd "$R/etc/conf.d/cairn-agent"
# Debian's openrc has no libcap support; Alpine's keeps the default.
echo 'CAIRND_CAPABILITIES=""' >>"$R/etc/conf.d/cairnd"
mkdir -p "$R/etc/cairn"
sed "s/^listen = .*/listen = \"127.0.0.1:$PORT\"/" packaging/etc/cairnd.toml >"$R/etc/cairn/cairnd.toml"
cp packaging/etc/agent.toml "$R/etc/cairn/agent.toml"
in_root adduser --system --group --home /var/lib/cairnd --no-create-home --shell /usr/sbin/nologin cairnd >/dev/null 2>&1
in_root adduser --system --group --home /var/lib/cairn-agent --no-create-home --shell /usr/sbin/nologin cairn >/dev/null 2>&1
in_root mkdir -p /run/openrc
in_root touch /run/openrc/softlevel

rc() { in_root "/etc/init.d/$1" --nodeps "${@:2}"; }
for svc in cairnd cairn-agent; do
    if out="$(in_root openrc-run "/etc/init.d/$svc" describe 2>&1)" && grep -q "Cairn monitoring" <<<"$out"; then
        ok "openrc-run $svc describe: $(head -n 1 <<<"$out" | tr -s ' ')"
    else
        bad "openrc-run $svc describe: $out"
    fi
done

if rc cairnd start >"$R/tmp/start.log" 2>&1 && poll 30 curl -fsS "$BASE/api/v1/health"; then
    ok "cairnd started under supervise-daemon"
else
    bad "cairnd start: $(tail -c 600 "$R/tmp/start.log"); log: $(tail -c 600 "$R/var/log/cairnd/cairnd.log" 2>/dev/null)"
fi
rc cairnd status >"$R/tmp/status.log" 2>&1 && grep -q started "$R/tmp/status.log" \
    && ok "rc status cairnd: started" || bad "status: $(cat "$R/tmp/status.log")"
user="$(ps -o user= -p "$(pgrep -f '^/usr/bin/cairnd serve' | head -n 1)" 2>/dev/null | tr -d ' ')"
# ps names the uid from the host's passwd: compare numerically with the chroot's.
uid="$(ps -o uid= -p "$(pgrep -f '^/usr/bin/cairnd serve' | head -n 1)" 2>/dev/null | tr -d ' ')"
[ -n "$uid" ] && [ "$uid" = "$(in_root id -u cairnd)" ] && ok "cairnd runs as user cairnd (uid $uid)" || bad "cairnd runs as '$user' uid '$uid'"
expect_stat /var/lib/cairnd "750 cairnd:cairnd"
expect_stat /var/log/cairnd/cairnd.log "600 cairnd:cairnd"

admin_login "$R/var/lib/cairnd/initial-admin-password"
CODE="$(new_code)"
# As the .apk's post-install does.
in_root install -d -o cairn -g cairn -m 0700 /var/lib/cairn-agent
if chroot --userspec=cairn:cairn "$R" /usr/bin/env -i CAIRN_STATE_DIR=/var/lib/cairn-agent \
    /usr/bin/cairn-agent enroll --server "$BASE" --code "$CODE" --config /etc/cairn/agent.toml >"$R/tmp/enroll.log" 2>&1; then
    ok "cairn-agent enrolled as user cairn"
else
    bad "enroll: $(tail -c 400 "$R/tmp/enroll.log")"
fi
NODE="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["node_id"])' "$R/var/lib/cairn-agent/identity.json" 2>/dev/null || true)"
sed -i "s|^#server = .*|server = \"$BASE\"|" "$R/etc/cairn/agent.toml"
if rc cairn-agent start >"$R/tmp/astart.log" 2>&1 && [ -n "$NODE" ] && poll 90 node_online "$NODE"; then
    ok "cairn-agent started under supervise-daemon; node $NODE online"
else
    bad "cairn-agent start: $(tail -c 400 "$R/tmp/astart.log"); log: $(tail -c 400 "$R/var/log/cairn-agent/cairn-agent.log" 2>/dev/null)"
fi
rc cairn-agent status 2>&1 | grep started >/dev/null && ok "rc status cairn-agent: started" || bad "cairn-agent status not started"

# install.sh with OpenRC running (systemctl moved aside: this chroot has both).
# install.sh starts the service the normal way (no --nodeps), so the chroot
# gets a stand-in `net` provider, as a booted system has.
rc cairn-agent stop >/dev/null 2>&1 || true
printf '#!/sbin/openrc-run\ndescription="test stand-in for a network service"\ndepend() { provide net; }\nstart() { return 0; }\n' >"$R/etc/init.d/test-net"
chmod 0755 "$R/etc/init.d/test-net"
rc test-net start >/dev/null 2>&1 || bad "test-net stand-in did not start"
mv "$R/usr/bin/systemctl" "$R/usr/bin/systemctl.off"
CODE2="$(new_code)"
if in_root sh -c "curl -fsSL $BASE/install.sh | sh -s -- --code $CODE2" >"$R/tmp/install.log" 2>&1 \
    && grep -q 'added to the default runlevel and started' "$R/tmp/install.log"; then
    ok "install.sh under OpenRC: service added and started"
else
    bad "install.sh under OpenRC: $(tail -c 600 "$R/tmp/install.log")"
fi
NODE2="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["node_id"])' "$R/var/lib/cairn-agent/identity.json" 2>/dev/null || true)"
if [ -n "$NODE2" ] && [ "$NODE2" != "$NODE" ] && poll 90 node_online "$NODE2"; then
    ok "install.sh's agent under supervise-daemon: node $NODE2 online"
else
    bad "install.sh's agent: $(tail -c 400 "$R/var/log/cairn-agent/cairn-agent.log" 2>/dev/null)"
fi
[ -L "$R/etc/runlevels/default/cairn-agent" ] && ok "cairn-agent in the default runlevel" || bad "not in the default runlevel"
if in_root sh -c "curl -fsSL $BASE/install.sh | sh -s -- --uninstall" >"$R/tmp/uninstall.log" 2>&1 \
    && [ ! -e "$R/etc/init.d/cairn-agent" ] && [ ! -e "$R/usr/local/bin/cairn-agent" ] && ! pgrep -f '^/usr/local/bin/cairn-agent' >/dev/null; then
    ok "install.sh --uninstall under OpenRC: stopped and removed"
else
    bad "install.sh --uninstall under OpenRC: $(tail -c 400 "$R/tmp/uninstall.log")"
fi
mv "$R/usr/bin/systemctl.off" "$R/usr/bin/systemctl"

for svc in cairnd; do
    if rc "$svc" stop >"$R/tmp/stop.log" 2>&1 && ! pgrep -f "^/usr/bin/$svc " >/dev/null; then
        ok "$svc stopped (SIGTERM), no process left"
    else
        bad "$svc stop: $(cat "$R/tmp/stop.log")"
    fi
done
grep -q "stopped\|shutting down\|flushed" "$R/var/log/cairnd/cairnd.log" && ok "cairnd logged a clean shutdown" \
    || bad "no clean shutdown in the log: $(tail -c 300 "$R/var/log/cairnd/cairnd.log")"

echo "test-openrc: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
