//! Notification channels: one file per kind, one contract for all of them.
//! A channel validates its config and renders an alert event into an
//! `Outbound` message; it never sends. `deliver` sends one rendered message
//! (blocking, with a timeout; the outbox calls it off the executor thread),
//! and the outbox (engine::outbox) retries and records, once, for all kinds.
//!
//! Adding a channel: a file implementing `Channel`, its `mod` line and one
//! entry in `CHANNELS` (and its name in `TYPES`, which a test keeps in step).
//! Shared wording lives in `template.rs`, the network in `send.rs`.

mod discord;
mod email;
mod gotify;
mod ntfy;
pub(crate) mod send;
mod slack;
mod teams;
mod telegram;
mod template;
mod webhook;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// The channel kinds, as `type` in `POST /api/v1/channels`.
pub const TYPES: &[&str] = &[
    "webhook", "ntfy", "gotify", "discord", "slack", "teams", "telegram", "email",
];

/// What `masked` puts in place of a secret, and what a client may send back
/// unchanged on update to keep the stored value.
pub const MASK: &str = "********";

/// What a channel is told about: an alert that fired, escalated, resolved,
/// was acknowledged, started flapping, or a test message.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Event {
    /// "fired" | "escalated" | "resolved" | "acknowledged" | "flapping" | "test"
    pub event: String,
    pub alert_id: Option<i64>,
    /// "metric" | "offline" | later "check" | "heartbeat" | ...
    pub kind: String,
    pub node_id: String,
    /// The node's display name.
    pub node: String,
    pub metric: String,
    /// A mount for disk alerts; empty otherwise.
    pub instance: String,
    /// "warning" | "critical"
    pub severity: String,
    /// The alert's status after the event: "active" | "acknowledged" | "resolved"
    pub status: String,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    /// One human line, e.g. "cpu on pi4 is 97.2 (critical ≥ 95)".
    pub message: String,
    /// Link to the alert (API URL built from the daemon's public URL).
    pub url: String,
    /// Unix seconds.
    pub at: i64,
}

