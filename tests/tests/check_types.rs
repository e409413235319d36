//! The check types beyond http/tcp, certificates and their monitor,
//! maintenance windows, and the uptime/latency views, end to end against
//! fixtures on 127.0.0.1: a TLS server with a certificate signed by a test
//! CA (valid for 10.5 more days) and one with an expired certificate.

use cairn_e2e::fixtures::FakeReceiver;
use cairn_e2e::tls_fixture::{TestCa, TlsServer};
use cairn_e2e::*;
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
const DAY: i64 = 86_400;

struct Setup {
    d: Daemon,
    admin: String,
    hook: FakeReceiver,
    ca: TestCa,
    _dir: TempDir,
}

/// A daemon that trusts the test CA, with a webhook for check and
/// certificate alerts.
fn setup() -> Setup {
    let dir = TempDir::new("ca");
    let ca = TestCa::new();
    let pem = dir.path().join("ca.pem");
    ca.write_pem(&pem);
    let d = Daemon::start_with(DaemonOpts {
        env: vec![("SSL_CERT_FILE".into(), pem.display().to_string())],
        ..DaemonOpts::default()
    });
    let admin = d.admin();
    let hook = FakeReceiver::start();
    webhook_channel(
        &d,
        &admin,
        &format!("{}/hook", hook.url()),
        &["check", "certificate"],
    );
    Setup {
        d,
        admin,
        hook,
        ca,
        _dir: dir,
    }
}

fn create(s: &Setup, body: Value) -> Value {
    let r = s.d.client.post("/api/v1/checks", Some(&s.admin), &body);
    assert_eq!(r.status, 201, "{}", r.text);
    r.json()
}

