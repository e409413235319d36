//! Shared pieces: a release cairnd on 127.0.0.1 with its own data directory,
//! a keep-alive HTTP client, enrollment, synthetic snapshots, backfill,
//! /proc readers, percentiles and the result table.

use cairn_wire::{
    Cpu, Disk, DiskIo, Load, Memory, NetIf, OutgoingBatch, PiThrottle, Process, Snapshot, SystemInfo,
    Temperature,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub type Res<T> = Result<T, String>;

/// Where the binaries are, where to work, and `--key value` options.
pub struct Env {
    pub cairnd: PathBuf,
    pub agent: Option<PathBuf>,
    pub dist: PathBuf,
    pub work: PathBuf,
    pub out: PathBuf,
    pub opts: BTreeMap<String, String>,
}

impl Env {
    pub fn opt<T: std::str::FromStr>(&self, key: &str, default: T) -> T {
        self.opts.get(key).and_then(|v| v.parse().ok()).unwrap_or(default)
    }

    /// Starts `--cairnd` in `dir` with `extra` environment variables, plus
    /// those of `--daemon-env "K=V K2=V2"` (for allocator experiments).
    pub fn start_daemon(&self, dir: &Path, extra: &[(&str, &str)]) -> Res<Daemon> {
        let mut env: Vec<(&str, &str)> = extra.to_vec();
        if let Some(list) = self.opts.get("daemon-env") {
            for kv in list.split_whitespace() {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| format!("--daemon-env: '{kv}' is not K=V"))?;
                env.push((k, v));
            }
        }
        Daemon::start(&self.cairnd, dir, &env, &[])
    }

    /// An empty directory under the work dir (removed first if present).
    pub fn fresh_dir(&self, name: &str) -> Res<PathBuf> {
        let p = self.work.join(name);
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).map_err(|e| format!("creating {}: {e}", p.display()))?;
        Ok(p)
    }
}

pub fn free_port() -> Res<u16> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("binding a free port: {e}"))
}

/// Polls `f` every `every` until it gives Some, or fails after `limit`.
pub fn poll<T>(what: &str, limit: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> Res<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(format!("timed out after {limit:?} waiting for {what}"));
        }
        std::thread::sleep(every);
    }
}

pub fn unix_now() -> i64 {
    cairnd::clock::now()
}

// ---------------------------------------------------------------- HTTP

/// One keep-alive connection's worth of HTTP client.
#[derive(Clone)]
pub struct Http {
    agent: ureq::Agent,
    pub base: String,
}

