//! End-to-end harness: builds and starts real `cairnd` / `cairn-agent`
//! processes on 127.0.0.1 with a temporary data directory, talks HTTP, and
//! waits by polling with a deadline (never by sleeping a guessed time).
//! Processes are ended by PID when their handle drops.

pub mod fixtures;
pub mod tls_fixture;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Path of a workspace binary, built once per test process (a no-op when
/// cargo test already built it; needed because the binaries live in other
/// packages). `CAIRN_E2E_BIN_DIR` runs the suite against other builds
/// instead (.ci/run: the static musl binaries that ship).
pub fn bin(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("CAIRN_E2E_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--bins", "-p", "cairnd", "-p", "cairn-agent"])
            .current_dir(workspace())
            .status()
            .expect("running cargo build for the e2e binaries");
        assert!(status.success(), "building cairnd and cairn-agent failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace().join("target"));
        target.join("debug")
    });
    dir.join(name)
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "cairn-e2e-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("creating temp dir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `f` until it returns Some, or panics with `what` after `limit`.
pub fn poll<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding a free port")
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", self.text))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// The `error.code` of a JSON error body (asserts the shape).
    pub fn error_code(&self) -> String {
        let v = self.json();
        let code = v["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error.code in {}", self.text));
        assert!(
            v["error"]["message"].is_string(),
            "no error.message in {}",
            self.text
        );
        code.to_string()
    }
    pub fn error_message(&self) -> String {
        self.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// A tiny HTTP client for 127.0.0.1.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(base: &str) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .max_redirects(0)
            .build()
            .into();
        Client {
            base: base.to_string(),
            agent,
        }
    }

    /// Sends a request; `headers` are extra (name, value) pairs.
    pub fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Resp {
        self.try_send(method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path} failed: {e}"))
    }

    /// Like `send`, but a transport failure (refused, reset) is an `Err`
    /// instead of a panic: for requests racing a restart or a kill.
    pub fn try_send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Resp, String> {
        let url = format!("{}{path}", self.base);
        let mut builder = ureq::http::Request::builder().method(method).uri(&url);
        for (n, v) in headers {
            builder = builder.header(*n, *v);
        }
        if body.is_some() {
            builder = builder.header("Content-Type", "application/json");
        }
        let req = builder
            .body(body.map(|b| b.to_vec()).unwrap_or_default())
            .expect("building request");
        let mut resp = self.agent.run(req).map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let text = resp
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()
            .unwrap_or_default();
        Ok(Resp {
            status,
            headers,
            text,
        })
    }

    /// `try_send` with a Bearer token and a JSON body.
    pub fn try_post(&self, path: &str, token: &str, body: &Value) -> Result<Resp, String> {
        let auth = format!("Bearer {token}");
        let bytes = serde_json::to_vec(body).expect("serialising body");
        self.try_send("POST", path, &[("Authorization", &auth)], Some(&bytes))
    }

    fn auth(token: Option<&str>) -> Option<String> {
        token.map(|t| format!("Bearer {t}"))
    }

    pub fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Resp {
        let auth = Self::auth(token);
        let mut headers = Vec::new();
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        let bytes = body.map(|b| serde_json::to_vec(b).expect("serialising body"));
        self.send(method, path, &headers, bytes.as_deref())
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> Resp {
        self.call("GET", path, token, None)
    }
    pub fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Resp {
        self.call("POST", path, token, Some(body))
    }
    pub fn patch(&self, path: &str, token: Option<&str>, body: &Value) -> Resp {
        self.call("PATCH", path, token, Some(body))
    }
    pub fn delete(&self, path: &str, token: Option<&str>) -> Resp {
        self.call("DELETE", path, token, None)
    }
}

/// How to start a daemon.
#[derive(Clone, Debug, Default)]
pub struct DaemonOpts {
    pub local_agent: bool,
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
}

/// A running cairnd on 127.0.0.1 with its own data directory.
pub struct Daemon {
    child: Option<Child>,
    pub port: u16,
    pub dir: TempDir,
    pub opts: DaemonOpts,
    pub client: Client,
    pub admin_password: String,
    /// Everything the current process printed on stdout so far.
    stdout: std::sync::Arc<std::sync::Mutex<String>>,
    stderr_path: PathBuf,
}

impl Daemon {
    pub fn start() -> Daemon {
        Daemon::start_with(DaemonOpts::default())
    }

