//! Empties the spool into the server: oldest first, in batches, deleting only
//! what the server acknowledged.
//!
//! What each answer means for the queue:
//! - 200: stored; delete those entries and adopt the server's interval.
//! - 401/403: the token is not accepted; stop and keep everything (the
//!   operator must re-enroll; nothing is lost meanwhile but spool space).
//! - 400/413/422 (the server refuses the data itself): halve the batch to
//!   isolate the bad snapshot, and once a single snapshot is refused, drop it.
//!   Keeping it would block every snapshot behind it forever.
//! - anything else (connection refused, timeout, 5xx, 404, 429): stop and try
//!   again at the next interval, which is the back-off.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cairn_wire::OutgoingBatch;

use crate::client::{Client, SendError};
use crate::spool::{Entry, Spool};

/// Snapshots per request. cairnd accepts up to `cairn_wire::MAX_BATCH`; 100
/// keeps a request well under a second even on a Pi Zero.
pub const BATCH: usize = 100;
/// The server decides the interval (cairnd allows 5 s and up from its
/// config file, 1 s from CAIRN_INTERVAL_S for tests); 1 s is the floor because
/// snapshots are keyed by the second.
pub const MIN_INTERVAL_S: u32 = 1;
pub const MAX_INTERVAL_S: u32 = 3600;

/// What one flush did.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    pub sent: usize,
    pub dropped: usize,
    /// The collection interval the server asked for, clamped.
    pub interval_s: Option<u32>,
    /// The spool still holds snapshots because sending failed.
    pub failed: bool,
    /// The checks the server wants this agent to run (from the last reply).
    pub probes: Option<Vec<cairn_wire::ProbeSpec>>,
}

pub struct Shipper {
    client: Client,
    token: String,
    /// Set while the server is failing, so an outage logs one warning and one
    /// "back" line instead of a warning per interval.
    down_since_warned: bool,
    /// When a rejected token was last logged: it needs a human, so it is
    /// repeated, but hourly rather than every interval.
    auth_error_logged: Option<Instant>,
    /// How long the server may hold a live snapshot before committing it
    /// (`cairn_wire::COMMIT_WITHIN_HEADER`); 0 asks for the next commit.
    pub commit_within_s: u32,
    /// Whether the server has taken anything since start. Until it has, no
    /// snapshot may wait: a new node should turn online at once.
    delivered: bool,
}

const REPEAT_AUTH_ERROR: Duration = Duration::from_secs(3600);

impl Shipper {
    pub fn new(client: Client, token: String) -> Shipper {
        Shipper {
            client,
            token,
            down_since_warned: false,
            auth_error_logged: None,
            commit_within_s: 0,
            delivered: false,
        }
    }

