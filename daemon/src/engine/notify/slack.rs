//! Slack incoming webhook: `text` (the notification and fallback) plus
//! Block Kit sections in mrkdwn. Limits from Slack's docs: section text
//! 3000, 10 fields of 2000 each; `text` may be 40000 but is kept short.

use super::{json_post, stored, template, to_value, Channel, Event, FieldError, Fields, Outbound, Secret};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub(super) struct Slack;

#[derive(Serialize, Deserialize)]
struct Config {
    url: String,
}

impl Channel for Slack {
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
        let mut head = format!("*{}*", escape(&title));
        if !ev.message.is_empty() {
            head.push('\n');
            head.push_str(&escape(&ev.message));
        }
        if ev.url.starts_with("http://") || ev.url.starts_with("https://") {
            head.push_str(&format!("\n<{}|Open alert>", escape(&ev.url)));
        }
        let fields: Vec<Value> = template::facts(ev)
            .into_iter()
            .take(10)
            .map(|(k, v)| json!({"type": "mrkdwn", "text": template::truncate(&format!("*{k}*\n{}", escape(&v)), 2000)}))
            .collect();
        let body = json!({
            "text": template::truncate(escape(&format!("{title}\n{}", ev.message)).trim_end(), 3000),
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": template::truncate(&head, 3000)}},
                {"type": "section", "fields": fields},
            ],
        });
        Ok(json_post(cfg.url, vec![], &body))
    }
}

/// Slack's three control characters in mrkdwn; without this an agent's
/// node name could forge links or mentions (`<!channel>`).
fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use crate::engine::notify::tests::{http_parts, sample};
    use crate::engine::notify::{masked, render, validate};
    use serde_json::{json, Value};

    const URL: &str = "https://hooks.slack.com/services/T000/B000/XXXXsecret";

    #[test]
    fn renders_text_and_mrkdwn_sections() {
        let cfg = validate("slack", &json!({"url": URL}), None).unwrap();
        let mut ev = sample();
        ev.node = "<!channel>".into();
        let (method, url, headers, body) = http_parts(render("slack", &cfg, &ev).unwrap());
        assert_eq!((method.as_str(), url.as_str()), ("POST", URL));
        assert_eq!(
            headers,
            vec![("Content-Type".to_string(), "application/json".to_string())]
        );
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v["text"],
            "[CRITICAL] cpu on &lt;!channel&gt;: 97.2\ncpu on pi4 is 97.2 (critical ≥ 95)"
        );
        assert_eq!(v["blocks"][0]["type"], "section");
        assert_eq!(v["blocks"][0]["text"]["type"], "mrkdwn");
        assert_eq!(
            v["blocks"][0]["text"]["text"],
            "*[CRITICAL] cpu on &lt;!channel&gt;: 97.2*\ncpu on pi4 is 97.2 (critical ≥ 95)\n\
             <http://cairn.local:8440/api/v1/alerts/42|Open alert>"
        );
        assert_eq!(
            v["blocks"][1]["fields"][0],
            json!({"type": "mrkdwn", "text": "*Node*\n&lt;!channel&gt;"})
        );
    }

    #[test]
    fn the_url_is_masked_to_its_host() {
        let stored = validate("slack", &json!({"url": URL}), None).unwrap();
        assert_eq!(
            masked("slack", &stored)["url"],
            "https://hooks.slack.com/********"
        );
        assert_eq!(
            validate("slack", &json!({}), None).unwrap_err().field,
            "config.url"
        );
    }
}
