//! Bad input on every route that takes a body, against one running cairnd:
//! malformed JSON, wrong types, missing and unknown fields, huge numbers,
//! NaN/Infinity, invalid UTF-8, empty, oversized and deeply nested bodies,
//! lying lengths, hostile ids in paths. Every answer is a 4xx with a JSON
//! error naming the field when one field is at fault; the daemon keeps
//! answering; and nothing at all was stored.
//!
//! Requests go over raw sockets (`raw_request`/`raw_exchange`) so the exact
//! bytes reach the server, one fresh connection each.

use cairn_e2e::*;
use serde_json::{json, Value};

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Str,
    Int,
    Float,
}

/// A route with a body and what its input looks like.
struct Target {
    name: &'static str,
    method: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    /// A body the route would accept (never sent as is).
    valid: Value,
    /// A field of `valid` the type cases break: JSON pointer, the name the
    /// error message must contain, and its type.
    field: (&'static str, &'static str, Kind),
    /// A required field: (JSON pointer, name in the message).
    required: Option<(&'static str, &'static str)>,
    /// The route refuses unknown fields (labwatch and agent payloads do not,
    /// by design: newer agents send more).
    denies_unknown: bool,
    /// An empty body is valid here (enrollment codes take optional input).
    empty_ok: bool,
}

/// What a case must get back.
struct Expect {
    status: Option<u16>,
    code: Option<&'static str>,
    /// Text the error message must contain (the field's name).
    names: Option<String>,
}

struct Case {
    target: usize,
    what: String,
    body: Vec<u8>,
    expect: Expect,
    /// Extra header lines (used for lying lengths).
    headers: Vec<(String, String)>,
    half_close: bool,
}

fn set(v: &Value, pointer: &str, new: Value) -> Value {
    let mut out = v.clone();
    *out.pointer_mut(pointer)
        .unwrap_or_else(|| panic!("{pointer} not in {v}")) = new;
    out
}

fn remove(v: &Value, pointer: &str) -> Value {
    let mut v = v.clone();
    let (parent, key) = pointer.rsplit_once('/').expect("pointer");
    let obj = if parent.is_empty() {
        &mut v
    } else {
        v.pointer_mut(parent).expect("parent")
    };
    obj.as_object_mut()
        .expect("parent object")
        .remove(key)
        .expect("field present");
    v
}

/// `valid` with the value at `pointer` replaced by raw bytes (which need not
/// be JSON, or UTF-8).
fn with_raw(v: &Value, pointer: &str, raw: &[u8]) -> Vec<u8> {
    let marker = "\u{1}RAW\u{1}";
    let text = serde_json::to_vec(&set(v, pointer, json!(marker))).unwrap();
    let quoted = serde_json::to_vec(&json!(marker)).unwrap();
    let at = text
        .windows(quoted.len())
        .position(|w| w == quoted.as_slice())
        .expect("marker");
    let mut out = text[..at].to_vec();
    out.extend_from_slice(raw);
    out.extend_from_slice(&text[at + quoted.len()..]);
    out
}

fn expect_field(name: &str) -> Expect {
    Expect {
        status: Some(400),
        code: None,
        names: Some(name.to_string()),
    }
}

fn expect_400() -> Expect {
    Expect {
        status: Some(400),
        code: None,
        names: None,
    }
}

