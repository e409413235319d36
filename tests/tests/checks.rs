//! Server-run checks end to end against local fixtures: an HTTP server
//! answering chosen statuses and a closed port. Down after the failure
//! threshold (one alert, one notification), up again after recovery.

use cairn_e2e::fixtures::FakeReceiver;
use cairn_e2e::*;
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn setup() -> (Daemon, String, FakeReceiver) {
    let d = Daemon::start();
    let admin = d.admin();
    let hook = FakeReceiver::start();
    webhook_channel(&d, &admin, &format!("{}/hook", hook.url()), &["check"]);
    (d, admin, hook)
}

fn create(d: &Daemon, admin: &str, body: Value) -> Value {
    let r = d.client.post("/api/v1/checks", Some(admin), &body);
    assert_eq!(r.status, 201, "{}", r.text);
    r.json()
}

fn run(d: &Daemon, admin: &str, id: &Value) -> Value {
    let r = d
        .client
        .post(&format!("/api/v1/checks/{id}/run"), Some(admin), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()
}

#[test]
fn http_status_and_keyword_two_failures_one_alert_then_recovery() {
    let (d, admin, hook) = setup();
    let site = FakeReceiver::start();
    // The fixture answers {"ok":true}: the keyword "ok" is there, "banana" is not.
    let c = create(
        &d,
        &admin,
        json!({"name": "web", "type": "http", "target": format!("{}/health", site.url()), "interval_s": 3600,
               "timeout_s": 5, "failure_threshold": 2, "recovery_threshold": 1,
               "http": {"keyword": "banana"}}),
    );
    assert_eq!(c["status"], "unknown");
    let r = run(&d, &admin, &c["id"]);
    assert_eq!(r["status"], "down");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("keyword 'banana' is absent"),
        "{r}"
    );
    assert_eq!(r["status_code"], 200);
    assert!(r["latency_ms"].is_number());
    assert_eq!(r["check_status"], "unknown", "one failure is below the threshold");
    let r = run(&d, &admin, &c["id"]);
    assert_eq!(r["check_status"], "down");
    let got = hook.wait_for(1, WAIT);
    let ev = got[0].json();
    assert_eq!(
        (ev["event"].as_str(), ev["kind"].as_str()),
        (Some("fired"), Some("check"))
    );
    assert!(ev["message"].as_str().unwrap().contains("web"), "{ev}");
    // A third failure: still one alert, no new notification.
    run(&d, &admin, &c["id"]);
    let alerts = d.client.get("/api/v1/alerts?kind=check", Some(&admin)).json();
    assert_eq!(alerts["total"], 1);
    assert_eq!(alerts["data"][0]["source_id"], c["id"].to_string());
    // Fix the check (keyword that is there): recovery after one success.
    let r = d.client.patch(
        &format!("/api/v1/checks/{}", c["id"]),
        Some(&admin),
        &json!({"http": {"keyword": "ok"}}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = run(&d, &admin, &c["id"]);
    assert_eq!(
        (r["status"].as_str(), r["check_status"].as_str()),
        (Some("up"), Some("up"))
    );
    let got = hook.wait_for(2, WAIT);
    assert_eq!(got[1].json()["event"], "resolved");
    assert_eq!(hook.requests().len(), 2);
    // A 500 is down for the default expected statuses; a listed 500 is fine.
    site.push_statuses(&[500, 500]);
    assert!(run(&d, &admin, &c["id"])["error"]
        .as_str()
        .unwrap()
        .contains("HTTP 500"));
    d.client.patch(
        &format!("/api/v1/checks/{}", c["id"]),
        Some(&admin),
        &json!({"http": {"expected_status": ["500"]}}),
    );
    assert_eq!(run(&d, &admin, &c["id"])["status"], "up");
    let res = d
        .client
        .get(
            &format!("/api/v1/checks/{}/results?hours=1", c["id"]),
            Some(&admin),
        )
        .json();
    assert_eq!(res["total"], 6);
    assert!(res["uptime_percent"].is_number());
    assert!(site
        .requests()
        .iter()
        .all(|r| r.method == "GET" && r.path == "/health"));
}

#[test]
fn redirects_followed_or_not_and_a_slow_server_times_out() {
    let (d, admin, _hook) = setup();
    let site = FakeReceiver::start();
    let c = create(
        &d,
        &admin,
        json!({"name": "moved", "type": "http", "target": format!("{}/old", site.url()), "interval_s": 3600,
               "timeout_s": 2, "failure_threshold": 1, "http": {"expected_status": ["200"]}}),
    );
    site.push_statuses(&[302]);
    let r = run(&d, &admin, &c["id"]);
    assert_eq!(
        (r["status"].as_str(), r["status_code"].as_u64()),
        (Some("up"), Some(200)),
        "{r}"
    );
    let paths: Vec<String> = site.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/old", "/moved"], "the redirect was followed");
    d.client.patch(
        &format!("/api/v1/checks/{}", c["id"]),
        Some(&admin),
        &json!({"http": {"expected_status": ["200"], "follow_redirects": false}}),
    );
    site.push_statuses(&[302]);
    let r = run(&d, &admin, &c["id"]);
    assert_eq!(r["status"], "down", "{r}");
    assert!(r["error"].as_str().unwrap().contains("HTTP 302"), "{r}");
    assert_eq!(site.requests().len(), 3, "not followed");
    // A server that accepts and never answers: down after the timeout.
    site.set_hang(true);
    let r = run(&d, &admin, &c["id"]);
    assert_eq!(r["status"], "down", "{r}");
    assert!(
        r["error"].as_str().unwrap().contains("timed out after 2 s"),
        "{r}"
    );
}

#[test]
fn scheduled_tcp_check_to_a_closed_port_goes_down_and_a_listening_one_stays_up() {
    let (d, admin, hook) = setup();
    let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = free_port();
    let up = create(
        &d,
        &admin,
        json!({"name": "open", "type": "tcp", "target": format!("127.0.0.1:{}", open.local_addr().unwrap().port()),
                                       "interval_s": 10, "timeout_s": 2, "failure_threshold": 1}),
    );
    let down = create(
        &d,
        &admin,
        json!({"name": "closed", "type": "tcp", "target": format!("127.0.0.1:{closed_port}"),
                                         "interval_s": 10, "timeout_s": 2, "failure_threshold": 1}),
    );
    // The scheduler spreads first runs over the interval: both run within it.
    let status =
        |id: &Value| d.client.get(&format!("/api/v1/checks/{id}"), Some(&admin)).json()["status"].clone();
    poll("the closed port to be down", WAIT, || {
        (status(&down["id"]) == "down").then_some(())
    });
    poll("the open port to be up", WAIT, || {
        (status(&up["id"]) == "up").then_some(())
    });
    let got = hook.wait_for(1, WAIT);
    assert!(got[0].json()["message"].as_str().unwrap().contains("closed"));
    let s = d.client.get("/api/v1/checks/scheduler", Some(&admin)).json();
    assert!(s["runs"].as_i64().unwrap() >= 2, "{s}");
    assert!(s["lag_p99_s"].is_i64(), "the scheduler reports its lag: {s}");
    // Paused: shown as paused and not run.
    let r = d.client.patch(
        &format!("/api/v1/checks/{}", down["id"]),
        Some(&admin),
        &json!({"enabled": false}),
    );
    assert_eq!(r.json()["status"], "paused");
}

#[test]
fn bad_check_input_is_a_400_naming_the_field() {
    let (d, admin, _hook) = setup();
    for (body, field) in [
        (
            json!({"name": "x", "type": "http", "target": "example.lan/health"}),
            "target",
        ),
        (json!({"name": "x", "type": "gopher", "target": "a:1"}), "type"),
        (
            json!({"name": "x", "type": "tcp", "target": "host:70000"}),
            "target",
        ),
        (json!({"name": "x", "type": "tcp", "target": "host"}), "target"),
        (
            json!({"name": "x", "type": "tcp", "target": "h:22", "interval_s": 5}),
            "interval_s",
        ),
        (
            json!({"name": "x", "type": "tcp", "target": "h:22", "timeout_s": 0}),
            "timeout_s",
        ),
        (
            json!({"name": "x", "type": "http", "target": "http://h/", "http": {"expected_status": ["2xx"]}}),
            "http.expected_status[0]",
        ),
        (
            json!({"name": "x", "type": "tcp", "target": "h:22", "run_from": "n_abc"}),
            "run_from",
        ),
        (json!({"name": "x", "type": "icmp", "target": "h:22"}), "target"),
        (
            json!({"name": "x", "type": "dns", "target": "http://h/"}),
            "target",
        ),
        (json!({"name": "x", "type": "tls", "target": "h:0"}), "target"),
        (
            json!({"name": "x", "type": "dns", "target": "h", "dns": {"record_type": "MX"}}),
            "dns.record_type",
        ),
        (
            json!({"name": "x", "type": "dns", "target": "h", "dns": {"record_type": "A", "expected": ["::1"]}}),
            "dns.expected[0]",
        ),
        (
            json!({"name": "x", "type": "icmp", "target": "h", "icmp": {"count": 11}}),
            "icmp.count",
        ),
        (
            json!({"name": "x", "type": "tls", "target": "h:443", "certificate": {"warning_days": 3, "critical_days": 7}}),
            "certificate.warning_days",
        ),
    ] {
        let r = d.client.post("/api/v1/checks", Some(&admin), &body);
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert!(
            r.error_message().contains(&format!("'{field}'")),
            "{body}: {}",
            r.error_message()
        );
    }
    assert_eq!(d.client.get("/api/v1/checks", Some(&admin)).json()["total"], 0);
}
