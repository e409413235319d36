#!/usr/bin/env python3
"""End-to-end check of the shipped static binaries (dist/).

Starts dist/amd64/cairnd on 127.0.0.1 with a temporary data dir, logs in with
the printed initial admin password, and for each architecture given enrolls
dist/<arch>/cairn-agent (under qemu-user for arm64/armv7), runs it with a 1 s
interval until the node shows up online with a snapshot, then stops it with
SIGTERM and expects a clean exit. This is what proves the size-tuned agent
builds (build-std, outliner, no unwind tables) still do the whole job.

usage: dist-e2e.py DIST_DIR ARCH...   (ARCH: amd64 arm64 armv7)
Prints "PASS <arch> ..." / "FAIL <arch> ..." lines; exits 1 if any failed.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

RUNNERS = {
    "amd64": [],
    "arm64": ["qemu-aarch64-static", "-cpu", "cortex-a53"],
    "armv7": ["qemu-arm-static", "-cpu", "cortex-a7"],
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(base, method, path, token=None, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"null")


def poll(what, seconds, f):
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        try:
            v = f()
            if v:
                return v
        except Exception as e:  # not up yet
            last = e
        time.sleep(0.2)
    raise RuntimeError(f"timed out after {seconds} s waiting for {what} (last error: {last})")


def check_arch(dist, arch, base, admin, tmp):
    agent = RUNNERS[arch] + [os.path.join(dist, arch, "cairn-agent")]
    state = os.path.join(tmp, "agent-" + arch)
    env = dict(os.environ, CAIRN_STATE_DIR=state, CAIRN_AGENT_CONFIG=os.path.join(state, "agent.toml"),
               CAIRN_AGENT_INTERVAL_S="1")
    code = call(base, "POST", "/api/v1/enrollment-codes", admin, {})["code"]
    out = subprocess.run(agent + ["enroll", "--server", base, "--code", code], env=env,
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        return f"enroll exited {out.returncode}: {out.stderr.strip()[:400]}"
    with open(os.path.join(state, "identity.json")) as f:
        node = json.load(f)["node_id"]
    log = open(os.path.join(tmp, f"agent-{arch}.log"), "w+")
    proc = subprocess.Popen(agent + ["run"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        def online():
            n = call(base, "GET", f"/api/v1/nodes/{node}", admin)
            latest = n.get("latest") or {}
            return n["status"] == "online" and isinstance(latest.get("cpu"), dict) and n
        n = poll(f"node {node} ({arch}) online with a snapshot", 120, online)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
        if rc != 0:
            log.seek(0)
            return f"run exited {rc} after SIGTERM: {log.read()[-400:]}"
        return None if n["arch"] else "node has no arch"
    except Exception as e:
        log.seek(0)
        return f"{e}; agent log: {log.read()[-400:]}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def main():
    dist, arches = sys.argv[1], sys.argv[2:]
    tmp = tempfile.mkdtemp(prefix="cairn-dist-e2e-")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    data = os.path.join(tmp, "data")
    daemon = subprocess.Popen(
        [os.path.join(dist, "amd64", "cairnd"), "serve", "--listen", f"127.0.0.1:{port}",
         "--data-dir", data, "--no-local-agent"],
        env=dict(os.environ, CAIRN_INTERVAL_S="1"),
        stdout=open(os.path.join(tmp, "cairnd.out"), "w"), stderr=subprocess.STDOUT)
    failed = 0
    try:
        pw_file = os.path.join(data, "initial-admin-password")
        poll("cairnd to start", 30, lambda: call(base, "GET", "/api/v1/health") and os.path.exists(pw_file))
        with open(pw_file) as f:
            password = f.read().strip()
        admin = call(base, "POST", "/api/v1/auth/login", body={"username": "admin", "password": password})["token"]
        for arch in arches:
            t0 = time.monotonic()
            err = check_arch(dist, arch, base, admin, tmp)
            took = time.monotonic() - t0
            if err:
                failed += 1
                print(f"FAIL {arch} dist agent end to end: {err}")
            else:
                print(f"PASS {arch} dist agent end to end: enrolled, online with a snapshot, "
                      f"clean SIGTERM ({took:.1f} s)")
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
    # Reached only without an exception: a crash keeps the directory too.
    if failed:
        print(f"kept {tmp} (data dir and logs) for a look")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
