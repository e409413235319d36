//! In-process fuzzing of every route that takes a body (every POST, PUT and
//! PATCH in `ROUTES`, so a new route is covered without touching this file),
//! through the real dispatcher (`app::handle`) on a `Store::memory()` context,
//! with valid credentials of the kind each route needs.
//!
//! Bodies are valid seeds (a real snapshot, a labwatch payload, ...), seeds
//! with one to three mutations (bit flips, truncation, inserted `[ { " \`,
//! numbers replaced by 1e309 / -0 / NaN / huge integers, spliced or deleted
//! slices), seeds followed by random bytes, and random bytes alone.
//!
//! For every request: no 5xx (bad input is never an internal error), a JSON
//! body (errors with `error.code` and `error.message`), and completion within
//! a hang bound. After the run: no stored number is NaN or infinite.
//!
//! Deterministic: a seeded xorshift PRNG. `CAIRN_FUZZ_SEED` and
//! `CAIRN_FUZZ_ITERS` override the defaults to reproduce or extend a run.

use crate::api::{Route, ROUTES};
use crate::app::{self, Ctx, Shared};
use crate::http::router::Access;
use crate::http::{HttpRequest, Incoming, Reply, ReplyTo};
use crate::security;
use crate::store::auth::{NewSession, Role};
use crate::store::history::METRICS;
use crate::store::Store;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const DEFAULT_SEED: u64 = 0x00c0_ffee_cafe_f00d;
const DEFAULT_ITERS: usize = 100_000;
/// A request taking longer than this is treated as a hang (it is not a
/// benchmark: real requests take well under a millisecond here).
const HANG_BOUND: Duration = Duration::from_secs(2);
/// Routes whose valid bodies reach Argon2 (tens of ms per hash in debug).
const HASHING_ROUTES: [&str; 4] = [
    "/api/v1/auth/login",
    "/api/v1/auth/password",
    "/api/v1/users",
    "/api/v1/users/{username}",
];
/// At most this many well-formed JSON objects go to HASHING_ROUTES; past it,
/// those routes only get bodies that are not a JSON object (which fail before
/// any hashing). Keeps the run well under a minute in debug builds; the
/// parsing and validation paths of those routes are still fuzzed in full.
const HASHING_BUDGET: usize = 80;
const FUZZ_IP: &str = "192.0.2.7";
const ADMIN_PASSWORD: &str = "fuzz-admin-password";

/// xorshift64: tiny, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// The credentials and objects the fuzzed requests refer to.
struct Fixture {
    shared: Shared,
    user_id: i64,
    /// Admin API token (`cairn_t_`), also used as labwatch's X-Admin-Secret.
    api_token: String,
    /// Admin session (`cairn_s_`); logout or a password change may end it.
    session: String,
    agent_token: String,
    /// The node the agent token belongs to (also the labwatch `lab_id`).
    agent_node: String,
    /// Target of `{id}` routes (rename, rotate-token), so rotating its token
    /// never locks the fuzzer's agent out.
    victim_node: String,
    victim_user: String,
}

impl Fixture {
    fn new() -> (Fixture, async_channel::Receiver<()>) {
        let (shared, wake) = Ctx::for_tests();
        let now = crate::clock::now();
        let (user_id, api_token, agent_node, agent_token, victim_node) = {
            let ctx = shared.borrow();
            let hash = security::hash_password(ADMIN_PASSWORD).expect("hashing");
            let user_id = ctx
                .store
                .insert_user("fuzzadmin", &hash, Role::Admin, now)
                .expect("admin user");
            ctx.store
                .insert_user("victim", "not-a-valid-hash", Role::Viewer, now)
                .expect("victim user");
            let (_, api_token) =
                crate::api::tokens::issue(&ctx.store, "fuzz", Role::Admin, "fuzz").expect("api token");
            let (agent_node, agent_token) =
                crate::api::agent::create_node(&ctx, "agent", "fuzz-agent", "Linux", "x86_64", "1")
                    .expect("agent node");
            let (victim_node, _) =
                crate::api::agent::create_node(&ctx, "agent", "victim", "Linux", "x86_64", "1")
                    .expect("victim node");
            (user_id, api_token, agent_node, agent_token, victim_node)
        };
        let mut f = Fixture {
            shared,
            user_id,
            api_token,
            session: String::new(),
            agent_token,
            agent_node,
            victim_node,
            victim_user: "victim".into(),
        };
        f.new_session();
        (f, wake)
    }

    fn new_session(&mut self) {
        let token = security::new_token("cairn_s_");
        let now = crate::clock::now();
        self.shared
            .borrow()
            .store
            .insert_session(&NewSession {
                token_hash: &security::hash_secret(&token),
                csrf_hash: &security::hash_secret("csrf"),
                user_id: self.user_id,
                now,
                expires_at: now + 86400,
                ip: FUZZ_IP,
                user_agent: "fuzz",
            })
            .expect("session");
        self.session = token;
    }

