//! Maintenance windows and silences.

use super::{body, num_param};
use crate::app::{Call, Ctx};
use crate::clock;
use crate::engine::suppress::{SilenceInput, Window, WindowInput};
use crate::http::{ApiError, ApiResult, Reply};
use serde_json::Value;

fn window_json(w: &Window, now: i64) -> Value {
    let mut v = serde_json::to_value(w).unwrap_or(Value::Null);
    v["active"] = w.active_at(now).into();
    v
}

fn window_or_404(ctx: &Ctx, id: i64) -> Result<Window, ApiError> {
    ctx.store
        .window(id)?
        .ok_or_else(|| ApiError::not_found(format!("no maintenance window {id}")))
}

pub fn list_windows(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let now = clock::now();
    let all: Vec<Value> = ctx.store.windows()?.iter().map(|w| window_json(w, now)).collect();
    super::list(call, all)
}

/// The windows in force right now.
pub fn active_windows(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let now = clock::now();
    let all: Vec<Value> = ctx
        .store
        .windows()?
        .iter()
        .filter(|w| w.active_at(now))
        .map(|w| window_json(w, now))
        .collect();
    super::list(call, all)
}

pub fn get_window(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let id = num_param(call, "id", "a maintenance window id")?;
    Ok(Reply::ok(&window_json(&window_or_404(ctx, id)?, clock::now())))
}

pub fn create_window(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let input: WindowInput = body(call)?;
    let store = &ctx.store;
    let f = input.apply(None, &|n| matches!(store.node(n), Ok(Some(_))))?;
    let by = call.user()?.username.clone();
    let now = clock::now();
    let id = ctx.store.insert_window(&f, &by, now)?;
    Ok(Reply::created(&window_json(&window_or_404(ctx, id)?, now)))
}

pub fn update_window(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let id = num_param(call, "id", "a maintenance window id")?;
    let input: WindowInput = body(call)?;
    let old = window_or_404(ctx, id)?.fields();
    let store = &ctx.store;
    let f = input.apply(Some(&old), &|n| matches!(store.node(n), Ok(Some(_))))?;
    let now = clock::now();
    ctx.store.update_window(id, &f, now)?;
    Ok(Reply::ok(&window_json(&window_or_404(ctx, id)?, now)))
}

pub fn delete_window(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let id = num_param(call, "id", "a maintenance window id")?;
    if !ctx.store.delete_window(id)? {
        return Err(ApiError::not_found(format!("no maintenance window {id}")));
    }
    Ok(Reply::no_content())
}

/// `?state=active|expired|all` (default: active and pending).
pub fn list_silences(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let now = clock::now();
    let state = call.req.query("state").unwrap_or("");
    let all = match state {
        "" => ctx.store.silences(now, true)?,
        "active" | "pending" | "expired" => ctx
            .store
            .silences(now, false)?
            .into_iter()
            .filter(|s| s.state == state)
            .collect(),
        "all" => ctx.store.silences(now, false)?,
        other => {
            return Err(ApiError::field(
                "state",
                format!("'{other}' is not one of active, pending, expired, all"),
            ))
        }
    };
    super::list(call, all)
}

pub fn create_silence(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let input: SilenceInput = body(call)?;
    let now = clock::now();
    let store = &ctx.store;
    let (m, comment, starts, expires) = input.validate(now, &|n| matches!(store.node(n), Ok(Some(_))))?;
    let by = call.user()?.username.clone();
    let id = ctx
        .store
        .insert_silence(&m, &comment, &by, starts, expires, now)?;
    let s = ctx
        .store
        .silence(id, now)?
        .ok_or_else(|| ApiError::internal("silence vanished"))?;
    Ok(Reply::created(&s))
}

pub fn get_silence(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let id = num_param(call, "id", "a silence id")?;
    let s = ctx
        .store
        .silence(id, clock::now())?
        .ok_or_else(|| ApiError::not_found(format!("no silence {id}")))?;
    Ok(Reply::ok(&s))
}

/// Ends a silence now; it stays listed as expired.
pub fn expire_silence(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let id = num_param(call, "id", "a silence id")?;
    let now = clock::now();
    if !ctx.store.expire_silence(id, now)? {
        return Err(ApiError::not_found(format!("no silence {id}")));
    }
    let s = ctx
        .store
        .silence(id, now)?
        .ok_or_else(|| ApiError::not_found(format!("no silence {id}")))?;
    Ok(Reply::ok(&s))
}
