//! Alerting end to end: real cairnd processes, snapshots posted by an agent
//! token, notifications received by fake services on 127.0.0.1. Snapshot
//! timestamps are set by the test (a few seconds apart, just in the past),
//! so `for` durations and flapping windows play out without waiting.

use cairn_e2e::fixtures::{FakeReceiver, Recorded};
use cairn_e2e::*;
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// A daemon with fast alert timers and retries.
fn daemon(env: &[(&str, &str)], timeout_s: u32) -> (Daemon, TempDir) {
    let dir = TempDir::new("alerts-config");
    let cfg = dir.path().join("cairnd.toml");
    std::fs::write(
        &cfg,
        format!("[alerts]\ntick_s = 1\n[notify]\ntimeout_s = {timeout_s}\nretry_base_s = 1\nretry_max_s = 2\nmax_attempts = 4\n"),
    )
    .expect("writing the config");
    let d = Daemon::start_with(DaemonOpts {
        args: vec!["--config".into(), cfg.display().to_string()],
        env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..Default::default()
    });
    (d, dir)
}

struct Lab {
    d: Daemon,
    _cfg: TempDir,
    admin: String,
    node: String,
    agent: String,
    /// The next snapshot time: starts a minute ago, one second per snapshot.
    ts: std::cell::Cell<u64>,
}