    /// Re-creates whatever credential a fuzzed request legitimately revoked
    /// (logout, a password change, a token rotation by some future route).
    fn refresh_credentials(&mut self) {
        let now = crate::clock::now();
        let (session_ok, token_ok, agent_ok) = {
            let ctx = self.shared.borrow();
            let s = &ctx.store;
            (
                s.session_by_hash(&security::hash_secret(&self.session), now)
                    .expect("session lookup")
                    .is_some(),
                s.api_token_by_hash(&security::hash_secret(&self.api_token))
                    .expect("token lookup")
                    .is_some(),
                s.node_by_token_hash(&security::hash_secret(&self.agent_token))
                    .expect("agent lookup")
                    .is_some(),
            )
        };
        if !session_ok {
            self.new_session();
        }
        if !token_ok {
            let ctx = self.shared.borrow();
            self.api_token = crate::api::tokens::issue(&ctx.store, "fuzz", Role::Admin, "fuzz")
                .expect("api token")
                .1;
        }
        if !agent_ok {
            let token = security::new_token("cairn_a_");
            self.shared
                .borrow()
                .store
                .set_node_token(&self.agent_node, &security::hash_secret(&token))
                .expect("agent token");
            self.agent_token = token;
        }
    }

    /// The concrete path for a route pattern.
    fn path(&self, pattern: &str) -> String {
        pattern
            .split('/')
            .map(|seg| match seg {
                // Alerting objects have numeric ids; the seeds create id 1 early.
                "{id}" if NUMERIC_ID_ROUTES.iter().any(|p| pattern.starts_with(p)) => "1".into(),
                "{id}" => self.victim_node.clone(),
                "{username}" => self.victim_user.clone(),
                "{lab_id}" => self.agent_node.clone(),
                s if s.starts_with('{') => "fuzz-param".into(),
                s => s.into(),
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    fn request(&self, route: &Route, body: Vec<u8>, use_session: bool) -> HttpRequest {
        let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
        let bearer = |t: &str| ("authorization".to_string(), format!("Bearer {t}"));
        match route.access {
            Access::Public => {}
            Access::Agent => headers.push(bearer(&self.agent_token)),
            Access::AdminSecret => headers.push(("x-admin-secret".into(), self.api_token.clone())),
            Access::Viewer | Access::Operator | Access::Admin => headers.push(bearer(if use_session {
                &self.session
            } else {
                &self.api_token
            })),
        }
        HttpRequest {
            method: route.method.to_string(),
            path: self.path(route.path),
            query: Vec::new(),
            headers,
            body,
            remote_ip: FUZZ_IP.into(),
        }
    }
}

/// One request through the real dispatcher.
async fn send(shared: &Shared, req: HttpRequest) -> Reply {
    let (tx, rx) = async_channel::bounded(1);
    app::handle(
        shared.clone(),
        Incoming {
            req,
            reply: ReplyTo::channel(tx),
        },
    )
    .await;
    rx.recv().await.expect("the dispatcher always replies")
}

fn body_routes() -> Vec<&'static Route> {
    ROUTES
        .iter()
        .filter(|r| matches!(r.method, "POST" | "PUT" | "PATCH"))
        // A test send goes to the stored channel's address; mutated configs
        // could name any host, and the tests talk to 127.0.0.1 only.
        .filter(|r| r.path != "/api/v1/channels/{id}/test" && r.path != "/api/v1/checks/{id}/run")
        // Heartbeat pings take any text (a cron job's output), not JSON.
        .filter(|r| !r.path.starts_with("/ping/"))
        .collect()
}

fn show(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(400)]).into_owned();
    if body.len() > 400 {
        format!("{s:?}... ({} bytes)", body.len())
    } else {
        format!("{s:?}")
    }
}

/// The per-response contract; panics with enough to reproduce.
fn check_reply(route: &Route, body: &[u8], reply: &Reply, took: Duration, ctx: &str) {
    let what = || format!("{} {} with body {} ({ctx})", route.method, route.path, show(body));
    assert!(
        reply.status < 500,
        "{} answered {}: {}",
        what(),
        reply.status,
        String::from_utf8_lossy(&reply.body)
    );
    assert!(took < HANG_BOUND, "{} took {took:?}", what());
    if reply.status == 204 {
        return;
    }
    assert!(
        reply.content_type.starts_with("application/json"),
        "{} answered {} as {}",
        what(),
        reply.status,
        reply.content_type
    );
    let v: Value = serde_json::from_slice(&reply.body).unwrap_or_else(|e| {
        panic!(
            "{} answered invalid JSON ({e}): {}",
            what(),
            String::from_utf8_lossy(&reply.body)
        )
    });
    if reply.status >= 400 {
        assert!(
            v["error"]["code"].is_string() && v["error"]["message"].is_string(),
            "{} answered {} without error.code/message: {v}",
            what(),
            reply.status
        );
    }
}

