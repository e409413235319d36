//! The contract across kinds, and `deliver` against a local HTTP server.
//! Each kind's rendering is tested in its own file.

use super::*;
use serde_json::json;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::Instant;

/// A critical CPU alert on "pi4", at 2024-05-01T12:00:00Z.
pub(super) fn sample() -> Event {
    Event {
        event: "fired".into(),
        alert_id: Some(42),
        kind: "metric".into(),
        node_id: "n-1".into(),
        node: "pi4".into(),
        metric: "cpu".into(),
        instance: String::new(),
        severity: "critical".into(),
        status: "active".into(),
        value: Some(97.2),
        threshold: Some(95.0),
        message: "cpu on pi4 is 97.2 (critical ≥ 95)".into(),
        url: "http://cairn.local:8440/api/v1/alerts/42".into(),
        at: 1_714_564_800,
    }
}

pub(super) fn http_parts(out: Outbound) -> (String, String, Vec<(String, String)>, Vec<u8>) {
    match out {
        Outbound::Http {
            method,
            url,
            headers,
            body,
        } => (method, url, headers, body),
        Outbound::Email(_) => panic!("expected an HTTP message"),
    }
}

#[test]
fn every_type_has_a_channel_and_every_channel_a_type() {
    let names: Vec<&str> = CHANNELS.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, TYPES);
}

#[test]
fn unknown_type_names_the_type_field_and_lists_the_valid_ones() {
    let e = validate("pager", &json!({}), None).unwrap_err();
    assert_eq!(e.field, "type");
    assert!(
        e.message.contains("'pager'") && e.message.contains("webhook, ntfy, gotify"),
        "{}",
        e.message
    );
    assert!(render("pager", &json!({}), &sample()).is_err());
    assert_eq!(masked("pager", &json!({"token": "t"})), json!({}));
}

#[test]
fn config_must_be_an_object() {
    let e = validate("slack", &json!("https://hooks.slack.com/x"), None).unwrap_err();
    assert_eq!(
        (e.field.as_str(), e.message.as_str()),
        ("config", "must be a JSON object")
    );
}

#[test]
fn wrong_json_types_name_the_field() {
    assert_eq!(
        validate("telegram", &json!({"bot_token": 5, "chat_id": 1}), None)
            .unwrap_err()
            .field,
        "config.bot_token"
    );
    assert_eq!(
        validate(
            "email",
            &json!({"host": "h", "from": "a@b.c", "to": "d@e.f"}),
            None
        )
        .unwrap_err()
        .field,
        "config.to"
    );
    assert_eq!(
        validate("webhook", &json!({"url": "http://h", "headers": {"X": 1}}), None)
            .unwrap_err()
            .field,
        "config.headers.X"
    );
}

#[test]
fn urls_with_credentials_are_refused() {
    let e = validate("webhook", &json!({"url": "https://user:pw@h/x"}), None).unwrap_err();
    assert_eq!(e.field, "config.url");
    assert!(!e.message.contains("pw"), "{}", e.message);
}

#[test]
fn stored_config_round_trips_through_validate() {
    let cases = [
        (
            "webhook",
            json!({"url": "http://h/x", "template": "{\"t\": \"{{message}}\"}", "secret": "s"}),
        ),
        ("ntfy", json!({"topic": "t", "token": "tk"})),
        ("gotify", json!({"server": "http://g", "token": "t"})),
        ("discord", json!({"url": "https://discord.com/api/webhooks/1/x"})),
        ("slack", json!({"url": "https://hooks.slack.com/services/a"})),
        ("teams", json!({"url": "https://x.logic.azure.com/w?sig=1"})),
        (
            "telegram",
            json!({"bot_token": "1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "chat_id": 5}),
        ),
        (
            "email",
            json!({"host": "h", "from": "a@b.c", "to": ["d@e.f"], "username": "u", "password": "p"}),
        ),
    ];
    for (kind, cfg) in cases {
        let stored = validate(kind, &cfg, None).unwrap_or_else(|e| panic!("{kind}: {e:?}"));
        // What GET shows, sent back as an update, changes nothing.
        let again = validate(kind, &masked(kind, &stored), Some(&stored)).unwrap();
        assert_eq!(again, stored, "{kind}");
        assert!(render(kind, &stored, &sample()).is_ok(), "{kind}");
    }
}

/// Reads one HTTP request (head and Content-Length body) from `s`.
fn read_request(s: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return buf;
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return buf,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A raw HTTP response with a correct Content-Length.
fn response(status: &str, body: &str) -> Option<String> {
    Some(format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ))
}

/// A one-request server: answers `reply` (raw HTTP), or holds the
/// connection open for `hold` without answering when `reply` is None.
/// Joins to the raw request it received.
fn serve_once(reply: Option<String>, hold: Duration) -> (u16, JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let req = read_request(&mut s);
        match reply {
            Some(r) => {
                let _ = s.write_all(r.as_bytes());
            }
            None => std::thread::sleep(hold),
        }
        req
    });
    (port, h)
}

fn webhook_to(url: &str) -> Outbound {
    let cfg = validate("webhook", &json!({"url": url, "secret": "k"}), None).unwrap();
    render("webhook", &cfg, &sample()).unwrap()
}