impl Http {
    pub fn new(base: &str) -> Http {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(600)))
            .max_redirects(0)
            .build()
            .into();
        Http {
            agent,
            base: base.to_string(),
        }
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> Res<(u16, String)> {
        let mut rq = self.agent.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            rq = rq.header("Authorization", format!("Bearer {t}"));
        }
        let mut resp = rq.call().map_err(|e| format!("GET {path}: {e}"))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(256 * 1024 * 1024)
            .read_to_string()
            .map_err(|e| format!("GET {path}: reading body: {e}"))?;
        Ok((status, text))
    }

    pub fn post(&self, path: &str, token: Option<&str>, body: &[u8]) -> Res<(u16, String)> {
        self.send("POST", path, token, body)
    }

    /// A POST with extra request headers.
    pub fn post_with(
        &self,
        path: &str,
        token: Option<&str>,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> Res<(u16, String)> {
        self.send_with("POST", path, token, body, headers)
    }

    pub fn patch_json(&self, path: &str, token: Option<&str>, body: &Value) -> Res<()> {
        let (status, text) = self.send("PATCH", path, token, body.to_string().as_bytes())?;
        if !(200..300).contains(&status) {
            return Err(format!("PATCH {path}: {status} {text}"));
        }
        Ok(())
    }

    pub fn send(&self, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> Res<(u16, String)> {
        self.send_with(method, path, token, body, &[])
    }

    fn send_with(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> Res<(u16, String)> {
        let mut rq = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("Content-Type", "application/json");
        for (name, value) in headers {
            rq = rq.header(*name, *value);
        }
        let rq = match token {
            Some(t) => rq.header("Authorization", format!("Bearer {t}")),
            None => rq,
        };
        let rq = rq
            .body(body.to_vec())
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let mut resp = self.agent.run(rq).map_err(|e| format!("{method} {path}: {e}"))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("{method} {path}: reading body: {e}"))?;
        Ok((status, text))
    }

    pub fn post_json(&self, path: &str, token: Option<&str>, body: &Value) -> Res<Value> {
        let (status, text) = self.post(path, token, body.to_string().as_bytes())?;
        if !(200..300).contains(&status) {
            return Err(format!("POST {path}: {status} {text}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("POST {path}: {e}: {text}"))
    }
}

/// A bare HTTP/1.1 keep-alive client for the ingest load: each request is
/// one prebuilt buffer (head and body) written at once, and each reply is
/// read into a buffer the connection keeps. The load generator shares the
/// machine's two cores with the daemon it measures; through ureq, a request
/// cost it a copy of its body and a few dozen allocations, a quarter of its
/// CPU (docs/BENCHMARKS.md §1), which the daemon then did not get. Replies
/// must carry Content-Length (cairnd's always do).
pub struct Poster {
    addr: String,
    stream: Option<std::net::TcpStream>,
    buf: Vec<u8>,
}

impl Poster {
    /// `base` is `http://HOST:PORT`, as `Daemon::url` gives it.
    pub fn new(base: &str) -> Poster {
        Poster {
            addr: base.trim_start_matches("http://").to_string(),
            stream: None,
            buf: Vec::with_capacity(4096),
        }
    }

    /// A POST of `body` to `path` on `base`, as bytes to hand to `send`.
    pub fn request(base: &str, path: &str, token: &str, body: &[u8]) -> Vec<u8> {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            base.trim_start_matches("http://"),
            body.len()
        );
        let mut rq = Vec::with_capacity(head.len() + body.len());
        rq.extend_from_slice(head.as_bytes());
        rq.extend_from_slice(body);
        rq
    }

    /// Sends one request built by `request`; returns the status and body.
    /// A kept-alive connection the server has closed meanwhile is opened
    /// again once (ingest is idempotent, so a repeat is harmless).
    pub fn send(&mut self, request: &[u8]) -> Res<(u16, String)> {
        let reused = self.stream.is_some();
        match self.exchange(request) {
            Err(_) if reused => {
                self.stream = None;
                self.exchange(request)
            }
            other => other,
        }
    }

    fn exchange(&mut self, request: &[u8]) -> Res<(u16, String)> {
        use std::io::{Read, Write};
        let result = (|| {
            let stream = match &mut self.stream {
                Some(s) => s,
                None => {
                    let s = std::net::TcpStream::connect(&self.addr)
                        .map_err(|e| format!("connecting to {}: {e}", self.addr))?;
                    s.set_nodelay(true).map_err(|e| e.to_string())?;
                    s.set_read_timeout(Some(Duration::from_secs(600)))
                        .map_err(|e| e.to_string())?;
                    self.stream.insert(s)
                }
            };
            stream.write_all(request).map_err(|e| format!("sending: {e}"))?;
            self.buf.clear();
            let buf = &mut self.buf;
            // Appends what the next read brings; a closed connection is an error.
            let mut read_more = |buf: &mut Vec<u8>| -> Res<()> {
                let mut chunk = [0u8; 4096];
                let n = stream
                    .read(&mut chunk)
                    .map_err(|e| format!("reading the reply: {e}"))?;
                if n == 0 {
                    return Err("the server closed the connection".to_string());
                }
                buf.extend_from_slice(&chunk[..n]);
                Ok(())
            };
            let head_end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                read_more(buf)?;
            };
            let head = std::str::from_utf8(&buf[..head_end]).map_err(|e| e.to_string())?;
            let status: u16 = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("no status in {head:?}"))?;
            let header = |name: &str| {
                head.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                })
            };
            let length: usize = header("content-length")
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("no Content-Length in {head:?}"))?;
            let close = header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
            while buf.len() < head_end + length {
                read_more(buf)?;
            }
            let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();
            Ok((status, body, close))
        })();
        match result {
            Ok((status, body, close)) => {
                if close {
                    self.stream = None;
                }
                Ok((status, body))
            }
            Err(e) => {
                self.stream = None;
                Err(e)
            }
        }
    }
}