// ---- seeds: valid bodies for each route ----

const INTERESTING: [&str; 40] = [
    "1e309",
    "-1e309",
    "1e999",
    "-0",
    "-0.0",
    "NaN",
    "-NaN",
    "Infinity",
    "-Infinity",
    "inf",
    "99999999999999999999999",
    "18446744073709551615",
    "18446744073709551616",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "1.7976931348623157e308",
    "-1.7976931348623157e308",
    "2.2250738585072014e-308",
    "5e-324",
    "1e-400",
    "0",
    "-1",
    "4294967295",
    "4294967296",
    "253402300800",
    "9999999999999",
    "1e15",
    "100.0000000001",
    "-0.0000001",
    "0x10",
    "01",
    "1.",
    ".5",
    "+1",
    "\"1\"",
    "null",
    "[]",
    "{}",
];

/// Plausible but sometimes extreme (still valid-looking) numbers.
fn num(rng: &mut Rng, plausible: f64) -> Value {
    match rng.below(20) {
        0 => json!(1.797_693_134_862_315_7e308),
        1 => json!(5e-324),
        2 => json!(0),
        3 => json!(1e15),
        4 => json!(-0.0),
        _ => json!(plausible),
    }
}

fn percent(rng: &mut Rng) -> Value {
    match rng.below(10) {
        0 => json!(100.0),
        1 => json!(0.0),
        _ => json!((rng.below(10_000) as f64) / 100.0),
    }
}

fn snapshot(rng: &mut Rng, ts: i64) -> Value {
    let cores = 1 + rng.below(4);
    let per_core: Vec<Value> = (0..cores).map(|_| percent(rng)).collect();
    let ifaces = rng.below(3);
    let net: Vec<Value> = (0..ifaces)
        .map(|i| {
            json!({"interface": format!("eth{i}"), "rx_bytes_per_s": num(rng, 1200.0), "tx_bytes_per_s": num(rng, 800.0),
                   "rx_bytes_total": 123456, "tx_bytes_total": 65432, "rx_errors": 0, "tx_errors": 0})
        })
        .collect();
    let disks: Vec<Value> = (0..rng.below(3))
        .map(|i| {
            json!({"mount": format!("/m{i}"), "device": "/dev/mmcblk0p2", "fstype": "ext4", "total_bytes": 60_000_000_000u64,
                   "used_bytes": 9_000_000_000u64, "free_bytes": 51_000_000_000u64, "used_percent": percent(rng),
                   "inodes_total": 3_700_000, "inodes_used": 200_000})
        })
        .collect();
    let disk_io: Vec<Value> = (0..rng.below(3))
        .map(|i| {
            json!({"device": format!("sd{i}"), "read_bytes_per_s": num(rng, 0.0), "write_bytes_per_s": num(rng, 4096.0),
                   "reads_per_s": num(rng, 0.0), "writes_per_s": num(rng, 1.0)})
        })
        .collect();
    json!({
        "timestamp": crate::clock::rfc3339(ts),
        "hostname": "pi4",
        "system": {"os": "Debian GNU/Linux 12 (bookworm)", "kernel": "6.6.31", "arch": "aarch64",
                   "model": "Raspberry Pi 4 Model B Rev 1.4", "agent_version": "0.1.0"},
        "cpu": {"total_percent": percent(rng), "per_core": per_core, "count": cores},
        "memory": {"total_bytes": 8_000_000_000u64, "used_bytes": 2_000_000_000u64, "available_bytes": 6_000_000_000u64,
                   "used_percent": percent(rng), "swap_total_bytes": rng.below(2) * 1000, "swap_used_bytes": 0,
                   "swap_percent": percent(rng)},
        "load": {"load1": num(rng, 0.4), "load5": num(rng, 0.3), "load15": num(rng, 0.2)},
        "uptime_seconds": 86400,
        "disks": disks,
        "disk_io": disk_io,
        "net": net,
        "temperatures": [{"sensor": "cpu_thermal", "celsius": 51.0, "high_celsius": 80.0}],
        "pi": {"raw": 0, "under_voltage": false, "freq_capped": false, "throttled": false, "soft_temp_limit": false,
               "under_voltage_occurred": false, "freq_capped_occurred": false, "throttled_occurred": false,
               "soft_temp_limit_occurred": false},
        "processes": [{"pid": 1, "name": "init", "cpu_percent": num(rng, 0.1), "memory_bytes": 1000}]
    })
}

