//! Alerts: list with filters, counts, detail with the event timeline, and
//! the lifecycle actions a person takes (acknowledge, unacknowledge, resolve).

use super::{body, num_param};
use crate::app::{Call, Ctx};
use crate::clock;
use crate::engine::alerts::rules::Severity;
use crate::http::{ApiError, ApiResult, Reply};
use crate::store::alerts::AlertFilter;
use serde::Deserialize;

const STATUSES: &[&str] = &["active", "acknowledged", "resolved", "open"];

pub fn list(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let q = |k: &str| call.req.query(k).filter(|v| !v.is_empty()).map(str::to_string);
    let mut f = AlertFilter {
        node: q("node"),
        kind: q("kind"),
        ..Default::default()
    };
    if let Some(s) = q("status") {
        if !STATUSES.contains(&s.as_str()) {
            return Err(ApiError::field(
                "status",
                format!("'{s}' is not one of {}", STATUSES.join(", ")),
            ));
        }
        if s == "open" {
            f.open_only = true;
        } else {
            f.status = Some(s);
        }
    }
    if let Some(s) = q("severity") {
        if Severity::parse(&s).is_none() {
            return Err(ApiError::field("severity", "must be 'warning' or 'critical'"));
        }
        f.severity = Some(s);
    }
    if let Some(t) = q("since") {
        f.since = Some(clock::parse_time_param(&t).map_err(|e| ApiError::field("since", e))?);
    }
    let (limit, offset) = super::paging(call)?;
    let (rows, total) = ctx.store.alerts(&f, limit as i64, offset as i64)?;
    Ok(Reply::ok(&serde_json::json!({
        "data": rows, "total": total, "limit": limit, "offset": offset
    })))
}

/// Open alerts by status and severity, for a badge.
pub fn count(ctx: &mut Ctx, _call: &Call) -> ApiResult {
    let mut out = serde_json::json!({
        "open": 0, "active": 0, "acknowledged": 0, "warning": 0, "critical": 0
    });
    for (status, severity, n) in ctx.store.alert_counts()? {
        for k in ["open", status.as_str(), severity.as_str()] {
            if let Some(v) = out.get_mut(k) {
                *v = (v.as_i64().unwrap_or(0) + n).into();
            }
        }
    }
    Ok(Reply::ok(&out))
}

pub fn get(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let id = num_param(call, "id", "an alert id")?;
    let alert = ctx
        .store
        .alert(id)?
        .ok_or_else(|| ApiError::not_found(format!("no alert {id}")))?;
    let events = ctx.store.alert_events(id)?;
    let mut v = serde_json::to_value(&alert).map_err(ApiError::internal)?;
    v["events"] = serde_json::to_value(events).map_err(ApiError::internal)?;
    Ok(Reply::ok(&v))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Note {
    note: Option<String>,
}

fn note(call: &Call) -> Result<Option<String>, ApiError> {
    if call.req.body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(None);
    }
    let n: Note = body(call)?;
    n.note
        .filter(|s| !s.trim().is_empty())
        .map(|s| super::check_name("note", &s, 1000))
        .transpose()
}

fn act(ctx: &mut Ctx, call: &Call, action: &str) -> ApiResult {
    let id = num_param(call, "id", "an alert id")?;
    let note = note(call)?;
    let who = call.user()?.username.clone();
    let settings = ctx.alert_settings();
    let now = clock::now();
    let Ctx { store, alerting, .. } = &mut *ctx;
    let changed = match action {
        "ack" => alerting.set_ack(store, id, &who, Some(note.as_deref()), &settings, now)?,
        "unack" => alerting.set_ack(store, id, &who, None, &settings, now)?,
        _ => alerting.resolve_by(store, id, &who, note.as_deref(), &settings, now)?,
    };
    ctx.wake_outbox();
    let Some(changed) = changed else {
        return Err(ApiError::not_found(format!("no alert {id}")));
    };
    let alert = ctx
        .store
        .alert(id)?
        .ok_or_else(|| ApiError::not_found(format!("no alert {id}")))?;
    if !changed {
        let need = match action {
            "ack" => "active",
            "unack" => "acknowledged",
            _ => "active or acknowledged",
        };
        return Err(ApiError::conflict(format!(
            "alert {id} is {}; this needs it {need}",
            alert.status
        )));
    }
    Ok(Reply::ok(&alert))
}

pub fn ack(ctx: &mut Ctx, call: &Call) -> ApiResult {
    act(ctx, call, "ack")
}
pub fn unack(ctx: &mut Ctx, call: &Call) -> ApiResult {
    act(ctx, call, "unack")
}
pub fn resolve(ctx: &mut Ctx, call: &Call) -> ApiResult {
    act(ctx, call, "resolve")
}
