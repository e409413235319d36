//! Discord webhook: a short `content` line plus one embed, within Discord's
//! documented limits (content 2000, title 256, description 4096, field name
//! 256 / value 1024, 25 fields, 6000 characters per embed in total).

use super::template::{self, Level};
use super::{json_post, stored, to_value, Channel, Event, FieldError, Fields, Outbound, Secret};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub(super) struct Discord;

#[derive(Serialize, Deserialize)]
struct Config {
    url: String,
}

impl Channel for Discord {
    fn keys(&self) -> &'static [&'static str] {
        &["url"]
    }

    fn secrets(&self) -> &'static [Secret] {
        &[Secret::Url("url")]
    }

    fn validate(&self, f: &Fields) -> Result<Value, FieldError> {
        to_value(&Config { url: f.url("url")? })
    }

    fn render(&self, stored_cfg: &Value, ev: &Event) -> Result<Outbound, String> {
        let cfg: Config = stored(stored_cfg)?;
        let title = template::title(ev);
        let color = match template::level(ev) {
            Level::Critical => 0xE7_4C_3C,
            Level::Warning => 0xF3_9C_12,
            Level::Resolved => 0x2E_CC_71,
        };
        let fields: Vec<Value> = template::facts(ev)
            .into_iter()
            .take(25)
            .map(|(k, v)| json!({"name": k, "value": template::truncate(&v, 1024), "inline": true}))
            .collect();
        // 3000, not 4096: the description shares the 6000-character embed
        // budget with the title and the fields.
        let mut embed = json!({
            "title": template::truncate(&title, 256),
            "description": template::truncate(&ev.message, 3000),
            "color": color,
            "timestamp": template::rfc3339(ev.at),
            "fields": fields,
        });
        if ev.url.starts_with("http://") || ev.url.starts_with("https://") {
            embed["url"] = json!(ev.url);
        }
        let body = json!({
            "content": template::truncate(&title, 2000),
            "embeds": [embed],
            // Node names come from agents: never let them ping @everyone.
            "allowed_mentions": {"parse": []},
        });
        Ok(json_post(cfg.url, vec![], &body))
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::notify::tests::{http_parts, sample};
    use crate::engine::notify::{masked, render, validate};
    use serde_json::{json, Value};

    const URL: &str = "https://discord.com/api/webhooks/123456/AbCdEf-secret";

    #[test]
    fn renders_content_and_one_embed() {
        let cfg = validate("discord", &json!({"url": URL}), None).unwrap();
        let (method, url, headers, body) = http_parts(render("discord", &cfg, &sample()).unwrap());
        assert_eq!((method.as_str(), url.as_str()), ("POST", URL));
        assert_eq!(
            headers,
            vec![("Content-Type".to_string(), "application/json".to_string())]
        );
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["content"], "[CRITICAL] cpu on pi4: 97.2");
        assert_eq!(v["allowed_mentions"], json!({"parse": []}));
        let e = &v["embeds"][0];
        assert_eq!(e["title"], "[CRITICAL] cpu on pi4: 97.2");
        assert_eq!(e["description"], "cpu on pi4 is 97.2 (critical ≥ 95)");
        assert_eq!(e["color"], 0xE74C3C);
        assert_eq!(e["timestamp"], "2024-05-01T12:00:00Z");
        assert_eq!(e["url"], "http://cairn.local:8440/api/v1/alerts/42");
        assert_eq!(
            e["fields"][0],
            json!({"name": "Node", "value": "pi4", "inline": true})
        );
    }

    #[test]
    fn long_text_is_cut_to_discord_limits() {
        let cfg = validate("discord", &json!({"url": URL}), None).unwrap();
        let mut ev = sample();
        ev.node = "n".repeat(3000);
        ev.message = "m".repeat(9000);
        let (_, _, _, body) = http_parts(render("discord", &cfg, &ev).unwrap());
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert!(v["content"].as_str().unwrap().chars().count() <= 2000);
        assert!(v["embeds"][0]["title"].as_str().unwrap().chars().count() <= 256);
        assert!(
            v["embeds"][0]["fields"][0]["value"]
                .as_str()
                .unwrap()
                .chars()
                .count()
                <= 1024
        );
        assert!(v["embeds"][0]["description"].as_str().unwrap().ends_with('…'));
    }

    #[test]
    fn the_url_is_the_secret() {
        let stored = validate("discord", &json!({"url": URL}), None).unwrap();
        let shown = masked("discord", &stored);
        assert_eq!(shown["url"], "https://discord.com/********");
        assert_eq!(validate("discord", &shown, Some(&stored)).unwrap(), stored);
        assert_eq!(validate("discord", &json!({}), Some(&stored)).unwrap(), stored);
        let other = validate(
            "discord",
            &json!({"url": "https://evil.example/********"}),
            Some(&stored),
        );
        assert_eq!(other.unwrap_err().field, "config.url");
        assert_eq!(
            validate("discord", &json!({"url": "discord.com/x"}), None)
                .unwrap_err()
                .field,
            "config.url"
        );
    }
}
