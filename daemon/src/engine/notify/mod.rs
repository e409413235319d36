//! Notification channels: one file per kind, one contract for all of them.
//! A channel validates its config and renders an alert event into an
//! `Outbound` message; it never sends. `deliver` sends one rendered message
//! (blocking, with a timeout; the outbox calls it off the executor thread),
//! and the outbox (engine::outbox) retries and records, once, for all kinds.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

/// The channel kinds, as `type` in `POST /api/v1/channels`.
pub const TYPES: &[&str] = &["webhook", "ntfy", "gotify", "discord", "slack", "teams", "telegram", "email"];

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

/// Validates a channel config from a request and returns the normalised
/// config to store. `previous` is the stored config when updating: secret
/// fields that are absent or still hold the mask keep their stored value.
pub fn validate(kind: &str, config: &Value, previous: Option<&Value>) -> Result<Value, FieldError> {
    let _ = (kind, config, previous);
    unimplemented!("filled in by the channel modules")
}

/// The stored config with every secret replaced by the mask, for GET.
pub fn masked(kind: &str, stored: &Value) -> Value {
    let _ = (kind, stored);
    unimplemented!("filled in by the channel modules")
}

/// Renders one event for a channel with a stored (validated) config.
pub fn render(kind: &str, stored: &Value, ev: &Event) -> Result<Outbound, String> {
    let _ = (kind, stored, ev);
    unimplemented!("filled in by the channel modules")
}

/// Sends one message; blocking; gives up after `timeout` in total.
pub fn deliver(out: &Outbound, timeout: Duration) -> Attempt {
    let _ = (out, timeout);
    unimplemented!("filled in by the channel modules")
}