/// The generic cases for one target.
fn cases_for(i: usize, t: &Target) -> Vec<Case> {
    let mut out = Vec::new();
    let mut add = |what: &str, body: Vec<u8>, expect: Expect| {
        out.push(Case {
            target: i,
            what: what.to_string(),
            body,
            expect,
            headers: Vec::new(),
            half_close: false,
        })
    };
    let valid_text = serde_json::to_vec(&t.valid).unwrap();
    let (ptr, name, kind) = t.field;

    add(
        "malformed JSON (cut short)",
        valid_text[..valid_text.len() - 3].to_vec(),
        Expect {
            status: Some(400),
            code: Some("malformed_json"),
            names: None,
        },
    );
    add(
        "malformed JSON (trailing comma)",
        {
            let mut b = valid_text[..valid_text.len() - 1].to_vec();
            b.extend_from_slice(b",}");
            b
        },
        Expect {
            status: Some(400),
            code: Some("malformed_json"),
            names: None,
        },
    );
    add("nanoserde loop input", b"{\"zzz\":[".to_vec(), expect_400());
    add(
        "nanoserde panic input",
        b"{\"a\":1,\"name\":\"n\",\"extra\":}".to_vec(),
        expect_400(),
    );
    if !t.empty_ok {
        add("empty body", Vec::new(), expect_400());
    }
    add(
        "JSON array instead of object",
        serde_json::to_vec(&json!([t.valid])).unwrap(),
        expect_400(),
    );
    for scalar in ["\"hello\"", "42", "null", "true"] {
        add(
            &format!("JSON {scalar} instead of object"),
            scalar.as_bytes().to_vec(),
            expect_400(),
        );
    }
    let wrong: Vec<Value> = match kind {
        Kind::Str => vec![json!(12345), json!(true), json!({"x": 1}), json!(["a"])],
        Kind::Int | Kind::Float => vec![json!("twelve"), json!(true), json!({"x": 1}), json!([1])],
    };
    for w in wrong {
        add(
            &format!("wrong type {w} for {name}"),
            serde_json::to_vec(&set(&t.valid, ptr, w)).unwrap(),
            expect_field(name),
        );
    }
    if let Some((rptr, rname)) = t.required {
        add(
            &format!("missing required {rname}"),
            serde_json::to_vec(&remove(&t.valid, rptr)).unwrap(),
            expect_field(rname),
        );
    }
    if t.denies_unknown {
        let mut v = t.valid.clone();
        v["surprise_field"] = json!(1);
        add(
            "unknown field",
            serde_json::to_vec(&v).unwrap(),
            expect_field("surprise_field"),
        );
    }
    // Numbers no f64 holds, integers no u64 holds, and what JSON lacks.
    for raw in [
        "1e999",
        "-1e999",
        "99999999999999999999999",
        "18446744073709551616",
        "NaN",
        "Infinity",
        "-Infinity",
    ] {
        add(
            &format!("{raw} for {name}"),
            with_raw(&t.valid, ptr, raw.as_bytes()),
            expect_field(name),
        );
    }
    if kind != Kind::Str {
        for s in ["NaN", "Infinity", "-Infinity", "1e999"] {
            add(
                &format!("string \"{s}\" for {name}"),
                serde_json::to_vec(&set(&t.valid, ptr, json!(s))).unwrap(),
                expect_field(name),
            );
        }
    }
    add(
        &format!("invalid UTF-8 in {name}"),
        with_raw(&t.valid, ptr, b"\"a\xff\xfeb\""),
        expect_field(name),
    );
    add(
        &format!("lone surrogate escape in {name}"),
        with_raw(&t.valid, ptr, b"\"\\ud800\""),
        expect_field(name),
    );
    add(
        "invalid UTF-8 outside strings",
        b"{\xff\xfe: 1}".to_vec(),
        expect_400(),
    );
    add(
        "100k nested arrays",
        "[".repeat(100_000).into_bytes(),
        expect_400(),
    );
    add(
        "100k nested objects",
        "{\"a\":".repeat(100_000).into_bytes(),
        expect_400(),
    );
    add(
        "10 MB body",
        {
            let mut b = b"{\"pad\":\"".to_vec();
            b.resize(10 * 1024 * 1024, b'x');
            b.extend_from_slice(b"\"}");
            b
        },
        Expect {
            status: Some(413),
            code: Some("payload_too_large"),
            names: None,
        },
    );
    // Content-Length says more than is sent, then the client half-closes.
    out.push(Case {
        target: i,
        what: "Content-Length longer than the body".into(),
        body: valid_text[..valid_text.len() / 2].to_vec(),
        expect: expect_400(),
        headers: vec![("Content-Length".into(), "4000".into())],
        half_close: true,
    });
    // Content-Length says less: the server reads a truncated body.
    out.push(Case {
        target: i,
        what: "Content-Length shorter than the body".into(),
        body: valid_text.clone(),
        expect: expect_400(),
        headers: vec![("Content-Length".into(), "5".into())],
        half_close: false,
    });
    out
}

/// Everything the table must leave unchanged.
#[derive(Debug, PartialEq)]
struct State {
    users: Value,
    tokens: Value,
    nodes: Value,
    node_detail: Value,
    lab_detail: Value,
    node_history: Value,
    lab_history: Value,
    lab_logs: Value,
}