impl Lab {
    /// A lab whose node never goes "offline": its snapshots are backdated
    /// and a slow machine must not turn that into offline alerts.
    fn new() -> Lab {
        let lab = Lab::with_env(&[]);
        lab.rule(
            json!({"name": "no offline alerts here", "metric": "node_offline", "critical": {"trigger": -1}}),
        );
        lab
    }
    fn with_env(env: &[(&str, &str)]) -> Lab {
        Lab::with(env, 2)
    }
    fn with(env: &[(&str, &str)], timeout_s: u32) -> Lab {
        let (d, cfg) = daemon(env, timeout_s);
        let admin = d.admin();
        let (node, agent) = d.enroll(&admin, "alert-node");
        Lab {
            d,
            _cfg: cfg,
            admin,
            node,
            agent,
            ts: std::cell::Cell::new(now() - 80),
        }
    }
    fn post(&self, path: &str, body: &Value) -> Value {
        let r = self.d.client.post(path, Some(&self.admin), body);
        assert!(
            r.status == 201 || r.status == 200,
            "POST {path}: {} {}",
            r.status,
            r.text
        );
        r.json()
    }
    fn get(&self, path: &str) -> Value {
        let r = self.d.client.get(path, Some(&self.admin));
        assert_eq!(r.status, 200, "GET {path}: {}", r.text);
        r.json()
    }
    /// Posts a snapshot `advance` seconds after the previous one.
    fn cpu(&self, advance: u64, cpu: f64) {
        self.ts.set(self.ts.get() + advance);
        let r = self.d.client.post(
            "/api/v1/agent/ingest",
            Some(&self.agent),
            &snapshot(self.ts.get(), cpu),
        );
        assert_eq!(r.status, 200, "ingest: {}", r.text);
    }
    fn webhook(&self, rx: &FakeReceiver, extra: Value) -> i64 {
        let mut body =
            json!({"name": "hook", "type": "webhook", "config": {"url": format!("{}/hook", rx.url())}});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        self.post("/api/v1/channels", &body)["id"]
            .as_i64()
            .expect("channel id")
    }
    fn alerts(&self, query: &str) -> Vec<Value> {
        self.get(&format!("/api/v1/alerts?{query}"))["data"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
    fn rule(&self, body: Value) -> i64 {
        self.post("/api/v1/alert-rules", &body)["id"]
            .as_i64()
            .expect("rule id")
    }
}

fn events(rx: &[Recorded]) -> Vec<String> {
    rx.iter()
        .map(|r| r.json()["event"].as_str().unwrap_or("?").to_string())
        .collect()
}

#[test]
fn hysteresis_duration_and_escalation_notify_a_webhook_once_each() {
    let lab = Lab::new();
    let rx = FakeReceiver::start();
    lab.webhook(
        &rx,
        json!({"config": {"url": format!("{}/hook", rx.url()), "secret": "s3cret"}}),
    );
    lab.rule(
        json!({"name": "hot", "metric": "cpu", "warning": {"trigger": 80, "clear": 70},
                    "critical": {"trigger": 95, "clear": 90}, "for_s": 10}),
    );
    // A short spike does not fire: 5 s above, then below.
    lab.cpu(0, 85.0);
    lab.cpu(5, 85.0);
    lab.cpu(1, 50.0);
    // Held for 10 s: fires once.
    lab.cpu(1, 85.0);
    lab.cpu(5, 85.0);
    assert!(lab.alerts("status=active").is_empty(), "fired before for_s");
    lab.cpu(5, 85.0);
    let fired = rx.wait_for(1, WAIT);
    let alert = &lab.alerts("status=active")[0];
    assert_eq!(alert["severity"], "warning");
    assert_eq!(alert["metric"], "cpu");
    assert_eq!(alert["kind"], "metric");
    assert_eq!(alert["node_id"], lab.node.as_str());
    // Between clear and trigger: held open, not re-fired.
    for v in [75.0, 82.0, 71.0, 84.0] {
        lab.cpu(1, v);
    }
    // Escalation after its own 10 s.
    lab.cpu(1, 97.0);
    lab.cpu(10, 97.0);
    let got = rx.wait_for(2, WAIT);
    let after = lab.alerts("status=active");
    assert_eq!(after.len(), 1, "escalation updates the same alert: {after:?}");
    assert_eq!(after[0]["id"], alert["id"]);
    assert_eq!(after[0]["severity"], "critical");
    // Clear below warning's clear: resolved.
    lab.cpu(1, 40.0);
    let got3 = rx.wait_for(3, WAIT);
    assert_eq!(
        events(&got3),
        ["fired", "escalated", "resolved"],
        "{:?}",
        got.len()
    );
    let detail = lab.get(&format!("/api/v1/alerts/{}", alert["id"]));
    assert_eq!(detail["status"], "resolved");
    assert!(detail["resolved_by"].is_null(), "cleared by itself");
    let types: Vec<&str> = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["fired", "escalated", "resolved"]);
    // The webhook's default JSON and its signature.
    let first = &fired[0];
    assert_eq!(first.method, "POST");
    assert_eq!(first.path, "/hook");
    assert!(first
        .header("content-type")
        .unwrap_or("")
        .starts_with("application/json"));
    let body = first.json();
    assert_eq!(body["event"], "fired");
    assert_eq!(body["severity"], "warning");
    assert_eq!(body["metric"], "cpu");
    assert_eq!(body["node"], "alert-node");
    assert_eq!(body["value"], 85.0);
    assert!(body["url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/api/v1/alerts/{}", alert["id"])));
    let sig = first.header("x-cairn-signature").expect("signature header");
    assert!(sig.starts_with("sha256=") && sig.len() == 71, "{sig}");
    // Deliveries are recorded as delivered. The receiver has the third
    // message as soon as it is sent; its outcome is recorded once the
    // receiver's answer is back, so wait for that.
    let del = poll("three deliveries recorded as sent", WAIT, || {
        let v = lab.get("/api/v1/notifications/deliveries");
        let data = v["data"].as_array()?;
        (data.len() == 3 && data.iter().all(|d| d["status"] != "pending")).then_some(v)
    });
    assert_eq!(del["total"], 3);
    for d in del["data"].as_array().unwrap() {
        assert_eq!(d["status"], "delivered", "{d}");
        assert_eq!(d["attempts"], 1);
        assert_eq!(d["last_status_code"], 200);
    }
}

