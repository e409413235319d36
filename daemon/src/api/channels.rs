//! Notification channels (secrets masked on every read), test sends, and
//! the delivery history of the outbox.

use super::{body, num_param, LocalFuture};
use crate::app::{Call, Ctx, Shared};
use crate::clock;
use crate::engine::alerts::rules::Severity;
use crate::engine::notify::{self, Event};
use crate::http::{ApiError, ApiResult, Reply};
use crate::store::channels::{Channel, ChannelFields, Routing};
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

/// Events a channel can be told about.
pub const EVENTS: &[&str] = &[
    "fired",
    "escalated",
    "resolved",
    "flapping",
    "acknowledged",
    "unacknowledged",
];
const DEFAULT_EVENTS: &[&str] = &["fired", "escalated", "resolved", "flapping"];

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ChannelInput {
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    config: Option<Value>,
    min_severity: Option<String>,
    enabled: Option<bool>,
    filter: Option<Routing>,
    notify_on: Option<Vec<String>>,
}

fn render(c: &Channel) -> Value {
    serde_json::json!({
        "id": c.id, "name": c.name, "type": c.kind,
        "config": notify::masked(&c.kind, &c.config),
        "min_severity": c.min_severity, "enabled": c.enabled,
        "filter": c.filter, "notify_on": c.notify_on,
        "created_at": clock::rfc3339(c.created_at), "updated_at": clock::rfc3339(c.updated_at),
    })
}

fn channel_or_404(ctx: &Ctx, id: i64) -> Result<Channel, ApiError> {
    ctx.store
        .channel(id)?
        .ok_or_else(|| ApiError::not_found(format!("no channel {id}")))
}

fn validate(input: ChannelInput, base: Option<&Channel>, ctx: &Ctx) -> Result<ChannelFields, ApiError> {
    let name = match (&input.name, base) {
        (Some(n), _) => super::check_name("name", n, 100)?,
        (None, Some(b)) => b.name.clone(),
        (None, None) => return Err(ApiError::field("name", "is required")),
    };
    let kind = match (&input.kind, base) {
        (Some(k), _) => k.clone(),
        (None, Some(b)) => b.kind.clone(),
        (None, None) => {
            return Err(ApiError::field(
                "type",
                format!("is required: one of {}", notify::TYPES.join(", ")),
            ))
        }
    };
    if !notify::TYPES.contains(&kind.as_str()) {
        return Err(ApiError::field(
            "type",
            format!("'{kind}' is not one of {}", notify::TYPES.join(", ")),
        ));
    }
    // A type change starts from a clean config: old secrets do not carry over.
    let previous = base.filter(|b| b.kind == kind).map(|b| &b.config);
    let config = match (input.config, previous) {
        (Some(c), prev) => c.clone_from_prev(prev),
        (None, Some(prev)) => prev.clone(),
        (None, None) => return Err(ApiError::field("config", "is required")),
    };
    let config =
        notify::validate(&kind, &config, previous).map_err(|e| ApiError::field(&e.field, e.message))?;
    let min_severity = match (input.min_severity, base) {
        (Some(s), _) => s,
        (None, Some(b)) => b.min_severity.clone(),
        (None, None) => "warning".into(),
    };
    if Severity::parse(&min_severity).is_none() {
        return Err(ApiError::field("min_severity", "must be 'warning' or 'critical'"));
    }
    let filter = input
        .filter
        .or(base.map(|b| b.filter.clone()))
        .unwrap_or_default();
    for (i, n) in filter.nodes.iter().enumerate() {
        if !matches!(ctx.store.node(n), Ok(Some(_))) {
            return Err(ApiError::field(
                &format!("filter.nodes[{i}]"),
                format!("no node '{n}'"),
            ));
        }
    }
    for (i, k) in filter.kinds.iter().enumerate() {
        if !crate::engine::alerts::KINDS.contains(&k.as_str()) {
            return Err(ApiError::field(
                &format!("filter.kinds[{i}]"),
                format!("'{k}' is not one of {}", crate::engine::alerts::KINDS.join(", ")),
            ));
        }
    }
    let notify_on = input
        .notify_on
        .or(base.map(|b| b.notify_on.clone()))
        .unwrap_or_else(|| DEFAULT_EVENTS.iter().map(|s| s.to_string()).collect());
    for (i, e) in notify_on.iter().enumerate() {
        if !EVENTS.contains(&e.as_str()) {
            return Err(ApiError::field(
                &format!("notify_on[{i}]"),
                format!("'{e}' is not one of {}", EVENTS.join(", ")),
            ));
        }
    }
    Ok(ChannelFields {
        name,
        kind,
        config,
        min_severity,
        enabled: input.enabled.or(base.map(|b| b.enabled)).unwrap_or(true),
        filter,
        notify_on,
    })
}