    pub fn start_with(opts: DaemonOpts) -> Daemon {
        let dir = TempDir::new("cairnd");
        let port = free_port();
        let mut d = Daemon {
            child: None,
            port,
            stderr_path: dir.path().join("cairnd.stderr"),
            dir,
            opts,
            client: Client::new(&format!("http://127.0.0.1:{port}")),
            admin_password: String::new(),
            stdout: Default::default(),
        };
        d.spawn();
        d.admin_password = std::fs::read_to_string(d.data_dir().join("initial-admin-password"))
            .expect("first run writes initial-admin-password")
            .trim()
            .to_string();
        d
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn url(&self) -> String {
        self.client.base.clone()
    }

    fn spawn(&mut self) {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr_path)
            .expect("opening stderr log");
        let mut cmd = Command::new(bin("cairnd"));
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(&self.opts.args)
            .env("CAIRN_LOG_LEVEL", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        if !self.opts.local_agent {
            cmd.arg("--no-local-agent");
        }
        // Production spaces ingest commits 1 s apart (fewer, fuller disk
        // writes); sequential test clients would wait on that, so tests use
        // 50 ms unless they ask for the real thing.
        if !self.opts.env.iter().any(|(k, _)| k == "CAIRN_COMMIT_WINDOW_MS") {
            cmd.env("CAIRN_COMMIT_WINDOW_MS", "50");
        }
        for (k, v) in &self.opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("starting cairnd");
        // Drain stdout on a thread, keeping what the first-run banner said.
        let out = child.stdout.take().expect("piped stdout");
        let sink = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        self.stdout = sink.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(mut all) = sink.lock() {
                    all.push_str(&line);
                    all.push('\n');
                }
            }
        });
        self.child = Some(child);
        let client = self.client.clone();
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", self.port).parse().expect("address");
        let child = self.child.as_mut().expect("child just spawned");
        let stderr_path = self.stderr_path.clone();
        poll("cairnd to answer /healthz", Duration::from_secs(30), || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "cairnd exited early ({status}): {}",
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                );
            }
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                .ok()
                // While nobody listens, a connect to a port of the ephemeral
                // range can meet itself (TCP simultaneous open, when the
                // kernel picks that very port as the source): not cairnd.
                .filter(|s| s.local_addr().ok() != s.peer_addr().ok())
                // Not answering yet is not a failure: keep polling.
                .filter(|_| {
                    client
                        .try_send("GET", "/healthz", &[], None)
                        .is_ok_and(|r| r.status == 200)
                })
        });
    }

    /// What the current process has printed on stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// SIGTERM and wait for a clean exit; returns the exit status code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("cairnd did not stop within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same port and data directory.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        self.spawn();
    }

    pub fn login(&self, username: &str, password: &str) -> String {
        let r = self.client.post(
            "/api/v1/auth/login",
            None,
            &serde_json::json!({"username": username, "password": password}),
        );
        assert_eq!(r.status, 200, "login as {username}: {}", r.text);
        r.json()["token"]
            .as_str()
            .expect("token in login reply")
            .to_string()
    }

    pub fn admin(&self) -> String {
        self.login("admin", &self.admin_password.clone())
    }

    /// Creates a user with `role` and returns a session token for it.
    pub fn user_token(&self, admin: &str, username: &str, role: &str) -> String {
        let password = format!("{username}-password-123");
        let r = self.client.post(
            "/api/v1/users",
            Some(admin),
            &serde_json::json!({"username": username, "password": password, "role": role}),
        );
        assert_eq!(r.status, 201, "creating {username}: {}", r.text);
        self.login(username, &password)
    }

    /// A fresh one-time enrollment code.
    pub fn enrollment_code(&self, admin: &str) -> String {
        let code = self
            .client
            .post("/api/v1/enrollment-codes", Some(admin), &serde_json::json!({}));
        assert_eq!(code.status, 201, "{}", code.text);
        code.json()["code"].as_str().expect("code").to_string()
    }

    /// Enrolls a node through the agent API; returns (node_id, agent token).
    pub fn enroll(&self, admin: &str, hostname: &str) -> (String, String) {
        let code = self.enrollment_code(admin);
        let r = self.client.post(
            "/api/v1/agent/enroll",
            None,
            &serde_json::json!({"code": code, "hostname": hostname, "os": "Linux", "arch": "x86_64", "agent_version": "test"}),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        let v = r.json();
        (
            v["node_id"].as_str().expect("node_id").to_string(),
            v["token"].as_str().expect("token").to_string(),
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// RFC 3339 for a Unix time (UTC), for building snapshots.
pub fn rfc3339(ts: u64) -> String {
    // Civil-from-days (Howard Hinnant's algorithm), enough for test data.
    let days = (ts / 86400) as i64;
    let secs = ts % 86400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A plausible snapshot at `ts` with the given cpu value.
pub fn snapshot(ts: u64, cpu: f64) -> Value {
    serde_json::json!({
        "timestamp": rfc3339(ts),
        "hostname": "test-host",
        "system": {"os": "Debian GNU/Linux 12", "kernel": "6.1.0", "arch": "x86_64", "model": "test", "agent_version": "test"},
        "cpu": {"total_percent": cpu, "per_core": [cpu, cpu], "count": 2},
        "memory": {"total_bytes": 1000, "used_bytes": 500, "available_bytes": 500, "used_percent": 50.0,
                    "swap_total_bytes": 100, "swap_used_bytes": 10, "swap_percent": 10.0},
        "load": {"load1": 0.5, "load5": 0.4, "load15": 0.3},
        "uptime_seconds": 1000,
        "disks": [{"mount": "/", "device": "/dev/sda1", "fstype": "ext4", "total_bytes": 1000, "used_bytes": 420,
                   "free_bytes": 580, "used_percent": 42.0, "inodes_total": 100, "inodes_used": 10}],
        "disk_io": [{"device": "sda", "read_bytes_per_s": 100.0, "write_bytes_per_s": 200.0, "reads_per_s": 1.0, "writes_per_s": 2.0}],
        "net": [{"interface": "eth0", "rx_bytes_per_s": 1000.0, "tx_bytes_per_s": 500.0, "rx_bytes_total": 1, "tx_bytes_total": 1, "rx_errors": 0, "tx_errors": 0}],
        "temperatures": [{"sensor": "cpu_thermal", "celsius": 48.5}]
    })
}

/// A request as raw bytes, for what no client library sends (invalid UTF-8,
/// lying lengths, chunked bodies). Adds Host, `Connection: close` and a
/// Content-Length matching `body` unless `headers` already name one of them.
pub fn raw_request(method: &str, path: &[u8], headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let mut out = Vec::new();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path);
    out.extend_from_slice(b" HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    if !has("connection") {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    if !has("content-length") && !has("transfer-encoding") {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    for (n, v) in headers {
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// One exchange on a new connection to 127.0.0.1:`port`: writes `request`
/// as is, half-closes if asked, and reads one response. A failed write (the
/// server answered early and closed) still reads what the server sent.
pub fn raw_exchange(port: u16, request: &[u8], half_close: bool) -> std::io::Result<Resp> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let written = s.write_all(request);
    if half_close {
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    match read_response(&mut s) {
        Ok(r) => Ok(r),
        Err(e) => Err(written.err().unwrap_or(e)),
    }
}

/// Reads one HTTP/1.x response: the head, then the Content-Length body (or
/// everything up to EOF without one). Reads byte-wise after the head so a
/// following response on a keep-alive connection is left in the stream.
pub fn read_response(s: &mut impl Read) -> std::io::Result<Resp> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("connection closed after {} bytes of response head", head.len()),
            ));
        }
        head.push(byte[0]);
        if head.len() > 64 * 1024 {
            return Err(std::io::Error::other("response head over 64 KiB"));
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let length = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let mut body = Vec::new();
    match length {
        Some(n) => {
            body.resize(n, 0);
            s.read_exact(&mut body)?;
        }
        None => {
            s.read_to_end(&mut body)?;
        }
    }
    Ok(Resp {
        status,
        headers,
        text: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Reads a whole stream (for raw-socket tests).
pub fn read_all(mut r: impl Read) -> String {
    let mut s = Vec::new();
    let _ = r.read_to_end(&mut s);
    String::from_utf8_lossy(&s).into_owned()
}

/// A cairn-agent enrolled against a daemon (state and config in a temporary
/// directory, 1 s collection interval until the server says otherwise).
pub struct EnrolledAgent {
    pub dir: TempDir,
    pub node: String,
}

impl EnrolledAgent {
    pub fn enroll(d: &Daemon, admin: &str) -> EnrolledAgent {
        let before = d.client.get("/api/v1/nodes", Some(admin)).json()["total"]
            .as_u64()
            .unwrap_or(0);
        let agent = EnrolledAgent {
            dir: TempDir::new("agent"),
            node: String::new(),
        };
        let code = d.enrollment_code(admin);
        let out = agent
            .command(&["enroll", "--server", &d.url(), "--code", &code])
            .output()
            .expect("running cairn-agent enroll");
        assert!(
            out.status.success(),
            "enroll: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let node = poll("the enrolled node", Duration::from_secs(10), || {
            let v = d.client.get("/api/v1/nodes", Some(admin)).json();
            (v["total"].as_u64() > Some(before))
                .then(|| v["data"].as_array()?.last()?["id"].as_str().map(str::to_string))
                .flatten()
        });
        EnrolledAgent { node, ..agent }
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// `cairn-agent ARGS --config <its config>` with its state dir.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin("cairn-agent"));
        c.args(args)
            .arg("--config")
            .arg(self.dir.path().join("agent.toml"))
            .env("CAIRN_STATE_DIR", self.state())
            .env("CAIRN_AGENT_INTERVAL_S", "1")
            .stdin(Stdio::null());
        c
    }

    /// `cairn-agent run`, killed when the returned guard drops.
    pub fn run(&self) -> KillOnDrop {
        KillOnDrop(
            self.command(&["run"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting cairn-agent run"),
        )
    }
}

/// A child process ended (by its PID) when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A webhook channel to `url` for alerts of these kinds.
pub fn webhook_channel(d: &Daemon, admin: &str, url: &str, kinds: &[&str]) {
    let r = d.client.post(
        "/api/v1/channels",
        Some(admin),
        &serde_json::json!({"name": "hook", "type": "webhook", "config": {"url": url},
                            "filter": {"kinds": kinds}}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
}