#[test]
fn flapping_holds_the_alert_open_and_notifies_once() {
    let lab = Lab::new();
    let rx = FakeReceiver::start();
    lab.webhook(&rx, json!({}));
    lab.rule(json!({"metric": "cpu", "critical": {"trigger": 90, "clear": 80}, "for_s": 0}));
    for _ in 0..6 {
        lab.cpu(1, 99.0);
        lab.cpu(1, 10.0);
    }
    let got = rx.wait_for(6, WAIT);
    assert_eq!(
        events(&got),
        ["fired", "resolved", "fired", "resolved", "fired", "flapping"]
    );
    let open = lab.alerts("status=active");
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["flapping"], true);
    // Everything after it was recorded, not sent: the outbox is empty and
    // the receiver saw exactly six messages.
    let del = lab.get("/api/v1/notifications/deliveries");
    assert_eq!(del["total"], 6);
    assert_eq!(rx.requests().len(), 6);
}

#[test]
fn node_offline_after_missed_intervals_then_recovers() {
    let lab = Lab::with_env(&[("CAIRN_INTERVAL_S", "1")]);
    let rx = FakeReceiver::start();
    lab.webhook(&rx, json!({}));
    let r = lab
        .d
        .client
        .post("/api/v1/agent/ingest", Some(&lab.agent), &snapshot(now(), 5.0));
    assert_eq!(r.status, 200);
    let got = rx.wait_for(1, WAIT);
    assert_eq!(got[0].json()["event"], "fired");
    assert_eq!(got[0].json()["metric"], "node_offline");
    let a = &lab.alerts("kind=offline&status=active")[0];
    assert_eq!(a["severity"], "critical");
    assert!(a["message"].as_str().unwrap().contains("alert-node"), "{a}");
    let r = lab
        .d
        .client
        .post("/api/v1/agent/ingest", Some(&lab.agent), &snapshot(now(), 5.0));
    assert_eq!(r.status, 200);
    let got = rx.wait_for(2, WAIT);
    assert_eq!(got[1].json()["event"], "resolved");
    assert_eq!(
        lab.get(&format!("/api/v1/alerts/{}", a["id"]))["status"],
        "resolved"
    );
}

#[test]
fn maintenance_window_suppresses_and_notifies_when_it_ends() {
    let lab = Lab::new();
    let rx = FakeReceiver::start();
    lab.webhook(&rx, json!({}));
    let w = lab.post(
        "/api/v1/maintenance-windows",
        &json!({"name": "patching", "start": rfc3339(now() - 600), "end": rfc3339(now() + 3600),
                "nodes": [lab.node]}),
    );
    assert_eq!(w["active"], true);
    let active = lab.get("/api/v1/maintenance-windows/active");
    assert_eq!(active["total"], 1);
    lab.rule(json!({"metric": "cpu", "critical": {"trigger": 90}, "for_s": 0}));
    lab.cpu(0, 99.0);
    let a = poll("a suppressed alert", WAIT, || {
        lab.alerts("status=active").into_iter().next()
    });
    assert!(
        a["suppressed"].as_str().unwrap_or("").starts_with("maintenance:"),
        "{a}"
    );
    assert_eq!(a["notified"], false);
    assert_eq!(lab.get("/api/v1/notifications/deliveries")["total"], 0);
    // The window ends (deleted) while the alert is still open: it is notified now.
    let r = lab.d.client.delete(
        &format!("/api/v1/maintenance-windows/{}", w["id"]),
        Some(&lab.admin),
    );
    assert_eq!(r.status, 204);
    let got = rx.wait_for(1, WAIT);
    assert_eq!(got[0].json()["event"], "fired");
    let detail = lab.get(&format!("/api/v1/alerts/{}", a["id"]));
    let types: Vec<&str> = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["fired", "suppressed", "unsuppressed"]);
}

