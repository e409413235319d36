//! Fake notification endpoints for end-to-end tests: `FakeReceiver`, an
//! HTTP server that records every request and answers as told (it doubles
//! as the Telegram Bot API), and `SmtpServer`, a real SMTP server (Python's
//! aiosmtpd) that writes what it receives into a Maildir.

use crate::{free_port, poll};
use serde_json::Value;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// One request as the receiver saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// Path and query, e.g. "/bot123:AA.../sendMessage".
    pub path: String,
    /// Names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("request body is not JSON ({e}): {}", self.text()))
    }
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<Recorded>>,
    statuses: Mutex<VecDeque<u16>>,
    hang: AtomicBool,
    stop: AtomicBool,
}

/// A test's lock must not poison the fixture for the assertions after it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An HTTP server on 127.0.0.1 that records every request. Each answer
/// takes the next status from the queue (200 when empty) with the body
/// `{"ok":true}` (`{"ok":false,...}` for non-2xx; a 3xx redirects to `/moved`),
/// so it also stands in for
/// Telegram; in hang mode it reads the request, records it and never
/// answers, holding the socket until the receiver is dropped. One thread
/// per connection; every answer says `Connection: close`.
pub struct FakeReceiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl FakeReceiver {
    pub fn start() -> FakeReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the fake receiver");
        let addr = listener.local_addr().expect("fake receiver address");
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                std::thread::spawn(move || serve(conn, &s));
            }
        });
        FakeReceiver {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// "http://127.0.0.1:PORT", no trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared.requests).clone()
    }

    /// Waits until at least `n` requests arrived; panics after `limit`.
    pub fn wait_for(&self, n: usize, limit: Duration) -> Vec<Recorded> {
        poll(
            &format!("{n} request(s) at the fake receiver {}", self.url()),
            limit,
            || {
                let r = self.requests();
                (r.len() >= n).then_some(r)
            },
        )
    }

    /// Statuses for the next answers, in order (then 200 again).
    pub fn push_statuses(&self, statuses: &[u16]) {
        lock(&self.shared.statuses).extend(statuses.iter().copied());
    }

    /// Hang mode: requests are recorded but never answered.
    pub fn set_hang(&self, on: bool) {
        self.shared.hang.store(on, Ordering::SeqCst);
    }
}

impl Drop for FakeReceiver {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees `stop`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn serve(mut conn: TcpStream, shared: &Shared) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let Some(req) = read_request(&mut conn) else {
        return;
    };
    lock(&shared.requests).push(req);
    if shared.hang.load(Ordering::SeqCst) {
        while !shared.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        return;
    }
    let status = lock(&shared.statuses).pop_front().unwrap_or(200);
    let body = if (200..300).contains(&status) {
        r#"{"ok":true}"#.to_string()
    } else {
        format!(r#"{{"ok":false,"error_code":{status},"description":"fake receiver answered {status}"}}"#)
    };
    // A redirect points at /moved on the same server.
    let location = if (300..400).contains(&status) {
        "Location: /moved\r\n"
    } else {
        ""
    };
    let reply = format!(
        "HTTP/1.1 {status} {}\r\n{location}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        reason(status),
        body.len()
    );
    let _ = conn.write_all(reply.as_bytes());
    let _ = conn.flush();
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Reads one request: head, then a Content-Length or chunked body.
fn read_request(conn: &mut TcpStream) -> Option<Recorded> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = conn.read(&mut chunk).ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut start = lines.next()?.split(' ');
    let method = start.next()?.to_string();
    let path = start.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let find = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let mut rest = buf[head_end + 4..].to_vec();
    let mut more = |rest: &mut Vec<u8>| -> Option<()> {
        let n = conn.read(&mut chunk).ok().filter(|n| *n > 0)?;
        rest.extend_from_slice(&chunk[..n]);
        Some(())
    };
    let body = if find("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        loop {
            while !rest.windows(2).any(|w| w == b"\r\n") {
                more(&mut rest)?;
            }
            let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
            let size_text = String::from_utf8_lossy(&rest[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            while rest.len() < line_end + 2 + size + 2 {
                more(&mut rest)?;
            }
            body.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
            rest.drain(..line_end + 2 + size + 2);
            if size == 0 {
                break body;
            }
        }
    } else {
        let len = find("content-length")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        while rest.len() < len {
            more(&mut rest)?;
        }
        rest.truncate(len);
        rest
    };
    Some(Recorded {
        method,
        path,
        headers,
        body,
    })
}

/// One received email, as aiosmtpd stored it.
#[derive(Clone, Debug)]
pub struct Mail {
    /// The message as stored (RFC 5322, CRLF or LF line ends).
    pub raw: String,
    /// Unfolded headers, RFC 2047 words decoded; names as written.
    pub headers: Vec<(String, String)>,
    /// The body with its Content-Transfer-Encoding undone.
    pub body: String,
}

impl Mail {
    fn parse(raw: String) -> Mail {
        let norm = raw.replace("\r\n", "\n");
        let (head, body) = norm.split_once("\n\n").unwrap_or((&norm, ""));
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.lines() {
            if line.starts_with([' ', '\t']) {
                if let Some(last) = headers.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(line.trim());
                }
            } else if let Some((n, v)) = line.split_once(':') {
                headers.push((n.trim().to_string(), v.trim().to_string()));
            }
        }
        for h in &mut headers {
            h.1 = decode_words(&h.1);
        }
        let cte = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-transfer-encoding"))
            .map(|(_, v)| v.to_ascii_lowercase())
            .unwrap_or_default();
        let body = match cte.as_str() {
            "base64" => String::from_utf8_lossy(&base64_decode(body)).into_owned(),
            "quoted-printable" => String::from_utf8_lossy(&qp_decode(body)).into_owned(),
            _ => body.to_string(),
        };
        Mail {
            raw,
            headers,
            body: body.replace("\r\n", "\n"),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let bits: Vec<u8> = s.bytes().filter_map(val).collect();
    let mut out = Vec::new();
    for q in bits.chunks(4) {
        let n = q
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, v)| n | (u32::from(*v) << (18 - 6 * i)));
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..q.len().saturating_sub(1)]);
    }
    out
}

