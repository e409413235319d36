#!/usr/bin/env bash
# cairn-sdcard.sh: puts cairn-agent on a freshly flashed Raspberry Pi OS card
# (Bookworm or Trixie) so the Pi enrolls and reports on its first boot, with
# no keyboard, no firstrun.sh and no cloud-init: the files go straight into the
# root filesystem and the units are enabled with wants-symlinks.
#
#   cairn-sdcard.sh --image pi.img  --server URL --code CODE
#   cairn-sdcard.sh --root /mnt/rootfs [--boot /mnt/boot] --server URL \
#                   --node-id ID --token TOKEN
#
# Image mode needs no root and no loop device: partitions are found with
# `sfdisk --json`, the ext4 root is written with `debugfs -w` and the FAT boot
# partition with mtools. See packaging/sdcard/README.md.
set -euo pipefail
# debugfs, sfdisk and od output is parsed; ranges in regexes are ASCII.
export LC_ALL=C

PROG="cairn-sdcard"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
STATE_DIR=/var/lib/cairn-agent
BIN=/usr/local/bin/cairn-agent
UNIT_DIR=/etc/systemd/system
WANTS_DIR=$UNIT_DIR/multi-user.target.wants

usage() {
    cat <<'EOF'
Usage: cairn-sdcard.sh (--image FILE | --root DIR [--boot DIR]) --server URL
                       (--code CODE | --node-id ID --token TOKEN)
                       [--arch arm64|armv7] [--agent FILE | --download]

Installs cairn-agent, its config and systemd units (enabled) into the root
filesystem of a freshly flashed Raspberry Pi OS card, so the Pi enrolls with
the server on its first boot.

  --image FILE      the .img file (before flashing); no root or mounts needed
  --root DIR        the card's mounted root partition (run as root)
  --boot DIR        the card's mounted boot (FAT) partition: gets cairn/README.txt
  --server URL      cairnd's address, e.g. http://cairn.lan:8440 (required)
  --code CODE       one-time enrollment code; the Pi enrolls on first boot
  --node-id ID      pre-issued node id   } written as identity.json instead
  --token TOKEN     pre-issued token     } of enrolling
  --arch ARCH       arm64 or armv7 (default: from the ELF header of the
                    card's /usr/bin/sh)
  --agent FILE      agent binary (default: dist/<arch>/cairn-agent in the repo)
  --download        fetch the agent from $SERVER/download/cairn-agent/<arch>
                    and check it against <arch>.sha256
  -h, --help        this help
EOF
}

die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
note() { printf '%s: %s\n' "$PROG" "$*" >&2; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found (Debian/Ubuntu: apt-get install $2)"; }

# ---------------------------------------------------------------- arguments
IMAGE="" ROOTDIR="" BOOTDIR="" SERVER="" CODE="" NODE_ID="" TOKEN="" ARCH="" AGENT="" DOWNLOAD=0
parse_args() {
    [ $# -gt 0 ] || { usage >&2; exit 2; }
    while [ $# -gt 0 ]; do
        case "$1" in
            -h|--help) usage; exit 0 ;;
            --download) DOWNLOAD=1; shift; continue ;;
            --image|--root|--boot|--server|--code|--node-id|--token|--arch|--agent)
                [ $# -ge 2 ] || die "$1 needs a value"
                [ -n "$2" ] || die "$1 is empty" ;;
            *) die "unknown option '$1' (see --help)" ;;
        esac
        case "$1" in
            --image) IMAGE="$2" ;;
            --root) ROOTDIR="$2" ;;
            --boot) BOOTDIR="$2" ;;
            --server) SERVER="$2" ;;
            --code) CODE="$2" ;;
            --node-id) NODE_ID="$2" ;;
            --token) TOKEN="$2" ;;
            --arch) ARCH="$2" ;;
            --agent) AGENT="$2" ;;
        esac
        shift 2
    done

    if [ -n "$IMAGE" ] && [ -n "$ROOTDIR" ]; then die "give --image or --root, not both"; fi
    [ -n "$IMAGE$ROOTDIR" ] || die "give --image FILE or --root DIR"
    if [ -n "$IMAGE" ] && [ -n "$BOOTDIR" ]; then die "--boot goes with --root (image mode finds the boot partition itself)"; fi

    [ -n "$SERVER" ] || die "--server URL is required"
    SERVER="${SERVER%/}"
    # The URL ends up inside a TOML string, a unit file and a sh -c script:
    # only characters that are plain in all three.
    local url_re='^https?://[][A-Za-z0-9._~:/@-]+$'
    [[ "$SERVER" =~ $url_re ]] \
        || die "--server must look like http://host:port or https://host:port (got '$SERVER')"

    if [ -n "$CODE" ] && [ -n "$NODE_ID$TOKEN" ]; then
        die "give either --code, or --node-id with --token, not both"
    fi
    if [ -z "$CODE" ] && [ -z "$NODE_ID$TOKEN" ]; then
        die "give --code CODE (enroll on first boot) or --node-id ID --token TOKEN"
    fi
    if [ -z "$CODE" ] && { [ -z "$NODE_ID" ] || [ -z "$TOKEN" ]; }; then
        die "--node-id and --token go together"
    fi
    local v
    for v in "$CODE" "$NODE_ID" "$TOKEN"; do
        # Written into JSON and read back by a shell: no quotes, no spaces.
        [[ "$v" =~ ^[A-Za-z0-9_.:+/=-]*$ ]] || die "code, node id and token may only contain letters, digits and _.:+/=- (got '$v')"
    done

    case "$ARCH" in ""|arm64|armv7) ;; *) die "--arch must be arm64 or armv7 (got '$ARCH')" ;; esac
    if [ "$DOWNLOAD" = 1 ] && [ -n "$AGENT" ]; then die "give --agent or --download, not both"; fi
}