fn labwatch_payload(rng: &mut Rng, lab_id: &str, ts: i64) -> Value {
    let timestamp = match rng.below(4) {
        0 => json!(ts),
        1 => Value::Null,
        _ => json!(crate::clock::rfc3339(ts).replace('Z', "+00:00")),
    };
    let system = json!({
        "cpu": {"usage_percent": [percent(rng), percent(rng)]},
        "memory": {"used_percent": percent(rng), "total_bytes": 1000, "used_bytes": 400, "available_bytes": 600,
                   "swap_total_bytes": 100, "swap_used_bytes": 5, "swap_percent": 5.0},
        "disk": [{"mountpoint": "/", "device": "/dev/sda1", "fstype": "ext4", "used_percent": percent(rng),
                  "total_bytes": 100, "used_bytes": 70, "free_bytes": 30}],
        "load_average": {"load1": num(rng, 0.7), "load5": 0.5, "load15": 0.2},
        "network": [{"interface": "eth0", "bytes_sent": rng.below(1 << 30), "bytes_recv": rng.below(1 << 30)}],
        "temperatures": [{"sensor_key": "k10temp", "temperature_celsius": 55.0,
                          "high_threshold_celsius": 80.0, "critical_threshold_celsius": 95.0}],
        "uptime_seconds": 5000,
        "processes": [{"pid": 1, "name": "systemd", "cpu_percent": 0.2}]
    });
    let system = if rng.chance(30) {
        json!({ "data": system })
    } else {
        system
    };
    json!({"lab_id": lab_id, "hostname": "", "timestamp": timestamp, "collectors": {
        "system": system, "docker": null, "services": {"error": "permission denied"},
        "smart": {"devices": null}}})
}

/// Collections whose `{id}` is a number.
const NUMERIC_ID_ROUTES: [&str; 7] = [
    "/api/v1/checks/",
    "/api/v1/heartbeats/",
    "/api/v1/alert-rules/",
    "/api/v1/alerts/",
    "/api/v1/channels/",
    "/api/v1/maintenance-windows/",
    "/api/v1/silences/",
];