#[test]
fn silence_holds_notifications_until_it_expires() {
    let lab = Lab::new();
    let rx = FakeReceiver::start();
    lab.webhook(&rx, json!({}));
    let s = lab.post(
        "/api/v1/silences",
        &json!({"matchers": {"node": lab.node, "metric": "cpu"}, "comment": "known noisy", "duration_s": 3}),
    );
    assert_eq!(s["state"], "active");
    lab.rule(json!({"metric": "cpu", "critical": {"trigger": 90}, "for_s": 0}));
    lab.cpu(0, 99.0);
    let a = poll("a silenced alert", WAIT, || {
        lab.alerts("status=active").into_iter().next()
    });
    assert!(
        a["suppressed"].as_str().unwrap_or("").starts_with("silence:"),
        "{a}"
    );
    assert!(rx.requests().is_empty());
    // Expiry is automatic; the still-open alert is then notified.
    let got = rx.wait_for(1, WAIT);
    assert_eq!(got[0].json()["event"], "fired");
    let expired = lab.get("/api/v1/silences?state=expired");
    assert_eq!(expired["total"], 1);
    assert_eq!(
        lab.get("/api/v1/silences")["total"],
        0,
        "the default list shows unexpired ones"
    );
}

#[test]
fn a_500_is_retried_with_backoff_then_delivered() {
    let lab = Lab::new();
    let rx = FakeReceiver::start();
    rx.push_statuses(&[500, 503]);
    lab.webhook(&rx, json!({}));
    lab.rule(json!({"metric": "cpu", "critical": {"trigger": 90}, "for_s": 0}));
    lab.cpu(0, 99.0);
    let got = rx.wait_for(3, WAIT);
    assert_eq!(events(&got), ["fired", "fired", "fired"]);
    let d = poll("the delivery to be delivered", WAIT, || {
        let v = lab.get("/api/v1/notifications/deliveries");
        let d = v["data"][0].clone();
        (d["status"] == "delivered").then_some(d)
    });
    assert_eq!(d["attempts"], 3);
    let log = lab.get(&format!("/api/v1/notifications/deliveries/{}", d["id"]));
    let codes: Vec<i64> = log["attempts_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status_code"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, [500, 503, 200]);
    assert!(log["attempts_log"][0]["error"].as_str().unwrap().contains("500"));
}

#[test]
fn a_pending_delivery_survives_a_restart_and_is_sent_exactly_once() {
    // A long timeout and a receiver that takes the request but never
    // answers: the daemon is stopped mid-attempt, so the delivery is still
    // pending (unacknowledged) when it comes back.
    let mut lab = Lab::with(&[], 60);
    lab.rule(json!({"metric": "node_offline", "critical": {"trigger": -1}}));
    let rx = FakeReceiver::start();
    rx.set_hang(true);
    lab.webhook(&rx, json!({}));
    lab.rule(json!({"metric": "cpu", "critical": {"trigger": 90}, "for_s": 0}));
    lab.cpu(0, 99.0);
    rx.wait_for(1, WAIT);
    lab.d.stop();
    let pending = lab.d.client.try_send("GET", "/api/v1/health", &[], None);
    assert!(pending.is_err(), "the daemon is down");
    rx.set_hang(false);
    lab.d.restart();
    lab.admin = lab.d.admin();
    let d = poll("the resumed delivery", WAIT, || {
        let v = lab.get("/api/v1/notifications/deliveries");
        let d = v["data"][0].clone();
        (d["status"] == "delivered").then_some(d)
    });
    assert_eq!(
        d["attempts"], 1,
        "the interrupted attempt was never recorded: {d}"
    );
    // Resolving queues a second message on the same channel; a channel
    // delivers in order, so once it arrives the first cannot come again.
    lab.cpu(1, 10.0);
    let got = rx.wait_for(3, WAIT);
    assert_eq!(
        events(&got),
        ["fired", "fired", "resolved"],
        "one unanswered, one delivered, then the resolve"
    );
    assert_eq!(lab.get("/api/v1/notifications/deliveries")["total"], 2);
}

