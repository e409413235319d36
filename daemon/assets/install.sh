#!/bin/sh
# Cairn agent installer, served by cairnd at /install.sh.
#
#   curl -fsSL @SERVER@/install.sh | sh -s -- --code XXXX-XXXX-XXXX
#   wget -qO- @SERVER@/install.sh | sh -s -- --code XXXX-XXXX-XXXX
#
# Installs /usr/local/bin/cairn-agent for this machine's architecture (from
# this server, SHA-256 checked), /etc/cairn/agent.toml, the `cairn` system
# user and a systemd unit or OpenRC service; enrolls with the code (or
# CAIRN_CODE); starts the agent. Running it again upgrades in place and keeps
# the node's identity. `--uninstall` removes it all again.
# POSIX sh: runs under dash and busybox ash. Needs root.
set -eu

SERVER="@SERVER@"
BIN=/usr/local/bin/cairn-agent
CONF_DIR=/etc/cairn
CONF=$CONF_DIR/agent.toml
STATE=/var/lib/cairn-agent
USER_NAME=cairn
UNIT=/etc/systemd/system/cairn-agent.service
INITD=/etc/init.d/cairn-agent

say() { printf 'cairn: %s\n' "$*"; }
die() { printf 'cairn: error: %s\n' "$*" >&2; exit 1; }

CODE="${CAIRN_CODE:-}"
ACTION=install
while [ $# -gt 0 ]; do
    case "$1" in
        --code) [ $# -ge 2 ] || die "--code needs a value"; CODE="$2"; shift 2 ;;
        --code=*) CODE="${1#--code=}"; shift ;;
        --server) [ $# -ge 2 ] || die "--server needs a value"; SERVER="$2"; shift 2 ;;
        --server=*) SERVER="${1#--server=}"; shift ;;
        --uninstall) ACTION=uninstall; shift ;;
        -h|--help)
            printf 'usage: curl -fsSL %s/install.sh | sh -s -- [--code CODE] [--server URL] [--uninstall]\n' "$SERVER"
            printf 'Installs, enrolls and starts cairn-agent; run again to upgrade.\n'
            exit 0 ;;
        *) die "unknown argument '$1' (use --code CODE, --server URL or --uninstall)" ;;
    esac
done
SERVER="${SERVER%/}"

[ "$(id -u)" = 0 ] || die "run as root (sudo sh -s -- ...)"

# The init system, the documented way: systemd is running if this exists.
# systemd installed but not running (a chroot, an image being built): the
# unit is installed and enabled for the next boot.
if [ -d /run/systemd/system ]; then
    INIT=systemd
elif command -v systemctl >/dev/null 2>&1 && [ -d /etc/systemd/system ]; then
    INIT=systemd-offline
elif command -v rc-service >/dev/null 2>&1 && command -v rc-update >/dev/null 2>&1; then
    # OpenRC keeps its state here once booted; without it (a chroot) the
    # service is only added to the default runlevel.
    if [ -e /run/openrc/softlevel ]; then INIT=openrc; else INIT=openrc-offline; fi
else
    INIT=none
fi

stop_service() {
    case "$INIT" in
        systemd) systemctl stop cairn-agent.service 2>/dev/null || true ;;
        openrc) rc-service cairn-agent stop 2>/dev/null || true ;;
    esac
}

if [ "$ACTION" = uninstall ]; then
    stop_service
    case "$INIT" in
        systemd|systemd-offline)
            SYSTEMD_OFFLINE=$([ "$INIT" = systemd ] && echo 0 || echo 1) \
                systemctl disable cairn-agent.service >/dev/null 2>&1 || true
            rm -f "$UNIT"
            [ "$INIT" = systemd ] && systemctl daemon-reload || true
            ;;
        openrc|openrc-offline)
            rc-update del cairn-agent default >/dev/null 2>&1 || true
            rm -f "$INITD" /etc/conf.d/cairn-agent
            ;;
    esac
    rm -f "$BIN" "$CONF"
    rmdir "$CONF_DIR" 2>/dev/null || true
    rm -rf "$STATE"
    say "removed cairn-agent (binary, config, identity and spool, service); the '$USER_NAME' user is kept"
    exit 0
fi

case "$(uname -m)" in
    x86_64|amd64) ARCH=amd64 ;;
    aarch64|arm64|armv8*) ARCH=arm64 ;;
    armv7*) ARCH=armv7 ;;
    armv6*|armv5*) die "$(uname -m) (Raspberry Pi 1/Zero) is not supported: Cairn builds for amd64, arm64 and armv7" ;;
    *) die "unsupported architecture '$(uname -m)': Cairn builds for amd64, arm64 and armv7" ;;
esac

