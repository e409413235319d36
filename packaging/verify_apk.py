#!/usr/bin/env python3
"""Structural verifier for the Alpine .apk packages that nfpm builds for Cairn.

apk-tools is not available where the packages are built, so this checks with
the standard library alone what apk-tools would rely on, plus Cairn's own
layout rules:

    python3 packaging/verify_apk.py dist/*.apk
    python3 packaging/verify_apk.py --self-test dist

Prints one `PASS <file>: <summary>` line per good package and one
`FAIL <file>: <reason>` line per problem found; exits 1 if anything failed.

What nfpm 2.48.0 writes (seen in dist/*.apk, and it matches nfpm's apk/apk.go):
  * The file is gzip streams back to back: [signature,] control, data.
    nfpm signs only when apk.signature.key_file is set; ours are unsigned.
  * The control tar is "cut": no end-of-archive blocks, like abuild-tar --cut.
    apk-tools reads all the streams as one tar, so an end-of-archive marker
    there would hide the data part.
  * .PKGINFO is written first, in ustar format and without a checksum record;
    nfpm never writes `origin`. A multi-line description becomes continuation
    lines starting with two spaces; apk-tools skips any line without " = ",
    so it keeps only the first line of pkgdesc. This is reported in the
    summary, not as a failure.
  * Scripts and data files carry the PAX record APK-TOOLS.checksum.SHA1 as
    *hex* SHA-1. That is the form apk-tools reads there (apk_blob_pull_hexdump
    in its tar.c). The `Q1` + base64 form only appears in APKINDEX and the
    installed database.
  * `size` is the sum of the byte sizes of the regular files (nfpm adds
    file.Size() for each one). Directories and symlinks count for nothing and
    nothing is rounded up to blocks. abuild uses `du` instead.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import hashlib
import io
import re
import shlex
import struct
import subprocess
import sys
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

CHECKSUM_KEY = "APK-TOOLS.checksum.SHA1"

# apk arch -> (ELF e_machine, ELF class). Only the arches Cairn ships.
EM_X86_64, EM_AARCH64, EM_ARM = 62, 183, 40
ELFCLASS32, ELFCLASS64 = 1, 2
ARCHES = {
    "x86_64": (EM_X86_64, ELFCLASS64),
    "aarch64": (EM_AARCH64, ELFCLASS64),
    "armv7": (EM_ARM, ELFCLASS32),
}
# Alpine's armv7 is EABI5 hard-float (musleabihf). A soft-float build has the
# same e_machine and would only fail when it runs.
EF_ARM_EABI_MASK, EF_ARM_EABI_VER5, EF_ARM_ABI_FLOAT_HARD = 0xFF000000, 0x05000000, 0x400

# The agents that cairnd bundles for install.sh, named by dist/ directory.
AGENT_DIRS = {"amd64": "x86_64", "arm64": "aarch64", "armv7": "armv7"}

# Hook scripts that apk-tools runs. nfpm can write every one of them;
# anything else in the control tar is unexpected.
SCRIPT_NAMES = (".pre-install", ".post-install", ".pre-upgrade",
                ".post-upgrade", ".pre-deinstall", ".post-deinstall")

# Per package: the files that must exist, each with its exact mode,
# the scripts that must exist, and the system user that .pre-install creates.
PACKAGES = {
    "cairnd": {
        "files": {
            "usr/bin/cairnd": 0o755,
            "etc/init.d/cairnd": 0o755,
            "etc/conf.d/cairnd": 0o644,
            "etc/cairn/cairnd.toml": 0o644,
            **{f"usr/lib/cairn/agents/{d}/cairn-agent": 0o755 for d in AGENT_DIRS},
        },
        "scripts": (".pre-install", ".post-install"),
        "user": "cairnd",
    },
    "cairn-agent": {
        "files": {
            "usr/bin/cairn-agent": 0o755,
            "etc/init.d/cairn-agent": 0o755,
            "etc/conf.d/cairn-agent": 0o644,
            "etc/cairn/agent.toml": 0o644,
        },
        "scripts": (".pre-install", ".post-install"),
        "user": "cairn",
    },
}

# <pkgname>_<ver>-r<rel>_<arch>.apk, nfpm's ConventionalFileName. The version
# holds no "_", and the arch is whatever follows it (x86_64 has a "_").
FILENAME_RE = re.compile(r"^(?P<name>.+?)_(?P<ver>[^_]+)-r(?P<rel>\d+)_(?P<arch>.+)\.apk$")
PKGNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+_.-]*$")
# apk-tools' version syntax. nfpm turns an epoch into "E:" and a prerelease into
# "~pre", and apk rejects both, so a bad nfpm field shows up here.
APK_VERSION_RE = re.compile(
    r"^\d+(\.\d+)*[a-z]?(_(alpha|beta|pre|rc|cvs|svn|git|hg|p)\d*)*(-r\d+)?$")
REQUIRED_KEYS = ("pkgname", "pkgver", "arch", "size", "datahash")
REPEATABLE_KEYS = {"depend", "provides", "replaces", "install_if", "triggers", "license"}


class Fatal(Exception):
    """The package is too broken structurally for the remaining checks."""


@dataclass
class Stream:
    raw: bytes   # the compressed gzip stream, byte for byte as in the file
    tar: bytes   # its decompressed contents


@dataclass
class Member:
    info: tarfile.TarInfo
    data: bytes  # empty for anything that is not a regular file


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)

    def check(self, ok: bool, message: str) -> bool:
        if not ok:
            self.errors.append(message)
        return ok


# --- 1. gzip streams ------------------------------------------------------

def split_gzip_streams(blob: bytes) -> list[Stream]:
    """Split the file into its gzip streams. Each one must decompress to its
    end (zlib checks the CRC-32 and length in the trailer) with nothing after
    the last one."""
    streams, pos = [], 0
    while pos < len(blob):
        where = f"gzip stream {len(streams) + 1} at offset {pos}"
        if blob[pos:pos + 2] != b"\x1f\x8b":
            if not streams:
                raise Fatal("not a gzip stream (no gzip magic at offset 0)")
            raise Fatal(f"{len(blob) - pos} trailing bytes at offset {pos} are not a gzip stream")
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            tar = inflater.decompress(blob[pos:]) + inflater.flush()
        except zlib.error as exc:
            raise Fatal(f"{where} is corrupt: {exc}") from None
        if not inflater.eof:
            raise Fatal(f"{where} is truncated")
        end = len(blob) - len(inflater.unused_data)
        streams.append(Stream(blob[pos:end], tar))
        pos = end
    if len(streams) not in (2, 3):
        raise Fatal(f"expected 2 gzip streams (control, data) or 3 (signature first), found {len(streams)}")
    return streams


def read_tar(tar: bytes, label: str) -> list[Member]:
    if len(tar) % 512:
        raise Fatal(f"{label} tar is {len(tar)} bytes, not a multiple of 512")
    try:
        with tarfile.open(fileobj=io.BytesIO(tar), mode="r:") as archive:
            return [Member(m, archive.extractfile(m).read() if m.isreg() else b"")
                    for m in archive.getmembers()]
    except tarfile.TarError as exc:
        raise Fatal(f"{label} tar is unreadable: {exc}") from None


def check_cut(tar: bytes, members: list[Member], label: str, report: Report) -> None:
    """The signature and control tars must end right after their last member."""
    if not members:
        report.check(False, f"{label} tar is empty")
        return
    last = members[-1].info
    end = last.offset_data + -(-last.size // 512) * 512  # data rounded up to whole blocks
    report.check(end == len(tar),
                 f"{label} tar has {len(tar) - end} bytes after its last member "
                 "(end-of-archive blocks would stop apk-tools before the data)")


def check_signature(stream: Stream, report: Report) -> None:
    # The RSA signature itself cannot be checked without the public key.
    members = read_tar(stream.tar, "signature")
    names = [m.info.name for m in members]
    if report.check(len(members) == 1 and names[0].startswith(".SIGN."),
                    f"signature tar should hold one .SIGN.* file, holds {names}"):
        report.summary.append(f"signed ({names[0]})")
    check_cut(stream.tar, members, "signature", report)


# --- 2. .PKGINFO ----------------------------------------------------------

def parse_pkginfo(text: str, report: Report) -> dict[str, list[str]]:
    """Read `key = value` lines the way apk-tools does."""
    fields: dict[str, list[str]] = {}
    continuation = 0
    for line in text.split("\n"):
        if not line or line.startswith("#"):
            continue
        if line[0].isspace():
            continuation += 1  # nfpm's multi-line pkgdesc; apk skips these
            continue
        key, sep, value = line.partition(" = ")
        if report.check(bool(sep), f".PKGINFO line is not `key = value`: {line!r}"):
            fields.setdefault(key, []).append(value)
    if continuation:
        report.notes.append(f".PKGINFO has {continuation} continuation line(s); "
                            "apk-tools keeps only the first line of pkgdesc")
    return fields


def single_values(fields: dict[str, list[str]], report: Report) -> dict[str, str]:
    for key in REQUIRED_KEYS:
        report.check(key in fields, f".PKGINFO lacks `{key}`")
    for key, values in fields.items():
        report.check(len(values) == 1 or key in REPEATABLE_KEYS,
                     f".PKGINFO has `{key}` {len(values)} times")
        for value in values:
            report.check(value.strip() != "", f".PKGINFO `{key}` is empty")
    return {key: values[0] for key, values in fields.items()}


def check_pkginfo(info: dict[str, str], apk: Path, report: Report) -> None:
    name, ver, arch = info.get("pkgname", ""), info.get("pkgver", ""), info.get("arch", "")
    report.check(bool(PKGNAME_RE.match(name)), f"pkgname {name!r} is not a valid apk name")
    report.check(bool(APK_VERSION_RE.match(ver)), f"pkgver {ver!r} is not a valid apk version")
    report.check(arch in ARCHES, f"arch {arch!r} is not one of {', '.join(ARCHES)}")
    if "size" in info:
        report.check(info["size"].isdigit(), f"size {info['size']!r} is not a number")
    if "origin" in info:
        report.check(bool(PKGNAME_RE.match(info["origin"])), f"origin {info['origin']!r} is not a valid apk name")

    match = FILENAME_RE.match(apk.name)
    if not report.check(bool(match), f"file name {apk.name!r} is not <pkgname>_<ver>-r<rel>_<arch>.apk"):
        return
    report.check(match["name"] == name, f"file name says package {match['name']!r}, .PKGINFO pkgname is {name!r}")
    report.check(f"{match['ver']}-r{match['rel']}" == ver,
                 f"file name says version {match['ver']}-r{match['rel']}, .PKGINFO pkgver is {ver!r}")
    report.check(match["arch"] == arch, f"file name says arch {match['arch']!r}, .PKGINFO arch is {arch!r}")


# --- 3. datahash and size -------------------------------------------------

def check_datahash(info: dict[str, str], data: Stream, report: Report) -> None:
    # apk-tools hashes the data part as stored, i.e. the compressed gzip stream.
    actual = hashlib.sha256(data.raw).hexdigest()
    stated = info.get("datahash", "").lower()
    report.check(stated == actual, f"datahash {stated!r} != sha256 of the data stream {actual}")


def check_size(info: dict[str, str], members: list[Member], report: Report) -> None:
    # nfpm's `size` is the plain sum of the regular files' sizes (see the
    # module docstring); check that exact number.
    actual = sum(m.info.size for m in members if m.info.isreg())
    report.check(info.get("size") == str(actual),
                 f"size {info.get('size')!r} != {actual}, the total size of the regular files in the data tar")


# --- 4. per-file checksums ------------------------------------------------

def check_checksum(member: Member, label: str, report: Report) -> None:
    stated = member.info.pax_headers.get(CHECKSUM_KEY)
    if not report.check(stated is not None, f"{label} {member.info.name}: no PAX {CHECKSUM_KEY} record"):
        return
    actual = hashlib.sha1(member.data).hexdigest()
    if stated.startswith("Q1"):
        report.check(False, f"{label} {member.info.name}: {CHECKSUM_KEY} is Q1/base64, "
                            "but apk-tools reads this record as hex")
    else:
        report.check(stated.lower() == actual,
                     f"{label} {member.info.name}: {CHECKSUM_KEY} {stated} != sha1 of the content {actual}")


# --- 5. install scripts ---------------------------------------------------

def check_control_members(members: list[Member], report: Report) -> dict[str, Member]:
    names = [m.info.name for m in members]
    # nfpm and abuild both write .PKGINFO first; require the same order.
    report.check(names[:1] == [".PKGINFO"], f"control tar should start with .PKGINFO, starts with {names[:1]}")
    for name in names:
        report.check(name == ".PKGINFO" or name in SCRIPT_NAMES, f"unexpected control member {name!r}")
    report.check(len(set(names)) == len(names), "control tar has duplicate members")
    return {m.info.name: m for m in members if m.info.name in SCRIPT_NAMES}


def check_script(member: Member, report: Report) -> None:
    name = member.info.name
    if not report.check(member.info.isreg(), f"script {name} is not a regular file"):
        return
    report.check(member.info.mode & 0o111 == 0o111, f"script {name} mode {member.info.mode:04o} is not executable")
    check_checksum(member, "script", report)
    try:
        text = member.data.decode("utf-8")
    except UnicodeDecodeError:
        report.check(False, f"script {name} is not UTF-8 text")
        return
    report.check("\0" not in text, f"script {name} contains NUL bytes")
    report.check("\r" not in text, f"script {name} has CR line endings")
    first = text.split("\n", 1)[0]
    report.check(first.split(" ")[0] == "#!/bin/sh", f"script {name} starts with {first!r}, not #!/bin/sh")
    syntax = shell_syntax_error(member.data)
    report.check(syntax is None, f"script {name} fails `sh -n`: {syntax}")


def shell_syntax_error(script: bytes) -> str | None:
    # The local sh may be dash rather than Alpine's busybox ash, but both
    # reject the same POSIX syntax errors.
    try:
        result = subprocess.run(["sh", "-n"], input=script, capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"could not run sh -n: {exc}"
    if result.returncode == 0:
        return None
    return result.stderr.decode(errors="replace").strip() or f"exit status {result.returncode}"


def adduser_calls(text: str) -> list[tuple[set[str], list[str], dict[str, str]]]:
    """Parse each busybox `adduser` line into its flags, positional arguments and
    option values, leaving out redirections and anything after ; && || |."""
    calls = []
    for line in text.splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        if not words or words[0] != "adduser":
            continue
        flags, args, options = set(), [], {}
        words = iter(words[1:])
        for word in words:
            if word in (";", "&&", "||", "|"):
                break
            if re.match(r"^\d*[<>]", word):
                continue
            if word in ("-h", "-g", "-s", "-G", "-u", "-k"):
                options[word] = next(words, "")
            elif word.startswith("-"):
                flags.update(word[1:])
            else:
                args.append(word)
        calls.append((flags, args, options))
    return calls


def check_user_creation(script: Member, user: str, report: Report) -> None:
    text = script.data.decode("utf-8", errors="replace")
    calls = [c for c in adduser_calls(text) if c[1][:1] == [user]]
    if not report.check(any("S" in flags for flags, _, _ in calls),
                        f".pre-install does not create system user {user!r} with `adduser -S`"):
        return
    # busybox adduser -G fails when the group does not exist yet, and scripts
    # usually hide that with 2>/dev/null, so the group has to be created first.
    for _, _, options in calls:
        group = options.get("-G")
        if group:
            report.check(re.search(rf"^\s*addgroup\b.*\s{re.escape(group)}(?=\s|$)", text, re.M) is not None,
                         f".pre-install adds {user!r} to group {group!r} but never creates it with addgroup")


def check_scripts(scripts: dict[str, Member], pkgname: str, report: Report) -> None:
    for member in scripts.values():
        check_script(member, report)
    spec = PACKAGES.get(pkgname)
    if spec:
        for name in spec["scripts"]:
            report.check(name in scripts, f"{pkgname} needs a {name} script")
        if ".pre-install" in scripts:
            check_user_creation(scripts[".pre-install"], spec["user"], report)
    report.summary.append(f"{len(scripts)} scripts")


# --- 6. data layout, modes, owners ----------------------------------------

def check_member_paths(members: list[Member], report: Report) -> None:
    seen = set()
    for m in members:
        name = m.info.name
        report.check(not name.startswith("/"), f"data member {name!r} has an absolute path")
        report.check(".." not in name.split("/"), f"data member {name!r} contains '..'")
        report.check(name not in seen, f"data member {name!r} appears twice")
        seen.add(name)
        report.check(m.info.isreg() or m.info.isdir() or m.info.issym(),
                     f"data member {name!r} has unsupported tar type {m.info.type!r}")
        report.check(m.info.uid == 0 and m.info.gid == 0,
                     f"data member {name!r} is owned by {m.info.uid}:{m.info.gid}, not 0:0")


def check_expected_files(files: dict[str, Member], pkgname: str, report: Report) -> None:
    expected = dict(PACKAGES.get(pkgname, {}).get("files", {}))
    # Any package's own binary, when present, must be executable.
    if f"usr/bin/{pkgname}" in files:
        expected.setdefault(f"usr/bin/{pkgname}", 0o755)
    for path, mode in expected.items():
        member = files.get(path)
        if report.check(member is not None, f"{path} is missing"):
            actual = member.info.mode & 0o7777
            report.check(actual == mode, f"{path} has mode {actual:04o}, expected {mode:04o}")


def check_init_scripts(files: dict[str, Member], report: Report) -> None:
    for path, member in files.items():
        if path.startswith("etc/init.d/"):
            first = member.data.split(b"\n", 1)[0]
            report.check(first.split(b" ")[0] == b"#!/sbin/openrc-run",
                         f"{path} starts with {first[:40]!r}, not #!/sbin/openrc-run")


# --- 7. ELF machine -------------------------------------------------------

def elf_problem(content: bytes, arch: str) -> str | None:
    """Why this content is not an executable for `arch`, or None if it is."""
    if content[:4] != b"\x7fELF" or len(content) < 52:
        return "is not an ELF file"
    want_machine, want_class = ARCHES[arch]
    order = "<" if content[5] == 1 else ">"
    machine = struct.unpack_from(order + "H", content, 18)[0]
    if machine != want_machine:
        return f"has ELF e_machine {machine}, expected {want_machine} for {arch}"
    if content[4] != want_class:
        return f"is ELFCLASS{32 if content[4] == 1 else 64}, expected ELFCLASS{32 if want_class == 1 else 64} for {arch}"
    if arch == "armv7":
        flags = struct.unpack_from(order + "I", content, 36)[0]
        if flags & EF_ARM_EABI_MASK != EF_ARM_EABI_VER5 or not flags & EF_ARM_ABI_FLOAT_HARD:
            return f"has ARM e_flags {flags:#x}, expected EABI5 hard-float"
    return None


def check_elf(files: dict[str, Member], pkgname: str, arch: str, report: Report) -> None:
    if arch not in ARCHES:
        return  # already reported; there is no machine to compare with
    binary = files.get(f"usr/bin/{pkgname}")
    if binary is not None:
        problem = elf_problem(binary.data, arch)
        if report.check(problem is None, f"usr/bin/{pkgname} {problem}"):
            report.summary.append(f"ELF {arch}")
    # cairnd serves these to install.sh, so a swapped one breaks the installs.
    for directory, agent_arch in AGENT_DIRS.items():
        path = f"usr/lib/cairn/agents/{directory}/cairn-agent"
        if path in files:
            problem = elf_problem(files[path].data, agent_arch)
            report.check(problem is None, f"{path} {problem}")


# --- the whole package ----------------------------------------------------

def verify(apk: Path) -> Report:
    report = Report()
    try:
        verify_into(apk, report)
    except Fatal as exc:
        report.errors.append(str(exc))
    except OSError as exc:
        report.errors.append(f"cannot read: {exc}")
    return report


def verify_into(apk: Path, report: Report) -> None:
    streams = split_gzip_streams(apk.read_bytes())
    if len(streams) == 3:
        check_signature(streams[0], report)
    else:
        report.summary.append("unsigned")
    control_stream, data_stream = streams[-2:]

    control = read_tar(control_stream.tar, "control")
    check_cut(control_stream.tar, control, "control", report)
    scripts = check_control_members(control, report)
    pkginfo = next((m for m in control if m.info.name == ".PKGINFO"), None)
    if pkginfo is None:
        raise Fatal("control tar has no .PKGINFO")
    info = single_values(parse_pkginfo(pkginfo.data.decode("utf-8", errors="replace"), report), report)
    check_pkginfo(info, apk, report)
    pkgname, arch = info.get("pkgname", ""), info.get("arch", "")
    report.summary.insert(0, f"{pkgname} {info.get('pkgver', '?')} {arch}")

    data = read_tar(data_stream.tar, "data")
    files = {m.info.name: m for m in data if m.info.isreg()}
    check_datahash(info, data_stream, report)
    check_size(info, data, report)
    for member in files.values():
        check_checksum(member, "data file", report)
    report.summary.append(f"{len(files)} files ({sum(m.info.size for m in files.values())} bytes)")

    check_scripts(scripts, pkgname, report)
    check_member_paths(data, report)
    check_expected_files(files, pkgname, report)
    check_init_scripts(files, report)
    check_elf(files, pkgname, arch, report)


def run(paths: list[Path], quiet: bool = False) -> dict[Path, Report]:
    reports = {}
    for apk in paths:
        report = reports[apk] = verify(apk)
        if quiet:
            continue
        for error in report.errors:
            print(f"FAIL {apk}: {error}")
        if not report.errors:
            notes = f" (note: {'; '.join(report.notes)})" if report.notes else ""
            print(f"PASS {apk}: {', '.join(report.summary)}{notes}")
    return reports


# --- self-test ------------------------------------------------------------
# Each case corrupts one thing in a copy of a real package and names the text
# that must appear in the FAIL reason, so a case cannot "pass" because some
# other check happened to fire. Cases that rebuild the package go through
# repack(), and an unmodified repack must PASS: that shows the rebuilding did
# not break anything on its own.

def unpack(blob: bytes) -> tuple[list[Member], list[Member]]:
    streams = split_gzip_streams(blob)
    return read_tar(streams[-2].tar, "control"), read_tar(streams[-1].tar, "data")


def build_tar(members: list[Member], cut: bool) -> bytes:
    buf = io.BytesIO()
    archive = tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT)
    for m in members:
        info = copy.copy(m.info)
        info.pax_headers = dict(m.info.pax_headers)
        info.size = len(m.data) if info.isreg() else 0
        archive.addfile(info, io.BytesIO(m.data) if info.isreg() else None)
    end = archive.offset
    archive.close()
    return buf.getvalue()[:end] if cut else buf.getvalue()


def repack(blob: bytes, edit_control=None, edit_data=None, edit_pkginfo=None, cut_control=True) -> bytes:
    """Rebuild an unsigned package after the edits. datahash and size are
    recomputed before edit_pkginfo runs, so a content edit trips only the
    check it is aimed at."""
    control, data = unpack(blob)
    if edit_data:
        edit_data(data)
    if edit_control:
        edit_control(control)
    data_gz = gzip.compress(build_tar(data, cut=False), mtime=0)
    size = sum(len(m.data) for m in data if m.info.isreg())
    pkginfo = member(control, ".PKGINFO")
    text = re.sub(r"(?m)^datahash = .*$", "datahash = " + hashlib.sha256(data_gz).hexdigest(),
                  pkginfo.data.decode())
    text = re.sub(r"(?m)^size = .*$", f"size = {size}", text)
    pkginfo.data = (edit_pkginfo(text) if edit_pkginfo else text).encode()
    return gzip.compress(build_tar(control, cut=cut_control), mtime=0) + data_gz


def signature_stream(name: str = ".SIGN.RSA.cairn@example.org.rsa.pub") -> bytes:
    """A signature stream shaped like nfpm's, with a dummy signature in it."""
    info = tarfile.TarInfo(name)
    return gzip.compress(build_tar([Member(info, b"\0" * 256)], cut=True), mtime=0)