fn capture(d: &Daemon, admin: &str, node: &str, lab: &str, t_from: u64, t_to: u64) -> State {
    let c = &d.client;
    let get = |path: &str| {
        let r = c.get(path, Some(admin));
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        r.json()
    };
    let strip = |mut v: Value| {
        // Timestamps that move on their own.
        for n in v["data"].as_array_mut().into_iter().flatten() {
            n.as_object_mut().map(|o| o.remove("last_used_at"));
            n.as_object_mut().map(|o| o.remove("status"));
            n.as_object_mut().map(|o| o.remove("online"));
        }
        v.as_object_mut().map(|o| o.remove("status"));
        v.as_object_mut().map(|o| o.remove("online"));
        v
    };
    let history = |id: &str| {
        let v = get(&format!(
            "/api/v1/nodes/{id}/history?metrics=cpu,memory,load1,net_rx,disk&from={t_from}&to={t_to}"
        ));
        json!({"timestamps": v["timestamps"], "series": v["series"]})
    };
    State {
        users: strip(get("/api/v1/users")),
        tokens: strip(get("/api/v1/tokens")),
        nodes: strip(get("/api/v1/nodes")),
        node_detail: strip(get(&format!("/api/v1/nodes/{node}"))),
        lab_detail: strip(get(&format!("/api/v1/nodes/{lab}"))),
        node_history: history(node),
        lab_history: history(lab),
        lab_logs: get(&format!("/api/v1/nodes/{lab}/logs")),
    }
}

fn healthy(d: &Daemon, after: &str) {
    let r = raw_exchange(d.port, &raw_request("GET", b"/healthz", &[], b""), false)
        .unwrap_or_else(|e| panic!("/healthz after {after}: {e}"));
    assert_eq!(r.status, 200, "/healthz after {after}: {}", r.text);
}

fn check_error(r: &Resp, what: &str) -> Value {
    assert!(
        (400..500).contains(&r.status),
        "{what}: expected a 4xx, got {}: {}",
        r.status,
        r.text
    );
    let v: Value = serde_json::from_str(&r.text)
        .unwrap_or_else(|e| panic!("{what}: error body is not JSON ({e}): {}", r.text));
    assert!(
        v["error"]["code"].as_str().is_some_and(|c| !c.is_empty()),
        "{what}: no error.code in {v}"
    );
    assert!(
        v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: no error.message in {v}"
    );
    v
}

