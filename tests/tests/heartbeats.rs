//! Heartbeats end to end: the public ping routes as cron jobs call them,
//! executions, missed deadlines through the alert engine and the outbox,
//! pause, and bad input. Periods of a second or two keep it quick; every
//! wait is a poll with a deadline.

use cairn_e2e::fixtures::FakeReceiver;
use cairn_e2e::*;
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

fn setup() -> (Daemon, String, FakeReceiver) {
    let d = Daemon::start();
    let admin = d.admin();
    let rx = FakeReceiver::start();
    let r = d.client.post(
        "/api/v1/channels",
        Some(&admin),
        &json!({"name": "hook", "type": "webhook", "config": {"url": format!("{}/hook", rx.url())}}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    (d, admin, rx)
}

fn create(d: &Daemon, admin: &str, body: Value) -> Value {
    let r = d.client.post("/api/v1/heartbeats", Some(admin), &body);
    assert_eq!(r.status, 201, "{}", r.text);
    r.json()
}

fn hb(d: &Daemon, admin: &str, id: &Value) -> Value {
    let r = d.client.get(&format!("/api/v1/heartbeats/{id}"), Some(admin));
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()
}

fn ping(d: &Daemon, method: &str, path: &str, body: Option<&[u8]>) -> Resp {
    d.client.send(method, path, &[], body)
}

#[test]
fn ping_routes_answer_like_cron_expects_and_keep_the_body() {
    let (d, admin, _rx) = setup();
    let h = create(
        &d,
        &admin,
        json!({"name": "nightly backup", "period_s": 86400, "grace_s": 3600}),
    );
    assert_eq!(h["status"], "new");
    let uuid = h["uuid"].as_str().unwrap().to_string();
    assert_eq!(uuid.len(), 36);
    assert!(h["ping_url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/ping/{uuid}")));
    for (method, path) in [
        ("GET", format!("/ping/{uuid}")),
        ("HEAD", format!("/ping/{uuid}")),
        ("POST", format!("/ping/{uuid}/0")),
    ] {
        let r = ping(&d, method, &path, None);
        assert_eq!(r.status, 200, "{method} {path}: {}", r.text);
        if method != "HEAD" {
            assert_eq!(r.text, "OK\n");
        }
    }
    // A log line changes nothing; a long body is cut at 10 KB and flagged.
    let long = vec![b'x'; 12 * 1024];
    assert_eq!(
        ping(&d, "POST", &format!("/ping/{uuid}/log"), Some(&long)).status,
        200
    );
    let r = ping(
        &d,
        "POST",
        &format!("/ping/{uuid}/start"),
        Some(b"rsync starting"),
    );
    assert_eq!(r.status, 200);
    let pings = d
        .client
        .get(&format!("/api/v1/heartbeats/{}/pings", h["id"]), Some(&admin))
        .json();
    let kinds: Vec<&str> = pings["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["start", "log", "success", "success", "success"]);
    assert_eq!(pings["data"][0]["body"], "rsync starting");
    assert_eq!(pings["data"][1]["truncated"], true);
    assert_eq!(pings["data"][1]["body"].as_str().unwrap().len(), 10 * 1024);
    assert_eq!(pings["data"][4]["method"], "GET");
    let now = hb(&d, &admin, &h["id"]);
    assert_eq!(now["status"], "up");
    assert!(now["running_since"].is_string());
    // Unknown ids: plain "not found"; bad exit codes: 400 naming the field.
    let r = ping(&d, "GET", "/ping/00000000-0000-4000-8000-000000000000", None);
    assert_eq!((r.status, r.text.as_str()), (404, "not found\n"));
    for bad in ["256", "abc", "-1", "0001"] {
        let r = ping(&d, "GET", &format!("/ping/{uuid}/{bad}"), None);
        assert_eq!(r.status, 400, "exit code {bad}: {}", r.text);
        assert!(r.error_message().contains("'exit_code'"), "{}", r.error_message());
    }
}

#[test]
fn start_then_fail_is_a_failed_execution_with_an_alert_and_success_recovers() {
    let (d, admin, rx) = setup();
    let h = create(
        &d,
        &admin,
        json!({"name": "db dump", "period_s": 3600, "grace_s": 600}),
    );
    let uuid = h["uuid"].as_str().unwrap();
    assert_eq!(ping(&d, "GET", &format!("/ping/{uuid}/start"), None).status, 200);
    assert_eq!(
        ping(&d, "POST", &format!("/ping/{uuid}/fail"), Some(b"pg_dump: error")).status,
        200
    );
    let ex = d
        .client
        .get(
            &format!("/api/v1/heartbeats/{}/executions", h["id"]),
            Some(&admin),
        )
        .json();
    assert_eq!(ex["total"], 1);
    assert_eq!(ex["data"][0]["outcome"], "fail");
    assert!(
        ex["data"][0]["started_at"].is_string() && ex["data"][0]["duration_ms"].is_i64(),
        "{ex}"
    );
    assert_eq!(hb(&d, &admin, &h["id"])["status"], "down");
    let got = rx.wait_for(1, WAIT);
    let ev = got[0].json();
    assert_eq!(
        (ev["event"].as_str(), ev["kind"].as_str()),
        (Some("fired"), Some("heartbeat"))
    );
    assert!(ev["message"].as_str().unwrap().contains("db dump"), "{ev}");
    let alerts = d
        .client
        .get("/api/v1/alerts?kind=heartbeat&status=active", Some(&admin))
        .json();
    assert_eq!(alerts["total"], 1);
    assert_eq!(alerts["data"][0]["source_id"], h["id"].to_string());
    // Exit status 3 on the next run is a failure too (no second alert: still down).
    assert_eq!(ping(&d, "GET", &format!("/ping/{uuid}/3"), None).status, 200);
    let ex = d
        .client
        .get(
            &format!("/api/v1/heartbeats/{}/executions", h["id"]),
            Some(&admin),
        )
        .json();
    assert_eq!(ex["data"][0]["exit_code"], 3);
    assert_eq!(ping(&d, "GET", &format!("/ping/{uuid}"), None).status, 200);
    let got = rx.wait_for(2, WAIT);
    assert_eq!(got[1].json()["event"], "resolved");
    assert_eq!(hb(&d, &admin, &h["id"])["status"], "up");
    let up = d
        .client
        .get(
            &format!("/api/v1/heartbeats/{}/uptime?days=7", h["id"]),
            Some(&admin),
        )
        .json();
    assert_eq!(up["data"].as_array().unwrap().len(), 7);
    assert!(up["data"][6]["uptime_percent"].is_number(), "{up}");
    assert!(
        up["data"][0]["uptime_percent"].is_null(),
        "not monitored then: {up}"
    );
}

#[test]
fn a_missed_deadline_fires_once_a_late_start_times_out_and_pause_stops_alerts() {
    let (d, admin, rx) = setup();
    let late = create(
        &d,
        &admin,
        json!({"name": "late job", "period_s": 1, "grace_s": 1}),
    );
    let stuck = create(
        &d,
        &admin,
        json!({"name": "stuck job", "period_s": 3600, "grace_s": 1}),
    );
    let paused = create(
        &d,
        &admin,
        json!({"name": "paused job", "period_s": 1, "grace_s": 1}),
    );
    let u = |h: &Value| h["uuid"].as_str().unwrap().to_string();
    assert_eq!(ping(&d, "GET", &format!("/ping/{}", u(&late)), None).status, 200);
    assert_eq!(
        ping(&d, "GET", &format!("/ping/{}", u(&paused)), None).status,
        200
    );
    assert_eq!(
        ping(&d, "GET", &format!("/ping/{}/start", u(&stuck)), None).status,
        200
    );
    let r = d.client.post(
        &format!("/api/v1/heartbeats/{}/pause", paused["id"]),
        Some(&admin),
        &json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["status"], "paused");
    assert!(r.json()["next_deadline"].is_null());
    poll("the late job to go down", WAIT, || {
        (hb(&d, &admin, &late["id"])["status"] == "down").then_some(())
    });
    poll("the stuck job to time out", WAIT, || {
        (hb(&d, &admin, &stuck["id"])["status"] == "down").then_some(())
    });
    let ex = d
        .client
        .get(
            &format!("/api/v1/heartbeats/{}/executions", stuck["id"]),
            Some(&admin),
        )
        .json();
    assert_eq!(ex["data"][0]["outcome"], "timeout");
    let got = rx.wait_for(2, WAIT);
    let names: Vec<String> = got
        .iter()
        .map(|r| r.json()["message"].as_str().unwrap().to_string())
        .collect();
    assert!(
        names
            .iter()
            .any(|m| m.contains("late job") && m.contains("no ping since")),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .any(|m| m.contains("stuck job") && m.contains("grace")),
        "{names:?}"
    );
    // The paused job had the same deadline as the late one: nothing for it.
    let p = hb(&d, &admin, &paused["id"]);
    assert_eq!(p["status"], "paused");
    let a = d.client.get("/api/v1/alerts?kind=heartbeat", Some(&admin)).json();
    assert_eq!(
        a["total"], 2,
        "one alert each for late and stuck, none for paused: {a}"
    );
    // Down stays down without re-firing; the next success recovers once.
    assert_eq!(ping(&d, "GET", &format!("/ping/{}", u(&late)), None).status, 200);
    let got = rx.wait_for(3, WAIT);
    assert_eq!(got[2].json()["event"], "resolved");
    let fired = got.iter().filter(|r| r.json()["event"] == "fired").count();
    assert_eq!(fired, 2);
    // Resume: back to new, no deadline until the next ping.
    let r = d.client.post(
        &format!("/api/v1/heartbeats/{}/resume", paused["id"]),
        Some(&admin),
        &json!({}),
    );
    assert_eq!(r.json()["status"], "new");
}

#[test]
fn bad_heartbeat_input_is_a_400_naming_the_field() {
    let (d, admin, _rx) = setup();
    for (body, field) in [
        (json!({"period_s": 60}), "name"),
        (json!({"name": "x"}), "period_s"),
        (json!({"name": "x", "period_s": 0}), "period_s"),
        (json!({"name": "x", "period_s": 60, "grace_s": -1}), "grace_s"),
        (json!({"name": "x", "period_s": "daily"}), "period_s"),
        (
            json!({"name": "x", "period_s": 60, "schedule": "* * * * *"}),
            "schedule",
        ),
    ] {
        let r = d.client.post("/api/v1/heartbeats", Some(&admin), &body);
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert!(r.error_message().contains(field), "{body}: {}", r.error_message());
    }
    assert_eq!(
        d.client.get("/api/v1/heartbeats", Some(&admin)).json()["total"],
        0
    );
}

#[test]
fn a_maintenance_window_on_the_heartbeats_labels_holds_its_alert_back() {
    let (d, admin, rx) = setup();
    let h = create(
        &d,
        &admin,
        json!({"name": "db backup", "period_s": 3600, "labels": {"team": "db"}}),
    );
    let r = d.client.post(
        "/api/v1/maintenance-windows",
        Some(&admin),
        &json!({"name": "db migration", "start": rfc3339(now() - 60), "end": rfc3339(now() + 3600),
                "labels": {"team": "db"}}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let uuid = h["uuid"].as_str().unwrap();
    assert_eq!(ping(&d, "GET", &format!("/ping/{uuid}/fail"), None).status, 200);
    let a = poll("the heartbeat alert", WAIT, || {
        let v = d.client.get("/api/v1/alerts?kind=heartbeat", Some(&admin)).json();
        v["data"].as_array().and_then(|a| a.first().cloned())
    });
    assert!(
        a["suppressed"].as_str().unwrap_or("").starts_with("maintenance:"),
        "{a}"
    );
    // The recovery is not notified either (nothing was), and the receiver stays empty.
    assert_eq!(ping(&d, "GET", &format!("/ping/{uuid}"), None).status, 200);
    let resolved = poll("the alert to resolve", WAIT, || {
        let v = d
            .client
            .get(&format!("/api/v1/alerts/{}", a["id"]), Some(&admin))
            .json();
        (v["status"] == "resolved").then_some(v)
    });
    assert_eq!(resolved["notified"], false);
    assert!(rx.requests().is_empty());
    assert_eq!(
        d.client
            .get("/api/v1/notifications/deliveries", Some(&admin))
            .json()["total"],
        0
    );
}