def member(members: list[Member], name: str) -> Member:
    return next(m for m in members if m.info.name == name)


def set_content(m: Member, data: bytes) -> None:
    """Replace a file's content and keep its checksum right."""
    m.data = data
    m.info.pax_headers[CHECKSUM_KEY] = hashlib.sha1(data).hexdigest()


def flip_byte(blob: bytes, offset: int) -> bytes:
    return blob[:offset] + bytes([blob[offset] ^ 0xFF]) + blob[offset + 1:]


def self_test_cases(blob: bytes, name: str):
    """Yield (description, file name or None to keep it, bytes, text the FAIL
    reason must contain or None when the case must PASS)."""
    pkgname, arch = FILENAME_RE.match(name).group("name", "arch")
    streams = split_gzip_streams(blob)
    data_at = len(blob) - len(streams[-1].raw)
    binary = f"usr/bin/{pkgname}"
    other_arch = next(a for a in ARCHES if a != arch)

    def wrong_checksum(data):
        m = member(data, binary)
        m.info.pax_headers[CHECKSUM_KEY] = hashlib.sha1(m.data + b"x").hexdigest()

    def no_checksum(data):
        del member(data, binary).info.pax_headers[CHECKSUM_KEY]

    def q1_checksum(data):
        member(data, binary).info.pax_headers[CHECKSUM_KEY] = "Q1" + "A" * 26 + "="

    def wrong_mode(data):
        member(data, binary).info.mode = 0o644

    def wrong_owner(data):
        member(data, binary).info.uid = 1000

    def wrong_machine(data):
        m = member(data, binary)
        set_content(m, m.data[:18] + struct.pack("<H", 3) + m.data[20:])  # EM_386

    def escaping_path(data):
        member(data, binary).info.name = "../../usr/bin/evil"

    def bad_init(data):
        m = next(m for m in data if m.info.name.startswith("etc/init.d/"))
        set_content(m, b"#!/bin/sh\n" + m.data.split(b"\n", 1)[1])

    def soft_float_agent(data):
        m = member(data, "usr/lib/cairn/agents/armv7/cairn-agent")
        flags = struct.unpack_from("<I", m.data, 36)[0] & ~EF_ARM_ABI_FLOAT_HARD
        set_content(m, m.data[:36] + struct.pack("<I", flags) + m.data[40:])

    def no_addgroup(control):
        m = member(control, ".pre-install")
        set_content(m, b"\n".join(l for l in m.data.split(b"\n") if b"addgroup" not in l))

    def bad_syntax(control):
        m = member(control, ".pre-install")
        set_content(m, m.data + b"if true; then\n")

    def no_adduser(control):
        m = member(control, ".pre-install")
        set_content(m, b"\n".join(l for l in m.data.split(b"\n") if b"adduser" not in l))

    def drop_post_install(control):
        control.remove(member(control, ".post-install"))

    yield "original", None, blob, None
    yield "unmodified repack", None, repack(blob), None
    yield "dummy signature stream first", None, signature_stream() + blob, None
    yield "signature stream without .SIGN file", None, signature_stream("junk") + blob, "one .SIGN.* file"
    yield "two signature streams", None, signature_stream() * 2 + blob, "found 4"
    yield "control tar with end-of-archive blocks", None, repack(blob, cut_control=False), "end-of-archive"
    # MTIME in the data stream's gzip header: still decompresses, hash differs.
    yield "data gzip header byte flipped", None, flip_byte(blob, data_at + 4), "datahash"
    yield "data deflate byte flipped", None, flip_byte(blob, data_at + len(streams[-1].raw) // 2), "gzip stream 2"
    yield "truncated", None, blob[:-100], "truncated"
    yield "trailing garbage", None, blob + b"junk", "trailing bytes"
    yield "renamed to wrong arch", name.replace(f"_{arch}.apk", f"_{other_arch}.apk"), blob, "file name says arch"
    yield "file checksum mismatch", None, repack(blob, edit_data=wrong_checksum), "!= sha1 of the content"
    yield "file checksum missing", None, repack(blob, edit_data=no_checksum), f"no PAX {CHECKSUM_KEY}"
    yield "file checksum in Q1 form", None, repack(blob, edit_data=q1_checksum), "Q1/base64"
    yield "size off by one", None, repack(blob, edit_pkginfo=lambda t: re.sub(
        r"(?m)^size = (\d+)$", lambda m: f"size = {int(m[1]) + 1}", t)), "total size of the regular files"
    yield "pkgname changed", None, repack(blob, edit_pkginfo=lambda t: t.replace(
        f"pkgname = {pkgname}", f"pkgname = {pkgname}x")), "file name says package"
    yield "arch field changed", None, repack(blob, edit_pkginfo=lambda t: t.replace(
        f"arch = {arch}", f"arch = {other_arch}")), "file name says arch"
    yield "datahash field removed", None, repack(blob, edit_pkginfo=lambda t: re.sub(
        r"(?m)^datahash = .*\n?", "", t)), "lacks `datahash`"
    yield "binary mode 0644", None, repack(blob, edit_data=wrong_mode), "has mode 0644"
    yield "binary owned by uid 1000", None, repack(blob, edit_data=wrong_owner), "owned by 1000:0"
    yield "binary for the wrong machine", None, repack(blob, edit_data=wrong_machine), "e_machine 3"
    if pkgname == "cairnd":
        yield "bundled armv7 agent soft-float", None, repack(blob, edit_data=soft_float_agent), "EABI5 hard-float"
    yield "path with ..", None, repack(blob, edit_data=escaping_path), "contains '..'"
    yield "init script without openrc-run", None, repack(blob, edit_data=bad_init), "not #!/sbin/openrc-run"
    yield ".pre-install syntax error", None, repack(blob, edit_control=bad_syntax), "fails `sh -n`"
    yield ".pre-install without adduser", None, repack(blob, edit_control=no_adduser), "adduser -S"
    yield ".pre-install without addgroup", None, repack(blob, edit_control=no_addgroup), "never creates it"
    yield ".post-install missing", None, repack(blob, edit_control=drop_post_install), "needs a .post-install"


def self_test(directory: Path) -> int:
    # A cairnd package exercises the most checks (bundled agents included).
    candidates = sorted(directory.glob("cairnd_*.apk")) or sorted(directory.glob("*.apk"))
    if not candidates:
        print(f"self-test: no .apk in {directory}")
        return 1
    original = candidates[0]
    if not FILENAME_RE.match(original.name):
        print(f"self-test: {original.name} is not named <pkgname>_<ver>-r<rel>_<arch>.apk")
        return 1
    blob = original.read_bytes()
    failures = cases = 0
    with tempfile.TemporaryDirectory(prefix="verify_apk.") as tmp:
        for number, (what, name, content, expect) in enumerate(self_test_cases(blob, original.name)):
            case_dir = Path(tmp, f"case{number:02}")
            case_dir.mkdir()
            path = case_dir / (name or original.name)
            path.write_bytes(content)
            report = run([path], quiet=True)[path]
            cases += 1
            problem = judge(report, expect)
            if problem:
                failures += 1
                print(f"self-test: {what}: {problem}")
    if failures:
        print(f"self-test: {failures} of {cases} cases gave the wrong result (base {original})")
        return 1
    print(f"self-test: {cases} cases ok (base {original})")
    return 0


def judge(report: Report, expect: str | None) -> str | None:
    """What is wrong with this outcome, or None if it is what the case expects."""
    if expect is None:
        return f"expected PASS, got FAIL: {'; '.join(report.errors)}" if report.errors else None
    if not report.errors:
        return f"expected FAIL mentioning {expect!r}, got PASS"
    if not any(expect in e for e in report.errors):
        return f"expected FAIL mentioning {expect!r}, got: {'; '.join(report.errors)}"
    return None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--self-test", metavar="DIR", type=Path,
                        help="corrupt copies of a package from DIR and check that each one FAILs")
    parser.add_argument("apks", nargs="*", type=Path, metavar="FILE.apk")
    args = parser.parse_args(argv)
    if args.self_test:
        return self_test(args.self_test)
    if not args.apks:
        parser.error("give at least one FILE.apk, or --self-test DIR")
    reports = run(args.apks)
    return 1 if any(r.errors for r in reports.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
