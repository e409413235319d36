//! Heartbeats: CRUD, pause/resume, pings, executions, daily uptime, and the
//! public ping routes cron jobs call (`curl -fsS .../ping/<uuid>`), which
//! answer in plain text as cron users expect.

use super::{body, num_param};
use crate::app::{Call, Ctx};
use crate::clock;
use crate::engine::heartbeats::{self, PingKind, BODY_KEPT};
use crate::http::{ApiError, ApiResult, Reply};
use crate::store::heartbeats::{Heartbeat, HeartbeatFields, NewPing};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Longest period or grace: a year.
const MAX_S: i64 = 365 * 86_400;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Input {
    name: Option<String>,
    period_s: Option<i64>,
    grace_s: Option<i64>,
    labels: Option<BTreeMap<String, String>>,
    /// Create paused.
    paused: Option<bool>,
}

fn render(ctx: &Ctx, hb: &Heartbeat) -> Value {
    let mut v = serde_json::to_value(hb).unwrap_or(Value::Null);
    v["ping_url"] = format!("{}/ping/{}", ctx.cfg.public_url(), hb.uuid).into();
    if hb.paused {
        v["status"] = "paused".into();
    }
    v["next_deadline"] = hb.deadline().map(clock::rfc3339).into();
    v
}

fn find(ctx: &Ctx, call: &Call) -> Result<Heartbeat, ApiError> {
    let id = num_param(call, "id", "a heartbeat id")?;
    ctx.store
        .heartbeat(id)?
        .ok_or_else(|| ApiError::not_found(format!("no heartbeat {id}")))
}

fn fields(input: &Input, base: Option<&Heartbeat>) -> Result<HeartbeatFields, ApiError> {
    let name = match (&input.name, base) {
        (Some(n), _) => super::check_name("name", n, 100)?,
        (None, Some(b)) => b.name.clone(),
        (None, None) => return Err(ApiError::field("name", "is required")),
    };
    let period_s = match (input.period_s, base) {
        (Some(p), _) => p,
        (None, Some(b)) => b.period_s,
        (None, None) => return Err(ApiError::field("period_s", "is required (seconds between runs)")),
    };
    if !(1..=MAX_S).contains(&period_s) {
        return Err(ApiError::field(
            "period_s",
            format!("must be 1 to {MAX_S} seconds"),
        ));
    }
    let grace_s = input
        .grace_s
        .or(base.map(|b| b.grace_s))
        .unwrap_or(3600.min(period_s));
    if !(0..=MAX_S).contains(&grace_s) {
        return Err(ApiError::field(
            "grace_s",
            format!("must be 0 to {MAX_S} seconds"),
        ));
    }
    let labels = input
        .labels
        .clone()
        .or(base.map(|b| b.labels.clone()))
        .unwrap_or_default();
    for (k, v) in &labels {
        super::check_name("labels", k, 64)?;
        if v.len() > 200 {
            return Err(ApiError::field(
                &format!("labels.{k}"),
                "must be at most 200 bytes",
            ));
        }
    }
    Ok(HeartbeatFields {
        name,
        period_s,
        grace_s,
        labels,
    })
}

pub fn list(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let all: Vec<Value> = ctx.store.heartbeats()?.iter().map(|h| render(ctx, h)).collect();
    super::list(call, all)
}

pub fn get(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let hb = find(ctx, call)?;
    Ok(Reply::ok(&render(ctx, &hb)))
}

pub fn create(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let input: Input = body(call)?;
    let f = fields(&input, None)?;
    let now = clock::now();
    let uuid = crate::security::new_uuid();
    let id = ctx.store.insert_heartbeat(&uuid, &f, now)?;
    let mut hb = ctx
        .store
        .heartbeat(id)?
        .ok_or_else(|| ApiError::internal("heartbeat vanished"))?;
    if input.paused == Some(true) {
        hb = heartbeats::set_paused(ctx, &hb, true, now)?;
    }
    Ok(Reply::created(&render(ctx, &hb)))
}

pub fn update(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let input: Input = body(call)?;
    let old = find(ctx, call)?;
    if input.paused.is_some() {
        return Err(ApiError::field("paused", "use POST .../pause or .../resume"));
    }
    let f = fields(&input, Some(&old))?;
    ctx.store.update_heartbeat(old.id, &f, clock::now())?;
    let hb = find(ctx, call)?;
    // A new period or grace moves the deadline.
    ctx.deadlines.schedule(&hb);
    Ok(Reply::ok(&render(ctx, &hb)))
}

pub fn delete(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let hb = find(ctx, call)?;
    // Its alert, if open, is resolved first so nothing stays open forever.
    heartbeats::set_paused(ctx, &hb, true, clock::now())?;
    ctx.store.delete_heartbeat(hb.id)?;
    Ok(Reply::no_content())
}

