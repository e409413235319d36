//! What every channel says about an event (title, facts, plain text), and
//! the webhook's `{{placeholder}}` templates. Service-specific layout
//! (embeds, blocks, cards) stays in each channel's file.

use super::Event;
use serde_json::Value;
use std::time::{Duration, UNIX_EPOCH};

/// How an event reads at a glance: colour, emoji, push priority.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Level {
    Warning,
    Critical,
    Resolved,
}

pub(super) fn level(ev: &Event) -> Level {
    if ev.event == "resolved" || ev.status == "resolved" {
        Level::Resolved
    } else if ev.severity == "critical" {
        Level::Critical
    } else {
        Level::Warning
    }
}

/// RFC 3339 (UTC, seconds). Clamped to what humantime can print: it panics
/// before 1970 and after 9999, and `at` comes from stored data.
pub(super) fn rfc3339(at: i64) -> String {
    let secs = at.clamp(0, 253_402_300_799) as u64;
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// A metric value for people: "97.2", "12", "0.005".
pub(super) fn num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// "[CRITICAL]", "[RESOLVED]", "[TEST]", ...
pub(super) fn tag(ev: &Event) -> String {
    let t = match ev.event.as_str() {
        "resolved" => "RESOLVED",
        "acknowledged" => "ACKNOWLEDGED",
        "flapping" => "FLAPPING",
        "test" => "TEST",
        _ if ev.severity.is_empty() => "ALERT",
        _ => return format!("[{}]", ev.severity.to_uppercase()),
    };
    format!("[{t}]")
}

/// "cpu", "disk_used_percent /var", or the kind ("offline") without a metric.
pub(super) fn what(ev: &Event) -> String {
    let base = if ev.metric.is_empty() {
        &ev.kind
    } else {
        &ev.metric
    };
    if ev.instance.is_empty() {
        base.clone()
    } else {
        format!("{base} {}", ev.instance)
    }
}

/// One line: "[CRITICAL] cpu on pi4: 97.2". Also the email subject.
pub(super) fn title(ev: &Event) -> String {
    let node = if ev.node.is_empty() { &ev.node_id } else { &ev.node };
    let mut t = format!("{} {} on {node}", tag(ev), what(ev));
    if let Some(v) = ev.value {
        t.push_str(": ");
        t.push_str(&num(v));
    }
    one_line(&t)
}

/// Agent-supplied names end up in subjects and headers: no line breaks.
pub(super) fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// Labelled facts, empty ones left out.
pub(super) fn facts(ev: &Event) -> Vec<(&'static str, String)> {
    let mut f = vec![
        (
            "Node",
            if ev.node.is_empty() {
                ev.node_id.clone()
            } else {
                ev.node.clone()
            },
        ),
        ("Metric", ev.metric.clone()),
        ("Instance", ev.instance.clone()),
        ("Value", ev.value.map(num).unwrap_or_default()),
        ("Threshold", ev.threshold.map(num).unwrap_or_default()),
        ("Severity", ev.severity.clone()),
        ("Status", ev.status.clone()),
        ("Event", ev.event.clone()),
        ("Alert", ev.alert_id.map(|id| id.to_string()).unwrap_or_default()),
        ("At", rfc3339(ev.at)),
    ];
    f.retain(|(_, v)| !v.is_empty());
    f
}

/// Plain text for email, Telegram and Gotify: the message, the facts, the link.
pub(super) fn text(ev: &Event) -> String {
    let mut out = String::new();
    if !ev.message.is_empty() {
        out.push_str(&ev.message);
        out.push_str("\n\n");
    }
    for (k, v) in facts(ev) {
        out.push_str(&format!("{k}: {v}\n"));
    }
    if !ev.url.is_empty() {
        out.push_str(&format!("\n{}\n", ev.url));
    }
    out
}

/// Cuts `s` to at most `max` UTF-16 code units (Telegram and Discord count
/// those, and a char never exceeds its UTF-16 length), ending in "…" when cut.
pub(super) fn truncate(s: &str, max: usize) -> String {
    let units: usize = s.chars().map(char::len_utf16).sum();
    if units <= max {
        return s.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        if used + c.len_utf16() + 1 > max {
            break;
        }
        used += c.len_utf16();
        out.push(c);
    }
    out.push('…');
    out
}

/// The webhook template placeholders, `{{name}}`.
pub(super) const PLACEHOLDERS: &[&str] = &[
    "node",
    "node_id",
    "metric",
    "instance",
    "value",
    "threshold",
    "severity",
    "status",
    "event",
    "message",
    "url",
    "alert_id",
    "kind",
    "at",
];

/// Splits a template into literal text and placeholder names; the error
/// names the first unknown placeholder or the unclosed brace.
fn parse(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        pieces.push(Piece::Text(&rest[..open]));
        let after = &rest[open + 2..];
        let close = after.find("}}").ok_or_else(|| {
            format!(
                "'{{{{' at byte {} is never closed with '}}}}'",
                template.len() - rest.len() + open
            )
        })?;
        let name = after[..close].trim();
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder {{{{{name}}}}}; known placeholders: {}",
                PLACEHOLDERS.join(", ")
            ));
        }
        pieces.push(Piece::Name(name));
        rest = &after[close + 2..];
    }
    pieces.push(Piece::Text(rest));
    Ok(pieces)
}