# ------------------------------------------- target: one set of primitives
# Every access to the card goes through fs_type / fs_readlink / fs_get /
# fs_exists, so the checks below are the same for an image and a directory.
ROOT_SPEC=""      # debugfs file spec of the ext4 root in image mode: IMAGE?offset=N
BOOT_OFFSET=""    # byte offset of the FAT boot partition in image mode

# debugfs prints its banner on stderr and reports command errors there too,
# but exits 0: anything else on stderr is a failure.
dbg() {
    local err rc=0 out
    err="$(mktemp)"
    out="$(debugfs "$@" 2>"$err")" || rc=$?
    if [ "$rc" -ne 0 ] || grep -qv '^debugfs [0-9]' "$err"; then
        DBG_ERR="$(grep -v '^debugfs [0-9]' "$err" | head -n 5)"
        rm -f "$err"
        return 1
    fi
    rm -f "$err"
    printf '%s' "$out"
}

# fs_type PATH: prints regular, directory, symlink or other; fails if missing.
# PATH must not go through symlinks (see resolve).
fs_type() {
    if [ -n "$ROOT_SPEC" ]; then
        local st
        st="$(dbg -R "stat \"$1\"" "$ROOT_SPEC")" || return 1
        case "$(sed -n 's/.*Type: \([a-z]*\).*/\1/p' <<<"$st" | head -n 1)" in
            regular) echo regular ;; directory) echo directory ;; symlink) echo symlink ;; *) echo other ;;
        esac
    else
        local p="$ROOTDIR$1"
        if [ -L "$p" ]; then echo symlink
        elif [ -d "$p" ]; then echo directory
        elif [ -f "$p" ]; then echo regular
        elif [ -e "$p" ]; then echo other
        else return 1
        fi
    fi
}

fs_readlink() {
    if [ -n "$ROOT_SPEC" ]; then
        local st dest
        st="$(dbg -R "stat \"$1\"" "$ROOT_SPEC")" || return 1
        dest="$(sed -n 's/^Fast link dest: "\(.*\)"$/\1/p' <<<"$st")"
        # A target longer than 59 bytes is kept in a data block.
        [ -n "$dest" ] || dest="$(dbg -R "cat \"$1\"" "$ROOT_SPEC")" || return 1
        printf '%s\n' "$dest"
    else
        readlink "$ROOTDIR$1"
    fi
}

# fs_get PATH DEST: copies a regular file out of the card.
fs_get() {
    if [ -n "$ROOT_SPEC" ]; then
        dbg -R "dump \"$1\" \"$2\"" "$ROOT_SPEC" >/dev/null
    else
        cp "$ROOTDIR$1" "$2"
    fi
}

fs_exists() { fs_type "$1" >/dev/null 2>&1; }

