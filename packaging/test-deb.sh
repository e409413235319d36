#!/usr/bin/env bash
# Installs the .deb packages for real in a Debian bookworm chroot and checks
# them: users, files, permissions, enabled units, systemd-analyze verify and
# security (exposure <= 2.0), both services running as their users (cairnd on
# 127.0.0.1, the agent enrolled with it and reporting), purge cleaning up,
# and the arm64/armhf packages installed with dpkg --add-architecture and
# their binaries run through qemu-user-static.
#
#   bash packaging/test-deb.sh        # after packaging/build.sh
#
# The chroot is debootstrapped once (minbase + adduser + systemd) and kept as
# a tarball in target/chroot/ (CHROOT_CACHE), unpacked fresh for every run.
# Then the chroot is booted with systemd-nspawn --boot, so systemd itself
# starts the packaged units with all their hardening, and the agent,
# enrolled as the package says, reports through its sandbox. Prints "PASS ..."/"FAIL ..." and "N passed, N failed";
# "FIGURE name=value" lines carry measured times.
set -euo pipefail
# shellcheck source=packaging/chroot-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/chroot-lib.sh"
for tool in qemu-aarch64-static qemu-arm-static; do
    command -v "$tool" >/dev/null || { echo "$tool missing (apt-get install qemu-user-static)" >&2; exit 1; }
done
for f in "dist/cairnd_${VERSION}-1_amd64.deb" "dist/cairn-agent_${VERSION}-1_amd64.deb"; do
    [ -f "$f" ] || { echo "$f missing: run packaging/build.sh" >&2; exit 1; }