// ---------------------------------------------------------------- daemon

/// A release cairnd on 127.0.0.1 with a data directory under `dir`; killed on drop.
pub struct Daemon {
    child: Option<Child>,
    bin: PathBuf,
    pub dir: PathBuf,
    pub port: u16,
    env: Vec<(String, String)>,
    args: Vec<String>,
    admin_password: String,
}

impl Daemon {
    pub fn start(bin: &Path, dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Res<Daemon> {
        let mut d = Daemon {
            child: None,
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            port: free_port()?,
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            args: args.iter().map(|s| s.to_string()).collect(),
            admin_password: String::new(),
        };
        d.spawn()?;
        d.admin_password = std::fs::read_to_string(d.data_dir().join("initial-admin-password"))
            .map_err(|e| format!("first run writes initial-admin-password: {e}"))?
            .trim()
            .to_string();
        Ok(d)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir().join("cairn.db")
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn http(&self) -> Http {
        Http::new(&self.url())
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    fn spawn(&mut self) -> Res<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("cairnd.log"))
            .map_err(|e| format!("opening cairnd.log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--no-local-agent")
            .args(&self.args)
            // CAIRN_BENCH_DAEMON_LOG=trace shows each ingest commit.
            .env(
                "CAIRN_LOG_LEVEL",
                std::env::var("CAIRN_BENCH_DAEMON_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.bin.display()))?;
        self.child = Some(child);
        let http = self.http();
        let child = self.child.as_mut().expect("just spawned");
        let mut exited = None;
        poll(
            "cairnd to answer /healthz",
            Duration::from_secs(60),
            Duration::from_millis(50),
            || {
                if let Ok(Some(st)) = child.try_wait() {
                    exited = Some(st);
                    return Some(());
                }
                http.get("/healthz", None)
                    .ok()
                    .filter(|(s, _)| *s == 200)
                    .map(|_| ())
            },
        )?;
        if let Some(st) = exited {
            return Err(format!(
                "cairnd exited at start ({st}); see {}",
                self.dir.join("cairnd.log").display()
            ));
        }
        Ok(())
    }

    /// SIGTERM and wait for the exit.
    pub fn stop(&mut self) -> Res<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        signal(child.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("cairnd did not stop within 60 s of SIGTERM".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops and starts again on the same port and data directory.
    pub fn restart(&mut self) -> Res<()> {
        self.stop()?;
        self.spawn()
    }

    pub fn admin_token(&self) -> Res<String> {
        let v = self.http().post_json(
            "/api/v1/auth/login",
            None,
            &serde_json::json!({"username": "admin", "password": self.admin_password}),
        )?;
        v["token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("no token in login reply {v}"))
    }

    /// Enrolls `n` nodes (8 at a time); returns (node_id, agent token) in order.
    pub fn enroll_many(&self, admin: &str, n: usize, prefix: &str) -> Res<Vec<(String, String)>> {
        let next = AtomicUsize::new(0);
        let out: std::sync::Mutex<Vec<Option<(String, String)>>> = std::sync::Mutex::new(vec![None; n]);
        let err: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..8.min(n.max(1)) {
                s.spawn(|| {
                    let http = self.http();
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= n {
                            return;
                        }
                        match enroll_one(&http, admin, &format!("{prefix}-{i:04}")) {
                            Ok(pair) => out.lock().expect("lock")[i] = Some(pair),
                            Err(e) => {
                                *err.lock().expect("lock") = Some(e);
                                return;
                            }
                        }
                    }
                });
            }
        });
        if let Some(e) = err.into_inner().expect("lock") {
            return Err(e);
        }
        Ok(out.into_inner().expect("lock").into_iter().flatten().collect())
    }
}

fn enroll_one(http: &Http, admin: &str, hostname: &str) -> Res<(String, String)> {
    let code = http.post_json("/api/v1/enrollment-codes", Some(admin), &serde_json::json!({}))?;
    let code = code["code"].as_str().ok_or("no code")?;
    let r = http.post_json(
        "/api/v1/agent/enroll",
        None,
        &serde_json::json!({"code": code, "hostname": hostname, "os": "Linux", "arch": "aarch64",
                            "agent_version": "bench"}),
    )?;
    Ok((
        r["node_id"].as_str().ok_or("no node_id")?.to_string(),
        r["token"].as_str().ok_or("no token")?.to_string(),
    ))
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a PID this process started and has not reaped.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

// ---------------------------------------------------------------- data

/// A Raspberry-Pi-like snapshot (the shape of the example in docs/API.md: 4
/// cores, one disk, one block device, one interface, one sensor, Pi flags)
/// for node `node` at `ts`, with values that wander so rollups are non-trivial.
/// Written as cairn-agent writes one: its top five processes, and every
/// float rounded to two decimals (17-digit floats made the body a fifth
/// longer and cheaper per byte to parse than an agent's; docs/BENCHMARKS.md §1).
pub fn snapshot(node: usize, ts: i64) -> Snapshot {
    let phase = ((ts / 30) as usize + node * 13) % 120;
    let wave = phase as f64 / 120.0;
    let cpu = 3.0 + 70.0 * wave;
    let total = 8_000_000_000u64;
    let used = 1_500_000_000 + (wave * 3_000_000_000.0) as u64;
    let mut s = Snapshot {
        timestamp: cairnd::clock::rfc3339(ts),
        hostname: format!("bench-{node:04}"),
        system: SystemInfo {
            os: "Debian GNU/Linux 12 (bookworm)".into(),
            kernel: "6.6.31+rpt-rpi-v8".into(),
            arch: "aarch64".into(),
            model: "Raspberry Pi 4 Model B Rev 1.4".into(),
            agent_version: "0.1.0".into(),
        },
        cpu: Cpu {
            total_percent: cpu,
            per_core: vec![cpu * 0.9, cpu * 1.1, cpu, cpu * 0.95],
            count: 4,
        },
        memory: Memory {
            total_bytes: total,
            used_bytes: used,
            available_bytes: total - used,
            used_percent: used as f64 * 100.0 / total as f64,
            swap_total_bytes: 104_853_504,
            swap_used_bytes: 0,
            swap_percent: 0.0,
        },
        load: Load {
            load1: 4.0 * wave,
            load5: 3.0 * wave,
            load15: 2.0 * wave,
        },
        uptime_seconds: 86_400 + ts.rem_euclid(1_000_000) as u64,
        disks: vec![Disk {
            mount: "/".into(),
            device: "/dev/mmcblk0p2".into(),
            fstype: "ext4".into(),
            total_bytes: 60_000_000_000,
            used_bytes: 9_000_000_000 + (ts.rem_euclid(86_400) as u64) * 1000,
            free_bytes: 51_000_000_000 - (ts.rem_euclid(86_400) as u64) * 1000,
            used_percent: 15.0 + (ts.rem_euclid(86_400) as f64) / 86_400.0,
            inodes_total: 3_700_000,
            inodes_used: 200_000,
        }],
        disk_io: vec![DiskIo {
            device: "mmcblk0".into(),
            read_bytes_per_s: 512.0 * wave,
            write_bytes_per_s: 4096.0 + 8192.0 * wave,
            reads_per_s: 0.5 * wave,
            writes_per_s: 1.0 + 2.0 * wave,
        }],
        net: vec![NetIf {
            interface: "eth0".into(),
            rx_bytes_per_s: 1200.0 + 5000.0 * wave,
            tx_bytes_per_s: 800.0 + 2000.0 * wave,
            rx_bytes_total: 123_456_789 + ts as u64,
            tx_bytes_total: 65_432_100 + ts as u64,
            rx_errors: 0,
            tx_errors: 0,
        }],
        temperatures: vec![Temperature {
            sensor: "cpu_thermal".into(),
            celsius: 45.0 + 15.0 * wave,
            high_celsius: None,
            critical_celsius: None,
        }],
        pi: Some(PiThrottle::from_raw(0)),
        processes: top_processes(wave),
    };
    round_like_the_agent(&mut s);
    s
}

/// Five processes, as cairn-agent reports its top five by CPU.
fn top_processes(wave: f64) -> Vec<Process> {
    ["cairn-agent", "systemd", "sshd", "dockerd", "containerd"]
        .iter()
        .enumerate()
        .map(|(i, name)| Process {
            pid: 100 + 37 * i as u32,
            name: (*name).into(),
            cpu_percent: 12.0 * wave / (i + 1) as f64,
            memory_bytes: 4_000_000 + 1_000_000 * i as u64,
        })
        .collect()
}

/// cairn-agent's `round2` on every float it sends.
fn round_like_the_agent(s: &mut Snapshot) {
    let two = |x: &mut f64| *x = (*x * 100.0).round() / 100.0;
    two(&mut s.cpu.total_percent);
    s.cpu.per_core.iter_mut().for_each(two);
    two(&mut s.memory.used_percent);
    two(&mut s.memory.swap_percent);
    for x in [&mut s.load.load1, &mut s.load.load5, &mut s.load.load15] {
        two(x);
    }
    s.disks.iter_mut().for_each(|d| two(&mut d.used_percent));
    for d in &mut s.disk_io {
        for x in [
            &mut d.read_bytes_per_s,
            &mut d.write_bytes_per_s,
            &mut d.reads_per_s,
            &mut d.writes_per_s,
        ] {
            two(x);
        }
    }
    for n in &mut s.net {
        two(&mut n.rx_bytes_per_s);
        two(&mut n.tx_bytes_per_s);
    }
    s.temperatures.iter_mut().for_each(|t| two(&mut t.celsius));
    s.processes.iter_mut().for_each(|p| two(&mut p.cpu_percent));
}

pub fn single_body(node: usize, ts: i64) -> Vec<u8> {
    serde_json::to_vec(&snapshot(node, ts)).expect("snapshot serialises")
}

/// A backfill request as cairn-agent sends one: oldest first, the newest
/// snapshot whole and the others as what the server charts of them.
pub fn batch_body(node: usize, ts: impl Iterator<Item = i64>) -> Vec<u8> {
    let snapshots: Vec<Snapshot> = ts.map(|t| snapshot(node, t)).collect();
    serde_json::to_vec(&OutgoingBatch::of(&snapshots)).expect("batch serialises")
}

/// `accepted` of an ingest reply.
pub fn accepted(text: &str) -> u64 {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v["accepted"].as_u64())
        .unwrap_or(0)
}

/// Backfills `slots` snapshots per node, 30 s apart, ending at `end`, with
/// `batch` snapshots per request and `workers` client threads. Node i is
/// offset by i % 30 seconds so nodes do not share timestamps. Work is handed
/// out batch-major (every node's first batch, then every node's second, ...).
pub fn backfill(
    http: &Http,
    nodes: &[(usize, String)],
    slots: usize,
    end: i64,
    batch: usize,
    workers: usize,
) -> Res<(u64, Duration)> {
    let per_node = slots.div_ceil(batch);
    let jobs = per_node * nodes.len();
    let next = AtomicUsize::new(0);
    let acked = AtomicU64::new(0);
    let err: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    let started = Instant::now();
    let start_ts = end - (slots as i64 - 1) * 30;
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                let http = Http::new(&http.base);
                loop {
                    let j = next.fetch_add(1, Ordering::SeqCst);
                    if j >= jobs || err.lock().expect("lock").is_some() {
                        return;
                    }
                    let (b, n) = (j / nodes.len(), j % nodes.len());
                    let (idx, token) = &nodes[n];
                    let from = b * batch;
                    let to = (from + batch).min(slots);
                    let off = (*idx % 30) as i64;
                    let body = batch_body(*idx, (from..to).map(|k| start_ts + k as i64 * 30 - off));
                    match http.post("/api/v1/agent/ingest", Some(token), &body) {
                        Ok((200, text)) => {
                            acked.fetch_add(accepted(&text), Ordering::Relaxed);
                        }
                        Ok((status, text)) => {
                            *err.lock().expect("lock") = Some(format!("backfill: {status} {text}"));
                        }
                        Err(e) => *err.lock().expect("lock") = Some(e),
                    }
                }
            });
        }
    });
    if let Some(e) = err.into_inner().expect("lock") {
        return Err(e);
    }
    Ok((acked.into_inner(), started.elapsed()))
}