    /// Sends until the spool is empty, a send fails, or `stop` is set.
    pub fn flush(&mut self, spool: &mut Spool, stop: &AtomicBool) -> Outcome {
        let mut out = Outcome::default();
        let mut batch = BATCH;
        // Live (everything fits one request): the server may gather it with
        // other agents' snapshots into a later commit, which saves its disk
        // most of a commit's pages; the snapshot stays in the spool until the
        // reply either way. A backfill goes as fast as the server commits.
        let within_s = if self.delivered && spool.len() <= BATCH {
            self.commit_within_s
        } else {
            0
        };
        while !spool.is_empty() && !stop.load(Ordering::Relaxed) {
            let items = spool.peek(batch);
            if items.is_empty() {
                break;
            }
            let n = items.len();
            let (entries, snapshots): (Vec<Entry>, Vec<_>) = items.into_iter().unzip();
            // cairnd shows the newest snapshot of a request in full and keeps
            // only the charted figures of the others (docs/API.md): a
            // backfill sends them as just that, half their size for the link
            // and the server's parser.
            match self
                .client
                .ingest(&self.token, &OutgoingBatch::of(&snapshots), within_s)
            {
                Ok(reply) => {
                    self.auth_error_logged = None;
                    self.delivered = true;
                    if let Err(e) = spool.remove(&entries) {
                        log::warn!("spool: {e}");
                    }
                    out.sent += n;
                    if reply.config.interval_s > 0 {
                        out.interval_s = Some(reply.config.interval_s.clamp(MIN_INTERVAL_S, MAX_INTERVAL_S));
                    }
                    out.probes = Some(reply.config.probes);
                    batch = (batch * 2).min(BATCH);
                }
                Err(SendError::Status { code, message }) if code == 401 || code == 403 => {
                    let now = Instant::now();
                    if self
                        .auth_error_logged
                        .is_some_and(|t| now.duration_since(t) < REPEAT_AUTH_ERROR)
                    {
                        log::debug!("token still rejected (HTTP {code})");
                        out.failed = true;
                        return out;
                    }
                    self.auth_error_logged = Some(now);
                    log::error!(
                        "server {} rejected this agent's token (HTTP {code}: {message}); \
                         re-enroll with `cairn-agent enroll --server URL --code CODE`. \
                         Snapshots keep being spooled ({} pending).",
                        self.client.server(),
                        spool.len()
                    );
                    out.failed = true;
                    return out;
                }
                Err(SendError::Status { code, message }) if code == 400 || code == 413 || code == 422 => {
                    if n > 1 {
                        log::debug!("server refused a batch of {n} (HTTP {code}); splitting it");
                        batch = n / 2;
                        continue;
                    }
                    log::warn!(
                        "server refused snapshot {} (HTTP {code}: {message}); dropping it so it \
                         does not block the queue",
                        entries.first().map(|e| e.name.as_str()).unwrap_or("?")
                    );
                    if let Err(e) = spool.remove(&entries) {
                        log::warn!("spool: {e}");
                    }
                    out.dropped += 1;
                }
                Err(e) => {
                    if !self.down_since_warned {
                        log::warn!(
                            "sending to {} failed: {e}; keeping {} snapshot(s) in the spool and \
                             retrying every interval",
                            self.client.server(),
                            spool.len()
                        );
                        self.down_since_warned = true;
                    } else {
                        log::debug!("sending failed again: {e}");
                    }
                    out.failed = true;
                    return out;
                }
            }
        }
        if self.down_since_warned && out.sent > 0 {
            log::info!(
                "server {} reachable again; {} snapshot(s) delivered",
                self.client.server(),
                out.sent
            );
            self.down_since_warned = false;
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use cairn_wire::Snapshot;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};

    /// One request as the fake server saw it.
    #[derive(Clone, Debug)]
    pub struct Seen {
        pub path: String,
        pub authorization: Option<String>,
        pub commit_within: Option<String>,
        pub body: serde_json::Value,
    }

    /// A tiny HTTP/1.1 server on 127.0.0.1 answering from a script: each
    /// request gets the next (status, body); the last one repeats.
    pub struct FakeServer {
        pub url: String,
        pub seen: Arc<Mutex<Vec<Seen>>>,
    }

    impl FakeServer {
        pub fn start(script: Vec<(u16, String)>) -> FakeServer {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let seen = Arc::new(Mutex::new(Vec::new()));
            let log = seen.clone();
            std::thread::spawn(move || {
                for (i, stream) in listener.incoming().enumerate() {
                    let Ok(stream) = stream else { return };
                    let (status, body) = script[i.min(script.len() - 1)].clone();
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    let path = line.split(' ').nth(1).unwrap_or("").to_string();
                    let mut len = 0usize;
                    let mut auth = None;
                    let mut within = None;
                    loop {
                        let mut h = String::new();
                        reader.read_line(&mut h).unwrap();
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        let (k, v) = h.split_once(':').unwrap();
                        match k.to_ascii_lowercase().as_str() {
                            "content-length" => len = v.trim().parse().unwrap(),
                            "authorization" => auth = Some(v.trim().to_string()),
                            "cairn-commit-within" => within = Some(v.trim().to_string()),
                            _ => {}
                        }
                    }
                    let mut buf = vec![0; len];
                    reader.read_exact(&mut buf).unwrap();
                    log.lock().unwrap().push(Seen {
                        path,
                        authorization: auth,
                        commit_within: within,
                        body: serde_json::from_slice(&buf).unwrap_or(serde_json::Value::Null),
                    });
                    let mut s = stream;
                    let _ = write!(
                        s,
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
            });
            FakeServer { url, seen }
        }

        pub fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }
    }

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn spool_with(tag: &str, n: u32) -> (Dir, Spool) {
        let d = Dir(std::env::temp_dir().join(format!("cairn-ship-{tag}-{}", std::process::id())));
        let _ = std::fs::remove_dir_all(&d.0);
        let mut s = Spool::open(&d.0, 1 << 24).unwrap();
        for i in 0..n {
            s.append(&Snapshot {
                timestamp: format!("t{i:04}"),
                ..Snapshot::default()
            })
            .unwrap();
        }
        (d, s)
    }

    fn ok(interval: u32) -> (u16, String) {
        (
            200,
            format!(r#"{{"accepted":1,"duplicates":0,"config":{{"interval_s":{interval}}}}}"#),
        )
    }

    fn timestamps(body: &serde_json::Value) -> Vec<String> {
        body["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["timestamp"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn sends_oldest_first_in_batches_with_the_token_and_adopts_the_interval() {
        let server = FakeServer::start(vec![ok(2)]);
        let (_d, mut spool) = spool_with("batches", 250);
        let mut ship = Shipper::new(Client::new(&server.url, None).unwrap(), "tok".into());
        let out = ship.flush(&mut spool, &AtomicBool::new(false));
        assert_eq!(out.sent, 250);
        assert_eq!(out.interval_s, Some(2), "the server's interval is adopted");
        assert!(spool.is_empty());
        let seen = server.seen();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0].path, "/api/v1/agent/ingest");
        assert_eq!(seen[0].authorization.as_deref(), Some("Bearer tok"));
        let sizes: Vec<usize> = seen.iter().map(|s| timestamps(&s.body).len()).collect();
        assert_eq!(sizes, vec![100, 100, 50]);
        assert_eq!(timestamps(&seen[0].body)[0], "t0000");
        assert_eq!(timestamps(&seen[2].body)[49], "t0249");
    }

    #[test]
    fn a_batch_sends_its_newest_snapshot_whole_and_the_others_charted_only() {
        let server = FakeServer::start(vec![ok(30)]);
        let d = Dir(std::env::temp_dir().join(format!("cairn-ship-procs-{}", std::process::id())));
        let _ = std::fs::remove_dir_all(&d.0);
        let mut spool = Spool::open(&d.0, 1 << 24).unwrap();
        let with_processes = |t: &str| Snapshot {
            timestamp: t.into(),
            processes: vec![cairn_wire::Process {
                pid: 1,
                name: "init".into(),
                cpu_percent: 0.5,
                memory_bytes: 4096,
            }],
            ..Snapshot::default()
        };
        // Appended out of time order, as after a clock step: the newest is
        // the second.
        for t in [
            "2026-12-07T10:00:00Z",
            "2026-12-07T10:02:00Z",
            "2026-12-07T10:01:00Z",
        ] {
            spool.append(&with_processes(t)).unwrap();
        }
        let mut ship = Shipper::new(Client::new(&server.url, None).unwrap(), "tok".into());
        assert_eq!(ship.flush(&mut spool, &AtomicBool::new(false)).sent, 3);
        let has_list = |body: &serde_json::Value| -> Vec<bool> {
            body["snapshots"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["processes"][0]["name"] == "init")
                .collect()
        };
        assert_eq!(has_list(&server.seen()[0].body), vec![false, true, false]);
        // The older ones go as what the server charts of them, no more.
        let older = &server.seen()[0].body["snapshots"][0];
        assert!(
            older.get("system").is_none() && older.get("hostname").is_none(),
            "{older}"
        );
        assert_eq!(older["timestamp"], "2026-12-07T10:00:00Z");

        // A live snapshot, alone in its request, keeps its list.
        spool.append(&with_processes("2026-12-07T10:03:00Z")).unwrap();
        assert_eq!(ship.flush(&mut spool, &AtomicBool::new(false)).sent, 1);
        assert_eq!(has_list(&server.seen()[1].body), vec![true]);
    }

    #[test]
    fn only_a_live_flush_after_the_first_delivery_lets_the_server_delay_its_commit() {
        let server = FakeServer::start(vec![ok(30)]);
        let (_d0, mut first) = spool_with("within-first", 1);
        let (_d, mut spool) = spool_with("within", 1);
        let mut ship = Shipper::new(Client::new(&server.url, None).unwrap(), "tok".into());
        ship.commit_within_s = 15;
        assert_eq!(ship.flush(&mut first, &AtomicBool::new(false)).sent, 1);
        assert_eq!(ship.flush(&mut spool, &AtomicBool::new(false)).sent, 1);
        let (_d2, mut backlog) = spool_with("within-backlog", 150);
        assert_eq!(ship.flush(&mut backlog, &AtomicBool::new(false)).sent, 150);
        ship.commit_within_s = 0;
        let (_d3, mut off) = spool_with("within-off", 1);
        assert_eq!(ship.flush(&mut off, &AtomicBool::new(false)).sent, 1);
        let within: Vec<Option<String>> = server.seen().into_iter().map(|s| s.commit_within).collect();
        assert_eq!(within, vec![None, Some("15".into()), None, None, None]);
    }

    #[test]
    fn a_rejected_token_keeps_everything() {
        let server = FakeServer::start(vec![(
            401,
            r#"{"error":{"code":"unauthorized","message":"bad token"}}"#.into(),
        )]);
        let (_d, mut spool) = spool_with("401", 3);
        let mut ship = Shipper::new(Client::new(&server.url, None).unwrap(), "tok".into());
        let out = ship.flush(&mut spool, &AtomicBool::new(false));
        assert!(out.failed);
        assert_eq!(out.sent, 0);
        assert_eq!(spool.len(), 3);
    }

    #[test]
    fn a_refused_snapshot_is_isolated_and_dropped_and_the_rest_delivered() {
        // 4 pending; the server refuses any batch containing t0002.
        let bad = (
            400,
            r#"{"error":{"code":"invalid","message":"bad cpu"}}"#.to_string(),
        );
        let server = FakeServer::start(vec![
            bad.clone(), // [0,1,2,3] → split
            ok(30),      // [0,1]
            bad.clone(), // [2,3] → split
            bad,         // [2] → dropped
            ok(30),      // [3]
        ]);
        let (_d, mut spool) = spool_with("400", 4);
        let mut ship = Shipper::new(Client::new(&server.url, None).unwrap(), "tok".into());
        let out = ship.flush(&mut spool, &AtomicBool::new(false));
        assert_eq!((out.sent, out.dropped, out.failed), (3, 1, false));
        assert!(spool.is_empty());
        let batches: Vec<Vec<String>> = server.seen().iter().map(|s| timestamps(&s.body)).collect();
        assert_eq!(batches[3], vec!["t0002"]);
        assert_eq!(batches[4], vec!["t0003"]);
    }

    #[test]
    fn server_errors_and_unreachable_servers_keep_the_spool() {
        let server = FakeServer::start(vec![(503, "busy".into())]);
        let (_d, mut spool) = spool_with("503", 2);
        let mut ship = Shipper::new(Client::new(&server.url, None).unwrap(), "tok".into());
        let out = ship.flush(&mut spool, &AtomicBool::new(false));
        assert!(out.failed);
        assert_eq!(spool.len(), 2);

        // Nothing listens on this port (bound, then closed).
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut ship = Shipper::new(
            Client::new(&format!("http://127.0.0.1:{port}"), None).unwrap(),
            "t".into(),
        );
        let out = ship.flush(&mut spool, &AtomicBool::new(false));
        assert!(out.failed);
        assert_eq!(spool.len(), 2);
    }

    #[test]
    fn a_stop_request_sends_nothing_more() {
        let server = FakeServer::start(vec![ok(30)]);
        let (_d, mut spool) = spool_with("stop", 2);
        let mut ship = Shipper::new(Client::new(&server.url, None).unwrap(), "tok".into());
        let out = ship.flush(&mut spool, &AtomicBool::new(true));
        assert_eq!(out, Outcome::default());
        assert_eq!(spool.len(), 2);
        assert!(server.seen().is_empty());
    }
}