# resolve PATH: follows symlinks component by component inside the card
# (an absolute link such as /bin -> /usr/bin must not escape to the host).
resolve() {
    local todo="$1" done="" comp link hops=0
    while [ -n "$todo" ]; do
        todo="${todo#/}"
        comp="${todo%%/*}"
        if [[ "$todo" == */* ]]; then todo="/${todo#*/}"; else todo=""; fi
        case "$comp" in
            ""|.) continue ;;
            ..) done="${done%/*}"; continue ;;
        esac
        if [ "$(fs_type "$done/$comp" 2>/dev/null)" = symlink ]; then
            hops=$((hops + 1))
            [ "$hops" -le 40 ] || return 1
            link="$(fs_readlink "$done/$comp")" || return 1
            if [[ "$link" == /* ]]; then done=""; fi
            todo="/$link$todo"
        else
            done="$done/$comp"
        fi
    done
    printf '%s\n' "${done:-/}"
}

# ---------------------------------------------------------- image partitions
# find_partitions: sets ROOT_SPEC and BOOT_OFFSET from the image's MBR/GPT.
find_partitions() {
    need sfdisk fdisk
    need debugfs e2fsprogs
    need blkid util-linux
    need mcopy mtools
    if [ -b "$IMAGE" ]; then die "$IMAGE is a block device: mount the card's partitions and use --root DIR --boot DIR"; fi
    [ -f "$IMAGE" ] || die "$IMAGE: no such file"
    if [ ! -r "$IMAGE" ] || [ ! -w "$IMAGE" ]; then die "$IMAGE: must be readable and writable"; fi
    local json sector parts
    json="$(sfdisk --json "$IMAGE" 2>/dev/null)" || die "$IMAGE: no partition table (is this a disk image? .img.xz must be unpacked first)"
    sector="$(sed -n 's/.*"sectorsize": *\([0-9]*\).*/\1/p' <<<"$json" | head -n 1)"
    sector="${sector:-512}"
    # One partition object per line, then its start, size and type (the
    # key order and the other keys vary between util-linux versions).
    parts="$(tr -d '\n' <<<"$json" | grep -o '{[^{}]*"start"[^{}]*}' | while read -r obj; do
        printf '%s %s %s\n' "$(sed -n 's/.*"start": *\([0-9]*\).*/\1/p' <<<"$obj")" \
            "$(sed -n 's/.*"size": *\([0-9]*\).*/\1/p' <<<"$obj")" \
            "$(sed -n 's/.*"type": *"\([^"]*\)".*/\1/p' <<<"$obj")"
    done)"
    local n=0 start size type boot_start="" root_start=""
    while read -r start size type; do
        [ -n "$start" ] || continue
        n=$((n + 1))
        note "partition $n: start sector $start, $size sectors, type $type"
        # Pi OS: 1 = FAT32 (LBA) boot, 2 = Linux root. Taken by position, as
        # the firmware does, and checked by content below.
        if [ "$n" = 1 ]; then boot_start="$start"; fi
        if [ "$n" = 2 ]; then root_start="$start"; fi
    done <<<"$parts"
    [ -n "$boot_start" ] || die "$IMAGE: no partitions found (a Raspberry Pi OS image has a FAT boot partition and an ext4 root)"
    [ -n "$root_start" ] || die "$IMAGE: only one partition; a Raspberry Pi OS image has a second one, the ext4 root"

    local root_off=$((root_start * sector)) fstype
    BOOT_OFFSET=$((boot_start * sector))
    fstype="$(blkid -p -O "$root_off" -s TYPE -o value "$IMAGE" 2>/dev/null || true)"
    [ "$fstype" = ext4 ] || die "$IMAGE: partition 2 (the root) is ${fstype:-not a recognised filesystem}, not ext4"
    fstype="$(blkid -p -O "$BOOT_OFFSET" -s TYPE -o value "$IMAGE" 2>/dev/null || true)"
    [ "$fstype" = vfat ] || die "$IMAGE: partition 1 (boot) is ${fstype:-not a recognised filesystem}, not FAT"
    ROOT_SPEC="$IMAGE?offset=$root_off"
    # e2fsprogs before 1.42 do not know ?offset= and would see no
    # superblock: say so instead of writing somewhere else. The output is
    # taken whole first: piped into `grep -q`, which leaves at the first
    # match, the writer could die of SIGPIPE and pipefail would call a good
    # image unreadable (seen once in CI); and DBG_ERR set in a pipeline's
    # subshell would be lost.
    local stats
    stats="$(dbg -R "stats" "$ROOT_SPEC")" \
        || die "debugfs cannot open the root partition at byte $root_off (${DBG_ERR:-}); e2fsprogs 1.42 or newer is needed"
    grep 'Filesystem magic number: *0xEF53' <<<"$stats" >/dev/null \
        || die "debugfs sees no ext4 superblock at byte $root_off; e2fsprogs 1.42 or newer is needed"
}

check_root_dir() {
    [ "$(id -u)" = 0 ] || die "--root needs root (the files must be owned by root on the card); or use --image"
    [ -d "$ROOTDIR" ] || die "$ROOTDIR: not a directory"
    ROOTDIR="$(cd "$ROOTDIR" && pwd)"
    [ "$ROOTDIR" != / ] || ROOTDIR=""
    if [ -n "$BOOTDIR" ]; then [ -d "$BOOTDIR" ] || die "$BOOTDIR: not a directory"; fi
}

# ------------------------------------------------------------------ checks
# elf_arch FILE: arm64, armv7, or "other (...)" from EI_CLASS and e_machine.
elf_arch() {
    local b
    read -r -a b <<<"$(od -An -v -tx1 -N20 "$1" 2>/dev/null | tr '\n' ' ')"
    if [ "${#b[@]}" -lt 20 ] || [ "${b[0]}${b[1]}${b[2]}${b[3]}" != 7f454c46 ]; then echo "not-elf"; return; fi
    [ "${b[5]}" = 01 ] || { echo "big-endian"; return; }
    case "${b[4]}:${b[19]}${b[18]}" in
        02:00b7) echo arm64 ;;
        01:0028) echo armv7 ;;
        02:003e) echo "x86-64" ;;
        01:0003) echo "i386" ;;
        *) echo "class ${b[4]} machine 0x${b[19]}${b[18]}" ;;
    esac
}

