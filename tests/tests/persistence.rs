//! Durability: data survives a clean restart; no acknowledged snapshot is
//! lost when cairnd is killed with SIGKILL in the middle of an ingest burst;
//! SIGTERM ends the process cleanly with status 0.

use cairn_e2e::*;
use serde_json::json;
use std::collections::BTreeSet;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

#[test]
fn users_tokens_sessions_nodes_and_history_survive_a_clean_restart() {
    let mut d = Daemon::start();
    let c = d.client.clone();
    let admin = d.admin();
    let viewer_session = d.user_token(&admin, "vera", "viewer");
    let api = c.post(
        "/api/v1/tokens",
        Some(&admin),
        &json!({"name": "grafana", "role": "operator"}),
    );
    assert_eq!(api.status, 201, "{}", api.text);
    let api = api.json()["token"].as_str().unwrap().to_string();
    let (node, agent) = d.enroll(&admin, "keeper");
    let base = now() - 600;
    for i in 0..5 {
        let r = c.post(
            "/api/v1/agent/ingest",
            Some(&agent),
            &snapshot(base + i * 60, 10.0 + i as f64),
        );
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let r = c.patch(
        &format!("/api/v1/nodes/{node}"),
        Some(&admin),
        &json!({"name": "Keeper", "labels": {"room": "cellar"}, "location": "rack 1"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let history_path = format!(
        "/api/v1/nodes/{node}/history?metrics=cpu,memory,disk,net_rx&from={}&to={}",
        base - 1,
        base + 301
    );
    let history = c.get(&history_path, Some(&admin)).json();
    let users = c.get("/api/v1/users", Some(&admin)).json();
    let tokens = c.get("/api/v1/tokens", Some(&admin)).json()["total"].clone();

    assert_eq!(d.stop(), Some(0), "SIGTERM exit status");
    d.restart();
    let c = Client::new(&d.url());

    assert_eq!(
        c.get("/api/v1/auth/me", Some(&admin)).status,
        200,
        "admin session kept"
    );
    let me = c.get("/api/v1/auth/me", Some(&viewer_session));
    assert_eq!(me.status, 200, "viewer session kept: {}", me.text);
    assert_eq!(me.json()["username"], "vera");
    assert_eq!(c.get("/api/v1/nodes", Some(&api)).status, 200, "API token kept");
    d.login("vera", "vera-password-123");
    assert_eq!(c.get("/api/v1/users", Some(&admin)).json(), users);
    assert_eq!(c.get("/api/v1/tokens", Some(&admin)).json()["total"], tokens);
    let n = c.get(&format!("/api/v1/nodes/{node}"), Some(&admin)).json();
    assert_eq!(n["name"], "Keeper");
    assert_eq!(n["labels"]["room"], "cellar");
    assert_eq!(n["location"], "rack 1");
    assert_eq!(n["latest"]["cpu"]["total_percent"], 14.0, "{n}");
    let after = c.get(&history_path, Some(&admin)).json();
    assert_eq!(after["timestamps"], history["timestamps"]);
    assert_eq!(after["series"], history["series"]);
    // The agent token still works, and idempotency spans the restart.
    let r = c.post("/api/v1/agent/ingest", Some(&agent), &snapshot(base, 10.0));
    assert_eq!(r.json()["duplicates"], 1, "{}", r.text);
    let r = c.post("/api/v1/agent/ingest", Some(&agent), &snapshot(base + 400, 1.0));
    assert_eq!(r.json()["accepted"], 1, "{}", r.text);
}

/// Agents ingesting distinct timestamps as fast as they can, each recording
/// the snapshots that were acknowledged with a 200.
struct Burst {
    acked: Arc<Mutex<Vec<(usize, u64)>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Vec<String>>>,
}

fn cpu_of(i: u64) -> f64 {
    (i % 1000) as f64 / 10.0
}

impl Burst {
    /// Every node posts back to back. Odd nodes send `Cairn-Commit-Within`
    /// as a live cairn-agent does: their requests wait for a later commit,
    /// which the even nodes' requests bring forward.
    fn start(url: &str, agent_tokens: &[String], base: u64) -> Burst {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = agent_tokens
            .iter()
            .enumerate()
            .map(|(n, token)| {
                let (acked, stop) = (acked.clone(), stop.clone());
                let (url, token) = (url.to_string(), token.clone());
                std::thread::spawn(move || {
                    let c = Client::new(&url);
                    let auth = format!("Bearer {token}");
                    let mut headers = vec![("Authorization", auth.as_str())];
                    if n % 2 == 1 {
                        headers.push(("Cairn-Commit-Within", "5"));
                    }
                    let mut unexpected = Vec::new();
                    for i in 0.. {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let ts = base + i;
                        let body = snapshot(ts, cpu_of(i)).to_string();
                        match c.try_send("POST", "/api/v1/agent/ingest", &headers, Some(body.as_bytes())) {
                            Ok(r) if r.status == 200 => {
                                if r.json()["accepted"] != 1 {
                                    unexpected.push(format!("node {n} ts {ts}: {}", r.text));
                                }
                                acked.lock().unwrap().push((n, ts));
                            }
                            // Refused while shutting down: not acknowledged, fine.
                            Ok(r) if r.status == 503 => {}
                            Ok(r) => unexpected.push(format!("node {n} ts {ts}: {} {}", r.status, r.text)),
                            // The daemon is gone.
                            Err(_) => break,
                        }
                    }
                    unexpected
                })
            })
            .collect();
        Burst { acked, stop, threads }
    }

    fn wait_for_acks(&self, n: usize) {
        poll(
            &format!("{n} acknowledged snapshots"),
            Duration::from_secs(120),
            || (self.acked.lock().unwrap().len() >= n).then_some(()),
        );
    }

    /// Stops the senders (they also stop on their own once the daemon is
    /// gone) and returns every acknowledged (node index, timestamp).
    fn finish(self) -> Vec<(usize, u64)> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            let unexpected = t.join().expect("an ingest thread panicked");
            assert!(unexpected.is_empty(), "unexpected answers: {unexpected:?}");
        }
        let acked = self.acked.lock().unwrap().clone();
        acked
    }
}

/// Every acknowledged snapshot is in the node's raw history with its value.
fn assert_all_stored(d: &Daemon, admin: &str, nodes: &[String], acked: &[(usize, u64)], base: u64) {
    let c = Client::new(&d.url());
    for (n, id) in nodes.iter().enumerate() {
        let want: BTreeSet<u64> = acked
            .iter()
            .filter(|(node, _)| *node == n)
            .map(|(_, ts)| *ts)
            .collect();
        let Some(&last) = want.iter().next_back() else {
            continue;
        };
        // Windows of 900 s stay at one-second resolution from raw samples.
        let mut stored = BTreeSet::new();
        let mut from = base;
        while from <= last {
            let to = from + 900;
            let h = c
                .get(
                    &format!("/api/v1/nodes/{id}/history?metrics=cpu&from={from}&to={to}"),
                    Some(admin),
                )
                .json();
            assert_eq!(h["resolution_s"], 1, "{h}");
            let stamps = h["timestamps"].as_array().expect("timestamps");
            let cpu = h["series"]["cpu"]["avg"].as_array().expect("cpu series");
            for ts in from..to {
                let text = json!(rfc3339(ts));
                if let Some(k) = stamps.iter().position(|s| *s == text) {
                    if let Some(v) = cpu[k].as_f64() {
                        assert_eq!(v, cpu_of(ts - base), "node {n} at {ts}");
                        stored.insert(ts);
                    }
                }
            }
            from = to;
        }
        let lost: Vec<&u64> = want.difference(&stored).collect();
        assert!(
            lost.is_empty(),
            "node {n}: {} of {} acknowledged snapshots lost, e.g. {:?}",
            lost.len(),
            want.len(),
            &lost[..lost.len().min(10)]
        );
    }
}

fn enroll_nodes(d: &Daemon, admin: &str, n: usize) -> (Vec<String>, Vec<String>) {
    (0..n).map(|i| d.enroll(admin, &format!("burst-{i}"))).unzip()
}

#[test]
fn kill_9_mid_burst_loses_no_acknowledged_snapshot() {
    let mut d = Daemon::start();
    let admin = d.admin();
    let (nodes, tokens) = enroll_nodes(&d, &admin, 4);
    let base = now() - 20_000;
    let burst = Burst::start(&d.url(), &tokens, base);
    burst.wait_for_acks(300);
    d.kill9();
    let acked = burst.finish();
    assert!(acked.len() >= 300);
    assert!(
        acked.iter().any(|(n, _)| n % 2 == 1),
        "the nodes that let their commit wait were acknowledged too"
    );

    d.restart();
    let admin = d.admin();
    assert_all_stored(&d, &admin, &nodes, &acked, base);
    eprintln!("{} acknowledged snapshots all present after kill -9", acked.len());
}

#[test]
fn sigterm_during_a_burst_with_stalled_clients_exits_0_and_keeps_acknowledged_data() {
    let mut d = Daemon::start();
    let admin = d.admin();
    let (nodes, tokens) = enroll_nodes(&d, &admin, 2);
    // Clients that will never finish their requests must not delay the exit.
    let mut stalled = Vec::new();
    for partial in [
        &b"GET /api/v1/no"[..],
        b"POST /api/v1/agent/ingest HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{\"time",
    ] {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", d.port)).expect("connect");
        s.write_all(partial).expect("partial request");
        stalled.push(s);
    }
    let base = now() - 20_000;
    let burst = Burst::start(&d.url(), &tokens, base);
    burst.wait_for_acks(100);
    // stop() sends SIGTERM and panics if the process is still there after 20 s.
    assert_eq!(d.stop(), Some(0), "exit status after SIGTERM: {}", d.stderr());
    let acked = burst.finish();
    assert!(d.stderr().contains("stopped"), "{}", d.stderr());
    drop(stalled);

    d.restart();
    let admin = d.admin();
    assert_all_stored(&d, &admin, &nodes, &acked, base);
}

/// Snapshots queued for a commit, from the Prometheus exposition.
fn waiting(d: &Daemon, admin: &str) -> u64 {
    let text = Client::new(&d.url()).get("/metrics", Some(admin)).text;
    text.lines()
        .find_map(|l| l.strip_prefix("cairnd_ingest_waiting_snapshots "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no cairnd_ingest_waiting_snapshots in {text}"))
}

/// Posts one snapshot that may wait up to 20 s for its commit, on a thread.
fn post_waiting(d: &Daemon, token: &str, ts: u64) -> JoinHandle<u16> {
    let (url, auth) = (d.url(), format!("Bearer {token}"));
    std::thread::spawn(move || {
        let body = snapshot(ts, 42.0).to_string();
        let headers = [("Authorization", auth.as_str()), ("Cairn-Commit-Within", "20")];
        Client::new(&url)
            .try_send("POST", "/api/v1/agent/ingest", &headers, Some(body.as_bytes()))
            .map(|r| r.status)
            .unwrap_or(0)
    })
}

fn stored_at(d: &Daemon, admin: &str, node: &str, ts: u64) -> bool {
    let h = Client::new(&d.url())
        .get(
            &format!(
                "/api/v1/nodes/{node}/history?metrics=cpu&from={}&to={}",
                ts - 10,
                ts + 10
            ),
            Some(admin),
        )
        .json();
    let stamps = h["timestamps"].as_array().expect("timestamps").clone();
    stamps.contains(&json!(rfc3339(ts)))
}

#[test]
fn a_snapshot_allowed_to_wait_is_acknowledged_only_with_a_commit() {
    let mut d = Daemon::start();
    let admin = d.admin();
    let (nodes, tokens) = enroll_nodes(&d, &admin, 2);
    let ts = now() - 100;

    // It waits in the queue, unacknowledged and not stored.
    let waiting_post = post_waiting(&d, &tokens[0], ts);
    poll(
        "the snapshot to wait for its commit",
        Duration::from_secs(20),
        || (waiting(&d, &admin) == 1).then_some(()),
    );
    let seen = stored_at(&d, &admin, &nodes[0], ts);
    let answered = waiting_post.is_finished();
    // Still queued after both looks, so it had not been committed (nor
    // answered) before them. (Not queued: its 20 s ran out meanwhile, and
    // this look proves nothing.)
    if waiting(&d, &admin) == 1 {
        assert!(!seen, "a waiting snapshot is not in the history yet");
        assert!(!answered, "and it has no answer yet");
    }

    // A request that does not wait commits everything queued with it.
    let r = Client::new(&d.url()).post("/api/v1/agent/ingest", Some(&tokens[1]), &snapshot(ts, 7.0));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        waiting(&d, &admin),
        0,
        "the urgent commit took the waiting snapshot along"
    );
    assert_eq!(waiting_post.join().unwrap(), 200);
    assert!(stored_at(&d, &admin, &nodes[0], ts));

    // At shutdown a waiting snapshot is committed and answered, not dropped.
    let last = post_waiting(&d, &tokens[0], ts + 1);
    poll("the second snapshot to wait", Duration::from_secs(20), || {
        (waiting(&d, &admin) == 1).then_some(())
    });
    assert_eq!(d.stop(), Some(0), "{}", d.stderr());
    assert_eq!(last.join().unwrap(), 200, "answered before the daemon left");
    d.restart();
    let admin = d.admin();
    assert!(stored_at(&d, &admin, &nodes[0], ts + 1));
}