pub fn pause(ctx: &mut Ctx, call: &Call) -> ApiResult {
    super::no_body(call)?;
    let hb = find(ctx, call)?;
    let hb = heartbeats::set_paused(ctx, &hb, true, clock::now())?;
    Ok(Reply::ok(&render(ctx, &hb)))
}

pub fn resume(ctx: &mut Ctx, call: &Call) -> ApiResult {
    super::no_body(call)?;
    let hb = find(ctx, call)?;
    let hb = heartbeats::set_paused(ctx, &hb, false, clock::now())?;
    Ok(Reply::ok(&render(ctx, &hb)))
}

pub fn pings(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let hb = find(ctx, call)?;
    let (limit, offset) = super::paging(call)?;
    let (rows, total) = ctx.store.pings(hb.id, limit as i64, offset as i64)?;
    Ok(Reply::ok(
        &serde_json::json!({"data": rows, "total": total, "limit": limit, "offset": offset}),
    ))
}

pub fn executions(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let hb = find(ctx, call)?;
    let (limit, offset) = super::paging(call)?;
    let (rows, total) = ctx.store.executions(hb.id, limit as i64, offset as i64)?;
    Ok(Reply::ok(
        &serde_json::json!({"data": rows, "total": total, "limit": limit, "offset": offset}),
    ))
}

/// `?days=` (1–90, default 90): the share of each UTC day spent up, of the
/// time the monitor was up or down (null for days it was new or paused).
pub fn uptime(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let hb = find(ctx, call)?;
    let days = super::query_int(call, "days", 90, 1..=90)?;
    let rows = heartbeats::daily_uptime(&ctx.store, &hb, days, clock::now())?;
    let data: Vec<Value> = rows
        .into_iter()
        .map(|(day, pct)| serde_json::json!({"date": clock::rfc3339(day)[..10].to_string(), "uptime_percent": pct}))
        .collect();
    Ok(Reply::ok(
        &serde_json::json!({"heartbeat_id": hb.id, "data": data}),
    ))
}

// ---- public ping routes ----

fn not_found() -> Reply {
    Reply::text(404, "text/plain; charset=utf-8", "not found\n")
}

fn record(ctx: &mut Ctx, call: &Call, kind: PingKind) -> ApiResult {
    let uuid = call.params.get("uuid");
    let Some(hb) = ctx.store.heartbeat_by_uuid(uuid)? else {
        return Ok(not_found());
    };
    let raw = &call.req.body;
    let truncated = raw.len() > BODY_KEPT;
    let mut text = String::from_utf8_lossy(&raw[..raw.len().min(BODY_KEPT)]).into_owned();
    if truncated {
        // Cut on a character boundary (lossy decoding may have grown it).
        while text.len() > BODY_KEPT {
            text.pop();
        }
    }
    let ua: String = call
        .req
        .header("user-agent")
        .unwrap_or("")
        .chars()
        .take(200)
        .collect();
    let p = NewPing {
        at: clock::now(),
        kind: match kind {
            PingKind::Success | PingKind::Exit(0) => "success",
            PingKind::Start => "start",
            PingKind::Fail | PingKind::Exit(_) => "fail",
            PingKind::Log => "log",
        },
        exit_code: match kind {
            PingKind::Exit(c) => Some(c as i64),
            _ => None,
        },
        method: &call.req.method,
        remote_ip: &call.req.remote_ip,
        user_agent: &ua,
        body: &text,
        truncated,
    };
    heartbeats::ping(ctx, hb, kind, &p, p.at)?;
    Ok(Reply::text(200, "text/plain; charset=utf-8", "OK\n"))
}

pub fn ping(ctx: &mut Ctx, call: &Call) -> ApiResult {
    record(ctx, call, PingKind::Success)
}
pub fn ping_start(ctx: &mut Ctx, call: &Call) -> ApiResult {
    record(ctx, call, PingKind::Start)
}
pub fn ping_fail(ctx: &mut Ctx, call: &Call) -> ApiResult {
    record(ctx, call, PingKind::Fail)
}
pub fn ping_log(ctx: &mut Ctx, call: &Call) -> ApiResult {
    record(ctx, call, PingKind::Log)
}
pub fn ping_exit(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let raw = call.params.get("exit_code");
    let code = raw
        .parse::<u16>()
        .ok()
        .filter(|c| *c <= 255 && raw.len() <= 3)
        .ok_or_else(|| {
            ApiError::field(
                "exit_code",
                format!("'{raw}' is not an exit status from 0 to 255"),
            )
        })?;
    record(ctx, call, PingKind::Exit(code as u8))
}