check_os() {
    fs_exists /etc/os-release || fs_exists /usr/lib/os-release \
        || die "no /etc/os-release on the root partition: is this a Raspberry Pi OS root filesystem?"
    local f codename
    f="$(resolve /etc/os-release)" || f=/usr/lib/os-release
    fs_get "$f" "$WORK/os-release" || die "cannot read $f from the card"
    codename="$(sed -n 's/^VERSION_CODENAME=//p' "$WORK/os-release" | tr -d '"')"
    note "card: $(sed -n 's/^PRETTY_NAME=//p' "$WORK/os-release" | tr -d '"')"
    case "$codename" in
        bookworm|trixie) ;;
        *) note "warning: tested with Debian/Raspberry Pi OS bookworm and trixie, this is '${codename:-unknown}' (needs systemd >= 247)" ;;
    esac
}

detect_arch() {
    local p real got=""
    for p in /usr/bin/sh /bin/sh /usr/bin/dash /usr/bin/bash; do
        real="$(resolve "$p" 2>/dev/null)" || continue
        [ "$(fs_type "$real" 2>/dev/null)" = regular ] || continue
        fs_get "$real" "$WORK/elf" 2>/dev/null || continue
        got="$(elf_arch "$WORK/elf")"
        note "card's $p ($real) is $got"
        break
    done
    if [ -z "$got" ]; then
        [ -n "$ARCH" ] || die "cannot tell the card's architecture (no /usr/bin/sh): give --arch arm64 or --arch armv7"
        note "warning: cannot check --arch $ARCH against the card (no /usr/bin/sh)"
        return
    fi
    case "$got" in
        arm64|armv7) ;;
        *) die "the card's /usr/bin/sh is $got: only arm64 (64-bit Raspberry Pi OS) and armv7 (32-bit) are supported" ;;
    esac
    if [ -n "$ARCH" ] && [ "$ARCH" != "$got" ]; then
        die "--arch $ARCH, but the card's system is $got: the agent would not run"
    fi
    ARCH="$got"
}