/// A valid body for `pattern`; bodies of other routes for unknown ones.
fn seed(rng: &mut Rng, pattern: &str, f: &Fixture) -> Vec<u8> {
    let now = crate::clock::now();
    let roles = ["viewer", "operator", "admin"];
    let v = match pattern {
        "/api/v1/auth/login" => json!({
            "username": rng.pick(&["fuzzadmin", "victim", "nobody"]),
            "password": rng.pick(&[ADMIN_PASSWORD, "wrong-password"])}),
        "/api/v1/auth/logout" | "/api/v1/nodes/{id}/rotate-token" => json!({}),
        "/api/v1/auth/password" => json!({
            "current_password": rng.pick(&[ADMIN_PASSWORD, "wrong-password"]),
            "new_password": ADMIN_PASSWORD}),
        "/api/v1/auth/unlock" => json!({"username": "fuzzadmin", "ip": FUZZ_IP}),
        "/api/v1/users" => json!({
            "username": format!("user{}", rng.below(1000)),
            "password": "long-enough-password",
            "role": rng.pick(&roles)}),
        "/api/v1/users/{username}" => {
            if rng.chance(50) {
                json!({"role": rng.pick(&roles)})
            } else {
                json!({"role": rng.pick(&roles), "password": "another-long-password"})
            }
        }
        "/api/v1/tokens" => json!({"name": format!("token {}", rng.below(100)), "role": rng.pick(&roles)}),
        "/api/v1/enrollment-codes" => {
            if rng.chance(30) {
                json!({})
            } else {
                json!({"ttl_s": rng.pick(&[60, 600, 3600, 604_800])})
            }
        }
        "/api/v1/agent/enroll" => {
            let code = if rng.chance(40) {
                // A real, unused code, so the success path is fuzzed too.
                let code = format!("fuzz-code-{}", rng.next() % 1_000_000_000);
                let normalised: String = code.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
                f.shared
                    .borrow()
                    .store
                    .insert_enrollment_code(&security::hash_secret(&normalised), "fuzz", now, now + 3600)
                    .expect("enrollment code");
                code
            } else {
                "abcd-efgh-jkmn".into()
            };
            json!({"code": code, "hostname": format!("host-{}", rng.below(100)), "os": "Linux",
                   "arch": "x86_64", "agent_version": "0.1.0"})
        }
        "/api/v1/agent/ingest" => {
            let ts = now - rng.below(2 * 86400) as i64;
            if rng.chance(70) {
                snapshot(rng, ts)
            } else {
                let n = 1 + rng.below(4);
                let list: Vec<Value> = (0..n).map(|i| snapshot(rng, ts - i as i64 * 30)).collect();
                json!({ "snapshots": list })
            }
        }
        "/api/v1/nodes/{id}" => json!({"name": format!("node {}", rng.below(100)),
            "labels": {"room": "attic", "rack/slot": "2"}, "location": "shelf 2"}),
        "/api/v1/register" => json!({"hostname": format!("lab-{}", rng.below(100)), "os": "linux",
            "arch": "amd64", "agent_version": "1.4.0"}),
        "/api/v1/ingest" => {
            let ts = now - rng.below(86400) as i64;
            labwatch_payload(rng, &f.agent_node, ts)
        }
        "/api/v1/alert-rules" | "/api/v1/alert-rules/{id}" => {
            let metric = *rng.pick(&["cpu", "memory", "disk", "load", "temperature", "node_offline"]);
            json!({"name": "fuzz rule", "metric": metric,
                   "scope": rng.pick(&[json!({}), json!({"labels": {"room": "attic"}}), json!({"node": f.victim_node})]),
                   "warning": {"trigger": 80, "clear": 70}, "critical": {"trigger": 95, "clear": 90},
                   "for_s": rng.below(120), "enabled": rng.chance(80)})
        }
        "/api/v1/alerts/{id}/ack" | "/api/v1/alerts/{id}/unack" | "/api/v1/alerts/{id}/resolve" => {
            json!({"note": "fuzz note"})
        }
        // Channels point at a closed local port; the fuzzer never test-sends.
        "/api/v1/channels" | "/api/v1/channels/{id}" => match rng.below(4) {
            0 => json!({"name": "hook", "type": "webhook", "config": {"url": "http://127.0.0.1:9/h",
                  "headers": {"X-A": "b"}, "template": "{\"t\": \"{{message}}\"}", "secret": "s"},
                  "min_severity": "warning", "filter": {"labels": {"room": "attic"}, "kinds": ["metric"]},
                  "notify_on": ["fired", "resolved"]}),
            1 => {
                json!({"name": "tg", "type": "telegram", "config": {"bot_token": "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw",
                  "chat_id": 42, "api_base": "http://127.0.0.1:9"}})
            }
            2 => {
                json!({"name": "mail", "type": "email", "config": {"host": "127.0.0.1", "port": 9, "tls": "none",
                  "from": "a@example.org", "to": ["b@example.org"]}, "min_severity": "critical"})
            }
            _ => {
                json!({"name": "ntfy", "type": "ntfy", "config": {"server": "http://127.0.0.1:9", "topic": "t"}})
            }
        },
        "/api/v1/maintenance-windows" | "/api/v1/maintenance-windows/{id}" => {
            if rng.chance(50) {
                json!({"name": "w", "start": crate::clock::rfc3339(now), "end": crate::clock::rfc3339(now + 3600),
                       "nodes": [f.victim_node]})
            } else {
                json!({"name": "w", "weekly": {"days": ["sat", "sun"], "from": "02:00", "to": "04:00",
                       "utc_offset": "+01:00"}, "labels": {"room": "attic"}})
            }
        }
        "/api/v1/silences" => {
            json!({"matchers": {"node": f.victim_node, "metric": "cpu", "severity": "warning",
            "labels": {"room": "attic"}}, "comment": "fuzz", "duration_s": 60})
        }
        "/api/v1/checks" | "/api/v1/checks/{id}" => match rng.below(4) {
            0 => json!({"name": "web", "type": "http", "target": "http://127.0.0.1:9/x", "interval_s": 30,
                        "http": {"keyword": "ok", "expected_status": ["200-299"], "headers": {"X-A": "b"}}}),
            1 => json!({"name": "dns", "type": "dns", "target": "localhost",
                        "dns": {"record_type": "A", "expected": ["127.0.0.1"]}}),
            2 => json!({"name": "tls", "type": "tls", "target": "127.0.0.1:9", "labels": {"room": "attic"},
                        "certificate": {"warning_days": 14, "critical_days": 7}}),
            _ => json!({"name": "ping", "type": "icmp", "target": "127.0.0.1", "icmp": {"count": 3},
                        "run_from": f.victim_node, "failure_threshold": 2, "recovery_threshold": 1}),
        },
        "/api/v1/agent/check-results" => json!({"results": [
            {"check_id": rng.below(5), "at": now, "outcome": {"ok": rng.chance(50), "latency_ms": 1.5,
             "addresses": ["127.0.0.1"], "packet_loss_percent": 0,
             "peer_cert": {"der_hex": "3003020101", "chain_valid": false, "chain_error": "x"}}}]}),
        "/api/v1/lab/{lab_id}/logs" => json!({"entries": [
            {"ts": "2026-11-23T10:00:00Z", "source": "journald", "level": "err", "message": "disk full", "unit": "backup.service"},
            {"ts": "2026-11-23T10:00:01Z", "source": "journald", "level": "info", "message": "ok", "unit": ""}]}),
        _ => {
            // A route this file does not know yet: every other route's seed.
            let known: Vec<&str> = body_routes()
                .iter()
                .map(|r| r.path)
                .filter(|p| *p != pattern)
                .collect();
            let other = *rng.pick(&known);
            return seed(rng, other, f);
        }
    };
    if rng.chance(10) {
        serde_json::to_vec_pretty(&v).expect("serialising a seed")
    } else {
        serde_json::to_vec(&v).expect("serialising a seed")
    }
}

// ---- mutations ----

