//! Generic webhook: any method the user picks, their headers, a default JSON
//! body or their own template, and an optional HMAC-SHA256 signature.

use super::{field_err, stored, template, to_value, Channel, Event, FieldError, Fields, Outbound, Secret};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;
use std::collections::BTreeMap;

pub(super) struct Webhook;

const METHODS: &[&str] = &["POST", "PUT", "PATCH", "GET"];

/// Set by the HTTP layer from the body and connection; a user value would
/// make the request malformed.
const RESERVED: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "x-cairn-signature",
];

#[derive(Serialize, Deserialize)]
struct Config {
    url: String,
    #[serde(default = "post")]
    method: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    template: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

fn post() -> String {
    "POST".into()
}

impl Channel for Webhook {
    fn keys(&self) -> &'static [&'static str] {
        &["url", "method", "headers", "template", "secret"]
    }

    fn secrets(&self) -> &'static [Secret] {
        &[Secret::Field("secret"), Secret::Values("headers")]
    }

    fn validate(&self, f: &Fields) -> Result<Value, FieldError> {
        let url = f.url("url")?;
        let method = f.string("method")?.map_or_else(post, |m| m.to_ascii_uppercase());
        if !METHODS.contains(&method.as_str()) {
            return Err(field_err(
                "method",
                format!("must be one of {}", METHODS.join(", ")),
            ));
        }
        let headers = f.string_map("headers")?.unwrap_or_default();
        let mut seen: Vec<String> = Vec::new();
        for (name, value) in &headers {
            let path = format!("headers.{name}");
            let lower = name.to_ascii_lowercase();
            if name.is_empty() || !name.bytes().all(is_tchar) {
                return Err(field_err(&path, "is not a valid HTTP header name"));
            }
            if RESERVED.contains(&lower.as_str()) {
                return Err(field_err(&path, "is set by cairn and cannot be configured"));
            }
            if seen.contains(&lower) {
                return Err(field_err(&path, "is given twice (header names ignore case)"));
            }
            seen.push(lower);
            if value.chars().any(|c| c.is_control() && c != '\t') {
                return Err(field_err(
                    &path,
                    "must not contain line breaks or control characters",
                ));
            }
        }
        let template = f.raw_string("template")?;
        if let Some(t) = &template {
            if t.len() > 64 * 1024 {
                return Err(field_err("template", "must be at most 64 KiB"));
            }
            template::check(t).map_err(|e| field_err("template", e))?;
        }
        let secret = f.raw_string("secret")?;
        to_value(&Config {
            url,
            method,
            headers,
            template,
            secret,
        })
    }

    fn render(&self, stored_cfg: &Value, ev: &Event) -> Result<Outbound, String> {
        let cfg: Config = stored(stored_cfg)?;
        let body = if cfg.method == "GET" {
            // A GET carries no body; the signature then covers the empty body.
            Vec::new()
        } else if let Some(t) = &cfg.template {
            template::fill(t, ev)?.into_bytes()
        } else {
            default_body(ev)
        };
        let mut headers: Vec<(String, String)> = cfg.headers.into_iter().collect();
        if cfg.method != "GET"
            && !headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        {
            headers.push(("Content-Type".into(), "application/json".into()));
        }
        if let Some(secret) = &cfg.secret {
            headers.push((
                "X-Cairn-Signature".into(),
                format!("sha256={}", sign(secret, &body)),
            ));
        }
        Ok(Outbound::Http {
            method: cfg.method,
            url: cfg.url,
            headers,
            body,
        })
    }
}

/// Every Event field, with `at` as RFC 3339 and `"source": "cairn"`.
fn default_body(ev: &Event) -> Vec<u8> {
    let mut v = serde_json::to_value(ev).unwrap_or_default();
    if let Value::Object(m) = &mut v {
        m.insert("at".into(), Value::String(template::rfc3339(ev.at)));
        m.insert("source".into(), Value::String("cairn".into()));
    }
    super::json_body(&v)
}