fetch_agent() {
    if [ "$DOWNLOAD" = 1 ]; then
        need curl curl
        need sha256sum coreutils
        local want got
        note "downloading $SERVER/download/cairn-agent/$ARCH"
        curl -fsSL --max-time 300 -o "$WORK/cairn-agent" "$SERVER/download/cairn-agent/$ARCH" \
            || die "download of $SERVER/download/cairn-agent/$ARCH failed"
        want="$(curl -fsSL --max-time 30 "$SERVER/download/cairn-agent/$ARCH.sha256" | awk '{print $1; exit}')" \
            || die "download of $SERVER/download/cairn-agent/$ARCH.sha256 failed"
        got="$(sha256sum "$WORK/cairn-agent" | awk '{print $1}')"
        if [ -z "$want" ] || [ "$want" != "$got" ]; then die "downloaded agent's sha256 is $got, the server says '${want}'"; fi
        AGENT="$WORK/cairn-agent"
    else
        AGENT="${AGENT:-$REPO/dist/$ARCH/cairn-agent}"
        [ -f "$AGENT" ] || die "$AGENT: no such file (build it with cross/build.sh, or use --agent FILE or --download)"
    fi
    local a
    a="$(elf_arch "$AGENT")"
    [ "$a" = "$ARCH" ] || die "$AGENT is $a, not $ARCH"
    if [ "$ARCH" = armv7 ]; then
        note "note: the armv7 agent needs an ARMv7 CPU (Pi 2 or later, Zero 2 W); it does not run on a Pi 1 or Zero (W)"
    fi
}

# ----------------------------------------------------------- what to install
# stage: writes every file into $WORK/stage, as it goes on the card.
stage() {
    local s="$WORK/stage"
    mkdir -p "$s"
    cp "$AGENT" "$s/cairn-agent"
    cat >"$s/agent.toml" <<EOF
# cairn-agent configuration (TOML), written by packaging/sdcard/cairn-sdcard.sh.
# CAIRN_* environment variables override it.

# cairnd's address.
server = "$SERVER"

# Identity (node id + token, mode 0600) and the spool of unsent snapshots.
state_dir = "$STATE_DIR"

# Cap on unsent snapshots kept while the server is unreachable.
#spool_max_bytes = 16777216

# For an https server with a self-signed or private-CA certificate.
#ca_file = "/etc/cairn/ca.pem"

#log_level = "info"
EOF
    cat >"$s/sysusers.conf" <<EOF
# cairn-agent's service user, created by systemd-sysusers at boot
# (installed by cairn-sdcard.sh). See sysusers.d(5).
g cairn -
u cairn -:cairn "Cairn monitoring agent" $STATE_DIR /usr/sbin/nologin
EOF
    # The files are written root-owned (the user does not exist before the
    # first boot); the service must still read its config. tmpfiles runs
    # after sysusers (systemd-tmpfiles-setup.service is ordered after it).
    cat >"$s/tmpfiles.conf" <<'EOF'
# Installed by cairn-sdcard.sh: the config is readable by the service user
# only (as the cairn-agent package does). See tmpfiles.d(5).
z /etc/cairn/agent.toml 0640 root cairn -
EOF
    agent_unit >"$s/cairn-agent.service"
    if [ -n "$CODE" ]; then
        printf '%s\n' "$CODE" >"$s/enroll-code"
        enroll_unit >"$s/cairn-agent-enroll.service"
    else
        printf '{"node_id": "%s", "token": "%s", "server": "%s"}\n' "$NODE_ID" "$TOKEN" "$SERVER" >"$s/identity.json"
    fi
    cat >"$s/README.txt" <<EOF
Cairn monitoring agent
======================
cairn-sdcard.sh put cairn-agent into this card's root filesystem
($BIN, /etc/cairn/agent.toml, systemd units in /etc/systemd/system).
Server: $SERVER
On first boot the Pi $( [ -n "$CODE" ] && echo "enrolls with the server and then reports" || echo "reports with its pre-issued identity") once
the network is up (Ethernet, or Wi-Fi set up in Raspberry Pi Imager).
On the Pi: systemctl status cairn-agent-enroll cairn-agent
           journalctl -u cairn-agent-enroll -u cairn-agent
This file is informational; deleting it changes nothing.
EOF
}

# The packaged unit (systemd/cairn-agent.service) with the binary in
# /usr/local/bin. Not ordered after the enroll unit: that one retries until
# the server answers, and an After= here would hold multi-user.target (and
# everything ordered after it) for as long; the enroll unit starts the agent
# itself once enrolled.
agent_unit() {
    local src="$REPO/systemd/cairn-agent.service"
    [ -f "$src" ] || die "$src missing"
    local extra=""
    if [ -n "$CODE" ]; then
        extra="# Enrolls first; cairn-agent-enroll starts this unit once enrolled."$'\n'"Wants=cairn-agent-enroll.service"
    fi
    awk -v extra="$extra" '
        NR == 1 { print "# Installed by cairn-sdcard.sh from systemd/cairn-agent.service."; next }
        /^Installed by|^# cairn-agent package/ { next }
        /^ExecStart=\/usr\/bin\/cairn-agent / { sub("/usr/bin/cairn-agent", "/usr/local/bin/cairn-agent") }
        { print }
        /^ConditionPathExists=/ && extra != "" { print extra }
    ' "$src"
    grep -q '^ExecStart=/usr/bin/cairn-agent ' "$src" || die "$src: no ExecStart=/usr/bin/cairn-agent line to adapt"
}

