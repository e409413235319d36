//! Every channel type through the API: created against fake services on
//! 127.0.0.1 (and a real SMTP server), test-sent, and checked for the exact
//! request each service documents. Secrets never come back from GET.

use cairn_e2e::fixtures::{FakeReceiver, Recorded, SmtpServer};
use cairn_e2e::*;
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);
const BOT: &str = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";

fn create(d: &Daemon, admin: &str, body: Value) -> Value {
    let r = d.client.post("/api/v1/channels", Some(admin), &body);
    assert_eq!(r.status, 201, "{body}: {}", r.text);
    r.json()
}

/// Test-sends through channel `id` and returns what the receiver got.
fn test_send(d: &Daemon, admin: &str, id: &Value, rx: &FakeReceiver) -> Recorded {
    let before = rx.requests().len();
    let r = d
        .client
        .post(&format!("/api/v1/channels/{id}/test"), Some(admin), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["ok"], true, "{}", r.text);
    assert_eq!(r.json()["status_code"], 200);
    rx.wait_for(before + 1, WAIT).pop().expect("one request")
}

#[test]
fn each_channel_type_sends_the_request_its_service_documents() {
    let d = Daemon::start();
    let admin = d.admin();
    let rx = FakeReceiver::start();
    let base = rx.url();

    // Generic webhook with a template, custom headers and a method.
    let c = create(
        &d,
        &admin,
        json!({"name": "hook", "type": "webhook", "config": {
            "url": format!("{base}/in/cairn?x=1"), "method": "PUT",
            "headers": {"X-Team": "infra", "Authorization": "Bearer hook-secret"},
            "template": "{\"text\": \"{{severity}}: {{message}}\", \"node\": \"{{node}}\"}",
            "secret": "sign-me"}}),
    );
    assert_eq!(c["config"]["secret"], "********", "secrets are masked: {c}");
    assert_eq!(c["config"]["headers"]["Authorization"], "********");
    let req = test_send(&d, &admin, &c["id"], &rx);
    assert_eq!(req.method, "PUT");
    assert_eq!(req.path, "/in/cairn?x=1");
    assert_eq!(req.header("x-team"), Some("infra"));
    assert_eq!(req.header("authorization"), Some("Bearer hook-secret"));
    let body = req.json();
    assert_eq!(body["node"], "cairn");
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .starts_with("warning: Test message from Cairn"),
        "{body}"
    );
    assert!(req
        .header("x-cairn-signature")
        .is_some_and(|s| s.starts_with("sha256=")));

    // ntfy: POST to the topic; title, priority and tags as headers; text body.
    let c = create(
        &d,
        &admin,
        json!({"name": "ntfy", "type": "ntfy", "config": {"server": base, "topic": "homelab", "token": "tk_secret"}}),
    );
    assert_eq!(c["config"]["token"], "********");
    let req = test_send(&d, &admin, &c["id"], &rx);
    assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/homelab"));
    assert!(req.header("title").is_some(), "{:?}", req.headers);
    assert!(req.header("priority").is_some());
    assert!(req.header("tags").is_some());
    assert_eq!(req.header("authorization"), Some("Bearer tk_secret"));
    assert!(req.text().contains("Test message from Cairn"));

    // Gotify: POST /message with the app token header and a JSON message.
    let c = create(
        &d,
        &admin,
        json!({"name": "gotify", "type": "gotify", "config": {"server": base, "token": "AppTok3n"}}),
    );
    let req = test_send(&d, &admin, &c["id"], &rx);
    assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/message"));
    assert_eq!(req.header("x-gotify-key"), Some("AppTok3n"));
    let b = req.json();
    assert!(
        b["title"].is_string() && b["message"].is_string() && b["priority"].is_i64(),
        "{b}"
    );

    // Discord: content plus an embed.
    let c = create(
        &d,
        &admin,
        json!({"name": "discord", "type": "discord", "config": {"url": format!("{base}/api/webhooks/1/abc")}}),
    );
    assert!(
        !c["config"]["url"].as_str().unwrap().contains("abc"),
        "webhook URLs are secrets: {c}"
    );
    let req = test_send(&d, &admin, &c["id"], &rx);
    assert_eq!(req.path, "/api/webhooks/1/abc");
    let b = req.json();
    assert!(b["content"].is_string(), "{b}");
    assert!(
        b["embeds"][0]["title"].is_string() && b["embeds"][0]["color"].is_i64(),
        "{b}"
    );

    // Slack incoming webhook: text (+ blocks).
    let c = create(
        &d,
        &admin,
        json!({"name": "slack", "type": "slack", "config": {"url": format!("{base}/services/T0/B0/XYZ")}}),
    );
    let req = test_send(&d, &admin, &c["id"], &rx);
    assert_eq!(req.path, "/services/T0/B0/XYZ");
    assert!(req.json()["text"].as_str().unwrap().contains("Test message"));

    // Teams: a message with an Adaptive Card attachment.
    let c = create(
        &d,
        &admin,
        json!({"name": "teams", "type": "teams", "config": {"url": format!("{base}/workflows/teams")}}),
    );
    let req = test_send(&d, &admin, &c["id"], &rx);
    let b = req.json();
    assert_eq!(b["type"], "message");
    assert_eq!(
        b["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(b["attachments"][0]["content"]["type"], "AdaptiveCard");

    // Telegram Bot API: /bot<token>/sendMessage with chat_id and text.
    let c = create(
        &d,
        &admin,
        json!({"name": "tg", "type": "telegram", "config": {"bot_token": BOT, "chat_id": "-100123", "api_base": base}}),
    );
    assert_eq!(c["config"]["bot_token"], "********");
    let req = test_send(&d, &admin, &c["id"], &rx);
    assert_eq!(req.path, format!("/bot{BOT}/sendMessage"));
    let b = req.json();
    assert_eq!(b["chat_id"], -100123);
    assert!(b["text"].as_str().unwrap().contains("Test message"));

    // PATCH with the masked value keeps the stored secret.
    let r = d.client.patch(
        &format!("/api/v1/channels/{}", c["id"]),
        Some(&admin),
        &json!({"name": "tg2", "config": {"bot_token": "********", "chat_id": 7}}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let req = test_send(&d, &admin, &c["id"], &rx);
    assert_eq!(req.path, format!("/bot{BOT}/sendMessage"));
    assert_eq!(req.json()["chat_id"], 7);

    // Nothing secret anywhere in the list.
    let all = d.client.get("/api/v1/channels", Some(&admin)).text;
    for secret in [
        "hook-secret",
        "sign-me",
        "tk_secret",
        "AppTok3n",
        "abc",
        "XYZ",
        BOT,
    ] {
        assert!(!all.contains(secret), "channel list leaks '{secret}'");
    }
    // A failed test send reports the failure.
    rx.push_statuses(&[500]);
    let r = d.client.post(
        &format!("/api/v1/channels/{}/test", c["id"]),
        Some(&admin),
        &json!({}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["ok"], false);
    assert_eq!(r.json()["status_code"], 500);
}

#[test]
fn an_alert_reaches_a_real_smtp_server_as_an_email() {
    let d = Daemon::start();
    let admin = d.admin();
    let dir = TempDir::new("smtp-e2e");
    let smtp = SmtpServer::start(dir.path());
    let (_node, agent) = d.enroll(&admin, "mailer-node");
    let c = create(
        &d,
        &admin,
        json!({"name": "mail", "type": "email", "min_severity": "critical", "config": {
            "host": smtp.host(), "port": smtp.port(), "tls": "none",
            "from": "cairn@example.org", "to": ["ops@example.org"]}}),
    );
    assert!(c["config"]
        .get("password")
        .is_none_or(|p| p.is_null() || p == "********"));
    let r = d.client.post(
        "/api/v1/alert-rules",
        Some(&admin),
        &json!({"metric": "cpu", "warning": {"trigger": 50}, "critical": {"trigger": 90}, "for_s": 0}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    // Warning only: below the channel's minimum severity, no mail.
    let r = d
        .client
        .post("/api/v1/agent/ingest", Some(&agent), &snapshot(now() - 3, 60.0));
    assert_eq!(r.status, 200);
    let r = d
        .client
        .post("/api/v1/agent/ingest", Some(&agent), &snapshot(now() - 2, 97.5));
    assert_eq!(r.status, 200);
    let mails = smtp.wait_for(1, WAIT);
    assert_eq!(mails.len(), 1, "only the escalation to critical is mailed");
    let m = &mails[0];
    assert_eq!(m.header("From"), Some("cairn@example.org"));
    assert_eq!(m.header("To"), Some("ops@example.org"));
    let subject = m.header("Subject").unwrap_or("");
    assert!(
        subject.contains("CRITICAL") && subject.contains("cpu") && subject.contains("mailer-node"),
        "{subject}"
    );
    assert!(m.body.contains("97.5"), "{}", m.body);
    // The mail is in the fixture before the session ends; its outcome is
    // recorded after that, so wait for it.
    let del = poll("the delivery's outcome", Duration::from_secs(20), || {
        let v = d
            .client
            .get("/api/v1/notifications/deliveries", Some(&admin))
            .json();
        (v["data"][0]["status"] != "pending").then_some(v)
    });
    assert_eq!(del["data"][0]["status"], "delivered", "{del}");
    assert_eq!(del["data"][0]["event"], "escalated");
}