/// Live operation in real time: every node posts one snapshot (timestamp =
/// now) every `interval_s`, spread evenly over the interval, one client
/// thread and keep-alive connection per node, until `seconds` have passed.
/// Each request carries the commit delay `cairn-agent` asks for at that
/// interval. Returns the snapshots acknowledged.
pub fn live(d: &Daemon, agents: &[(String, String)], seconds: f64, interval_s: f64) -> u64 {
    let acked = AtomicU64::new(0);
    let within = cairn_wire::commit_within_s(interval_s as u32).to_string();
    let within = within.as_str();
    let start = Instant::now();
    let stop = start + Duration::from_secs_f64(seconds);
    let n = agents.len().max(1);
    std::thread::scope(|s| {
        for (i, (_, token)) in agents.iter().enumerate() {
            let (acked, url) = (&acked, d.url());
            s.spawn(move || {
                let http = Http::new(&url);
                let mut next = start + Duration::from_secs_f64(interval_s * i as f64 / n as f64);
                while next < stop {
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                    let body = single_body(i, unix_now());
                    let header = [(cairn_wire::COMMIT_WITHIN_HEADER, within)];
                    if let Ok((200, text)) =
                        http.post_with("/api/v1/agent/ingest", Some(token), &body, &header)
                    {
                        acked.fetch_add(accepted(&text), Ordering::Relaxed);
                    }
                    next += Duration::from_secs_f64(interval_s);
                }
            });
        }
    });
    acked.into_inner()
}