enroll_unit() {
    cat <<EOF
# cairn-agent-enroll: enrolls this machine with a Cairn server on its first
# boot, with the one-time code in /etc/cairn/enroll-code, then starts
# cairn-agent. Installed by cairn-sdcard.sh. Once enrolled (identity.json
# exists) it never runs again.
[Unit]
Description=Cairn agent first-boot enrollment
ConditionPathExists=!$STATE_DIR/identity.json
ConditionPathExists=/etc/cairn/enroll-code
After=network-online.target
Wants=network-online.target
# It retries until the network and the server are there, which may be long:
# no start limit, and DefaultDependencies=no (with the usual dependencies
# spelled out below) so that multi-user.target does not wait for it. For the
# same reason it is not ordered before cairn-agent.service (which
# multi-user.target waits for): it starts the agent itself when done.
StartLimitIntervalSec=0
DefaultDependencies=no
Requires=sysinit.target
After=sysinit.target basic.target systemd-sysusers.service systemd-tmpfiles-setup.service
Conflicts=shutdown.target
Before=shutdown.target

[Service]
Type=oneshot
User=cairn
Group=cairn
StateDirectory=cairn-agent
StateDirectoryMode=0700
Environment=CAIRN_STATE_DIR=$STATE_DIR
UMask=0077
# The code file stays root-only; systemd hands the service a copy.
LoadCredential=code:/etc/cairn/enroll-code
ExecStart=/bin/sh -c 'exec $BIN enroll --server "$SERVER" --code "\$\$(cat "\$\$CREDENTIALS_DIRECTORY/code")" --config /etc/cairn/agent.toml'
# "+": as root, outside the sandbox. The code is spent: remove it, and start
# the agent (its own boot-time start was skipped: no identity then).
ExecStartPost=+/bin/rm -f /etc/cairn/enroll-code
ExecStartPost=+/bin/systemctl --no-block start cairn-agent.service
Restart=on-failure
RestartSec=10
# Status 3: the server refused the code (unknown, expired, used); retrying
# cannot help: stop, and say so in the journal.
RestartPreventExitStatus=3
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes

[Install]
WantedBy=multi-user.target
EOF
}

# ------------------------------------------------------------------ install
# The plan: one line per item, shared by both writers.
#   dir  PATH MODE
#   file PATH MODE SRC
#   link PATH TARGET
#   rm   PATH
plan() {
    local s="$WORK/stage"
    echo "dir /usr/local/bin 0755"
    echo "dir /etc/cairn 0755"
    echo "dir /usr/lib/sysusers.d 0755"
    echo "dir /usr/lib/tmpfiles.d 0755"
    echo "dir $UNIT_DIR 0755"
    echo "dir $WANTS_DIR 0755"
    echo "file $BIN 0755 $s/cairn-agent"
    echo "file /etc/cairn/agent.toml 0640 $s/agent.toml"
    echo "file /usr/lib/sysusers.d/cairn-agent.conf 0644 $s/sysusers.conf"
    echo "file /usr/lib/tmpfiles.d/cairn-agent.conf 0644 $s/tmpfiles.conf"
    echo "file $UNIT_DIR/cairn-agent.service 0644 $s/cairn-agent.service"
    echo "link $WANTS_DIR/cairn-agent.service $UNIT_DIR/cairn-agent.service"
    if [ -n "$CODE" ]; then
        # A new code means a new enrollment: an identity left by an earlier
        # run would make the enroll unit skip.
        echo "rm $STATE_DIR/identity.json"
        echo "file /etc/cairn/enroll-code 0600 $s/enroll-code"
        echo "file $UNIT_DIR/cairn-agent-enroll.service 0644 $s/cairn-agent-enroll.service"
        echo "link $WANTS_DIR/cairn-agent-enroll.service $UNIT_DIR/cairn-agent-enroll.service"
    else
        echo "rm /etc/cairn/enroll-code"
        echo "rm $WANTS_DIR/cairn-agent-enroll.service"
        echo "rm $UNIT_DIR/cairn-agent-enroll.service"
        echo "dir /var/lib 0755"
        # Root-owned is fine: StateDirectory= chowns it (recursively) to the
        # service user when the agent starts.
        echo "dir $STATE_DIR 0700"
        echo "file $STATE_DIR/identity.json 0600 $s/identity.json"
    fi
    # systemd-sysusers.service only runs when /etc is older than /usr
    # (ConditionNeedsUpdate=/etc): without this stamp it runs at next boot.
    echo "rm /etc/.updated"
}

