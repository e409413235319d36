//! Telegram Bot API: `POST {api_base}/bot{token}/sendMessage`, plain text
//! (no parse_mode, so nothing in a node name needs escaping). The token is
//! in the URL, which is why `send` never puts URLs in errors.

use super::{
    check_url, field_err, json_post, stored, template, to_value, Channel, Event, FieldError, Fields,
    Outbound, Secret,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub(super) struct Telegram;

const DEFAULT_API: &str = "https://api.telegram.org";
/// sendMessage's documented text limit.
const MAX_TEXT: usize = 4096;

#[derive(Serialize, Deserialize)]
struct Config {
    bot_token: String,
    /// A JSON integer (user, group, supergroup id) or "@channelname".
    chat_id: Value,
    api_base: String,
}

impl Channel for Telegram {
    fn keys(&self) -> &'static [&'static str] {
        &["bot_token", "chat_id", "api_base"]
    }

    fn secrets(&self) -> &'static [Secret] {
        &[Secret::Field("bot_token")]
    }

    fn validate(&self, f: &Fields) -> Result<Value, FieldError> {
        let bot_token = f.required("bot_token")?;
        if !token_shape(&bot_token) {
            return Err(field_err(
                "bot_token",
                "must look like 123456789:AA... (the token @BotFather gave you)",
            ));
        }
        let chat_id = chat_id(f.get("chat_id"))?;
        let api_base = f.string("api_base")?.unwrap_or_else(|| DEFAULT_API.into());
        check_url("api_base", &api_base)?;
        to_value(&Config {
            bot_token,
            chat_id,
            api_base: api_base.trim_end_matches('/').to_string(),
        })
    }

    fn render(&self, stored_cfg: &Value, ev: &Event) -> Result<Outbound, String> {
        let cfg: Config = stored(stored_cfg)?;
        let body = json!({
            "chat_id": cfg.chat_id,
            "text": template::truncate(&format!("{}\n{}", template::title(ev), template::text(ev)), MAX_TEXT),
            "disable_web_page_preview": true,
        });
        Ok(json_post(
            format!("{}/bot{}/sendMessage", cfg.api_base, cfg.bot_token),
            vec![],
            &body,
        ))
    }
}

/// digits ':' then the secret part (letters, digits, '-' and '_').
fn token_shape(t: &str) -> bool {
    let Some((id, secret)) = t.split_once(':') else {
        return false;
    };
    !id.is_empty()
        && id.len() <= 20
        && id.bytes().all(|b| b.is_ascii_digit())
        && (20..=128).contains(&secret.len())
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Normalised to an integer when numeric (ids arrive as strings from forms).
fn chat_id(v: Option<&Value>) -> Result<Value, FieldError> {
    let bad = || {
        field_err(
            "chat_id",
            "must be an integer chat id (e.g. -1001234567890) or @channelname",
        )
    };
    match v {
        None => Err(field_err("chat_id", "is required")),
        Some(Value::Number(n)) => n.as_i64().map(Value::from).ok_or_else(bad),
        Some(Value::String(s)) => {
            let s = s.trim();
            if s.is_empty() {
                return Err(field_err("chat_id", "is required"));
            }
            if let Ok(n) = s.parse::<i64>() {
                return Ok(Value::from(n));
            }
            let name = s.strip_prefix('@').ok_or_else(bad)?;
            if (4..=32).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                Ok(Value::String(s.to_string()))
            } else {
                Err(bad())
            }
        }
        Some(_) => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::notify::tests::{http_parts, sample};
    use crate::engine::notify::{masked, render, validate, MASK};
    use serde_json::{json, Value};

    const TOKEN: &str = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";

    #[test]
    fn posts_send_message_with_plain_text() {
        let cfg = validate(
            "telegram",
            &json!({"bot_token": TOKEN, "chat_id": "-1001234567890", "api_base": "http://127.0.0.1:9/"}),
            None,
        )
        .unwrap();
        assert_eq!(cfg["chat_id"], -1001234567890i64);
        let (method, url, headers, body) = http_parts(render("telegram", &cfg, &sample()).unwrap());
        assert_eq!(method, "POST");
        assert_eq!(url, format!("http://127.0.0.1:9/bot{TOKEN}/sendMessage"));
        assert_eq!(
            headers,
            vec![("Content-Type".to_string(), "application/json".to_string())]
        );
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["chat_id"], -1001234567890i64);
        assert_eq!(v["disable_web_page_preview"], true);
        let text = v["text"].as_str().unwrap();
        assert!(
            text.starts_with("[CRITICAL] cpu on pi4: 97.2\ncpu on pi4 is 97.2"),
            "{text}"
        );
        assert!(
            text.contains("http://cairn.local:8440/api/v1/alerts/42"),
            "{text}"
        );
    }

    #[test]
    fn long_messages_fit_telegrams_limit() {
        let cfg = validate(
            "telegram",
            &json!({"bot_token": TOKEN, "chat_id": "@cairn_alerts"}),
            None,
        )
        .unwrap();
        assert_eq!(cfg["api_base"], "https://api.telegram.org");
        let mut ev = sample();
        ev.message = "é".repeat(10_000);
        let (_, _, _, body) = http_parts(render("telegram", &cfg, &ev).unwrap());
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["chat_id"], "@cairn_alerts");
        assert_eq!(v["text"].as_str().unwrap().chars().count(), 4096);
    }

    #[test]
    fn missing_or_bad_fields_are_named() {
        let err = |c: Value| validate("telegram", &c, None).unwrap_err();
        let e = err(json!({"bot_token": TOKEN}));
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("config.chat_id", "is required")
        );
        assert_eq!(
            err(json!({"bot_token": TOKEN, "chat_id": ""})).field,
            "config.chat_id"
        );
        assert_eq!(
            err(json!({"bot_token": TOKEN, "chat_id": "channel"})).field,
            "config.chat_id"
        );
        assert_eq!(
            err(json!({"bot_token": TOKEN, "chat_id": 1.5})).field,
            "config.chat_id"
        );
        assert_eq!(
            err(json!({"bot_token": "nope", "chat_id": 1})).field,
            "config.bot_token"
        );
        assert_eq!(err(json!({"chat_id": 1})).field, "config.bot_token");
        assert_eq!(
            err(json!({"bot_token": TOKEN, "chat_id": 1, "api_base": "x"})).field,
            "config.api_base"
        );
    }

    #[test]
    fn the_token_is_masked_and_kept() {
        let stored = validate("telegram", &json!({"bot_token": TOKEN, "chat_id": 42}), None).unwrap();
        let shown = masked("telegram", &stored);
        assert_eq!(shown["bot_token"], MASK);
        assert_eq!(shown["chat_id"], 42);
        let upd = validate(
            "telegram",
            &json!({"bot_token": MASK, "chat_id": 43}),
            Some(&stored),
        )
        .unwrap();
        assert_eq!(
            (upd["bot_token"].as_str(), upd["chat_id"].as_i64()),
            (Some(TOKEN), Some(43))
        );
    }
}