/// Lowercase hex HMAC-SHA256 of the exact body bytes sent.
fn sign(secret: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// RFC 9110 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use crate::engine::notify::tests::{http_parts, sample};
    use crate::engine::notify::{masked, render, validate, MASK};
    use serde_json::{json, Value};

    #[test]
    fn default_body_has_every_event_field_and_json_content_type() {
        let cfg = validate("webhook", &json!({"url": "https://hooks.example/x"}), None).unwrap();
        assert_eq!(cfg["method"], "POST");
        let (method, url, headers, body) = http_parts(render("webhook", &cfg, &sample()).unwrap());
        assert_eq!(
            (method.as_str(), url.as_str()),
            ("POST", "https://hooks.example/x")
        );
        assert_eq!(
            headers,
            vec![("Content-Type".to_string(), "application/json".to_string())]
        );
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({"event": "fired", "alert_id": 42, "kind": "metric", "node_id": "n-1", "node": "pi4",
                   "metric": "cpu", "instance": "", "severity": "critical", "status": "active",
                   "value": 97.2, "threshold": 95.0, "message": "cpu on pi4 is 97.2 (critical ≥ 95)",
                   "url": "http://cairn.local:8440/api/v1/alerts/42", "at": "2024-05-01T12:00:00Z",
                   "source": "cairn"})
        );
    }

    /// RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
    #[test]
    fn signature_is_hmac_sha256_of_the_exact_body() {
        let cfg = validate(
            "webhook",
            &json!({"url": "http://127.0.0.1:9/h", "secret": "Jefe",
                    "template": "what do ya want for nothing?",
                    "headers": {"content-type": "text/plain", "Authorization": "Bearer t"}}),
            None,
        )
        .unwrap();
        let (_, _, headers, body) = http_parts(render("webhook", &cfg, &sample()).unwrap());
        assert_eq!(body, b"what do ya want for nothing?");
        assert_eq!(
            headers,
            vec![
                ("Authorization".to_string(), "Bearer t".to_string()),
                ("content-type".to_string(), "text/plain".to_string()),
                (
                    "X-Cairn-Signature".to_string(),
                    "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843".to_string()
                ),
            ]
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let err = |cfg: Value| validate("webhook", &cfg, None).unwrap_err();
        assert_eq!(err(json!({"url": "ftp://x/y"})).field, "config.url");
        assert_eq!(err(json!({"url": "not a url"})).field, "config.url");
        assert_eq!(err(json!({"url": "http:///path"})).field, "config.url");
        assert_eq!(err(json!({})).field, "config.url");
        assert_eq!(
            err(json!({"url": "http://h", "method": "DELETE"})).field,
            "config.method"
        );
        assert_eq!(
            err(json!({"url": "http://h", "headers": {"X-A": "a\r\nB: c"}})).field,
            "config.headers.X-A"
        );
        assert_eq!(
            err(json!({"url": "http://h", "headers": {"Bad Name": "v"}})).field,
            "config.headers.Bad Name"
        );
        assert_eq!(
            err(json!({"url": "http://h", "headers": {"Content-Length": "1"}})).field,
            "config.headers.Content-Length"
        );
        let e = err(json!({"url": "http://h", "template": "{{ nope }}"}));
        assert_eq!(e.field, "config.template");
        assert!(e.message.contains("{{nope}}"), "{}", e.message);
        let e = err(json!({"url": "http://h", "sekret": "x", "bogus": 1}));
        assert_eq!(e.field, "config.bogus");
        assert!(e.message.contains("'bogus', 'sekret'"), "{}", e.message);
    }

    #[test]
    fn secret_and_header_values_are_masked_and_kept_on_update() {
        let first = json!({"url": "http://h/x", "secret": "s3", "headers": {"Authorization": "Bearer a", "X-B": "b"}});
        let stored = validate("webhook", &first, None).unwrap();
        let shown = masked("webhook", &stored);
        assert_eq!(shown["secret"], MASK);
        assert_eq!(shown["headers"], json!({"Authorization": MASK, "X-B": MASK}));
        assert_eq!(shown["url"], "http://h/x");
        // Sending back what GET showed changes nothing.
        assert_eq!(validate("webhook", &shown, Some(&stored)).unwrap(), stored);
        // Absent secret and headers: kept; a new header value replaces only itself.
        let upd = json!({"url": "http://h/y", "headers": {"authorization": MASK, "X-B": "new"}});
        let v = validate("webhook", &upd, Some(&stored)).unwrap();
        assert_eq!(v["secret"], "s3");
        assert_eq!(v["headers"], json!({"authorization": "Bearer a", "X-B": "new"}));
        // null clears the optional secret.
        let v = validate(
            "webhook",
            &json!({"url": "http://h", "secret": null}),
            Some(&stored),
        )
        .unwrap();
        assert!(v.get("secret").is_none());
        // The mask with nothing stored behind it is an error, not a password.
        let e = validate("webhook", &json!({"url": "http://h", "secret": MASK}), None).unwrap_err();
        assert_eq!(e.field, "config.secret");
    }

    #[test]
    fn get_sends_no_body_and_methods_are_normalised() {
        let cfg = validate("webhook", &json!({"url": "http://h/ping", "method": "get"}), None).unwrap();
        let (method, _, headers, body) = http_parts(render("webhook", &cfg, &sample()).unwrap());
        assert_eq!(method, "GET");
        assert!(body.is_empty() && headers.is_empty());
    }
}