fn replace_number(rng: &mut Rng, b: &mut Vec<u8>) {
    let is_num = |c: u8| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-');
    let mut starts = Vec::new();
    for i in 0..b.len() {
        let starts_num =
            b[i].is_ascii_digit() || (b[i] == b'-' && b.get(i + 1).is_some_and(u8::is_ascii_digit));
        let prev_ok = i == 0 || !(is_num(b[i - 1]) || b[i - 1].is_ascii_alphabetic());
        if starts_num && prev_ok {
            starts.push(i);
        }
    }
    if starts.is_empty() {
        let at = rng.below(b.len() + 1);
        b.splice(at..at, rng.pick(&INTERESTING).bytes());
        return;
    }
    let start = *rng.pick(&starts);
    let mut end = start + 1;
    while end < b.len() && is_num(b[end]) {
        end += 1;
    }
    b.splice(start..end, rng.pick(&INTERESTING).bytes());
}

fn mutate(rng: &mut Rng, b: &mut Vec<u8>) {
    let len = b.len();
    match rng.below(10) {
        0 if len > 0 => {
            let i = rng.below(len);
            b[i] ^= 1 << rng.below(8);
        }
        1 => b.truncate(rng.below(len + 1)),
        2 => {
            const TOKENS: [&[u8]; 11] = [
                b"[", b"{", b"\"", b"\\", b"]", b"}", b":", b",", b"\\u", b"\\ud800", b"{\"a\":",
            ];
            let token = *rng.pick(&TOKENS);
            let times = if rng.chance(10) { 1 + rng.below(500) } else { 1 };
            let at = rng.below(len + 1);
            let insert: Vec<u8> = token.iter().copied().cycle().take(token.len() * times).collect();
            b.splice(at..at, insert);
        }
        3 | 4 => replace_number(rng, b),
        5 if len > 0 => {
            let i = rng.below(len);
            b[i] = rng.next() as u8;
        }
        6 if len > 0 => {
            let from = rng.below(len);
            let to = (from + 1 + rng.below(32)).min(len);
            b.drain(from..to);
        }
        7 if len > 0 => {
            let from = rng.below(len);
            let to = (from + 1 + rng.below(64)).min(len);
            let chunk = b[from..to].to_vec();
            let at = rng.below(len + 1);
            b.splice(at..at, chunk);
        }
        8 => {
            const JUNK: [&[u8]; 8] = [
                b"\x00",
                b"\x1b[31m",
                b"\xff\xfe",
                b"\xc3\x28",
                b"\xed\xa0\x80",
                "é漢字🦀".as_bytes(),
                b"\\u0000",
                b"\r\n",
            ];
            let junk = *rng.pick(&JUNK);
            let at = rng.below(len + 1);
            b.splice(at..at, junk.iter().copied());
        }
        _ => {
            // A long string where a value was.
            let at = rng.below(len + 1);
            let long = vec![b'A'; 1 + rng.below(5000)];
            b.splice(at..at, long);
        }
    }
}

fn random_bytes(rng: &mut Rng, max: usize) -> Vec<u8> {
    let n = rng.below(max + 1);
    if rng.chance(50) {
        // JSON-ish alphabet: more likely to get deep into the parser.
        let alphabet = b"{}[]\":,0123456789.eE+-truefalsn \\/\tabcxyz";
        (0..n).map(|_| alphabet[rng.below(alphabet.len())]).collect()
    } else {
        (0..n).map(|_| rng.next() as u8).collect()
    }
}