#[test]
fn a_receiver_that_never_answers_times_out_without_delaying_others_or_ingest() {
    let lab = Lab::new();
    let stuck = FakeReceiver::start();
    stuck.set_hang(true);
    let ok = FakeReceiver::start();
    lab.webhook(&stuck, json!({"name": "stuck"}));
    lab.webhook(&ok, json!({"name": "fine"}));
    lab.rule(json!({"metric": "cpu", "critical": {"trigger": 90}, "for_s": 0}));
    lab.cpu(0, 99.0);
    stuck.wait_for(1, WAIT);
    // The other channel is served while the first hangs, and ingest goes on.
    ok.wait_for(1, WAIT);
    for _ in 0..5 {
        lab.cpu(1, 99.0);
    }
    let d = poll("a timed-out attempt", WAIT, || {
        let v = lab.get("/api/v1/notifications/deliveries?status=pending");
        v["data"]
            .as_array()
            .and_then(|a| a.iter().find(|d| d["attempts"].as_i64() >= Some(1)).cloned())
    });
    let err = d["last_error"].as_str().unwrap_or("");
    assert!(err.contains("timed out"), "{d}");
    assert!(!err.contains("/hook"), "errors never carry the URL: {err}");
}

#[test]
fn acknowledge_unacknowledge_and_manual_resolve() {
    let lab = Lab::new();
    let rx = FakeReceiver::start();
    lab.webhook(&rx, json!({"notify_on": ["fired", "acknowledged", "resolved"]}));
    lab.rule(json!({"metric": "cpu", "critical": {"trigger": 90}, "for_s": 0}));
    lab.cpu(0, 99.0);
    rx.wait_for(1, WAIT);
    let id = lab.alerts("status=active")[0]["id"].as_i64().unwrap();
    let operator = lab.d.user_token(&lab.admin, "op", "operator");
    let viewer = lab.d.user_token(&lab.admin, "vw", "viewer");
    let c = &lab.d.client;
    let r = c.post(&format!("/api/v1/alerts/{id}/ack"), Some(&viewer), &json!({}));
    assert_eq!(r.status, 403);
    let r = c.post(
        &format!("/api/v1/alerts/{id}/ack"),
        Some(&operator),
        &json!({"note": "on it"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["status"], "acknowledged");
    assert_eq!(r.json()["ack_note"], "on it");
    assert_eq!(r.json()["acknowledged_by"], "op");
    let r = c.post(&format!("/api/v1/alerts/{id}/ack"), Some(&operator), &json!({}));
    assert_eq!(r.status, 409, "acknowledging twice is a conflict");
    let count = lab.get("/api/v1/alerts/count");
    assert_eq!(count["acknowledged"], 1);
    assert_eq!(count["critical"], 1);
    let r = c.post(&format!("/api/v1/alerts/{id}/unack"), Some(&operator), &json!({}));
    assert_eq!(r.json()["status"], "active");
    let r = c.post(
        &format!("/api/v1/alerts/{id}/resolve"),
        Some(&operator),
        &json!({"note": "rebooted"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["resolved_by"], "op");
    let got = rx.wait_for(3, WAIT);
    assert_eq!(events(&got), ["fired", "acknowledged", "resolved"]);
    let detail = lab.get(&format!("/api/v1/alerts/{id}"));
    let types: Vec<&str> = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["fired", "acknowledged", "unacknowledged", "resolved"]);
    assert_eq!(lab.alerts("status=resolved&severity=critical").len(), 1);
    assert_eq!(lab.alerts(&format!("node={}&status=active", lab.node)).len(), 0);
}

#[test]
fn effective_thresholds_merge_node_over_labels_over_global_over_defaults() {
    let lab = Lab::new();
    let r = lab.d.client.patch(
        &format!("/api/v1/nodes/{}", lab.node),
        Some(&lab.admin),
        &json!({"labels": {"room": "attic"}}),
    );
    assert_eq!(r.status, 200);
    let global = lab.rule(json!({"metric": "cpu", "warning": {"trigger": 70, "clear": 65}}));
    let label = lab.rule(json!({"metric": "cpu", "scope": {"labels": {"room": "attic"}}, "critical": {"trigger": 90, "clear": 85}}));
    let node = lab.rule(json!({"metric": "cpu", "scope": {"node": lab.node}, "for_s": 5}));
    lab.rule(json!({"metric": "disk", "scope": {"node": lab.node}, "warning": {"trigger": -1}}));
    let eff = lab.get(&format!("/api/v1/alert-rules/effective?node={}", lab.node));
    let find = |m: &str| {
        eff["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["metric"] == m)
            .cloned()
            .unwrap()
    };
    let cpu = find("cpu");
    assert_eq!(cpu["warning"], json!({"trigger": 70.0, "clear": 65.0}));
    assert_eq!(cpu["warning_from"], json!({"scope": "global", "rule_id": global}));
    assert_eq!(cpu["critical_from"], json!({"scope": "labels", "rule_id": label}));
    assert_eq!(cpu["for_s"], 5);
    assert_eq!(cpu["for_s_from"], json!({"scope": "node", "rule_id": node}));
    let mem = find("memory");
    assert_eq!(mem["warning"], json!({"trigger": 85.0, "clear": 80.0}));
    assert_eq!(mem["warning_from"]["scope"], "default");
    assert_eq!(find("disk")["warning"]["trigger"], -1.0);
    // The dry run reports what would fire and changes nothing.
    lab.cpu(0, 95.0);
    let t = lab.post(&format!("/api/v1/alert-rules/{label}/test"), &json!({}));
    let res = &t["results"][0];
    assert_eq!(res["node_id"], lab.node.as_str());
    assert_eq!(res["would_fire"], "critical");
    let r = lab
        .d
        .client
        .get("/api/v1/alert-rules/effective?node=nope", Some(&lab.admin));
    assert_eq!(r.status, 404);
}

#[test]
fn bad_alerting_input_is_a_400_naming_the_field() {
    let lab = Lab::new();
    let c = &lab.d.client;
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "/api/v1/alert-rules",
            json!({"metric": "cpux", "warning": {"trigger": 80}}),
            "metric",
        ),
        (
            "/api/v1/alert-rules",
            json!({"metric": "cpu", "warning": {"trigger": 70, "clear": 80}}),
            "warning.clear",
        ),
        (
            "/api/v1/alert-rules",
            json!({"metric": "cpu", "critical": {"trigger": 101}}),
            "critical.trigger",
        ),
        (
            "/api/v1/alert-rules",
            json!({"metric": "cpu", "scope": {"node": "nope"}, "for_s": 5}),
            "scope.node",
        ),
        (
            "/api/v1/alert-rules",
            json!({"metric": "cpu", "warning": {"trigger": "high"}}),
            "warning.trigger",
        ),
        (
            "/api/v1/channels",
            json!({"name": "x", "type": "pager", "config": {}}),
            "type",
        ),
        (
            "/api/v1/channels",
            json!({"name": "x", "type": "webhook", "config": {"url": "not a url"}}),
            "config.url",
        ),
        (
            "/api/v1/channels",
            json!({"name": "x", "type": "telegram", "config": {"bot_token": "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"}}),
            "config.chat_id",
        ),
        (
            "/api/v1/channels",
            json!({"name": "x", "type": "webhook", "config": {"url": "http://127.0.0.1/"}, "min_severity": "info"}),
            "min_severity",
        ),
        (
            "/api/v1/maintenance-windows",
            json!({"name": "x", "weekly": {"days": ["funday"], "from": "02:00", "to": "03:00"}}),
            "weekly.days[0]",
        ),
        (
            "/api/v1/maintenance-windows",
            json!({"name": "x", "start": "2026-01-02T00:00:00Z"}),
            "end",
        ),
        (
            "/api/v1/silences",
            json!({"matchers": {}, "comment": "x", "duration_s": 60}),
            "matchers",
        ),
        (
            "/api/v1/silences",
            json!({"matchers": {"severity": "loud"}, "comment": "x", "duration_s": 60}),
            "matchers.severity",
        ),
    ];
    for (path, body, field) in cases {
        let r = c.post(path, Some(&lab.admin), &body);
        assert_eq!(r.status, 400, "{path} {body}: {}", r.text);
        assert!(
            r.error_message().contains(&format!("'{field}'")),
            "{path} {body}: message does not name '{field}': {}",
            r.error_message()
        );
    }
    assert_eq!(
        lab.get("/api/v1/alert-rules")["total"],
        1,
        "nothing stored beyond the lab's own rule"
    );
    assert_eq!(lab.get("/api/v1/channels")["total"], 0);
}