/// Has the daemon compute the rollups of backfilled data the way the first
/// chart opened after a backfill does: every backfilled snapshot lies behind
/// the 1-minute watermark and leaves a `dirty:<node>` mark, and a history
/// read runs a rollup pass first when marks exist (the upkeep timer would
/// run it up to 2 hours later). Returns how long that read took: the pass
/// runs on the executor, so this is also how long the daemon was blocked.
pub fn settle_rollups(d: &Daemon, token: &str, node_id: &str) -> Res<Duration> {
    let t = Instant::now();
    let (status, text) = d.http().get(
        &format!("/api/v1/nodes/{node_id}/history?metrics=cpu&hours=1"),
        Some(token),
    )?;
    let took = t.elapsed();
    if status != 200 {
        return Err(format!("history read to settle rollups: {status} {text}"));
    }
    let dirty: i64 = open_ro(&d.db_path())?
        .query_row(
            "SELECT count(*) FROM settings WHERE key LIKE 'dirty:%'",
            [],
            |r| r.get(0),
        )
        .map_err(|e| format!("reading rollup marks: {e}"))?;
    if dirty != 0 {
        return Err(format!(
            "{dirty} nodes still have rollup marks after a history read"
        ));
    }
    Ok(took)
}

pub fn open_ro(path: &Path) -> Res<rusqlite::Connection> {
    let c = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("opening {} read-only: {e}", path.display()))?;
    c.busy_timeout(Duration::from_secs(30))
        .map_err(|e| e.to_string())?;
    Ok(c)
}