/// Pre-built valid bodies per route (building JSON per request would cost
/// about a fifth of the run in a debug build). Ingest seeds carry distinct
/// random timestamps, so reusing one later exercises the duplicate path.
struct SeedPool(BTreeMap<&'static str, Vec<Vec<u8>>>);

const SEEDS_PER_ROUTE: usize = 300;

impl SeedPool {
    fn new(rng: &mut Rng, routes: &[&'static Route], f: &Fixture) -> SeedPool {
        SeedPool(
            routes
                .iter()
                .map(|r| {
                    let seeds = (0..SEEDS_PER_ROUTE).map(|_| seed(rng, r.path, f)).collect();
                    (r.path, seeds)
                })
                .collect(),
        )
    }
    fn get(&self, rng: &mut Rng, path: &str) -> Vec<u8> {
        rng.pick(&self.0[path]).clone()
    }
}

fn fuzz_body(rng: &mut Rng, route: &Route, routes: &[&Route], seeds: &SeedPool) -> Vec<u8> {
    match rng.below(100) {
        0..=4 => random_bytes(rng, 256),
        5..=9 => {
            let mut b = seeds.get(rng, route.path);
            b.extend(random_bytes(rng, 64));
            b
        }
        10..=21 => seeds.get(rng, route.path),
        _ => {
            let path = if rng.chance(80) {
                route.path
            } else {
                rng.pick(routes).path
            };
            let mut b = seeds.get(rng, path);
            for _ in 0..1 + rng.below(3) {
                mutate(rng, &mut b);
            }
            b
        }
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ---- the stored-data check ----

fn all_numbers_finite(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.as_f64().is_none_or(f64::is_finite),
        Value::Array(a) => a.iter().all(all_numbers_finite),
        Value::Object(o) => o.values().all(all_numbers_finite),
        _ => true,
    }
}

/// Every REAL column of `table` (all columns but the key ones) is finite or NULL.
fn assert_table_finite(store: &Store, table: &str, columns: &[String]) -> usize {
    let sql = format!("SELECT {} FROM {table}", columns.join(", "));
    let mut st = store.conn.prepare(&sql).expect("scan query");
    let mut rows = st.query([]).expect("scan");
    let mut n = 0;
    while let Some(row) = rows.next().expect("row") {
        for (i, col) in columns.iter().enumerate() {
            let v: Option<f64> = row.get(i).expect("a REAL column");
            assert!(
                v.is_none_or(f64::is_finite),
                "{table}.{col} holds a non-finite value: {v:?}"
            );
        }
        n += 1;
    }
    n
}

fn assert_nothing_non_finite_stored(store: &mut Store) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    let metric_cols: Vec<String> = METRICS.iter().map(|m| m.to_string()).collect();
    counts.insert("samples", assert_table_finite(store, "samples", &metric_cols));
    let details: Vec<String> = store
        .conn
        .prepare("SELECT detail FROM samples WHERE detail IS NOT NULL")
        .expect("detail query")
        .query_map([], |r| r.get(0))
        .expect("detail rows")
        .collect::<Result<_, _>>()
        .expect("detail rows");
    for text in &details {
        // serde_json refuses NaN/Infinity literals, so this also catches them.
        let v: Value =
            serde_json::from_str(text).unwrap_or_else(|e| panic!("samples.detail is not JSON ({e}): {text}"));
        assert!(
            all_numbers_finite(&v),
            "samples.detail holds a non-finite number: {text}"
        );
    }
    counts.insert("samples_with_detail", details.len());
    // Rollups are sums of samples: they must not overflow either.
    store.roll_up(crate::clock::now()).expect("rollups");
    for t in crate::store::rollup::TABLES {
        let rows: Vec<(i64, Vec<u8>)> = store
            .conn
            .prepare(&format!("SELECT k & 15, data FROM {}", t.name))
            .expect("rollup query")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("rollup rows")
            .collect::<Result<_, _>>()
            .expect("rollup rows");
        for (part, data) in &rows {
            crate::store::blocks::visit_row(*part as usize, data, t.slots as usize, |_, cell| {
                if let Some((m, c)) = cell {
                    assert!(
                        c.sum.is_finite() && c.min.is_finite() && c.max.is_finite(),
                        "{}: {} holds a non-finite number: {c:?}",
                        t.name,
                        METRICS[m]
                    );
                }
            })
            .unwrap_or_else(|e| panic!("{}: a row does not decode: {e}", t.name));
        }
        counts.insert(t.name, rows.len());
    }
    let mut st = store
        .conn
        .prepare("SELECT id, latest FROM nodes WHERE latest IS NOT NULL")
        .expect("nodes query");
    let latest: Vec<(String, String)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("nodes")
        .collect::<Result<_, _>>()
        .expect("nodes rows");
    for (id, text) in &latest {
        // serde_json refuses NaN/Infinity literals, so this also catches them.
        let v: Value = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("node {id}: latest is not valid JSON ({e}): {text}"));
        assert!(
            all_numbers_finite(&v),
            "node {id}: latest holds a non-finite number: {text}"
        );
    }
    counts.insert("nodes_with_latest", latest.len());
    counts
}

// ---- the tests ----

#[test]
fn fuzzed_bodies_on_every_body_route_never_fail_internally_or_store_non_finite_numbers() {
    let seed_value: u64 = env_or("CAIRN_FUZZ_SEED", DEFAULT_SEED);
    let iters: usize = env_or("CAIRN_FUZZ_ITERS", DEFAULT_ITERS);
    let mut rng = Rng::new(seed_value);
    let (mut f, wake) = Fixture::new();
    let routes = body_routes();
    assert!(
        routes.len() >= 14,
        "expected every POST/PATCH route, found {}",
        routes.len()
    );
    let seeds = SeedPool::new(&mut rng, &routes, &f);
    let ex = smol::LocalExecutor::new();
    ex.spawn(crate::engine::ingest::committer(f.shared.clone(), wake))
        .detach();
    let started = Instant::now();
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    let mut per_route: BTreeMap<&str, usize> = BTreeMap::new();
    let mut route_time: BTreeMap<&str, Duration> = BTreeMap::new();
    let mut hashing_sent = 0;
    let mut gen_time = Duration::ZERO;
    let mut slowest = Duration::ZERO;
    smol::block_on(ex.run(async {
        let mut sent = 0;
        while sent < iters {
            let route = *rng.pick(&routes);
            let g = Instant::now();
            let body = fuzz_body(&mut rng, route, &routes, &seeds);
            gen_time += g.elapsed();
            if HASHING_ROUTES.contains(&route.path) {
                let is_object = serde_json::from_slice::<Value>(&body).is_ok_and(|v| v.is_object());
                if is_object {
                    if hashing_sent >= HASHING_BUDGET {
                        continue;
                    }
                    hashing_sent += 1;
                }
            }
            let use_session = rng.chance(50);
            let req = f.request(route, body.clone(), use_session);
            let t = Instant::now();
            let reply = send(&f.shared, req).await;
            let took = t.elapsed();
            slowest = slowest.max(took);
            check_reply(
                route,
                &body,
                &reply,
                took,
                &format!("iteration {sent}, CAIRN_FUZZ_SEED={seed_value}"),
            );
            if reply.status == 401 && route.access != Access::Public {
                f.refresh_credentials();
            }
            *by_status.entry(reply.status).or_default() += 1;
            *per_route.entry(route.path).or_default() += 1;
            *route_time.entry(route.path).or_default() += took;
            sent += 1;
        }
    }));
    let stored = assert_nothing_non_finite_stored(&mut f.shared.borrow_mut().store);
    eprintln!(
        "fuzz: {iters} requests in {:?} (slowest {slowest:?}), seed {seed_value}; statuses {by_status:?}; \
         per route {per_route:?}; time per route {route_time:?}; valid objects to hashing routes {hashing_sent}; generating {gen_time:?}; stored {stored:?}",
        started.elapsed()
    );
    // The run must have reached the storage paths, not only the parser.
    assert!(stored["samples"] > 100, "too few snapshots stored: {stored:?}");
    assert!(by_status.get(&200).copied().unwrap_or(0) > 1000, "{by_status:?}");
    for r in &routes {
        assert!(
            per_route.get(r.path).copied().unwrap_or(0) > 100,
            "{} barely fuzzed",
            r.path
        );
    }
}

/// nanoserde 0.2.1 loops forever on the first and panics on the second; the
/// daemon must answer both with a plain 400 on every route that takes a body.
#[test]
fn nanoserde_killer_bodies_get_a_400_on_every_body_route() {
    let (f, wake) = Fixture::new();
    let ex = smol::LocalExecutor::new();
    ex.spawn(crate::engine::ingest::committer(f.shared.clone(), wake))
        .detach();
    smol::block_on(ex.run(async {
        for route in body_routes() {
            // A route that ignores its body answers `{}` the same way; any
            // route that reads it must refuse these.
            let baseline = send(&f.shared, f.request(route, b"{}".to_vec(), false))
                .await
                .status;
            for body in [&b"{\"zzz\":["[..], b"{\"a\":1,\"name\":\"n\",\"extra\":}"] {
                let t = Instant::now();
                let reply = send(&f.shared, f.request(route, body.to_vec(), false)).await;
                check_reply(route, body, &reply, t.elapsed(), "nanoserde regression");
                assert!(
                    reply.status == 400 || (reply.status == baseline && baseline < 300),
                    "{} {} answered {} to {}: {}",
                    route.method,
                    route.path,
                    reply.status,
                    show(body),
                    String::from_utf8_lossy(&reply.body)
                );
            }
        }
    }));
}

#[test]
fn json_syntax_errors_in_one_value_name_its_field() {
    use crate::engine::ingest::parse_json;
    let named: [(&[u8], &str); 6] = [
        (
            b"{\"cpu\":{\"total_percent\":1e999}}",
            "field 'cpu.total_percent'",
        ),
        (b"{\"cpu\":{\"total_percent\":NaN}}", "field 'cpu.total_percent'"),
        (b"{\"load\":{\"load1\":-Infinity}}", "field 'load.load1'"),
        (
            b"{\"username\":\"\xff\xfe\",\"password\":\"x\"}",
            "field 'username'",
        ),
        (b"{\"per_core\":[1,2,Infinity]}", "field 'per_core[2]'"),
        (b"{\"labels\":{\"k\":\"\\ud800\"}}", "field 'labels.k'"),
    ];
    for (body, field) in named {
        let e = parse_json(body).unwrap_err();
        assert_eq!((e.status, e.code), (400, "malformed_json"), "{}", show(body));
        assert!(e.message.starts_with(field), "{} gave {}", show(body), e.message);
    }
    let deep_array = "[".repeat(100_000);
    let deep_object = "{\"a\":".repeat(100_000);
    let unnamed: [&[u8]; 6] = [
        b"{\"zzz\":[",
        b"{\"a\":1,\"name\":\"n\",\"extra\":}",
        b"{} trailing",
        b"\xff",
        deep_array.as_bytes(),
        deep_object.as_bytes(),
    ];
    for body in unnamed {
        let e = parse_json(body).unwrap_err();
        assert_eq!(e.status, 400, "{}", show(body));
        assert!(
            e.message.len() < 300,
            "{} gave a long message: {}",
            show(body),
            e.message
        );
    }
}
