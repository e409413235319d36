//! The HTTP front under misbehaving and many clients: stalled sockets, the
//! connection cap, chunked bodies, wrong methods and unknown routes, and
//! concurrent ingest through the group commit.

use cairn_e2e::*;
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn connect(d: &Daemon) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", d.port)).expect("connecting to cairnd");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    s
}

/// True if the server has neither closed nor written to `s`.
fn still_open_and_silent(s: &mut TcpStream) -> bool {
    s.set_nonblocking(true).expect("non-blocking");
    let mut b = [0u8; 1];
    let r = s.read(&mut b);
    s.set_nonblocking(false).expect("blocking");
    matches!(r, Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[test]
fn stalled_clients_do_not_hold_up_other_requests_or_ingest() {
    let d = Daemon::start();
    let admin = d.admin();
    let (node, agent) = d.enroll(&admin, "steady");
    let auth = format!("Bearer {agent}");
    let full_head = |len: usize| {
        format!(
            "POST /api/v1/agent/ingest HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\
             Content-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
        )
        .into_bytes()
    };
    let half_body = |len: usize| {
        let mut b = full_head(len);
        b.extend(std::iter::repeat_n(b' ', len / 2));
        b
    };
    // Each stalls a different stage: the request line, the headers, a small
    // body (buffered by the connection's thread), a large body (read by a
    // request thread of the front).
    let stalls: [Vec<u8>; 4] = [
        b"POST /api/v1/agent/ing".to_vec(),
        b"POST /api/v1/agent/ingest HTTP/1.1\r\nHost: x\r\nContent-Ty".to_vec(),
        half_body(1000),
        half_body(200_000),
    ];
    let mut stalled: Vec<TcpStream> = (0..20)
        .map(|i| {
            let mut s = connect(&d);
            s.write_all(&stalls[i % stalls.len()])
                .expect("writing a partial request");
            s
        })
        .collect();

    let ts = now() - 10;
    let c = Client::new(&d.url());
    let r = poll("an ingest while 20 clients stall", Duration::from_secs(8), || {
        c.try_post("/api/v1/agent/ingest", &agent, &snapshot(ts, 33.0))
            .ok()
            .filter(|r| r.status == 200)
    });
    assert_eq!(r.json()["accepted"], 1, "{}", r.text);
    let nodes = poll("a GET while 20 clients stall", Duration::from_secs(8), || {
        c.try_send(
            "GET",
            "/api/v1/nodes",
            &[("Authorization", &format!("Bearer {admin}"))],
            None,
        )
        .ok()
        .filter(|r| r.status == 200)
    });
    let n = &nodes.json()["data"][0];
    assert_eq!(n["id"], node.as_str());
    assert_eq!(n["summary"]["cpu"], 33.0, "{n}");

    // The stalled sockets are all still open and unanswered: the requests
    // above did not wait for them to time out.
    for (i, s) in stalled.iter_mut().enumerate() {
        assert!(
            still_open_and_silent(s),
            "stalled socket {i} was closed or answered before the other requests finished"
        );
    }
}

#[test]
fn connection_cap_answers_503_busy_and_recovers_when_connections_close() {
    let cfg_dir = TempDir::new("cap-config");
    let cfg = cfg_dir.path().join("cairnd.toml");
    std::fs::write(&cfg, "max_connections = 8\n").expect("writing config");
    let d = Daemon::start_with(DaemonOpts {
        args: vec!["--config".into(), cfg.display().to_string()],
        ..DaemonOpts::default()
    });
    // Each held socket has had one exchange and now idles in keep-alive,
    // occupying a connection slot; the next one past the cap gets a 503.
    let mut held: Vec<TcpStream> = Vec::new();
    let busy = loop {
        assert!(
            held.len() <= 16,
            "no 503 with {} idle connections open and max_connections = 8",
            held.len()
        );
        let mut s = connect(&d);
        let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        match read_response(&mut s) {
            Ok(r) if r.status == 200 => held.push(s),
            Ok(r) => break r,
            // Turned away before our request arrived: the refusal is what
            // a client that has not written yet reads.
            Err(_) => break read_response(&mut connect(&d)).expect("the 503 a new connection reads"),
        }
    };
    eprintln!("503 after {} idle connections: {:?}", held.len(), busy);
    assert_eq!(busy.status, 503, "{}", busy.text);
    assert_eq!(busy.error_code(), "busy");
    assert!(busy.header("retry-after").is_some(), "{:?}", busy.headers);
    assert!(
        held.len() <= 8,
        "{} connections were served with max_connections = 8",
        held.len()
    );

    drop(held);
    let r = poll(
        "cairnd to answer once connections close",
        Duration::from_secs(20),
        || {
            raw_exchange(d.port, &raw_request("GET", b"/healthz", &[], b""), false)
                .ok()
                .filter(|r| r.status == 200)
        },
    );
    assert_eq!(r.text, "ok\n");
}

#[test]
fn chunked_bodies_get_411_and_store_nothing() {
    let d = Daemon::start();
    let admin = d.admin();
    let (_, agent) = d.enroll(&admin, "chunky");
    let auth_admin = format!("Bearer {admin}");
    let auth_agent = format!("Bearer {agent}");
    let snap = serde_json::to_vec(&snapshot(now() - 5, 1.0)).unwrap();
    let mut chunked = format!("{:x}\r\n", snap.len()).into_bytes();
    chunked.extend_from_slice(&snap);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    for (path, auth) in [
        ("/api/v1/auth/login", None),
        ("/api/v1/tokens", Some(auth_admin.as_str())),
        ("/api/v1/agent/ingest", Some(auth_agent.as_str())),
    ] {
        let mut headers = vec![
            ("Transfer-Encoding", "chunked"),
            ("Content-Type", "application/json"),
        ];
        headers.extend(auth.map(|a| ("Authorization", a)));
        let req = raw_request("POST", path.as_bytes(), &headers, &chunked);
        let r = raw_exchange(d.port, &req, false).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(r.status, 411, "{path}: {}", r.text);
        assert_eq!(r.error_code(), "length_required");
        let health = raw_exchange(d.port, &raw_request("GET", b"/healthz", &[], b""), false)
            .expect("healthz after a chunked body");
        assert_eq!(health.status, 200);
    }
    let nodes = d.client.get("/api/v1/nodes", Some(&admin)).json();
    assert_eq!(nodes["data"][0]["status"], "pending", "{nodes}");
    assert_eq!(d.client.get("/api/v1/tokens", Some(&admin)).json()["total"], 0);
}

#[test]
fn wrong_method_is_405_with_allow_unknown_route_404_and_head_works() {
    let d = Daemon::start();
    let c = &d.client;
    let admin = d.admin();
    let auth = format!("Bearer {admin}");
    for (method, path, allow) in [
        ("DELETE", "/api/v1/health", vec!["GET"]),
        ("PUT", "/api/v1/nodes", vec!["GET"]),
        ("POST", "/api/v1/users/admin", vec!["GET", "PATCH", "DELETE"]),
        ("GET", "/api/v1/auth/login", vec!["POST"]),
    ] {
        let r = c.send(method, path, &[("Authorization", &auth)], None);
        assert_eq!(r.status, 405, "{method} {path}: {}", r.text);
        assert_eq!(r.error_code(), "method_not_allowed");
        let got = r
            .header("allow")
            .unwrap_or_else(|| panic!("{method} {path}: no Allow header"));
        let mut got: Vec<&str> = got.split(',').map(str::trim).collect();
        got.sort_unstable();
        let mut want = allow.clone();
        want.sort_unstable();
        assert_eq!(got, want, "{method} {path}");
    }
    for path in ["/api/v1/does-not-exist", "/api/v2/nodes", "/nope/deeper/path"] {
        let r = c.get(path, Some(&admin));
        assert_eq!(r.status, 404, "{path}: {}", r.text);
        assert_eq!(r.error_code(), "not_found");
    }
    for (path, token) in [
        ("/healthz", None),
        ("/api/v1/health", None),
        ("/api/v1/nodes", Some(admin.as_str())),
    ] {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        let get = c.send("GET", path, &headers, None);
        let head = c.send("HEAD", path, &headers, None);
        assert_eq!(head.status, 200, "HEAD {path}");
        assert!(head.text.is_empty(), "HEAD {path} sent a body: {}", head.text);
        assert_eq!(
            head.header("content-type"),
            get.header("content-type"),
            "HEAD {path}"
        );
    }
    // HEAD needs the same credentials as GET.
    assert_eq!(c.send("HEAD", "/api/v1/nodes", &[], None).status, 401);
}

#[test]
fn concurrent_ingests_are_all_acknowledged_and_all_stored() {
    const THREADS: usize = 8;
    const PER_THREAD: u64 = 50;
    let d = Daemon::start();
    let admin = d.admin();
    let nodes: Vec<(String, String)> = (0..THREADS)
        .map(|i| d.enroll(&admin, &format!("burst-{i}")))
        .collect();
    let base = now() - 1000;
    let url = d.url();
    let handles: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(t, (_, token))| {
            let (url, token) = (url.clone(), token.clone());
            std::thread::spawn(move || {
                let c = Client::new(&url);
                for i in 0..PER_THREAD {
                    // Distinct per (thread, i), so a mix-up would show.
                    let cpu = (t as u64 * PER_THREAD + i) as f64 / 10.0;
                    let r = c.post(
                        "/api/v1/agent/ingest",
                        Some(&token),
                        &snapshot(base + i * 10, cpu),
                    );
                    assert_eq!(r.status, 200, "thread {t} snapshot {i}: {}", r.text);
                    assert_eq!(r.json()["accepted"], 1, "thread {t} snapshot {i}: {}", r.text);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("an ingest thread failed");
    }
    for (t, (id, _)) in nodes.iter().enumerate() {
        let h = d
            .client
            .get(
                &format!(
                    "/api/v1/nodes/{id}/history?metrics=cpu&from={}&to={}",
                    base - 1,
                    base + PER_THREAD * 10
                ),
                Some(&admin),
            )
            .json();
        assert_eq!(h["source"], "raw", "{h}");
        let got: Vec<f64> = h["series"]["cpu"]["avg"]
            .as_array()
            .expect("cpu series")
            .iter()
            .filter_map(|v| v.as_f64())
            .collect();
        let want: Vec<f64> = (0..PER_THREAD)
            .map(|i| (t as u64 * PER_THREAD + i) as f64 / 10.0)
            .collect();
        assert_eq!(got, want, "node {t} ({id}) history");
        let detail = d.client.get(&format!("/api/v1/nodes/{id}"), Some(&admin)).json();
        assert_eq!(
            detail["latest"]["timestamp"],
            json!(rfc3339(base + (PER_THREAD - 1) * 10)),
            "node {t}: latest is its newest snapshot"
        );
    }
}

#[test]
fn idle_connections_close_early_but_a_request_once_begun_gets_the_io_timeout() {
    let d = Daemon::start();
    let health = b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n";

    // A keep-alive connection is answered, then closed once idle, well
    // before the 10 s a silent client gets in the middle of a request.
    let mut idle = connect(&d);
    idle.write_all(health).expect("writing a request");
    let r = read_response(&mut idle).expect("the answer");
    assert_eq!(r.status, 200, "{}", r.text);
    idle.set_read_timeout(Some(Duration::from_secs(7)))
        .expect("read timeout");
    let mut b = [0u8; 16];
    match idle.read(&mut b) {
        Ok(0) => {}
        other => panic!("an idle keep-alive connection was not closed within 7 s: {other:?}"),
    }

    // A request that pauses for longer than the idle limit once it has
    // begun is still read and answered.
    let mut slow = connect(&d);
    let (begun, rest) = health.split_at(10);
    slow.write_all(begun).expect("writing the start of a request");
    std::thread::sleep(Duration::from_secs(3));
    slow.write_all(rest).expect("writing the rest after a pause");
    let r = read_response(&mut slow).expect("the answer after a pause");
    assert_eq!(r.status, 200, "{}", r.text);
}

/// (soft, hard) "Max open files" of a process, from /proc.
fn open_file_limits(pid: u32) -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut nums = line["Max open files".len()..].split_whitespace();
    Some((nums.next()?.parse().ok()?, nums.next()?.parse().ok()?))
}

#[test]
fn a_low_open_file_limit_is_raised_for_the_connection_cap() {
    // Started under a soft limit of 300 (too few for 512 connections at two
    // descriptors each), cairnd raises it to what the cap needs, or to the
    // hard limit if that is lower.
    let dir = TempDir::new("nofile");
    let port = free_port();
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -Sn 300 && exec \"$0\" \"$@\"")
        .arg(bin("cairnd"))
        .args([
            "serve",
            "--no-local-agent",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting cairnd under sh");
    let pid = child.id();
    let client = Client::new(&format!("http://127.0.0.1:{port}"));
    poll("cairnd to answer", Duration::from_secs(30), || {
        client
            .try_send("GET", "/api/v1/health", &[], None)
            .ok()
            .filter(|r| r.status == 200)
    });
    let (soft, hard) = open_file_limits(pid).expect("reading /proc/PID/limits");
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        hard > 300,
        "this machine's hard limit ({hard}) leaves nothing to test"
    );
    assert_eq!(
        soft,
        hard.min(512 * 2 + 256),
        "soft limit after start (hard {hard})"
    );
}