// ---------------------------------------------------------------- /proc

/// A `Key:   123 kB` field of /proc/PID/status, in bytes.
pub fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// A field of /proc/PID/io.
pub fn io_field(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
}

pub fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of a process (all its threads), seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    stat_cpu(&format!("/proc/{pid}/stat"))
}

/// utime + stime of one thread, seconds. cairnd's executor (JSON parsing,
/// validation, SQLite) is its main thread, whose id is the process id.
pub fn thread_cpu_seconds(pid: u32, tid: u32) -> Option<f64> {
    stat_cpu(&format!("/proc/{pid}/task/{tid}/stat"))
}

/// CPU seconds per thread name of a process, over the threads alive now
/// (threads that exited are not counted).
pub fn cpu_by_thread_name(pid: u32) -> std::collections::BTreeMap<String, f64> {
    let mut by_name = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return by_name;
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if let Some(cpu) = stat_cpu(&dir.join("stat").to_string_lossy()) {
            *by_name.entry(name.trim().to_string()).or_insert(0.0) += cpu;
        }
    }
    by_name
}

fn stat_cpu(path: &str) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    // The command name may contain spaces: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(3) ... utime(14) stime(15), i.e. indexes 11 and 12 here.
    let ut: f64 = f.get(11)?.parse().ok()?;
    let st: f64 = f.get(12)?.parse().ok()?;
    Some((ut + st) / clk_tck())
}