/// A rendered message, ready to send.
#[derive(Clone, Debug, PartialEq)]
pub enum Outbound {
    Http {
        method: String,
        url: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    Email(EmailOut),
}

#[derive(Clone, Debug, PartialEq)]
pub struct EmailOut {
    pub host: String,
    pub port: u16,
    /// "starttls" | "tls" | "none"
    pub tls: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    pub body: String,
}

/// Bad channel config: `field` is the path inside the request body,
/// e.g. "config.chat_id".
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// The outcome of one delivery attempt.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Attempt {
    pub ok: bool,
    pub status_code: Option<u16>,
    /// Never contains a secret (no URLs with tokens in them, no passwords).
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// Where a secret sits in a channel's config.
#[derive(Clone, Copy, Debug)]
enum Secret {
    /// A string field, masked whole.
    Field(&'static str),
    /// A URL whose path is the credential (Discord, Slack, Teams webhooks):
    /// masked as `scheme://host/********` so the user still sees where it goes.
    Url(&'static str),
    /// Every value of an object of strings (webhook headers carry
    /// Authorization and API keys).
    Values(&'static str),
}

/// The contract every kind implements. `render` receives what `validate`
/// returned (after a round trip through the store).
trait Channel: Sync {
    /// Every config key the kind accepts; anything else is rejected by name.
    fn keys(&self) -> &'static [&'static str];
    fn secrets(&self) -> &'static [Secret];
    /// Returns the normalised config (defaults filled in) to store.
    fn validate(&self, cfg: &Fields) -> Result<Value, FieldError>;
    fn render(&self, stored: &Value, ev: &Event) -> Result<Outbound, String>;
}

const CHANNELS: &[(&str, &dyn Channel)] = &[
    ("webhook", &webhook::Webhook),
    ("ntfy", &ntfy::Ntfy),
    ("gotify", &gotify::Gotify),
    ("discord", &discord::Discord),
    ("slack", &slack::Slack),
    ("teams", &teams::Teams),
    ("telegram", &telegram::Telegram),
    ("email", &email::Email),
];

fn channel(kind: &str) -> Option<&'static dyn Channel> {
    CHANNELS.iter().find(|(k, _)| *k == kind).map(|(_, c)| *c)
}

/// Validates a channel config from a request and returns the normalised
/// config to store. `previous` is the stored config when updating: secret
/// fields that are absent or still hold the mask keep their stored value
/// (an explicit `null` clears an optional secret).
pub fn validate(kind: &str, config: &Value, previous: Option<&Value>) -> Result<Value, FieldError> {
    let ch = channel(kind).ok_or_else(|| FieldError {
        field: "type".into(),
        message: format!("unknown channel type '{kind}'; valid types: {}", TYPES.join(", ")),
    })?;
    let Value::Object(map) = config else {
        return Err(FieldError {
            field: "config".into(),
            message: "must be a JSON object".into(),
        });
    };
    let merged = carry_secrets(ch.secrets(), map, previous);
    still_masked(ch.secrets(), &merged)?;
    let fields = Fields::new(&merged, ch.keys())?;
    ch.validate(&fields)
}

/// The stored config with every secret replaced by the mask, for GET.
/// An unknown kind shows nothing rather than risk showing a secret.
pub fn masked(kind: &str, stored: &Value) -> Value {
    let (Some(ch), Value::Object(map)) = (channel(kind), stored) else {
        return Value::Object(Map::new());
    };
    let mut out = map.clone();
    for s in ch.secrets() {
        match *s {
            Secret::Field(k) => {
                if let Some(v) = out.get_mut(k).filter(|v| !v.is_null()) {
                    *v = Value::String(MASK.into());
                }
            }
            Secret::Url(k) => {
                if let Some(v) = out.get_mut(k) {
                    *v = Value::String(mask_url(v.as_str().unwrap_or_default()));
                }
            }
            Secret::Values(k) => {
                if let Some(Value::Object(m)) = out.get_mut(k) {
                    m.values_mut().for_each(|v| *v = Value::String(MASK.into()));
                }
            }
        }
    }
    Value::Object(out)
}

/// Renders one event for a channel with a stored (validated) config.
pub fn render(kind: &str, stored: &Value, ev: &Event) -> Result<Outbound, String> {
    let ch = channel(kind).ok_or_else(|| format!("unknown channel type '{kind}'"))?;
    ch.render(stored, ev)
}

/// Sends one message; blocking; gives up after `timeout` in total.
pub fn deliver(out: &Outbound, timeout: Duration) -> Attempt {
    send::deliver(out, timeout)
}

/// `scheme://host[:port]/********`, or the bare mask when it does not parse.
fn mask_url(url: &str) -> String {
    match url.parse::<ureq::http::Uri>() {
        Ok(u) => match (u.scheme_str(), u.authority()) {
            (Some(s), Some(a)) => format!("{s}://{}/{MASK}", a.as_str().rsplit('@').next().unwrap_or("")),
            _ => MASK.into(),
        },
        Err(_) => MASK.into(),
    }
}

fn is_mask(v: &Value, secret: Secret) -> bool {
    let Some(s) = v.as_str() else { return false };
    match secret {
        Secret::Url(_) => s == MASK || s.ends_with(&format!("/{MASK}")),
        _ => s == MASK,
    }
}

/// On update, puts the stored secret back where the request left it out or
/// sent the mask: clients round-trip what GET showed them.
fn carry_secrets(
    secrets: &[Secret],
    map: &Map<String, Value>,
    previous: Option<&Value>,
) -> Map<String, Value> {
    let mut out = map.clone();
    let Some(Value::Object(prev)) = previous else {
        return out;
    };
    for &s in secrets {
        match s {
            Secret::Field(k) | Secret::Url(k) => {
                let keep = match (out.get(k), s) {
                    (None, _) => true,
                    // Only the mask of the stored URL keeps it: a masked URL
                    // naming another host is a mistake, not "unchanged".
                    (Some(v), Secret::Url(_)) => v.as_str().is_some_and(|v| {
                        v == MASK || v == mask_url(prev.get(k).and_then(Value::as_str).unwrap_or(""))
                    }),
                    (Some(v), _) => is_mask(v, s),
                };
                if let (true, Some(old)) = (keep, prev.get(k)) {
                    out.insert(k.into(), old.clone());
                }
            }
            Secret::Values(k) => match (out.get_mut(k), prev.get(k)) {
                (None, Some(old)) => {
                    out.insert(k.into(), old.clone());
                }
                (Some(Value::Object(new)), Some(Value::Object(old))) => {
                    for (name, v) in new.iter_mut() {
                        if v.as_str() == Some(MASK) {
                            // Header names are case-insensitive; so is the match.
                            if let Some((_, o)) = old.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
                                *v = o.clone();
                            }
                        }
                    }
                }
                _ => {}
            },
        }
    }
    out
}

/// A mask left after carrying means there was nothing stored to keep:
/// storing the mask itself as a token would fail later, far from the cause.
fn still_masked(secrets: &[Secret], map: &Map<String, Value>) -> Result<(), FieldError> {
    for &s in secrets {
        match s {
            Secret::Field(k) | Secret::Url(k) => {
                if map.get(k).is_some_and(|v| is_mask(v, s)) {
                    return Err(field_err(
                        k,
                        "holds the mask, and no stored value matches it; send the real value",
                    ));
                }
            }
            Secret::Values(k) => {
                if let Some(Value::Object(m)) = map.get(k) {
                    if let Some((name, _)) = m.iter().find(|(_, v)| v.as_str() == Some(MASK)) {
                        return Err(field_err(
                            &format!("{k}.{name}"),
                            "holds the mask, and no stored value matches it; send the real value",
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// `FieldError` for `config.<key>`.
fn field_err(key: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: format!("config.{key}"),
        message: message.into(),
    }
}

/// A config object under validation: typed getters that name the field on
/// error. `null` reads as absent, and so does "" for optional strings.
struct Fields<'a> {
    map: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    fn new(map: &'a Map<String, Value>, keys: &[&str]) -> Result<Fields<'a>, FieldError> {
        // Unknown keys first: a typo ("chat-id") is then reported as itself,
        // not as the required key it was meant to be.
        let unknown: Vec<&str> = map
            .keys()
            .map(String::as_str)
            .filter(|k| !keys.contains(k))
            .collect();
        if let Some(first) = unknown.first() {
            return Err(field_err(
                first,
                format!(
                    "unknown key{} {}; valid keys: {}",
                    if unknown.len() > 1 { "s" } else { "" },
                    unknown
                        .iter()
                        .map(|k| format!("'{k}'"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    keys.join(", ")
                ),
            ));
        }
        Ok(Fields { map })
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// An optional string, trimmed; "" is absent.
    fn string(&self, key: &str) -> Result<Option<String>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
            Some(_) => Err(field_err(key, "must be a string")),
        }
    }

    fn required(&self, key: &str) -> Result<String, FieldError> {
        self.string(key)?.ok_or_else(|| field_err(key, "is required"))
    }

    /// An optional string kept exactly as sent (templates: whitespace matters).
    fn raw_string(&self, key: &str) -> Result<Option<String>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(field_err(key, "must be a string")),
        }
    }

    fn integer(&self, key: &str, min: i64, max: i64) -> Result<Option<i64>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_i64() {
                Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(field_err(key, format!("must be an integer from {min} to {max}"))),
            },
        }
    }

    /// An optional array of non-empty strings.
    fn strings(&self, key: &str) -> Result<Option<Vec<String>>, FieldError> {
        let Some(v) = self.get(key) else { return Ok(None) };
        let arr = v
            .as_array()
            .ok_or_else(|| field_err(key, "must be an array of strings"))?;
        arr.iter()
            .enumerate()
            .map(|(i, item)| match item.as_str().map(str::trim) {
                Some(s) if !s.is_empty() => Ok(s.to_string()),
                _ => Err(field_err(&format!("{key}[{i}]"), "must be a non-empty string")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// An optional object of strings.
    fn string_map(&self, key: &str) -> Result<Option<BTreeMap<String, String>>, FieldError> {
        let Some(v) = self.get(key) else { return Ok(None) };
        let obj = v
            .as_object()
            .ok_or_else(|| field_err(key, "must be an object of strings"))?;
        obj.iter()
            .map(|(k, v)| match v.as_str() {
                Some(s) => Ok((k.clone(), s.to_string())),
                None => Err(field_err(&format!("{key}.{k}"), "must be a string")),
            })
            .collect::<Result<BTreeMap<_, _>, _>>()
            .map(Some)
    }

    /// Per-level priorities: `{"warning": n, "critical": n, "resolved": n}`,
    /// each optional over `defaults`.
    fn priorities(&self, key: &str, defaults: Priorities, max: i64) -> Result<Priorities, FieldError> {
        let Some(v) = self.get(key) else {
            return Ok(defaults);
        };
        let obj = v.as_object().ok_or_else(|| field_err(key, "must be an object"))?;
        let mut p = defaults;
        for (k, v) in obj {
            let slot = match k.as_str() {
                "warning" => &mut p.warning,
                "critical" => &mut p.critical,
                "resolved" => &mut p.resolved,
                _ => {
                    return Err(field_err(
                        &format!("{key}.{k}"),
                        "unknown level; valid levels: warning, critical, resolved",
                    ))
                }
            };
            *slot = v.as_i64().filter(|n| (1..=max).contains(n)).ok_or_else(|| {
                field_err(
                    &format!("{key}.{k}"),
                    format!("must be an integer from 1 to {max}"),
                )
            })?;
        }
        Ok(p)
    }

    /// A required http(s) URL with a host.
    fn url(&self, key: &str) -> Result<String, FieldError> {
        let s = self.required(key)?;
        check_url(key, &s)?;
        Ok(s)
    }
}

/// Push priorities by level (ntfy 1-5, Gotify 0-10).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
struct Priorities {
    warning: i64,
    critical: i64,
    resolved: i64,
}

impl Priorities {
    fn for_event(&self, ev: &Event) -> i64 {
        match template::level(ev) {
            template::Level::Resolved => self.resolved,
            template::Level::Critical => self.critical,
            template::Level::Warning => self.warning,
        }
    }
}

fn check_url(key: &str, s: &str) -> Result<(), FieldError> {
    let bad = |why: &str| {
        Err(field_err(
            key,
            format!("must be an http:// or https:// URL with a host ({why})"),
        ))
    };
    let Ok(u) = s.parse::<ureq::http::Uri>() else {
        return bad("does not parse");
    };
    if !matches!(u.scheme_str(), Some("http" | "https")) {
        return bad("unsupported scheme");
    }
    let Some(auth) = u.authority() else {
        return bad("no host");
    };
    if auth.as_str().contains('@') {
        return Err(field_err(
            key,
            "credentials in the URL are not supported; put them in a header or token field",
        ));
    }
    if auth.host().is_empty() {
        return bad("no host");
    }
    Ok(())
}

/// Reads a stored config back into a kind's typed form.
fn stored<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T, String> {
    T::deserialize(v).map_err(|e| format!("stored channel config is not valid: {e}"))
}

fn to_value<T: Serialize>(cfg: &T) -> Result<Value, FieldError> {
    serde_json::to_value(cfg).map_err(|e| FieldError {
        field: "config".into(),
        message: format!("cannot be stored: {e}"),
    })
}

/// Header value from text that may come from agents (node names): control
/// characters would split or corrupt the header.
fn header_text(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// A JSON body as bytes; serialising a `Value` cannot fail.
fn json_body(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

fn json_post(url: String, extra: Vec<(String, String)>, body: &Value) -> Outbound {
    let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
    headers.extend(extra);
    Outbound::Http {
        method: "POST".into(),
        url,
        headers,
        body: json_body(body),
    }
}

#[cfg(test)]
mod tests;
