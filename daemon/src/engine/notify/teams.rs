//! Microsoft Teams (Workflows "post to a channel when a webhook request is
//! received", or a legacy incoming webhook): a message with one Adaptive
//! Card 1.4 attachment, the shape both accept.

use super::template::{self, Level};
use super::{json_post, stored, to_value, Channel, Event, FieldError, Fields, Outbound, Secret};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub(super) struct Teams;

#[derive(Serialize, Deserialize)]
struct Config {
    url: String,
}

impl Channel for Teams {
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
        let color = match template::level(ev) {
            Level::Critical => "Attention",
            Level::Warning => "Warning",
            Level::Resolved => "Good",
        };
        let facts: Vec<Value> = template::facts(ev)
            .into_iter()
            .map(|(k, v)| json!({"title": k, "value": v}))
            .collect();
        let mut body = vec![json!({
            "type": "TextBlock", "text": template::title(ev), "weight": "Bolder",
            "size": "Medium", "color": color, "wrap": true,
        })];
        if !ev.message.is_empty() {
            body.push(
                json!({"type": "TextBlock", "text": template::truncate(&ev.message, 4000), "wrap": true}),
            );
        }
        body.push(json!({"type": "FactSet", "facts": facts}));
        let mut card = json!({
            "type": "AdaptiveCard",
            "version": "1.4",
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "body": body,
        });
        if ev.url.starts_with("http://") || ev.url.starts_with("https://") {
            card["actions"] = json!([{"type": "Action.OpenUrl", "title": "Open alert", "url": ev.url}]);
        }
        let msg = json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": null,
                "content": card,
            }],
        });
        Ok(json_post(cfg.url, vec![], &msg))
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::notify::tests::{http_parts, sample};
    use crate::engine::notify::{masked, render, validate};
    use serde_json::{json, Value};

    const URL: &str =
        "https://prod-01.westus.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?sig=SECRET";

    #[test]
    fn renders_a_message_with_an_adaptive_card() {
        let cfg = validate("teams", &json!({"url": URL}), None).unwrap();
        let (method, url, _, body) = http_parts(render("teams", &cfg, &sample()).unwrap());
        assert_eq!((method.as_str(), url.as_str()), ("POST", URL));
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["type"], "message");
        let a = &v["attachments"][0];
        assert_eq!(a["contentType"], "application/vnd.microsoft.card.adaptive");
        let c = &a["content"];
        assert_eq!(c["type"], "AdaptiveCard");
        assert_eq!(c["version"], "1.4");
        assert_eq!(c["$schema"], "http://adaptivecards.io/schemas/adaptive-card.json");
        assert_eq!(c["body"][0]["text"], "[CRITICAL] cpu on pi4: 97.2");
        assert_eq!(c["body"][0]["color"], "Attention");
        assert_eq!(c["body"][1]["text"], "cpu on pi4 is 97.2 (critical ≥ 95)");
        assert_eq!(c["body"][2]["type"], "FactSet");
        assert_eq!(c["body"][2]["facts"][0], json!({"title": "Node", "value": "pi4"}));
        assert_eq!(c["actions"][0]["url"], "http://cairn.local:8440/api/v1/alerts/42");
    }

    #[test]
    fn the_url_is_masked_with_its_port() {
        let stored = validate("teams", &json!({"url": URL}), None).unwrap();
        assert_eq!(
            masked("teams", &stored)["url"],
            "https://prod-01.westus.logic.azure.com:443/********"
        );
    }
}