#[test]
fn bad_input_on_every_body_route_gets_a_json_4xx_naming_the_field_and_stores_nothing() {
    let d = Daemon::start();
    let c = &d.client;
    let admin = d.admin();
    let api_admin = c
        .post(
            "/api/v1/tokens",
            Some(&admin),
            &json!({"name": "labwatch", "role": "admin"}),
        )
        .json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let (node, agent) = d.enroll(&admin, "bad-input-node");
    let t0 = now() - 120;
    let r = c.post("/api/v1/agent/ingest", Some(&agent), &snapshot(t0, 10.0));
    assert_eq!(r.status, 200, "{}", r.text);
    let reg = c.send(
        "POST",
        "/api/v1/register",
        &[("X-Admin-Secret", &api_admin)],
        Some(br#"{"hostname":"lab-box","os":"linux","arch":"amd64","agent_version":"1.4.0"}"#),
    );
    assert_eq!(reg.status, 201, "{}", reg.text);
    let lab = reg.json()["lab_id"].as_str().unwrap().to_string();
    let lab_token = reg.json()["token"].as_str().unwrap().to_string();
    let lab_body = |cpu: f64| {
        json!({"lab_id": lab, "timestamp": rfc3339(t0), "collectors": {"system": {
            "cpu": {"total_percent": cpu}, "memory": {"used_percent": 20.0, "total_bytes": 1000},
            "uptime_seconds": 100}}})
    };
    assert_eq!(
        c.post("/api/v1/ingest", Some(&lab_token), &lab_body(5.0)).status,
        200
    );
    let logs = json!({"entries": [{"ts": "2026-11-23T10:00:00Z", "source": "journald", "level": "err", "message": "disk full", "unit": "x.service"}]});
    assert_eq!(
        c.post(&format!("/api/v1/lab/{lab}/logs"), Some(&lab_token), &logs)
            .status,
        202
    );
    d.user_token(&admin, "victim", "viewer");
    let (from, to) = (t0 - 600, now() + 600);
    let before = capture(&d, &admin, &node, &lab, from, to);

    let bearer = |t: &str| vec![("Authorization".to_string(), format!("Bearer {t}"))];
    let targets = vec![
        Target {
            name: "login",
            method: "POST",
            path: "/api/v1/auth/login".into(),
            headers: vec![],
            valid: json!({"username": "admin", "password": "not-the-password"}),
            field: ("/username", "username", Kind::Str),
            required: Some(("/password", "password")),
            denies_unknown: true,
            empty_ok: false,
        },
        Target {
            name: "create user",
            method: "POST",
            path: "/api/v1/users".into(),
            headers: bearer(&admin),
            valid: json!({"username": "newuser", "password": "long-enough-pw", "role": "viewer"}),
            field: ("/username", "username", Kind::Str),
            required: Some(("/role", "role")),
            denies_unknown: true,
            empty_ok: false,
        },
        Target {
            name: "update user",
            method: "PATCH",
            path: "/api/v1/users/victim".into(),
            headers: bearer(&admin),
            valid: json!({"role": "operator"}),
            field: ("/role", "role", Kind::Str),
            required: Some(("/role", "role")),
            denies_unknown: true,
            empty_ok: false,
        },
        Target {
            name: "create token",
            method: "POST",
            path: "/api/v1/tokens".into(),
            headers: bearer(&admin),
            valid: json!({"name": "t", "role": "viewer"}),
            field: ("/name", "name", Kind::Str),
            required: Some(("/role", "role")),
            denies_unknown: true,
            empty_ok: false,
        },
        Target {
            name: "enrollment code",
            method: "POST",
            path: "/api/v1/enrollment-codes".into(),
            headers: bearer(&admin),
            valid: json!({"ttl_s": 600}),
            field: ("/ttl_s", "ttl_s", Kind::Int),
            required: None,
            denies_unknown: true,
            empty_ok: true,
        },
        Target {
            name: "agent enroll",
            method: "POST",
            path: "/api/v1/agent/enroll".into(),
            headers: vec![],
            valid: json!({"code": "abcd-efgh-jkmn", "hostname": "h", "os": "Linux", "arch": "x86_64", "agent_version": "1"}),
            field: ("/hostname", "hostname", Kind::Str),
            required: Some(("/hostname", "hostname")),
            denies_unknown: false,
            empty_ok: false,
        },
        Target {
            name: "agent ingest",
            method: "POST",
            path: "/api/v1/agent/ingest".into(),
            headers: bearer(&agent),
            valid: snapshot(t0 + 30, 20.0),
            field: ("/cpu/total_percent", "cpu.total_percent", Kind::Float),
            required: Some(("/timestamp", "timestamp")),
            denies_unknown: false,
            empty_ok: false,
        },
        Target {
            name: "labwatch register",
            method: "POST",
            path: "/api/v1/register".into(),
            headers: vec![("X-Admin-Secret".into(), api_admin.clone())],
            valid: json!({"hostname": "lab-2", "os": "linux", "arch": "amd64", "agent_version": "1.4.0"}),
            field: ("/hostname", "hostname", Kind::Str),
            required: Some(("/hostname", "hostname")),
            denies_unknown: false,
            empty_ok: false,
        },
        Target {
            name: "labwatch ingest",
            method: "POST",
            path: "/api/v1/ingest".into(),
            headers: bearer(&lab_token),
            valid: set(&lab_body(7.0), "/timestamp", json!(rfc3339(t0 + 30))),
            field: (
                "/collectors/system/cpu/total_percent",
                "cpu.total_percent",
                Kind::Float,
            ),
            required: Some(("/collectors", "collectors")),
            denies_unknown: false,
            empty_ok: false,
        },
        Target {
            name: "labwatch logs",
            method: "POST",
            path: format!("/api/v1/lab/{lab}/logs"),
            headers: bearer(&lab_token),
            valid: json!({"entries": [{"ts": "2026-11-23T10:00:01Z", "source": "journald", "level": "info", "message": "m", "unit": ""}]}),
            field: ("/entries/0/message", "entries[0].message", Kind::Str),
            required: Some(("/entries", "entries")),
            denies_unknown: true,
            empty_ok: false,
        },
        Target {
            name: "node patch",
            method: "PATCH",
            path: format!("/api/v1/nodes/{node}"),
            headers: bearer(&admin),
            valid: json!({"name": "renamed", "labels": {"room": "attic"}, "location": "shelf"}),
            field: ("/name", "name", Kind::Str),
            required: None,
            denies_unknown: true,
            empty_ok: false,
        },
        Target {
            name: "own password",
            method: "POST",
            path: "/api/v1/auth/password".into(),
            headers: bearer(&admin),
            valid: json!({"current_password": "wrong-password-1", "new_password": "new-password-123"}),
            field: ("/new_password", "new_password", Kind::Str),
            required: Some(("/current_password", "current_password")),
            denies_unknown: true,
            empty_ok: false,
        },
        Target {
            name: "unlock",
            method: "POST",
            path: "/api/v1/auth/unlock".into(),
            headers: bearer(&admin),
            valid: json!({"username": "nobody"}),
            field: ("/username", "username", Kind::Str),
            required: Some(("/username", "username")),
            denies_unknown: true,
            empty_ok: false,
        },
    ];

    let mut cases: Vec<Case> = targets
        .iter()
        .enumerate()
        .flat_map(|(i, t)| cases_for(i, t))
        .collect();
    // Route-specific: integer fields, batches, timestamps.
    let by_name = |n: &str| targets.iter().position(|t| t.name == n).unwrap();
    let (ingest, lab_ingest, code) = (
        by_name("agent ingest"),
        by_name("labwatch ingest"),
        by_name("enrollment code"),
    );
    let mut specific = |target: usize, what: &str, body: Vec<u8>, names: &str| {
        // Well-formed but someone else's: forbidden rather than invalid.
        let status = if what.contains("another node") { 403 } else { 400 };
        cases.push(Case {
            target,
            what: what.into(),
            body,
            expect: Expect {
                status: Some(status),
                code: None,
                names: Some(names.to_string()),
            },
            headers: Vec::new(),
            half_close: false,
        })
    };
    let snap = &targets[ingest].valid;
    for raw in ["99999999999999999999999", "18446744073709551616", "-1", "1.5"] {
        specific(
            ingest,
            &format!("{raw} for a u64 counter"),
            with_raw(snap, "/memory/total_bytes", raw.as_bytes()),
            "memory.total_bytes",
        );
    }
    specific(
        ingest,
        "a rate of 1e308 (would sum to infinity)",
        serde_json::to_vec(&set(snap, "/net/0/rx_bytes_per_s", json!(1e308))).unwrap(),
        "net[0].rx_bytes_per_s",
    );
    let bad_batch = json!({"snapshots": [snapshot(t0 + 60, 1.0), set(&snapshot(t0 + 90, 1.0), "/cpu/total_percent", json!(101.0))]});
    specific(
        ingest,
        "a batch with one bad snapshot (stores none)",
        serde_json::to_vec(&bad_batch).unwrap(),
        "snapshots[1].cpu.total_percent",
    );
    let big_batch: Vec<Value> = (0..501).map(|i| snapshot(t0 - 1000 - i, 1.0)).collect();
    specific(
        ingest,
        "a batch of 501 snapshots",
        serde_json::to_vec(&json!({ "snapshots": big_batch })).unwrap(),
        "snapshots",
    );
    specific(
        ingest,
        "a timestamp an hour ahead",
        serde_json::to_vec(&set(snap, "/timestamp", json!(rfc3339(now() + 3600)))).unwrap(),
        "timestamp",
    );
    specific(
        ingest,
        "a timestamp before 2000",
        serde_json::to_vec(&set(snap, "/timestamp", json!("1999-12-31T23:59:59Z"))).unwrap(),
        "timestamp",
    );
    let lab_valid = &targets[lab_ingest].valid;
    for raw in ["9999999999999", "99999999999999999999999", "-5"] {
        specific(
            lab_ingest,
            &format!("labwatch timestamp {raw}"),
            with_raw(lab_valid, "/timestamp", raw.as_bytes()),
            "timestamp",
        );
    }
    specific(
        lab_ingest,
        "labwatch counter 1e23",
        serde_json::to_vec(&set(
            lab_valid,
            "/collectors/system/memory/total_bytes",
            json!(1e23),
        ))
        .unwrap(),
        "memory.total_bytes",
    );
    specific(
        lab_ingest,
        "labwatch lab_id of another node",
        serde_json::to_vec(&set(lab_valid, "/lab_id", json!(node))).unwrap(),
        "lab_id",
    );
    specific(
        code,
        "ttl_s of 10 years",
        serde_json::to_vec(&json!({"ttl_s": 315_360_000})).unwrap(),
        "ttl_s",
    );

    for case in &cases {
        let t = &targets[case.target];
        let what = format!("{} {} ({}): {}", t.method, t.path, t.name, case.what);
        let mut headers: Vec<(&str, &str)> =
            t.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        headers.push(("Content-Type", "application/json"));
        headers.extend(case.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        let req = raw_request(t.method, t.path.as_bytes(), &headers, &case.body);
        let r = raw_exchange(d.port, &req, case.half_close)
            .unwrap_or_else(|e| panic!("{what}: no response: {e}"));
        let v = check_error(&r, &what);
        if let Some(s) = case.expect.status {
            assert_eq!(r.status, s, "{what}: {}", r.text);
        }
        if let Some(code) = case.expect.code {
            assert_eq!(v["error"]["code"], code, "{what}: {}", r.text);
        }
        if let Some(name) = &case.expect.names {
            let msg = v["error"]["message"].as_str().unwrap();
            assert!(
                msg.contains(name.as_str()),
                "{what}: the message does not name '{name}': {msg}"
            );
        }
        healthy(&d, &what);
    }

    // Hostile ids in paths never reach a handler: routing refuses them
    // before authentication, whatever the method.
    let admin_auth = format!("Bearer {admin}");
    let lab_auth = format!("Bearer {lab_token}");
    let long = "a".repeat(5000);
    let patch: &[u8] = br#"{"name":"x"}"#;
    let none: &[u8] = b"";
    let log_body = serde_json::to_vec(&logs).unwrap();
    let paths: Vec<(&str, String, &str, &str, &[u8])> = vec![
        (
            "PATCH",
            "/api/v1/nodes/..%2F..%2Fetc%2Fpasswd".into(),
            "id",
            &admin_auth,
            patch,
        ),
        (
            "GET",
            "/api/v1/nodes/..%2F..%2Fetc%2Fpasswd".into(),
            "id",
            &admin_auth,
            none,
        ),
        (
            "GET",
            "/api/v1/nodes/..%2F..%2Fetc%2Fpasswd/history".into(),
            "id",
            &admin_auth,
            none,
        ),
        ("PATCH", "/api/v1/nodes/%2e%2e".into(), "id", &admin_auth, patch),
        ("DELETE", "/api/v1/nodes/%00".into(), "id", &admin_auth, none),
        (
            "PATCH",
            "/api/v1/users/%00".into(),
            "username",
            &admin_auth,
            br#"{"role":"admin"}"#,
        ),
        ("GET", "/api/v1/users/%00".into(), "username", &admin_auth, none),
        (
            "PATCH",
            "/api/v1/users/a%0Ab".into(),
            "username",
            &admin_auth,
            br#"{"role":"admin"}"#,
        ),
        ("PATCH", format!("/api/v1/nodes/{long}"), "id", &admin_auth, patch),
        (
            "GET",
            format!("/api/v1/users/{long}"),
            "username",
            &admin_auth,
            none,
        ),
        ("GET", "/api/v1/nodes/%ff%fe".into(), "id", &admin_auth, none),
        (
            "POST",
            "/api/v1/lab/..%2F..%2Fetc/logs".into(),
            "lab_id",
            &lab_auth,
            &log_body,
        ),
        ("POST", "/api/v1/lab/%00/logs".into(), "lab_id", "", &log_body),
    ];
    for (method, path, param, auth, body) in &paths {
        let mut headers = vec![("Content-Type", "application/json")];
        if !auth.is_empty() {
            headers.push(("Authorization", auth));
        }
        let req = raw_request(method, path.as_bytes(), &headers, body);
        let what = format!("{method} {}", &path[..path.len().min(60)]);
        let r = raw_exchange(d.port, &req, false).unwrap_or_else(|e| panic!("{what}: {e}"));
        let v = check_error(&r, &what);
        assert_eq!(r.status, 400, "{what}: {}", r.text);
        assert!(
            v["error"]["message"].as_str().unwrap().contains(param),
            "{what} does not name '{param}': {v}"
        );
        healthy(&d, &what);
    }
    // Raw bytes that are not ASCII in the request line itself: tiny_http
    // closes the connection without an answer (there is no request to route);
    // if it ever answers, it must be a 4xx. Either way the daemon carries on.
    let req = raw_request("GET", b"/api/v1/nodes/\xff\xfe", &[], b"");
    if let Ok(r) = raw_exchange(d.port, &req, false) {
        assert!(
            (400..500).contains(&r.status),
            "non-ASCII request line: {} {}",
            r.status,
            r.text
        );
    }
    healthy(&d, "a non-UTF-8 request line");

    let after = capture(&d, &admin, &node, &lab, from, to);
    assert_eq!(
        before,
        after,
        "bad input changed stored state ({} cases)",
        cases.len()
    );
    assert!(
        !d.stderr().contains("panicked"),
        "the daemon logged a panic:\n{}",
        d.stderr()
    );
    eprintln!(
        "{} body cases on {} routes, {} hostile paths",
        cases.len(),
        targets.len(),
        paths.len()
    );
}
