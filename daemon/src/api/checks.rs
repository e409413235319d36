//! Checks: CRUD, run now, results history, the scheduler's lag.

use super::{body, num_param, LocalFuture};
use crate::app::{Call, Ctx, Shared};
use crate::clock;
use crate::engine::checks::{self, CheckInput};
use crate::http::{ApiError, ApiResult, Reply};
use crate::store::checks::Check;
use serde_json::Value;

fn render(c: &Check) -> Value {
    let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
    if !c.enabled {
        v["status"] = "paused".into();
    }
    v
}

fn find(ctx: &Ctx, call: &Call) -> Result<Check, ApiError> {
    let id = num_param(call, "id", "a check id")?;
    ctx.store
        .check(id)?
        .ok_or_else(|| ApiError::not_found(format!("no check {id}")))
}

pub fn list(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let all: Vec<Value> = ctx.store.checks()?.iter().map(render).collect();
    super::list(call, all)
}

pub fn get(ctx: &mut Ctx, call: &Call) -> ApiResult {
    Ok(Reply::ok(&render(&find(ctx, call)?)))
}

pub fn create(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let input: CheckInput = body(call)?;
    let f = input.apply(None)?;
    let now = clock::now();
    let id = ctx.store.insert_check(&f, now)?;
    let c = ctx
        .store
        .check(id)?
        .ok_or_else(|| ApiError::internal("check vanished"))?;
    ctx.schedule.add(&c, now);
    Ok(Reply::created(&render(&c)))
}

pub fn update(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let input: CheckInput = body(call)?;
    let old = find(ctx, call)?;
    let f = input.apply(Some(&old))?;
    let reset = f.kind != old.kind || f.target != old.target;
    let now = clock::now();
    ctx.store.update_check(old.id, &f, reset, now)?;
    let c = find(ctx, call)?;
    if c.enabled && !old.enabled {
        ctx.schedule.add(&c, now);
    }
    Ok(Reply::ok(&render(&c)))
}

pub fn delete(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let c = find(ctx, call)?;
    // Its alert (if down) resolves first, so nothing stays open forever.
    checks::sync_alert(ctx, &c, false, None, clock::now())?;
    ctx.store.delete_check(c.id)?;
    Ok(Reply::no_content())
}

/// Runs the check now (off the executor), records the result like a
/// scheduled run, and returns it.
pub fn run(shared: Shared, call: Call) -> LocalFuture {
    Box::pin(async move {
        let c = {
            let ctx = shared.borrow();
            super::no_body(&call)?;
            find(&ctx, &call)?
        };
        let probe = c.clone();
        let r = smol::unblock(move || checks::probe::run(&probe)).await;
        let mut ctx = shared.borrow_mut();
        let after = checks::record(&mut ctx, c.id, &r)?;
        let mut v = serde_json::to_value(&r).map_err(ApiError::internal)?;
        v["status"] = if r.ok { "up" } else { "down" }.into();
        v["check_status"] = after.map(|c| render(&c)["status"].clone()).unwrap_or(Value::Null);
        Ok(Reply::ok(&v))
    })
}

/// `?hours=` (default 24) or `from`/`to`; newest first, at most `limit` (1000).
pub fn results(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let c = find(ctx, call)?;
    let now = clock::now();
    let time = |k: &str| -> Result<Option<i64>, ApiError> {
        call.req
            .query(k)
            .map(|v| clock::parse_time_param(v).map_err(|e| ApiError::field(k, e)))
            .transpose()
    };
    let hours = match call.req.query("hours") {
        None => 24,
        Some(h) => h
            .parse::<i64>()
            .ok()
            .filter(|h| (1..=24 * 90).contains(h))
            .ok_or_else(|| ApiError::field("hours", "must be 1 to 2160"))?,
    };
    let to = time("to")?.unwrap_or(now);
    let from = time("from")?.unwrap_or(to - hours * 3600);
    if from > to {
        return Err(ApiError::field("from", "must not be after 'to'"));
    }
    let (limit, _) = super::paging(call)?;
    let rows = ctx.store.check_results(c.id, from, to, limit as i64)?;
    let ok = rows.iter().filter(|r| r.ok).count();
    let uptime = (!rows.is_empty()).then(|| (ok as f64 * 10_000.0 / rows.len() as f64).round() / 100.0);
    Ok(Reply::ok(&serde_json::json!({
        "check_id": c.id, "from": clock::rfc3339(from), "to": clock::rfc3339(to),
        "uptime_percent": uptime, "data": rows, "total": rows.len()
    })))
}

/// How late recent scheduled runs started (seconds).
pub fn scheduler(ctx: &mut Ctx, _call: &Call) -> ApiResult {
    let mut lag = ctx.schedule.lag_s.clone();
    lag.sort_unstable();
    let pick = |q: f64| lag.get(((lag.len() as f64 - 1.0) * q).round() as usize).copied();
    Ok(Reply::ok(&serde_json::json!({
        "runs": lag.len(), "lag_p50_s": pick(0.5), "lag_p99_s": pick(0.99), "lag_max_s": lag.last(),
        "checks": ctx.store.checks()?.len(),
    })))
}
