//! ntfy (ntfy.sh or self-hosted): the message as the plain body of
//! `POST {server}/{topic}`, the rest in headers, as ntfy's publishing docs
//! describe (Title, Priority 1-5, Tags as emoji shortcodes, Click).

use super::template::{self, Level};
use super::{
    check_url, field_err, header_text, stored, to_value, Channel, Event, FieldError, Fields, Outbound,
    Priorities, Secret,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub(super) struct Ntfy;

const DEFAULT_SERVER: &str = "https://ntfy.sh";
const DEFAULT_PRIORITIES: Priorities = Priorities {
    warning: 4,
    critical: 5,
    resolved: 3,
};
/// ntfy's default message size limit (bytes); longer bodies become attachments.
const MAX_BODY_BYTES: usize = 4096;

#[derive(Serialize, Deserialize)]
struct Config {
    server: String,
    topic: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    priorities: Priorities,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
}

impl Channel for Ntfy {
    fn keys(&self) -> &'static [&'static str] {
        &["server", "topic", "token", "priorities", "tags"]
    }

    fn secrets(&self) -> &'static [Secret] {
        &[Secret::Field("token")]
    }

    fn validate(&self, f: &Fields) -> Result<Value, FieldError> {
        let server = f.string("server")?.unwrap_or_else(|| DEFAULT_SERVER.into());
        check_url("server", &server)?;
        let topic = f.required("topic")?;
        if topic.len() > 64
            || !topic
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(field_err(
                "topic",
                "must be 1-64 characters of A-Z, a-z, 0-9, '-' and '_'",
            ));
        }
        let token = f.string("token")?;
        if token
            .as_deref()
            .is_some_and(|t| t.chars().any(|c| c.is_control() || c == ' '))
        {
            return Err(field_err(
                "token",
                "must not contain spaces or control characters",
            ));
        }
        let priorities = f.priorities("priorities", DEFAULT_PRIORITIES, 5)?;
        let tags = f.strings("tags")?.unwrap_or_default();
        for (i, t) in tags.iter().enumerate() {
            if t.len() > 64 || t.contains(',') || t.chars().any(char::is_control) {
                return Err(field_err(
                    &format!("tags[{i}]"),
                    "must be at most 64 characters, without commas",
                ));
            }
        }
        to_value(&Config {
            server: server.trim_end_matches('/').to_string(),
            topic,
            token,
            priorities,
            tags,
        })
    }

    fn render(&self, stored_cfg: &Value, ev: &Event) -> Result<Outbound, String> {
        let cfg: Config = stored(stored_cfg)?;
        let emoji = match template::level(ev) {
            Level::Resolved => "white_check_mark",
            Level::Critical => "rotating_light",
            Level::Warning => "warning",
        };
        let tags: Vec<&str> = std::iter::once(emoji)
            .chain(cfg.tags.iter().map(String::as_str))
            .collect();
        let mut headers = vec![
            ("Title".to_string(), encode_header(&template::title(ev))),
            ("Priority".to_string(), cfg.priorities.for_event(ev).to_string()),
            ("Tags".to_string(), encode_header(&tags.join(","))),
        ];
        if ev.url.starts_with("http://") || ev.url.starts_with("https://") {
            headers.push(("Click".into(), header_text(&ev.url)));
        }
        if let Some(t) = &cfg.token {
            headers.push(("Authorization".into(), format!("Bearer {t}")));
        }
        let text = if ev.message.is_empty() {
            template::title(ev)
        } else {
            ev.message.clone()
        };
        Ok(Outbound::Http {
            method: "POST".into(),
            url: format!("{}/{}", cfg.server, cfg.topic),
            headers,
            body: cut_bytes(&text, MAX_BODY_BYTES).into_bytes(),
        })
    }
}

/// Header values are bytes on the wire; ntfy decodes RFC 2047 encoded words,
/// so non-ASCII titles (node names) go as `=?UTF-8?B?...?=`.
fn encode_header(s: &str) -> String {
    let s = header_text(s);
    if s.is_ascii() {
        return s;
    }
    format!("=?UTF-8?B?{}?=", base64(s.as_bytes()))
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// At most `max` bytes, cut on a char boundary.
fn cut_bytes(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::notify::tests::{http_parts, sample};
    use crate::engine::notify::{masked, render, validate, MASK};
    use serde_json::json;

    #[test]
    fn publishes_plain_text_with_title_priority_tags_and_click() {
        let cfg = validate(
            "ntfy",
            &json!({"topic": "cairn-alerts", "token": "tk_abc", "tags": ["pi"]}),
            None,
        )
        .unwrap();
        assert_eq!(cfg["server"], "https://ntfy.sh");
        let (method, url, headers, body) = http_parts(render("ntfy", &cfg, &sample()).unwrap());
        assert_eq!(
            (method.as_str(), url.as_str()),
            ("POST", "https://ntfy.sh/cairn-alerts")
        );
        let h = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        assert_eq!(h("Title"), "[CRITICAL] cpu on pi4: 97.2");
        assert_eq!(h("Priority"), "5");
        assert_eq!(h("Tags"), "rotating_light,pi");
        assert_eq!(h("Click"), "http://cairn.local:8440/api/v1/alerts/42");
        assert_eq!(h("Authorization"), "Bearer tk_abc");
        assert_eq!(body, "cpu on pi4 is 97.2 (critical ≥ 95)".as_bytes());

        let mut ev = sample();
        ev.event = "resolved".into();
        ev.node = "küche".into();
        let (_, _, headers, _) = http_parts(render("ntfy", &cfg, &ev).unwrap());
        assert!(headers.contains(&("Priority".into(), "3".into())));
        assert!(headers.contains(&("Tags".into(), "white_check_mark,pi".into())));
        let title = &headers[0].1;
        assert_eq!(
            title,
            &format!(
                "=?UTF-8?B?{}?=",
                base64("[RESOLVED] cpu on küche: 97.2".as_bytes())
            )
        );
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let v = ["", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"];
        for (i, want) in v.iter().enumerate() {
            assert_eq!(base64(&b"foobar"[..i]), *want);
        }
    }

    #[test]
    fn topic_priorities_and_token_are_checked_and_masked() {
        let err = |c| validate("ntfy", &c, None).unwrap_err().field;
        assert_eq!(err(json!({})), "config.topic");
        assert_eq!(err(json!({"topic": "a/b"})), "config.topic");
        assert_eq!(err(json!({"topic": "t", "server": "ntfy.sh"})), "config.server");
        assert_eq!(
            err(json!({"topic": "t", "priorities": {"warning": 9}})),
            "config.priorities.warning"
        );
        assert_eq!(
            err(json!({"topic": "t", "priorities": {"info": 1}})),
            "config.priorities.info"
        );
        let stored = validate(
            "ntfy",
            &json!({"topic": "t", "token": "tk", "priorities": {"warning": 2}}),
            None,
        )
        .unwrap();
        assert_eq!(
            stored["priorities"],
            json!({"warning": 2, "critical": 5, "resolved": 3})
        );
        assert_eq!(masked("ntfy", &stored)["token"], MASK);
        let kept = validate("ntfy", &json!({"topic": "t2", "token": MASK}), Some(&stored)).unwrap();
        assert_eq!(kept["token"], "tk");
    }
}