#[test]
fn a_2xx_answer_is_a_delivery_and_the_request_is_what_render_made() {
    let (port, server) = serve_once(
        Some("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n".into()),
        Duration::ZERO,
    );
    let out = webhook_to(&format!("http://127.0.0.1:{port}/hook?x=1"));
    let a = deliver(&out, Duration::from_secs(5));
    assert_eq!(
        (a.ok, a.status_code, a.error.as_deref()),
        (true, Some(204), None),
        "{a:?}"
    );
    let raw = String::from_utf8(server.join().unwrap()).unwrap();
    assert!(raw.starts_with("POST /hook?x=1 HTTP/1.1\r\n"), "{raw}");
    let lower = raw.to_ascii_lowercase();
    assert!(lower.contains("\r\ncontent-type: application/json\r\n"), "{raw}");
    assert!(lower.contains("\r\nuser-agent: cairnd/"), "{raw}");
    let (_, _, headers, body) = http_parts(out);
    let sig = &headers.iter().find(|(k, _)| k == "X-Cairn-Signature").unwrap().1;
    assert!(
        lower.contains(&format!("\r\nx-cairn-signature: {sig}\r\n")),
        "{raw}"
    );
    assert!(raw.ends_with(std::str::from_utf8(&body).unwrap()), "{raw}");
}

#[test]
fn a_500_is_a_failure_with_its_status_and_body() {
    let (port, server) = serve_once(
        response("500 Internal Server Error", "boom\r\n\tagain!!"),
        Duration::ZERO,
    );
    let a = deliver(
        &webhook_to(&format!("http://127.0.0.1:{port}/h")),
        Duration::from_secs(5),
    );
    server.join().unwrap();
    assert!(!a.ok);
    assert_eq!(a.status_code, Some(500));
    assert_eq!(a.error.as_deref(), Some("HTTP 500: boom again!!"));
}

#[test]
fn redirects_are_not_followed() {
    let (port, server) = serve_once(
        Some("HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:9/else\r\nContent-Length: 0\r\n\r\n".into()),
        Duration::ZERO,
    );
    let a = deliver(
        &webhook_to(&format!("http://127.0.0.1:{port}/h")),
        Duration::from_secs(5),
    );
    server.join().unwrap();
    assert_eq!((a.ok, a.status_code), (false, Some(302)));
    assert!(a.error.unwrap().contains("redirects are not followed"));
}

#[test]
fn a_server_that_never_answers_times_out() {
    let (port, server) = serve_once(None, Duration::from_secs(4));
    let started = Instant::now();
    let a = deliver(
        &webhook_to(&format!("http://127.0.0.1:{port}/h")),
        Duration::from_millis(600),
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(!a.ok && a.status_code.is_none());
    let e = a.error.unwrap();
    assert_eq!(e, format!("127.0.0.1:{port}: timed out after 0.6 s"));
    server.join().unwrap();
}

#[test]
fn a_refused_connection_names_host_and_port_but_not_the_url() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let token = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";
    let cfg = validate(
        "telegram",
        &json!({"bot_token": token, "chat_id": 1, "api_base": format!("http://127.0.0.1:{port}")}),
        None,
    )
    .unwrap();
    let a = deliver(
        &render("telegram", &cfg, &sample()).unwrap(),
        Duration::from_secs(5),
    );
    assert!(!a.ok);
    let e = a.error.unwrap();
    assert_eq!(e, format!("connecting to 127.0.0.1:{port}: connection refused"));
}

#[test]
fn telegram_ok_false_is_a_failure_and_echoed_paths_are_redacted() {
    let (port, server) = serve_once(
        response(
            "200 OK",
            r#"{"ok":false,"description":"Bad Request: chat not found"}"#,
        ),
        Duration::ZERO,
    );
    let token = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";
    let cfg = validate(
        "telegram",
        &json!({"bot_token": token, "chat_id": 1, "api_base": format!("http://127.0.0.1:{port}")}),
        None,
    )
    .unwrap();
    let a = deliver(
        &render("telegram", &cfg, &sample()).unwrap(),
        Duration::from_secs(5),
    );
    let raw = String::from_utf8(server.join().unwrap()).unwrap();
    assert!(
        raw.starts_with(&format!("POST /bot{token}/sendMessage HTTP/1.1")),
        "{raw}"
    );
    assert_eq!((a.ok, a.status_code), (false, Some(200)));
    assert_eq!(
        a.error.as_deref(),
        Some("HTTP 200 but not delivered: Bad Request: chat not found")
    );

    let (port, server) = serve_once(
        response(
            "404 Not Found",
            "Cannot POST /bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/x",
        ),
        Duration::ZERO,
    );
    let cfg = validate(
        "telegram",
        &json!({"bot_token": token, "chat_id": 1, "api_base": format!("http://127.0.0.1:{port}")}),
        None,
    )
    .unwrap();
    let a = deliver(
        &render("telegram", &cfg, &sample()).unwrap(),
        Duration::from_secs(5),
    );
    server.join().unwrap();
    let e = a.error.unwrap();
    assert!(e.starts_with("HTTP 404: Cannot POST /"), "{e}");
    assert!(!e.contains("AAHdqTcv"), "{e}");
}

#[test]
fn email_to_a_closed_port_fails_without_credentials_in_the_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Outbound::Email(EmailOut {
        host: "127.0.0.1".into(),
        port,
        tls: "none".into(),
        username: Some("alice".into()),
        password: Some("hunter22".into()),
        from: "a@b.c".into(),
        to: vec!["d@e.f".into()],
        subject: "s".into(),
        body: "b".into(),
    });
    let a = deliver(&out, Duration::from_secs(5));
    assert!(!a.ok);
    let e = a.error.unwrap();
    assert!(e.starts_with(&format!("SMTP 127.0.0.1:{port}: ")), "{e}");
    assert!(!e.contains("hunter22") && !e.contains("alice"), "{e}");
}
