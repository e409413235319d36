//! Email over SMTP: STARTTLS (587), implicit TLS (465) or plain (25, for a
//! relay on the LAN). Renders a plain-text message; `send` talks SMTP.

use super::{
    field_err, stored, template, to_value, Channel, EmailOut, Event, FieldError, Fields, Outbound, Secret,
};
use lettre::message::Mailbox;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub(super) struct Email;

const TLS_MODES: &[&str] = &["starttls", "tls", "none"];

#[derive(Serialize, Deserialize)]
struct Config {
    host: String,
    port: u16,
    tls: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password: Option<String>,
    from: String,
    to: Vec<String>,
}

impl Channel for Email {
    fn keys(&self) -> &'static [&'static str] {
        &["host", "port", "tls", "username", "password", "from", "to"]
    }

    fn secrets(&self) -> &'static [Secret] {
        &[Secret::Field("password")]
    }

    fn validate(&self, f: &Fields) -> Result<Value, FieldError> {
        let host = f.required("host")?;
        if host.contains(|c: char| c.is_whitespace() || c == '/' || c == '@') || host.contains("://") {
            return Err(field_err(
                "host",
                "must be a host name or IP address (no scheme, path or port)",
            ));
        }
        let tls = f
            .string("tls")?
            .unwrap_or_else(|| "starttls".into())
            .to_ascii_lowercase();
        if !TLS_MODES.contains(&tls.as_str()) {
            return Err(field_err(
                "tls",
                format!("must be one of {}", TLS_MODES.join(", ")),
            ));
        }
        let default_port = match tls.as_str() {
            "tls" => 465,
            "none" => 25,
            _ => 587,
        };
        let port = f.integer("port", 1, 65535)?.map_or(default_port, |p| p as u16);
        let username = f.string("username")?;
        let password = f.raw_string("password")?;
        match (&username, &password) {
            (Some(_), None) => return Err(field_err("password", "is required with a username")),
            (None, Some(_)) => return Err(field_err("username", "is required with a password")),
            _ => {}
        }
        let from = f.required("from")?;
        from.parse::<Mailbox>()
            .map_err(|e| field_err("from", format!("is not a valid address ({e})")))?;
        let to = f.strings("to")?.unwrap_or_default();
        if to.is_empty() {
            return Err(field_err("to", "needs at least one address"));
        }
        for (i, addr) in to.iter().enumerate() {
            addr.parse::<Mailbox>()
                .map_err(|e| field_err(&format!("to[{i}]"), format!("is not a valid address ({e})")))?;
        }
        to_value(&Config {
            host,
            port,
            tls,
            username,
            password,
            from,
            to,
        })
    }

    fn render(&self, stored_cfg: &Value, ev: &Event) -> Result<Outbound, String> {
        let cfg: Config = stored(stored_cfg)?;
        Ok(Outbound::Email(EmailOut {
            host: cfg.host,
            port: cfg.port,
            tls: cfg.tls,
            username: cfg.username,
            password: cfg.password,
            from: cfg.from,
            to: cfg.to,
            // title() is one line already: no header injection through node names.
            subject: template::truncate(&template::title(ev), 200),
            body: template::text(ev),
        }))
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::notify::tests::sample;
    use crate::engine::notify::{masked, render, validate, EmailOut, Outbound, MASK};
    use serde_json::{json, Value};

    #[test]
    fn renders_subject_and_plain_text_body() {
        let cfg = validate(
            "email",
            &json!({"host": "smtp.example", "from": "Cairn <cairn@example.org>", "to": ["ops@example.org"],
                    "username": "u", "password": "p"}),
            None,
        )
        .unwrap();
        assert_eq!(
            (cfg["port"].as_u64(), cfg["tls"].as_str()),
            (Some(587), Some("starttls"))
        );
        let Outbound::Email(EmailOut {
            host,
            port,
            subject,
            body,
            to,
            password,
            ..
        }) = render("email", &cfg, &sample()).unwrap()
        else {
            panic!("not an email")
        };
        assert_eq!((host.as_str(), port), ("smtp.example", 587));
        assert_eq!(subject, "[CRITICAL] cpu on pi4: 97.2");
        assert_eq!(to, vec!["ops@example.org".to_string()]);
        assert_eq!(password.as_deref(), Some("p"));
        assert_eq!(
            body,
            "cpu on pi4 is 97.2 (critical ≥ 95)\n\nNode: pi4\nMetric: cpu\nValue: 97.2\nThreshold: 95\n\
             Severity: critical\nStatus: active\nEvent: fired\nAlert: 42\nAt: 2024-05-01T12:00:00Z\n\n\
             http://cairn.local:8440/api/v1/alerts/42\n"
        );
        let mut ev = sample();
        ev.event = "resolved".into();
        let Ok(Outbound::Email(e)) = render("email", &cfg, &ev) else {
            panic!()
        };
        assert_eq!(e.subject, "[RESOLVED] cpu on pi4: 97.2");
    }

    #[test]
    fn ports_follow_the_tls_mode_and_fields_are_checked() {
        let base = json!({"host": "h", "from": "a@b.c", "to": ["d@e.f"]});
        let with = |k: &str, v: Value| {
            let mut c = base.clone();
            c[k] = v;
            validate("email", &c, None)
        };
        assert_eq!(with("tls", json!("tls")).unwrap()["port"], 465);
        assert_eq!(with("tls", json!("none")).unwrap()["port"], 25);
        assert_eq!(with("port", json!(2525)).unwrap()["port"], 2525);
        assert_eq!(with("tls", json!("ssl")).unwrap_err().field, "config.tls");
        assert_eq!(with("port", json!(70000)).unwrap_err().field, "config.port");
        assert_eq!(
            with("from", json!("not an address")).unwrap_err().field,
            "config.from"
        );
        assert_eq!(with("to", json!([])).unwrap_err().field, "config.to");
        assert_eq!(
            with("to", json!(["ok@x.y", "bad"])).unwrap_err().field,
            "config.to[1]"
        );
        assert_eq!(with("host", json!("smtp://h")).unwrap_err().field, "config.host");
        assert_eq!(with("username", json!("u")).unwrap_err().field, "config.password");
        assert_eq!(with("password", json!("p")).unwrap_err().field, "config.username");
    }

    #[test]
    fn the_password_is_masked_and_kept() {
        let first = json!({"host": "h", "from": "a@b.c", "to": ["d@e.f"], "username": "u", "password": "pw"});
        let stored = validate("email", &first, None).unwrap();
        let shown = masked("email", &stored);
        assert_eq!(
            (shown["password"].as_str(), shown["username"].as_str()),
            (Some(MASK), Some("u"))
        );
        assert_eq!(
            validate("email", &shown, Some(&stored)).unwrap()["password"],
            "pw"
        );
    }
}