pub fn self_cpu_seconds() -> f64 {
    cpu_seconds(std::process::id()).unwrap_or(0.0)
}

/// Exit status, peak RSS (bytes) and user+system CPU seconds of a child, via wait4.
pub fn wait_rusage(pid: u32) -> Res<(i32, u64, f64)> {
    let mut status = 0;
    // SAFETY: rusage is plain old data; wait4 fills it for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid as i32, &mut status, 0, &mut ru) };
    if r < 0 {
        return Err(format!("wait4({pid}): {}", std::io::Error::last_os_error()));
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok((
        status,
        ru.ru_maxrss as u64 * 1024,
        secs(ru.ru_utime) + secs(ru.ru_stime),
    ))
}

pub fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// Size of a database with its WAL.
pub fn db_bytes(db: &Path) -> u64 {
    file_size(db) + file_size(&PathBuf::from(format!("{}-wal", db.display())))
}

// ---------------------------------------------------------------- numbers

pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// (p50, p99, max) of durations, in milliseconds.
pub fn latency_ms(mut v: Vec<Duration>) -> (f64, f64, f64) {
    let mut ms: Vec<f64> = v.drain(..).map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    (
        percentile(&ms, 0.50),
        percentile(&ms, 0.99),
        ms.last().copied().unwrap_or(f64::NAN),
    )
}

pub fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// One measured figure.
pub struct Figure {
    pub key: String,
    pub value: f64,
    pub unit: String,
    /// e.g. "<= 20" / ">= 50"; empty when there is no target.
    pub target: String,
    pub pass: Option<bool>,
}

#[derive(Default)]
pub struct Results {
    pub figures: Vec<Figure>,
    pub notes: Vec<String>,
}

impl Results {
    pub fn info(&mut self, key: &str, value: f64, unit: &str) {
        println!("  {key} = {} {unit}", fmt_num(value));
        self.figures.push(Figure {
            key: key.into(),
            value,
            unit: unit.into(),
            target: String::new(),
            pass: None,
        });
    }

    /// A figure with a target: `at_most` true means value <= target passes.
    pub fn target(&mut self, key: &str, value: f64, unit: &str, target: f64, at_most: bool) {
        let pass = if at_most { value <= target } else { value >= target };
        let t = format!("{} {}", if at_most { "<=" } else { ">=" }, fmt_num(target));
        println!(
            "  {key} = {} {unit}   (target {t} {unit}: {})",
            fmt_num(value),
            if pass { "PASS" } else { "FAIL" }
        );
        self.figures.push(Figure {
            key: key.into(),
            value,
            unit: unit.into(),
            target: t,
            pass: Some(pass),
        });
    }

    pub fn note(&mut self, text: impl Into<String>) {
        let t = text.into();
        println!("  note: {t}");
        self.notes.push(t);
    }

    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "figures": self.figures.iter().map(|f| serde_json::json!({
                "key": f.key, "value": f.value, "unit": f.unit, "target": f.target, "pass": f.pass,
            })).collect::<Vec<_>>(),
            "notes": self.notes,
        })
    }
}

pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if a >= 1000.0 || (v == v.trunc() && a >= 10.0) {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Runs `f(client, i)` for every `i` in `0..n` on `workers` threads, each
/// with its own client of `d`; the results in index order, or the first
/// error (the other workers stop taking new items).
pub fn parallel<T: Send>(
    d: &Daemon,
    n: usize,
    workers: usize,
    f: impl Fn(&Http, usize) -> Res<T> + Sync,
) -> Res<Vec<T>> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let out: std::sync::Mutex<Vec<Option<T>>> = std::sync::Mutex::new((0..n).map(|_| None).collect());
    let err: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                let http = d.http();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if i >= n || err.lock().expect("lock").is_some() {
                        return;
                    }
                    match f(&http, i) {
                        Ok(v) => out.lock().expect("lock")[i] = Some(v),
                        Err(e) => *err.lock().expect("lock") = Some(e),
                    }
                }
            });
        }
    });
    if let Some(e) = err.into_inner().expect("lock") {
        return Err(e);
    }
    Ok(out.into_inner().expect("lock").into_iter().flatten().collect())
}