install_dir() {
    local kind path a b
    while read -r kind path a b; do
        local p="$ROOTDIR$path"
        case "$kind" in
            dir) if [ ! -d "$p" ]; then mkdir -p "$p"; chown 0:0 "$p"; chmod "$a" "$p"; fi ;;
            file) rm -f "$p"; install -o 0 -g 0 -m "$a" "$b" "$p" ;;
            link) ln -sfn "$a" "$p" ;;
            rm) rm -f "$p" ;;
        esac
    done < <(plan)
    if [ -n "$BOOTDIR" ]; then
        mkdir -p "$BOOTDIR/cairn"
        cp "$WORK/stage/README.txt" "$BOOTDIR/cairn/README.txt"
    fi
    sync
}

# install_image: one debugfs script for the whole root, then mtools for boot.
install_image() {
    local cmds="$WORK/debugfs.cmds" kind path a b mode
    local -A made=()
    : >"$cmds"
    while read -r kind path a b; do
        case "$kind" in
            dir)
                # debugfs mkdir makes one level: the missing parents first
                # (as mkdir -p would: 0755).
                local sub="" comp m
                for comp in ${path//\// }; do
                    sub="$sub/$comp"
                    [ -z "${made[$sub]:-}" ] || continue
                    made[$sub]=1
                    fs_exists "$sub" && continue
                    m=755
                    [ "$sub" != "$path" ] || m="${a#0}"
                    printf 'mkdir "%s"\nsif "%s" mode 040%s\nsif "%s" uid 0\nsif "%s" gid 0\n' \
                        "$sub" "$sub" "$m" "$sub" "$sub" >>"$cmds"
                done ;;
            file)
                if fs_exists "$path"; then printf 'rm "%s"\n' "$path" >>"$cmds"; fi
                mode="${a#0}"
                printf 'write "%s" "%s"\nsif "%s" mode 0100%s\nsif "%s" uid 0\nsif "%s" gid 0\n' \
                    "$b" "$path" "$path" "$mode" "$path" "$path" >>"$cmds" ;;
            link)
                if fs_exists "$path"; then printf 'rm "%s"\n' "$path" >>"$cmds"; fi
                printf 'symlink "%s" "%s"\nsif "%s" uid 0\nsif "%s" gid 0\n' "$path" "$a" "$path" "$path" >>"$cmds" ;;
            rm)
                if fs_exists "$path"; then printf 'rm "%s"\n' "$path" >>"$cmds"; fi ;;
        esac
    done < <(plan)
    dbg -w -f "$cmds" "$ROOT_SPEC" >/dev/null || die "debugfs failed writing the root partition: $DBG_ERR"

    local fat="$IMAGE@@$BOOT_OFFSET"
    export MTOOLS_SKIP_CHECK=1
    mdir -i "$fat" ::cairn >/dev/null 2>&1 || mmd -i "$fat" ::cairn || die "mtools cannot write the boot partition"
    mcopy -o -i "$fat" "$WORK/stage/README.txt" ::cairn/README.txt || die "mtools cannot write the boot partition"
}

main() {
    parse_args "$@"
    WORK="$(mktemp -d)"
    trap 'rm -rf "$WORK"' EXIT
    if [ -n "$IMAGE" ]; then find_partitions; else check_root_dir; fi
    # Everything is checked before the first write: a refused card is unchanged.
    check_os
    detect_arch
    fetch_agent
    stage
    if [ -n "$IMAGE" ]; then install_image; else install_dir; fi
    note "installed cairn-agent ($ARCH) for $SERVER into ${IMAGE:-${ROOTDIR:-/}}"
    if [ -n "$CODE" ]; then
        note "first boot: cairn-agent-enroll.service enrolls with the code, then cairn-agent.service reports"
    else
        note "first boot: cairn-agent.service reports as node $NODE_ID"
    fi
}

main "$@"
