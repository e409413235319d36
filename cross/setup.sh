#!/usr/bin/env bash
# Installs what cross/build.sh needs on a fresh machine; idempotent and fast
# when everything is already there (it checks before it installs).
#
#   rustup targets   x86_64-unknown-linux-musl, aarch64-unknown-linux-musl
#                    (armv7-unknown-linux-musleabihf has no prebuilt std here:
#                    build.sh builds its std from source with -Zbuild-std)
#   rustup component rust-src (the std source that -Zbuild-std compiles)
#   PyPI             ziglang + cargo-zigbuild (zig is the C compiler and the
#                    linker for every target: SQLite, ring, musl crt, libunwind)
#   apt              qemu-user-static (runs arm64/armv7 binaries in
#                    .ci/cross-check.sh), file, binutils (readelf)
#
# Usage: bash cross/setup.sh            (no options)
set -euo pipefail

# Versions that were tested together (see cross/README.md).
ZIGLANG_VERSION="${ZIGLANG_VERSION:-0.17.1}"
CARGO_ZIGBUILD_VERSION="${CARGO_ZIGBUILD_VERSION:-0.24.0}"
RUST_TARGETS=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl)

say() { printf '[cross/setup] %s\n' "$*"; }

# --- Rust -------------------------------------------------------------------
if ! command -v rustup >/dev/null 2>&1; then
    say "ERROR: rustup not found; the Rust toolchain comes with the machine" >&2
    exit 1
fi
installed_targets="$(rustup target list --installed)"
for t in "${RUST_TARGETS[@]}"; do
    if grep -qx "$t" <<<"$installed_targets"; then
        say "rust target $t: present"
    else
        say "rust target $t: installing"
        rustup target add "$t"
    fi
done
if rustup component list --installed | grep '^rust-src' >/dev/null; then
    say "rust component rust-src: present"
else
    say "rust component rust-src: installing"
    rustup component add rust-src
fi

# --- zig + cargo-zigbuild (PyPI) ---------------------------------------------
PY="${PYTHON:-python3}"
# One interpreter start for both look-ups (pip show is slow).
read -r have_zig have_czb < <("$PY" - <<'PYEOF'
from importlib import metadata
def v(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "-"
print(v("ziglang"), v("cargo-zigbuild"))
PYEOF
)
need_pip=()
[ "$have_zig" = "$ZIGLANG_VERSION" ] || need_pip+=("ziglang==$ZIGLANG_VERSION")
[ "$have_czb" = "$CARGO_ZIGBUILD_VERSION" ] || need_pip+=("cargo-zigbuild==$CARGO_ZIGBUILD_VERSION")
if [ "${#need_pip[@]}" -eq 0 ]; then
    say "pip ziglang==$ZIGLANG_VERSION cargo-zigbuild==$CARGO_ZIGBUILD_VERSION: present"
else
    say "pip install ${need_pip[*]}"
    "$PY" -m pip install --quiet --disable-pip-version-check "${need_pip[@]}"
fi
# pip may put console scripts in a directory that is not on PATH (user site,
# a fresh pyenv without a rehash): tell the caller instead of failing later.
if ! command -v cargo-zigbuild >/dev/null 2>&1; then
    command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
fi
if ! command -v cargo-zigbuild >/dev/null 2>&1; then
    say "ERROR: cargo-zigbuild installed but not on PATH (pip scripts dir: $("$PY" -c 'import sysconfig; print(sysconfig.get_path("scripts"))'))" >&2
    exit 1
fi
say "cargo-zigbuild: $(cargo-zigbuild --version), zig $("$PY" -m ziglang version)"

# --- apt: qemu-user-static, file, readelf -------------------------------------
need_apt=()
command -v qemu-aarch64-static >/dev/null 2>&1 && command -v qemu-arm-static >/dev/null 2>&1 \
    || need_apt+=(qemu-user-static)
command -v file >/dev/null 2>&1 || need_apt+=(file)
command -v readelf >/dev/null 2>&1 || need_apt+=(binutils)
if [ "${#need_apt[@]}" -eq 0 ]; then
    say "apt qemu-user-static, file, binutils: present"
else
    if [ "$(id -u)" -ne 0 ]; then
        SUDO=sudo
    else
        SUDO=
    fi
    say "apt-get update && apt-get install ${need_apt[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
say "done"