enum Piece<'a> {
    Text(&'a str),
    Name(&'a str),
}

pub(super) fn check(template: &str) -> Result<(), String> {
    parse(template).map(|_| ())
}

/// Fills a template. Every substituted value is escaped for the inside of a
/// JSON string (quotes, backslashes, control characters), so `"{{message}}"`
/// stays valid JSON whatever an agent named its node; numbers and ids are
/// bare (`null` when absent) so `{{value}}` also works unquoted.
pub(super) fn fill(template: &str, ev: &Event) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 256);
    for piece in parse(template)? {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Name(n) => out.push_str(&placeholder(n, ev)),
        }
    }
    Ok(out)
}

fn placeholder(name: &str, ev: &Event) -> String {
    let text = |s: &str| {
        let quoted = Value::String(s.to_string()).to_string();
        quoted[1..quoted.len() - 1].to_string()
    };
    let number = |v: Option<f64>| {
        v.and_then(serde_json::Number::from_f64)
            .map_or("null".into(), |n| n.to_string())
    };
    match name {
        "node" => text(&ev.node),
        "node_id" => text(&ev.node_id),
        "metric" => text(&ev.metric),
        "instance" => text(&ev.instance),
        "value" => number(ev.value),
        "threshold" => number(ev.threshold),
        "severity" => text(&ev.severity),
        "status" => text(&ev.status),
        "event" => text(&ev.event),
        "message" => text(&ev.message),
        "url" => text(&ev.url),
        "alert_id" => ev.alert_id.map_or("null".into(), |id| id.to_string()),
        "kind" => text(&ev.kind),
        "at" => rfc3339(ev.at),
        _ => String::new(), // parse() admits only PLACEHOLDERS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::notify::tests::sample;

    #[test]
    fn substituted_text_is_escaped_for_a_json_string() {
        let mut ev = sample();
        ev.node = "pi \"4\"\nrack\\1\t".into();
        let body = fill(
            r#"{"text": "{{node}} at {{ at }}", "v": {{value}}, "id": {{alert_id}}}"#,
            &ev,
        )
        .unwrap();
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["text"], "pi \"4\"\nrack\\1\t at 2024-05-01T12:00:00Z");
        assert_eq!(v["v"], 97.2);
        assert_eq!(v["id"], 42);
        ev.value = None;
        ev.alert_id = None;
        let v: Value = serde_json::from_str(&fill(r#"[{{value}}, {{alert_id}}]"#, &ev).unwrap()).unwrap();
        assert_eq!(v, serde_json::json!([null, null]));
    }

    #[test]
    fn unknown_or_unclosed_placeholders_are_named() {
        let e = check("hi {{nodename}}").unwrap_err();
        assert!(e.contains("{{nodename}}") && e.contains("node_id"), "{e}");
        let e = check("hi {{node").unwrap_err();
        assert!(e.contains("byte 3") && e.contains("never closed"), "{e}");
        assert!(check(r#"{"a": {"b": "{{node}}"}}"#).is_ok());
    }

    #[test]
    fn titles_read_like_a_pager_line() {
        let mut ev = sample();
        assert_eq!(title(&ev), "[CRITICAL] cpu on pi4: 97.2");
        ev.event = "resolved".into();
        ev.value = Some(42.0);
        assert_eq!(title(&ev), "[RESOLVED] cpu on pi4: 42");
        ev.metric = String::new();
        ev.kind = "offline".into();
        ev.value = None;
        ev.node = "evil\r\nBcc: x".into();
        assert_eq!(title(&ev), "[RESOLVED] offline on evil  Bcc: x");
    }

    #[test]
    fn truncation_counts_utf16_and_marks_the_cut() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcd", 3), "ab…");
        let t = truncate(&"😀".repeat(10), 5);
        assert_eq!(t, "😀😀…");
        assert!(t.chars().map(char::len_utf16).sum::<usize>() <= 5);
    }

    #[test]
    fn out_of_range_times_do_not_panic() {
        assert_eq!(rfc3339(-5), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59Z");
    }
}