fetch() { # fetch URL FILE
    if command -v curl >/dev/null 2>&1; then
        curl -fsSL --retry 2 -o "$2" "$1"
    elif command -v wget >/dev/null 2>&1; then
        wget -q -O "$2" "$1"
    else
        die "neither curl nor wget is installed"
    fi
}
sha256() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d' ' -f1
    else
        openssl dgst -sha256 "$1" | sed 's/.*= *//'
    fi
}

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT INT TERM
say "downloading cairn-agent for $ARCH from $SERVER"
fetch "$SERVER/download/cairn-agent/$ARCH" "$TMP/cairn-agent" || die "download from $SERVER failed"
fetch "$SERVER/download/cairn-agent/$ARCH.sha256" "$TMP/sum" || die "checksum download from $SERVER failed"
WANT="$(cut -d' ' -f1 "$TMP/sum")"
GOT="$(sha256 "$TMP/cairn-agent")"
[ -n "$WANT" ] && [ "$WANT" = "$GOT" ] || die "checksum mismatch for the downloaded agent (expected $WANT, got $GOT)"
chmod 0755 "$TMP/cairn-agent"
"$TMP/cairn-agent" version >/dev/null 2>&1 || die "the downloaded agent does not run on this machine"

UPGRADE=no
[ -x "$BIN" ] && UPGRADE=yes

# The system user the service runs as.
if ! id "$USER_NAME" >/dev/null 2>&1; then
    if command -v useradd >/dev/null 2>&1; then
        useradd --system --home-dir "$STATE" --no-create-home --shell /usr/sbin/nologin \
            --comment "Cairn monitoring agent" "$USER_NAME"
    else
        addgroup -S "$USER_NAME" 2>/dev/null || true
        adduser -S -D -H -h "$STATE" -s /sbin/nologin -G "$USER_NAME" -g "Cairn monitoring agent" "$USER_NAME"
    fi
    say "created system user $USER_NAME"
fi

stop_service
mkdir -p "$(dirname "$BIN")"
mv -f "$TMP/cairn-agent" "$BIN.new" && mv -f "$BIN.new" "$BIN"
mkdir -p "$CONF_DIR" "$STATE"
chown "$USER_NAME:$USER_NAME" "$STATE"
chmod 0700 "$STATE"

# Enroll unless this machine already has an identity (an upgrade keeps it).
if [ -f "$STATE/identity.json" ] && [ -z "$CODE" ]; then
    say "keeping this node's identity ($STATE/identity.json)"
else
    [ -n "$CODE" ] || die "no enrollment code: pass --code CODE (create one in Cairn: POST /api/v1/enrollment-codes)"
    rm -f "$CONF"
    CAIRN_STATE_DIR="$STATE" "$BIN" enroll --server "$SERVER" --code "$CODE" --config "$CONF" \
        || die "enrollment failed (see above)"
    chown -R "$USER_NAME:$USER_NAME" "$STATE"
fi
if [ ! -f "$CONF" ]; then
    printf 'server = "%s"\nstate_dir = "%s"\n' "$SERVER" "$STATE" >"$CONF"
fi
chown "root:$USER_NAME" "$CONF"
chmod 0640 "$CONF"

case "$INIT" in
    systemd|systemd-offline)
        # A removed (not purged) cairn-agent package leaves the unit name
        # masked (a symlink to /dev/null here): replace it, don't write through it.
        rm -f "$UNIT"
        cat >"$UNIT" <<'UNIT_EOF'
@SYSTEMD_UNIT@
UNIT_EOF
        chmod 0644 "$UNIT"
        if [ "$INIT" = systemd ]; then
            systemctl daemon-reload || die "systemctl daemon-reload failed"
            systemctl unmask cairn-agent.service >/dev/null 2>&1 || true
            systemctl enable cairn-agent.service >/dev/null 2>&1 || die "systemctl enable cairn-agent.service failed"
            systemctl restart cairn-agent.service || die "cairn-agent.service did not start: journalctl -u cairn-agent"
            say "systemd service cairn-agent enabled and started (journalctl -u cairn-agent)"
        else
            SYSTEMD_OFFLINE=1 systemctl enable cairn-agent.service >/dev/null 2>&1 \
                || die "systemctl enable cairn-agent.service failed"
            say "systemd is not running here: cairn-agent.service is enabled and starts at the next boot"
        fi
        ;;
    openrc|openrc-offline)
        cat >"$INITD" <<'INITD_EOF'
@OPENRC_SCRIPT@
INITD_EOF
        chmod 0755 "$INITD"
        rc-update add cairn-agent default >/dev/null 2>&1 || die "rc-update add cairn-agent default failed"
        if [ "$INIT" = openrc ]; then
            rc-service cairn-agent restart >/dev/null 2>&1 || rc-service cairn-agent start \
                || die "cairn-agent did not start: see /var/log/cairn-agent/cairn-agent.log"
            say "OpenRC service cairn-agent added to the default runlevel and started"
        else
            say "OpenRC is not running here: cairn-agent is in the default runlevel and starts at the next boot"
        fi
        ;;
    none)
        say "no systemd or OpenRC here: start it yourself, e.g. su -s /bin/sh $USER_NAME -c '$BIN run --config $CONF'"
        ;;
esac

if [ "$UPGRADE" = yes ]; then
    say "upgraded $BIN to $("$BIN" version 2>/dev/null | head -n 1)"
else
    say "installed $BIN ($("$BIN" version 2>/dev/null | head -n 1)); config $CONF; state $STATE"
fi