fn run(s: &Setup, id: &Value) -> Value {
    let r =
        s.d.client
            .post(&format!("/api/v1/checks/{id}/run"), Some(&s.admin), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()
}

fn alerts(s: &Setup, kind: &str) -> Value {
    s.d.client
        .get(&format!("/api/v1/alerts?kind={kind}&status=open"), Some(&s.admin))
        .json()
}

#[test]
fn tls_and_https_checks_record_the_certificate_and_alert_before_expiry() {
    let s = setup();
    let now = now() as i64;
    let good_leaf = s.ca.leaf("good.test", 10 * DAY + 12 * 3600);
    let good = TlsServer::start(&good_leaf);
    let expired = TlsServer::start(&s.ca.leaf("old.test", -(2 * DAY + 3600)));

    // tls: valid chain, 10 whole days left → up, and a warning (≤ 14 days).
    let tls = create(
        &s,
        json!({"name": "good-tls", "type": "tls", "target": format!("127.0.0.1:{}", good.port()),
               "interval_s": 3600, "failure_threshold": 1}),
    );
    let r = run(&s, &tls["id"]);
    assert_eq!(r["status"], "up", "{r}");
    let cert = &r["cert"];
    assert_eq!(cert["days_remaining"], 10, "{cert}");
    assert_eq!(cert["valid"], true, "{cert}");
    assert!(
        cert["subject"].as_str().unwrap().contains("CN=good.test"),
        "{cert}"
    );
    assert!(
        cert["issuer"].as_str().unwrap().contains("CN=Cairn Test CA"),
        "{cert}"
    );
    let not_after = cert["not_after"].as_str().unwrap();
    assert!(not_after.ends_with('Z'), "{not_after}");
    assert!((good_leaf.not_after - now - 10 * DAY - 12 * 3600).abs() <= 5);
    assert!(cert["dns_names"]
        .as_array()
        .unwrap()
        .contains(&json!("localhost")));
    let a = alerts(&s, "certificate");
    assert_eq!(a["total"], 1, "{a}");
    assert_eq!(a["data"][0]["severity"], "warning");
    assert_eq!(a["data"][0]["source_id"], tls["id"].to_string());
    let got = s.hook.wait_for(1, WAIT);
    let ev = got[0].json();
    assert_eq!(ev["kind"], "certificate", "{ev}");
    assert!(
        ev["message"].as_str().unwrap().contains("expires in 10 day(s)"),
        "{ev}"
    );
    // The check keeps the certificate it last saw.
    let c =
        s.d.client
            .get(&format!("/api/v1/checks/{}", tls["id"]), Some(&s.admin))
            .json();
    assert_eq!(c["cert"]["sha256_fingerprint"], cert["sha256_fingerprint"]);
    // Thresholds below the days left: the alert resolves on the next run.
    let r = s.d.client.patch(
        &format!("/api/v1/checks/{}", tls["id"]),
        Some(&s.admin),
        &json!({"certificate": {"warning_days": 5, "critical_days": 2}}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    run(&s, &tls["id"]);
    assert_eq!(alerts(&s, "certificate")["total"], 0);
    let got = s.hook.wait_for(2, WAIT);
    assert_eq!(got[1].json()["event"], "resolved");

    // https: the same certificate recorded beside the HTTP result.
    let https = create(
        &s,
        json!({"name": "good-https", "type": "http", "target": format!("https://localhost:{}/", good.port()),
               "interval_s": 3600, "certificate": {"warning_days": 5, "critical_days": 2}}),
    );
    let r = run(&s, &https["id"]);
    assert_eq!(
        (r["status"].as_str(), r["status_code"].as_u64()),
        (Some("up"), Some(200)),
        "{r}"
    );
    assert_eq!(r["cert"]["sha256_fingerprint"], cert["sha256_fingerprint"]);
    assert_eq!(r["cert"]["days_remaining"], 10);

    // Expired: the tls check is down and the certificate alert critical.
    let old = create(
        &s,
        json!({"name": "old-tls", "type": "tls", "target": format!("localhost:{}", expired.port()),
               "interval_s": 3600, "failure_threshold": 1}),
    );
    let r = run(&s, &old["id"]);
    assert_eq!(r["status"], "down", "{r}");
    assert_eq!(r["cert"]["valid"], false);
    assert!(r["cert"]["days_remaining"].as_i64().unwrap() < 0, "{r}");
    assert!(
        r["error"].as_str().unwrap().to_lowercase().contains("expired"),
        "{r}"
    );
    let a = alerts(&s, "certificate");
    let old_id = old["id"].to_string();
    let crit: Vec<&Value> = a["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["source_id"] == old_id.as_str())
        .collect();
    assert_eq!(crit.len(), 1, "{a}");
    assert_eq!(crit[0]["severity"], "critical");
    // An https check of the expired site with verification on fails on the
    // chain, and still records the certificate.
    let r = run(
        &s,
        &create(
            &s,
            json!({"name": "old-https", "type": "http", "target": format!("https://localhost:{}/", expired.port()),
                   "interval_s": 3600}),
        )["id"],
    );
    assert_eq!(r["status"], "down", "{r}");
    assert_eq!(r["cert"]["valid"], false, "{r}");
}

#[test]
fn icmp_and_dns_checks_against_loopback() {
    let s = setup();
    let icmp = create(
        &s,
        json!({"name": "lo", "type": "icmp", "target": "127.0.0.1", "interval_s": 3600, "icmp": {"count": 2}}),
    );
    let r = run(&s, &icmp["id"]);
    let err = r["error"].as_str().unwrap_or("");
    if err.contains("not permitted to this process") {
        println!("SKIPPED icmp: this kernel forbids both ping and raw sockets here: {err}");
    } else {
        assert_eq!(r["status"], "up", "{r}");
        assert_eq!(r["packet_loss_percent"], 0.0, "{r}");
        assert!(r["latency_ms"].is_number(), "{r}");
    }
    let dns = create(
        &s,
        json!({"name": "localhost", "type": "dns", "target": "localhost", "interval_s": 3600,
               "dns": {"record_type": "A", "expected": ["127.0.0.1"]}}),
    );
    let r = run(&s, &dns["id"]);
    assert_eq!(r["status"], "up", "{r}");
    assert!(
        r["addresses"].as_array().unwrap().contains(&json!("127.0.0.1")),
        "{r}"
    );
    let wrong = create(
        &s,
        json!({"name": "wrong", "type": "dns", "target": "localhost", "interval_s": 3600,
               "dns": {"expected": ["10.11.12.13"]}}),
    );
    let r = run(&s, &wrong["id"]);
    assert_eq!(r["status"], "down");
    assert!(r["error"].as_str().unwrap().contains("10.11.12.13"), "{r}");
    let missing = create(
        &s,
        json!({"name": "nx", "type": "dns", "target": "no-such-host.invalid", "interval_s": 3600}),
    );
    assert_eq!(run(&s, &missing["id"])["status"], "down");
}

#[test]
fn maintenance_skips_the_checks_it_covers() {
    let s = setup();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let r = s.d.client.post(
        "/api/v1/maintenance-windows",
        Some(&s.admin),
        &json!({"name": "attic work", "start": rfc3339(now() - 60), "end": rfc3339(now() + 3600),
                "labels": {"room": "attic"}}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let covered = create(
        &s,
        json!({"name": "attic", "type": "tcp", "target": target, "interval_s": 10, "labels": {"room": "attic"}}),
    );
    let control = create(
        &s,
        json!({"name": "cellar", "type": "tcp", "target": target, "interval_s": 10}),
    );
    assert_eq!(covered["status"], "maintenance");
    assert!(covered["maintenance_window_id"].is_i64(), "{covered}");
    let results = |id: &Value| {
        s.d.client
            .get(&format!("/api/v1/checks/{id}/results?hours=1"), Some(&s.admin))
            .json()["total"]
            .as_i64()
            .unwrap()
    };
    // Both are due within their 10 s interval; the scheduler starts the
    // control check and passes over the covered one.
    poll("the control check to run twice", WAIT, || {
        (results(&control["id"]) >= 2).then_some(())
    });
    assert_eq!(results(&covered["id"]), 0, "a check inside a window is not run");
}

#[test]
fn daily_uptime_and_response_time_series() {
    let s = setup();
    let site = FakeReceiver::start();
    let c = create(
        &s,
        json!({"name": "web", "type": "http", "target": format!("{}/x", site.url()), "interval_s": 3600,
               "failure_threshold": 1}),
    );
    site.push_statuses(&[500]);
    for _ in 0..4 {
        run(&s, &c["id"]);
    }
    let u =
        s.d.client
            .get(
                &format!("/api/v1/checks/{}/uptime?days=90", c["id"]),
                Some(&s.admin),
            )
            .json();
    let days = u["data"].as_array().unwrap();
    assert_eq!(days.len(), 90);
    let today = days.last().unwrap();
    assert_eq!(
        (today["runs"].as_i64(), today["failures"].as_i64()),
        (Some(4), Some(1)),
        "{today}"
    );
    assert_eq!(today["uptime_percent"], 75.0);
    assert!(today["avg_latency_ms"].is_number());
    assert!(
        days[0]["uptime_percent"].is_null(),
        "a day without runs is not 0 %"
    );
    assert_eq!(u["uptime_percent"], 75.0);
    let rt =
        s.d.client
            .get(
                &format!("/api/v1/checks/{}/response-times?hours=1&points=12", c["id"]),
                Some(&s.admin),
            )
            .json();
    assert_eq!(rt["step_s"], 300);
    let points = rt["data"].as_array().unwrap();
    let runs: i64 = points.iter().map(|p| p["runs"].as_i64().unwrap()).sum();
    assert_eq!(runs, 4, "{rt}");
    assert!(points
        .iter()
        .all(|p| p["avg_ms"].is_number() && p["max_ms"].is_number()));
    for bad in ["days=0", "days=91"] {
        let r = s.d.client.get(
            &format!("/api/v1/checks/{}/uptime?{bad}", c["id"]),
            Some(&s.admin),
        );
        assert_eq!(r.status, 400, "{bad}");
    }
    let r = s.d.client.get(
        &format!("/api/v1/checks/{}/response-times?points=1", c["id"]),
        Some(&s.admin),
    );
    assert!(r.error_message().contains("'points'"), "{}", r.text);
}