/// PATCH sends a partial config: fields it leaves out keep their values.
trait MergeConfig {
    fn clone_from_prev(self, prev: Option<&Value>) -> Value;
}

impl MergeConfig for Value {
    fn clone_from_prev(self, prev: Option<&Value>) -> Value {
        match (self, prev) {
            (Value::Object(new), Some(Value::Object(old))) => {
                let mut merged = old.clone();
                merged.extend(new);
                Value::Object(merged)
            }
            (v, _) => v,
        }
    }
}

pub fn list(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let all: Vec<Value> = ctx.store.channels()?.iter().map(render).collect();
    super::list(call, all)
}

pub fn get(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let id = num_param(call, "id", "a channel id")?;
    Ok(Reply::ok(&render(&channel_or_404(ctx, id)?)))
}

pub fn create(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let input: ChannelInput = body(call)?;
    let f = validate(input, None, ctx)?;
    let id = ctx.store.insert_channel(&f, clock::now())?;
    Ok(Reply::created(&render(&channel_or_404(ctx, id)?)))
}

pub fn update(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let id = num_param(call, "id", "a channel id")?;
    let input: ChannelInput = body(call)?;
    let old = channel_or_404(ctx, id)?;
    let f = validate(input, Some(&old), ctx)?;
    ctx.store.update_channel(id, &f, clock::now())?;
    Ok(Reply::ok(&render(&channel_or_404(ctx, id)?)))
}

pub fn delete(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let id = num_param(call, "id", "a channel id")?;
    if !ctx.store.delete_channel(id)? {
        return Err(ApiError::not_found(format!("no channel {id}")));
    }
    Ok(Reply::no_content())
}

/// Sends a real test message now (not through the outbox) and reports how it went.
pub fn test(shared: Shared, call: Call) -> LocalFuture {
    Box::pin(async move {
        let (out, timeout, name) = {
            let ctx = shared.borrow();
            let id = num_param(&call, "id", "a channel id")?;
            super::no_body(&call)?;
            let ch = channel_or_404(&ctx, id)?;
            let now = clock::now();
            let ev = Event {
                event: "test".into(),
                kind: "test".into(),
                node: "cairn".into(),
                metric: "test".into(),
                severity: "warning".into(),
                status: "active".into(),
                message: format!("Test message from Cairn to channel '{}'", ch.name),
                url: format!("{}/api/v1/channels/{id}", ctx.cfg.public_url()),
                at: now,
                ..Default::default()
            };
            let out = notify::render(&ch.kind, &ch.config, &ev).map_err(|e| {
                ApiError::new(
                    422,
                    "unprocessable",
                    format!("cannot render for this channel: {e}"),
                )
            })?;
            (out, Duration::from_secs(ctx.cfg.notify_timeout_s), ch.name)
        };
        let a = smol::unblock(move || notify::deliver(&out, timeout)).await;
        log::info!(
            "test message to channel '{name}': {}",
            if a.ok { "delivered" } else { "failed" }
        );
        Ok(Reply::ok(&serde_json::json!({
            "ok": a.ok, "status_code": a.status_code, "error": a.error, "duration_ms": a.duration_ms
        })))
    })
}

pub fn deliveries(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let num = |k: &str| -> Result<Option<i64>, ApiError> {
        call.req
            .query(k)
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| ApiError::field(k, "must be a number"))
            })
            .transpose()
    };
    let (channel, alert) = (num("channel")?, num("alert")?);
    let status = call.req.query("status").filter(|v| !v.is_empty());
    if let Some(s) = status {
        if !["pending", "delivered", "failed"].contains(&s) {
            return Err(ApiError::field("status", "must be pending, delivered or failed"));
        }
    }
    let (limit, offset) = super::paging(call)?;
    let (rows, total) = ctx
        .store
        .deliveries(channel, alert, status, limit as i64, offset as i64)?;
    Ok(Reply::ok(&serde_json::json!({
        "data": rows, "total": total, "limit": limit, "offset": offset
    })))
}

pub fn delivery(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let id = num_param(call, "id", "a delivery id")?;
    let d = ctx
        .store
        .delivery(id)?
        .ok_or_else(|| ApiError::not_found(format!("no delivery {id}")))?;
    let mut v = serde_json::to_value(&d).map_err(ApiError::internal)?;
    v["attempts_log"] = serde_json::to_value(ctx.store.delivery_attempts(id)?).map_err(ApiError::internal)?;
    Ok(Reply::ok(&v))
}
