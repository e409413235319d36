//! Gotify: `POST {server}/message` with the application token in
//! `X-Gotify-Key` (kept out of the URL, where proxies would log it).

use super::{
    json_post, stored, template, to_value, Channel, Event, FieldError, Fields, Outbound, Priorities, Secret,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub(super) struct Gotify;

/// Gotify clients treat 8+ as high (sound and pop-up) and 1-3 as quiet.
const DEFAULT_PRIORITIES: Priorities = Priorities {
    warning: 5,
    critical: 8,
    resolved: 2,
};

#[derive(Serialize, Deserialize)]
struct Config {
    server: String,
    token: String,
    priorities: Priorities,
}

impl Channel for Gotify {
    fn keys(&self) -> &'static [&'static str] {
        &["server", "token", "priorities"]
    }

    fn secrets(&self) -> &'static [Secret] {
        &[Secret::Field("token")]
    }

    fn validate(&self, f: &Fields) -> Result<Value, FieldError> {
        let server = f.url("server")?;
        let token = f.required("token")?;
        if token.chars().any(|c| c.is_control() || c == ' ') {
            return Err(super::field_err(
                "token",
                "must not contain spaces or control characters",
            ));
        }
        let priorities = f.priorities("priorities", DEFAULT_PRIORITIES, 10)?;
        to_value(&Config {
            server: server.trim_end_matches('/').to_string(),
            token,
            priorities,
        })
    }

    fn render(&self, stored_cfg: &Value, ev: &Event) -> Result<Outbound, String> {
        let cfg: Config = stored(stored_cfg)?;
        let mut body = json!({
            "title": template::title(ev),
            "message": template::text(ev),
            "priority": cfg.priorities.for_event(ev),
        });
        if ev.url.starts_with("http://") || ev.url.starts_with("https://") {
            // Gotify's documented extra: tapping the notification opens the alert.
            body["extras"] = json!({"client::notification": {"click": {"url": ev.url}}});
        }
        Ok(json_post(
            format!("{}/message", cfg.server),
            vec![("X-Gotify-Key".into(), cfg.token)],
            &body,
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::notify::tests::{http_parts, sample};
    use crate::engine::notify::{masked, render, validate, MASK};
    use serde_json::{json, Value};

    #[test]
    fn posts_title_message_priority_with_the_key_header() {
        let cfg = validate(
            "gotify",
            &json!({"server": "https://push.example/", "token": "AbC.123"}),
            None,
        )
        .unwrap();
        let (method, url, headers, body) = http_parts(render("gotify", &cfg, &sample()).unwrap());
        assert_eq!(
            (method.as_str(), url.as_str()),
            ("POST", "https://push.example/message")
        );
        assert_eq!(
            headers,
            vec![
                ("Content-Type".to_string(), "application/json".to_string()),
                ("X-Gotify-Key".to_string(), "AbC.123".to_string())
            ]
        );
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["title"], "[CRITICAL] cpu on pi4: 97.2");
        assert_eq!(v["priority"], 8);
        assert!(v["message"]
            .as_str()
            .unwrap()
            .starts_with("cpu on pi4 is 97.2 (critical ≥ 95)\n\nNode: pi4\n"));
        assert_eq!(
            v["extras"]["client::notification"]["click"]["url"],
            "http://cairn.local:8440/api/v1/alerts/42"
        );
    }

    #[test]
    fn server_and_token_are_required_and_the_token_masked() {
        assert_eq!(
            validate("gotify", &json!({"token": "t"}), None)
                .unwrap_err()
                .field,
            "config.server"
        );
        assert_eq!(
            validate("gotify", &json!({"server": "http://g"}), None)
                .unwrap_err()
                .field,
            "config.token"
        );
        let stored = validate(
            "gotify",
            &json!({"server": "http://g", "token": "t", "priorities": {"critical": 10}}),
            None,
        )
        .unwrap();
        assert_eq!(stored["priorities"]["critical"], 10);
        assert_eq!(masked("gotify", &stored)["token"], MASK);
        assert_eq!(
            validate("gotify", &json!({"server": "http://g"}), Some(&stored)).unwrap()["token"],
            "t"
        );
    }
}
