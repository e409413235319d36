//! `notify::deliver` against the notification fixtures: a real SMTP
//! exchange with aiosmtpd, and HTTP statuses and hangs at the fake receiver.

use cairn_e2e::fixtures::{FakeReceiver, SmtpServer};
use cairn_e2e::TempDir;
use cairnd::engine::notify::{self, EmailOut, Event, Outbound};
use serde_json::json;
use std::time::{Duration, Instant};

fn event() -> Event {
    Event {
        event: "fired".into(),
        alert_id: Some(7),
        kind: "metric".into(),
        node_id: "n-1".into(),
        node: "pi4".into(),
        metric: "cpu".into(),
        severity: "critical".into(),
        status: "active".into(),
        value: Some(97.2),
        threshold: Some(95.0),
        message: "cpu on pi4 is 97.2 (critical ≥ 95)".into(),
        url: "http://127.0.0.1:8440/api/v1/alerts/7".into(),
        at: 1_714_564_800,
        ..Event::default()
    }
}

#[test]
fn email_is_delivered_over_plain_smtp_with_from_to_subject_and_body() {
    let dir = TempDir::new("smtp");
    let smtp = SmtpServer::start(dir.path());
    let cfg = notify::validate(
        "email",
        &json!({"host": smtp.host(), "port": smtp.port(), "tls": "none",
                "from": "Cairn <cairn@example.org>", "to": ["ops@example.org", "oncall@example.org"]}),
        None,
    )
    .unwrap();
    let out = notify::render("email", &cfg, &event()).unwrap();
    let a = notify::deliver(&out, Duration::from_secs(10));
    assert!(a.ok, "{a:?}\naiosmtpd log:\n{}", smtp.log());
    let mails = smtp.wait_for(1, Duration::from_secs(10));
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert_eq!(m.header("From"), Some("Cairn <cairn@example.org>"));
    assert_eq!(m.header("To"), Some("ops@example.org, oncall@example.org"));
    assert_eq!(m.header("Subject"), Some("[CRITICAL] cpu on pi4: 97.2"));
    assert!(
        m.header("Message-ID").is_some_and(|id| id.contains(".cairn@")),
        "{:?}",
        m.headers
    );
    assert!(
        m.body.starts_with("cpu on pi4 is 97.2 (critical ≥ 95)\n"),
        "{}",
        m.body
    );
    assert!(
        m.body.contains("Node: pi4\n") && m.body.contains("http://127.0.0.1:8440/api/v1/alerts/7"),
        "{}",
        m.body
    );
}

#[test]
fn email_with_starttls_required_fails_against_a_plain_server() {
    let dir = TempDir::new("smtp-tls");
    let smtp = SmtpServer::start(dir.path());
    let out = Outbound::Email(EmailOut {
        host: smtp.host().into(),
        port: smtp.port(),
        tls: "starttls".into(),
        username: Some("alice".into()),
        password: Some("hunter22".into()),
        from: "a@example.org".into(),
        to: vec!["b@example.org".into()],
        subject: "s".into(),
        body: "b".into(),
    });
    let a = notify::deliver(&out, Duration::from_secs(10));
    assert!(!a.ok, "{a:?}");
    let e = a.error.unwrap();
    assert!(!e.contains("hunter22"), "{e}");
    assert!(smtp.messages().is_empty());
}

#[test]
fn the_fake_receiver_drives_statuses_and_hangs() {
    let r = FakeReceiver::start();
    r.push_statuses(&[500, 200]);
    let token = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";
    let cfg = notify::validate(
        "telegram",
        &json!({"bot_token": token, "chat_id": -100123, "api_base": r.url()}),
        None,
    )
    .unwrap();
    let out = notify::render("telegram", &cfg, &event()).unwrap();
    let first = notify::deliver(&out, Duration::from_secs(5));
    assert_eq!((first.ok, first.status_code), (false, Some(500)), "{first:?}");
    let second = notify::deliver(&out, Duration::from_secs(5));
    assert_eq!((second.ok, second.status_code), (true, Some(200)), "{second:?}");
    let got = r.wait_for(2, Duration::from_secs(5));
    assert_eq!(got[1].path, format!("/bot{token}/sendMessage"));
    assert_eq!(got[1].header("content-type"), Some("application/json"));
    assert_eq!(got[1].json()["chat_id"], -100123);

    r.set_hang(true);
    let started = Instant::now();
    let hung = notify::deliver(&out, Duration::from_millis(500));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        !hung.ok && hung.error.as_deref().unwrap_or("").contains("timed out"),
        "{hung:?}"
    );
    assert_eq!(r.wait_for(3, Duration::from_secs(5)).len(), 3);
}