fn qp_decode(s: &str) -> Vec<u8> {
    let s = s.replace("=\r\n", "").replace("=\n", "");
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' && i + 2 < b.len() {
            if let (Some(hi), Some(lo)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// RFC 2047 encoded words (`=?utf-8?b?...?=`, `=?utf-8?q?...?=`).
fn decode_words(v: &str) -> String {
    let mut out = String::new();
    let mut rest = v;
    let mut after_word = false;
    while let Some(start) = rest.find("=?") {
        let after = &rest[start + 2..];
        let parts: Vec<&str> = after.splitn(3, '?').collect();
        let (Some(enc), Some(tail)) = (parts.get(1), parts.get(2)) else {
            break;
        };
        let Some(end) = tail.find("?=") else { break };
        let text = &tail[..end];
        let bytes = match enc.to_ascii_lowercase().as_str() {
            "b" => base64_decode(text),
            "q" => qp_decode(&text.replace('_', " ")),
            _ => break,
        };
        let prefix = &rest[..start];
        // Whitespace between two encoded words is not part of the text.
        if !(after_word && prefix.trim().is_empty()) {
            out.push_str(prefix);
        }
        out.push_str(&String::from_utf8_lossy(&bytes));
        after_word = true;
        rest = &tail[end + 2..];
    }
    out.push_str(rest);
    out
}

/// A real SMTP server on 127.0.0.1 (aiosmtpd's Mailbox handler, no TLS, no
/// auth) storing mail as a Maildir under `dir`. Killed by PID on drop.
/// Where aiosmtpd is importable from: the system's Python if it has it,
/// else `target/pydeps`, filled once with `pip install --target` (PyPI is
/// reachable wherever the crates were fetched), so `cargo test` works on
/// a fresh machine without touching the system's Python.
fn aiosmtpd_path() -> PathBuf {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = lock(&INSTALL);
    let deps = crate::workspace().join("target/pydeps");
    let importable = || {
        Command::new("python3")
            .env("PYTHONPATH", &deps)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !importable() {
        let out = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--target",
            ])
            .arg(&deps)
            .arg("aiosmtpd")
            .output()
            .expect("running python3 -m pip");
        assert!(
            out.status.success() && importable(),
            "installing aiosmtpd into {} failed (the SMTP tests need python3 with pip): {}",
            deps.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    deps
}

pub struct SmtpServer {
    child: Child,
    port: u16,
    maildir: PathBuf,
    log: PathBuf,
}

impl SmtpServer {
    pub fn start(dir: &Path) -> SmtpServer {
        let pythonpath = aiosmtpd_path();
        let maildir = dir.join("maildir");
        // Python's Maildir creates tmp/new/cur only for a directory that does
        // not exist yet; made here, they are there whatever `dir` held.
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(maildir.join(sub)).expect("creating the Maildir");
        }
        let log = dir.join("aiosmtpd.log");
        let port = free_port();
        let out = std::fs::File::create(&log).expect("creating the aiosmtpd log");
        let err = out.try_clone().expect("cloning the aiosmtpd log handle");
        let mut child = Command::new("python3")
            .env("PYTHONPATH", &pythonpath)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("starting python3 -m aiosmtpd");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        poll(
            &format!("aiosmtpd listening on {addr}"),
            Duration::from_secs(20),
            || {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "aiosmtpd exited ({status}) before listening: {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()
            },
        );
        SmtpServer {
            child,
            port,
            maildir,
            log,
        }
    }

    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's own output, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Every message delivered so far (Maildir new/ and cur/), oldest first.
    pub fn messages(&self) -> Vec<Mail> {
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = ["new", "cur"]
            .iter()
            .filter_map(|sub| std::fs::read_dir(self.maildir.join(sub)).ok())
            .flatten()
            .filter_map(Result::ok)
            .map(|e| {
                let t = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                (t, e.path())
            })
            .collect();
        files.sort();
        files
            .into_iter()
            .filter_map(|(_, p)| std::fs::read(p).ok())
            .map(|b| Mail::parse(String::from_utf8_lossy(&b).into_owned()))
            .collect()
    }

    /// Waits until at least `n` messages arrived; panics after `limit`.
    pub fn wait_for(&self, n: usize, limit: Duration) -> Vec<Mail> {
        poll(
            &format!("{n} message(s) at aiosmtpd on port {}", self.port),
            limit,
            || {
                let m = self.messages();
                (m.len() >= n).then_some(m)
            },
        )
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        // Child::kill signals exactly this PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_request(port: u16, req: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    #[test]
    fn receiver_records_requests_and_answers_from_the_status_queue() {
        let r = FakeReceiver::start();
        r.push_statuses(&[500]);
        let first = raw_request(
            r.port(),
            "POST /bot1:x/sendMessage?a=1 HTTP/1.1\r\nHost: h\r\nX-Test: One\r\nContent-Length: 2\r\n\r\n{}",
        );
        assert!(first.starts_with("HTTP/1.1 500 "), "{first}");
        let second = raw_request(
            r.port(),
            "PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        );
        assert!(
            second.starts_with("HTTP/1.1 200 OK") && second.ends_with(r#"{"ok":true}"#),
            "{second}"
        );
        let got = r.wait_for(2, Duration::from_secs(5));
        assert_eq!(
            (got[0].method.as_str(), got[0].path.as_str()),
            ("POST", "/bot1:x/sendMessage?a=1")
        );
        assert_eq!(got[0].header("X-TEST"), Some("One"));
        assert_eq!(got[0].json(), serde_json::json!({}));
        assert_eq!((got[1].method.as_str(), got[1].text().as_str()), ("PUT", "abcde"));
    }

    #[test]
    fn a_hanging_receiver_records_but_never_answers() {
        let r = FakeReceiver::start();
        r.set_hang(true);
        let mut s = TcpStream::connect(("127.0.0.1", r.port())).unwrap();
        s.write_all(b"GET /h HTTP/1.1\r\n\r\n").unwrap();
        r.wait_for(1, Duration::from_secs(5));
        s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let mut buf = [0u8; 16];
        assert!(s.read(&mut buf).is_err(), "a hanging receiver answered");
    }

    #[test]
    fn mail_bodies_and_subjects_are_decoded() {
        let m = Mail::parse(
            "Subject: =?utf-8?b?W0NSSVRJQ0FMXSDiiaU=?=\r\n =?utf-8?q?_x?=\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncpu =E2=89=A5 9=\r\n5\r\n"
                .into(),
        );
        assert_eq!(m.header("subject"), Some("[CRITICAL] ≥ x"));
        assert_eq!(m.body, "cpu ≥ 95\n");
        assert_eq!(base64_decode("Zm9vYmE="), b"fooba");
    }
}