done
trap chroot_cleanup EXIT
fresh_chroot "$ROOT/target/chroot/deb"
# /root, not /tmp: the booted container mounts a fresh tmpfs on /tmp.
mkdir -p "$R/root/debs" && cp dist/*.deb "$R/root/debs/"

# --- install (amd64) -------------------------------------------------------
t_install="$(now)"
if in_root dpkg -i "/root/debs/cairnd_${VERSION}-1_amd64.deb" "/root/debs/cairn-agent_${VERSION}-1_amd64.deb" >"$R/tmp/dpkg.log" 2>&1; then
    ok "dpkg -i cairnd and cairn-agent (amd64)"
else
    bad "dpkg -i: $(tail -c 800 "$R/tmp/dpkg.log")"
fi

for u in cairnd cairn; do
    if in_root getent passwd "$u" | grep ':/usr/sbin/nologin$' >/dev/null; then ok "system user $u (nologin)"; else bad "no system user $u"; fi
done
expect_stat /usr/bin/cairnd "755 root:root"
expect_stat /usr/bin/cairn-agent "755 root:root"
expect_stat /usr/lib/cairn/agents/arm64/cairn-agent "755 root:root"
expect_stat /usr/lib/cairn/agents/armv7/cairn-agent "755 root:root"
expect_stat /etc/cairn/cairnd.toml "640 root:cairnd"
expect_stat /etc/cairn/agent.toml "640 root:cairn"
expect_stat /var/lib/cairnd "750 cairnd:cairnd"
expect_stat /var/lib/cairn-agent "700 cairn:cairn"
for unit in cairnd cairn-agent; do
    if [ -L "$R/etc/systemd/system/multi-user.target.wants/$unit.service" ]; then
        ok "$unit.service enabled"
    else
        bad "$unit.service not enabled"
    fi
    if in_root grep -qx "/etc/cairn/$( [ $unit = cairnd ] && echo cairnd || echo agent).toml" "/var/lib/dpkg/info/$unit.conffiles"; then
        ok "$unit: config is a conffile"
    else
        bad "$unit: config is not a conffile"
    fi
done

# --- systemd-analyze, with the chroot's own systemd --------------------------
for unit in cairnd cairn-agent; do
    if out="$(in_root systemd-analyze verify "/lib/systemd/system/$unit.service" 2>&1)" && [ -z "$out" ]; then
        ok "systemd-analyze verify $unit.service: clean"
    else
        bad "systemd-analyze verify $unit.service: $out"
    fi
    score="$(in_root systemd-analyze security --offline=true "/lib/systemd/system/$unit.service" 2>&1 \
        | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')"
    echo "FIGURE exposure_$unit=$score"
    if [ -n "$score" ] && awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }'; then
        ok "systemd-analyze security $unit.service: exposure $score <= 2.0"
    else
        bad "systemd-analyze security $unit.service: exposure '$score'"
    fi
done

# --- boot the chroot with systemd: the units run for real, hardening and all -----
# systemd-nspawn --boot (with --register=no --keep-unit: no machined here)
# shares the host's network, so cairnd gets a free port through a drop-in.
PORT="$(free_port)"
BASE="http://127.0.0.1:$PORT"
mkdir -p "$R/etc/systemd/system/cairnd.service.d"
printf '[Service]\nEnvironment=CAIRN_LISTEN=127.0.0.1:%s\n' "$PORT" >"$R/etc/systemd/system/cairnd.service.d/test-port.conf"
chroot_cleanup # nspawn mounts its own /proc and /dev
systemd-nspawn --boot --register=no --keep-unit -D "$R" >"$ROOT/target/chroot/nspawn-deb.log" 2>&1 &
NSPAWN=$!
PIDS+=($NSPAWN)
# in_container CMD...: runs CMD inside the booted container (its PID 1's namespaces).
in_container() {
    local leader
    leader="$(pgrep -P "$NSPAWN" | head -n 1)"
    nsenter --target "$leader" --mount --uts --ipc --pid -- "$@"
}
if poll 90 curl -fsS "$BASE/api/v1/health"; then
    ok "booted with systemd: cairnd.service started on its own from the package (hardened unit)"
    echo "FIGURE dpkg_install_to_cairnd_serving_seconds=$(elapsed "$t_install")"
else
    bad "cairnd did not come up under systemd: $(tail -c 800 "$ROOT/target/chroot/nspawn-deb.log")"
fi
state="$(in_container systemctl is-active cairnd.service 2>&1 || true)"
[ "$state" = active ] && ok "systemctl is-active cairnd: active" || bad "cairnd.service is '$state'"
state="$(in_container systemctl is-active cairn-agent.service 2>&1 || true)"
[ "$state" = inactive ] && ok "cairn-agent.service waits for enrollment (condition unmet, not failed)" \
    || bad "cairn-agent.service before enrollment is '$state'"
admin_login "$R/var/lib/cairnd/initial-admin-password" || true
CODE="$(new_code 2>/dev/null || true)"
if [ -n "$CODE" ]; then ok "admin login with the printed password; enrollment code created"; else bad "could not log in or create a code"; fi
if in_container runuser -u cairn -- env CAIRN_STATE_DIR=/var/lib/cairn-agent \
    cairn-agent enroll --server "$BASE" --code "$CODE" --config /etc/cairn/agent.toml >"$ROOT/target/chroot/enroll.log" 2>&1; then
    ok "sudo -u cairn cairn-agent enroll, as the package says"
else
    bad "cairn-agent enroll: $(tail -c 600 "$ROOT/target/chroot/enroll.log")"
fi
expect_identity() {
    local got
    got="$(stat -c '%a %U:%G' "$R/var/lib/cairn-agent/identity.json" 2>&1)"
    [ "$got" = "600 $(stat -c %U "$R/var/lib/cairn-agent")":"$(stat -c %G "$R/var/lib/cairn-agent")" ] \
        && ok "identity.json 0600, owned by the agent's user" || bad "identity.json is $got"
}
expect_identity
NODE="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["node_id"])' "$R/var/lib/cairn-agent/identity.json" 2>/dev/null || true)"
t_start="$(now)"
in_container sed -i "s|^#server = .*|server = \"$BASE\"|" /etc/cairn/agent.toml
in_container systemctl start cairn-agent.service || true
if [ -n "$NODE" ] && poll 90 node_online "$NODE"; then
    ok "cairn-agent.service (hardened unit) reports: node $NODE online"
    echo "FIGURE agent_start_to_node_online_seconds=$(elapsed "$t_start")"
    echo "FIGURE dpkg_install_to_node_reporting_seconds=$(elapsed "$t_install")"
else
    bad "node never came online: $(in_container journalctl -u cairn-agent --no-pager 2>&1 | tail -n 15)"
fi
# The agent's view through its sandbox: every process, /home's disk usage.
procs="$(api GET "/api/v1/nodes/$NODE" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["latest"].get("processes") or []))' 2>/dev/null || echo 0)"
[ "$procs" -gt 0 ] && ok "sandboxed agent still lists processes ($procs)" || bad "sandboxed agent reports no processes"
in_container systemctl reload cairnd.service && ok "systemctl reload cairnd (SIGHUP via ExecReload)" || bad "reload cairnd failed"
# Upgrade while running: postinst restarts the service (a new main PID).
pid_before="$(in_container systemctl show -p MainPID --value cairnd.service)"
in_container dpkg -i "/root/debs/cairnd_${VERSION}-1_amd64.deb" >"$ROOT/target/chroot/upgrade.log" 2>&1 || bad "dpkg -i (upgrade) under systemd: $(tail -c 500 "$ROOT/target/chroot/upgrade.log")"
pid_after="$(in_container systemctl show -p MainPID --value cairnd.service)"
if [ "$pid_after" != "$pid_before" ] && [ "$pid_after" != 0 ] && poll 30 curl -fsS "$BASE/api/v1/health"; then
    ok "upgrade under systemd restarts cairnd (PID $pid_before -> $pid_after)"
else
    bad "upgrade did not restart cairnd (PID $pid_before -> $pid_after)"
fi
# Removal while running: prerm stops the service.
in_container dpkg -r cairn-agent >/dev/null 2>&1 || bad "dpkg -r cairn-agent failed"
state="$(in_container systemctl is-active cairn-agent.service 2>&1 || true)"
[ "$state" != active ] && ! pgrep -f '^/usr/bin/cairn-agent run' >/dev/null \
    && ok "dpkg -r under systemd stops cairn-agent ($state)" || bad "cairn-agent still $state after dpkg -r"
# install.sh with systemd running, from the packaged cairnd (which serves the
# agents it carries): enables and starts its own unit, and the node reports.
CODE2="$(new_code 2>/dev/null || true)"
if in_container sh -c "curl -fsSL $BASE/install.sh | sh -s -- --code $CODE2" >"$ROOT/target/chroot/install-sd.log" 2>&1 \
    && grep -q 'enabled and started' "$ROOT/target/chroot/install-sd.log"; then
    ok "install.sh under a running systemd: unit enabled and started"
else
    bad "install.sh under systemd: $(tail -c 600 "$ROOT/target/chroot/install-sd.log")"
fi
NODE2="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["node_id"])' "$R/var/lib/cairn-agent/identity.json" 2>/dev/null || true)"
if [ -n "$NODE2" ] && [ "$NODE2" != "$NODE" ] && poll 60 node_online "$NODE2" \
    && [ "$(in_container systemctl is-active cairn-agent.service 2>&1 || true)" = active ]; then
    ok "install.sh's agent runs under systemd: node $NODE2 online"
else
    bad "install.sh's agent: $(in_container journalctl -u cairn-agent --no-pager 2>&1 | tail -n 10)"
fi
in_container sh -c "curl -fsSL $BASE/install.sh | sh -s -- --uninstall" >/dev/null 2>&1 \
    && [ ! -e "$R/etc/systemd/system/cairn-agent.service" ] && [ "$(in_container systemctl is-active cairn-agent.service 2>&1 || true)" != active ] \
    && ok "install.sh --uninstall under systemd stops and removes the unit" || bad "install.sh --uninstall under systemd"
in_container systemctl stop cairnd.service \
    && [ "$(in_container systemctl is-active cairnd.service 2>&1 || true)" = inactive ] \
    && ok "systemctl stop cairnd: stopped cleanly" || bad "stop: $(in_container systemctl status cairnd.service --no-pager 2>&1 | tail -n 5)"
kill -TERM "$NSPAWN" 2>/dev/null || true
if poll 60 sh -c "! kill -0 $NSPAWN 2>/dev/null"; then ok "container shut down"; else bad "container did not shut down"; kill -KILL "$NSPAWN" || true; fi
wait "$NSPAWN" 2>/dev/null || true
PIDS=()
rm -rf "$R/etc/systemd/system/cairnd.service.d"
mount -t proc proc "$R/proc"
mount --bind /dev "$R/dev"

# --- reinstall over removed/installed packages keeps config and data -----------
if in_root dpkg -i "/root/debs/cairnd_${VERSION}-1_amd64.deb" "/root/debs/cairn-agent_${VERSION}-1_amd64.deb" >"$R/tmp/dpkg2.log" 2>&1 \
    && [ -f "$R/var/lib/cairnd/cairn.db" ] && [ -f "$R/etc/cairn/cairnd.toml" ]; then
    # (agent.toml stays gone: install.sh --uninstall deleted it above, and dpkg
    # does not bring back a conffile the admin deleted.)
    ok "reinstall keeps the database and the server config"
else
    bad "reinstall: $(tail -c 400 "$R/tmp/dpkg2.log"); $(ls "$R/var/lib/cairnd" "$R/etc/cairn" 2>&1 | tr '\n' ' ')"
fi

# --- purge ------------------------------------------------------------------
if in_root dpkg --purge cairnd cairn-agent >"$R/tmp/purge.log" 2>&1; then ok "dpkg --purge"; else bad "dpkg --purge: $(tail -c 400 "$R/tmp/purge.log")"; fi
for gone in /etc/cairn /var/lib/cairnd /var/lib/cairn-agent /usr/bin/cairnd /usr/lib/cairn \
    /etc/systemd/system/multi-user.target.wants/cairnd.service; do
    if [ -e "$R$gone" ] || [ -L "$R$gone" ]; then bad "$gone left after purge"; else ok "$gone removed by purge"; fi
done

# --- the other architectures --------------------------------------------------
in_root dpkg --add-architecture arm64
in_root dpkg --add-architecture armhf
for a in arm64:qemu-aarch64-static armhf:qemu-arm-static; do
    arch="${a%%:*}" qemu="${a#*:}"
    if in_root dpkg -i "/root/debs/cairn-agent_${VERSION}-1_${arch}.deb" >"$R/tmp/dpkg-$arch.log" 2>&1; then
        ok "dpkg -i cairn-agent ($arch)"
    else
        bad "dpkg -i cairn-agent ($arch): $(tail -c 400 "$R/tmp/dpkg-$arch.log")"
    fi
    if "$qemu" "$R/usr/bin/cairn-agent" version >"$R/tmp/v.txt" 2>&1 && grep -q "cairn-agent" "$R/tmp/v.txt" \
        && "$qemu" "$R/usr/bin/cairn-agent" once | python3 -c 'import json,sys; s=json.load(sys.stdin); assert s["memory"]["total_bytes"]>0'; then
        ok "$arch cairn-agent version and once under $qemu"
    else
        bad "$arch cairn-agent under $qemu: $(head -c 300 "$R/tmp/v.txt")"
    fi
    in_root dpkg --purge cairn-agent >/dev/null 2>&1 || true
    if in_root dpkg -i "/root/debs/cairnd_${VERSION}-1_${arch}.deb" >"$R/tmp/dpkgd-$arch.log" 2>&1 \
        && "$qemu" "$R/usr/bin/cairnd" version | grep '^cairnd ' >/dev/null; then
        ok "dpkg -i cairnd ($arch); cairnd version under $qemu"
    else
        bad "cairnd ($arch): $(tail -c 400 "$R/tmp/dpkgd-$arch.log")"
    fi
    in_root dpkg --purge cairnd >/dev/null 2>&1 || true
done

for f in dist/*.deb; do echo "FIGURE size_$(basename "$f")=$(stat -c %s "$f")"; done
echo "test-deb: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
