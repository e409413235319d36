//! Checks: CRUD, run now, results history, daily uptime, response-time
//! series, the scheduler's lag, and the results agents report.

use super::{body, num_param, LocalFuture};
use crate::app::{Call, Ctx, Shared};
use crate::clock;
use crate::engine::checks::{self, CheckInput};
use crate::engine::percent;
use crate::engine::suppress::Window;
use crate::http::{ApiError, ApiResult, Reply};
use crate::store::checks::Check;
use cairn_wire::{CheckResults, MAX_PROBE_REPORTS};
use serde_json::Value;

/// The API's view: the type's own option block only, and the status as a
/// person reads it (paused, maintenance).
fn render(c: &Check, windows: &[Window], now: i64) -> Value {
    let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        for block in ["http", "dns", "icmp"] {
            if block != c.kind {
                o.remove(block);
            }
        }
        let has_cert = c.kind == "tls" || (c.kind == "http" && c.target.starts_with("https://"));
        if !has_cert {
            o.remove("certificate");
            o.remove("cert");
        }
        let window = checks::maintenance(windows, c, now);
        o.insert("maintenance_window_id".into(), window.into());
        if !c.enabled {
            o.insert("status".into(), "paused".into());
        } else if window.is_some() {
            o.insert("status".into(), "maintenance".into());
        }
    }
    v
}

fn render_one(ctx: &Ctx, c: &Check) -> Result<Value, ApiError> {
    Ok(render(c, &ctx.store.windows()?, clock::now()))
}

/// After a change to an agent-run check: the map the ingest replies use
/// (server checks leave it alone, so creating many stays linear).
fn refresh(ctx: &mut Ctx, touched: &[&Check]) -> Result<(), ApiError> {
    if touched.iter().any(|c| c.agent_node().is_some()) {
        let all = ctx.store.checks()?;
        ctx.schedule.refresh_agent_checks(&all);
    }
    Ok(())
}

fn node_exists(ctx: &Ctx) -> impl Fn(&str) -> bool + '_ {
    move |id: &str| matches!(ctx.store.node(id), Ok(Some(_)))
}

fn find(ctx: &Ctx, call: &Call) -> Result<Check, ApiError> {
    let id = num_param(call, "id", "a check id")?;
    ctx.store
        .check(id)?
        .ok_or_else(|| ApiError::not_found(format!("no check {id}")))
}

pub fn list(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let (windows, now) = (ctx.store.windows()?, clock::now());
    let all: Vec<Value> = ctx
        .store
        .checks()?
        .iter()
        .map(|c| render(c, &windows, now))
        .collect();
    super::list(call, all)
}

pub fn get(ctx: &mut Ctx, call: &Call) -> ApiResult {
    Ok(Reply::ok(&render_one(ctx, &find(ctx, call)?)?))
}

pub fn create(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let input: CheckInput = body(call)?;
    let f = input.apply(None, node_exists(ctx))?;
    let now = clock::now();
    let id = ctx.store.insert_check(&f, now)?;
    let c = ctx
        .store
        .check(id)?
        .ok_or_else(|| ApiError::internal("check vanished"))?;
    ctx.schedule.add(&c, now);
    refresh(ctx, &[&c])?;
    Ok(Reply::created(&render_one(ctx, &c)?))
}

pub fn update(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let input: CheckInput = body(call)?;
    let old = find(ctx, call)?;
    let f = input.apply(Some(&old), node_exists(ctx))?;
    let reset = f.kind != old.kind || f.target != old.target || f.run_from != old.run_from;
    let now = clock::now();
    if reset || (old.enabled && !f.enabled) {
        // Whatever the old check said no longer holds.
        checks::resolve_alerts(ctx, &old, now)?;
    }
    ctx.store.update_check(old.id, &f, reset, now)?;
    let c = find(ctx, call)?;
    if c.enabled && (!old.enabled || f.run_from != old.run_from) {
        ctx.schedule.add(&c, now);
    }
    refresh(ctx, &[&old, &c])?;
    Ok(Reply::ok(&render_one(ctx, &c)?))
}

pub fn delete(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let c = find(ctx, call)?;
    // Its alerts resolve first, so nothing stays open forever.
    checks::resolve_alerts(ctx, &c, clock::now())?;
    ctx.store.delete_check(c.id)?;
    refresh(ctx, &[&c])?;
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
        if let Some(node) = c.agent_node() {
            return Err(ApiError::new(
                409,
                "agent_check",
                format!(
                    "check {} runs on the agent of node {node}; its results arrive with that agent's reports",
                    c.id
                ),
            ));
        }
        let probe = c.clone();
        let r = smol::unblock(move || checks::probe::run(&probe)).await;
        let mut ctx = shared.borrow_mut();
        let after = checks::record(&mut ctx, c.id, &r)?;
        let mut v = serde_json::to_value(&r).map_err(ApiError::internal)?;
        v["status"] = if r.ok { "up" } else { "down" }.into();
        v["check_status"] = match after {
            Some(c) => render_one(&ctx, &c)?["status"].clone(),
            None => Value::Null,
        };
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
    let hours = super::query_int(call, "hours", 24, 1..=24 * 90)?;
    let to = time("to")?.unwrap_or(now);
    let from = time("from")?.unwrap_or(to - hours * 3600);
    if from > to {
        return Err(ApiError::field("from", "must not be after 'to'"));
    }
    let (limit, _) = super::paging(call)?;
    let rows = ctx.store.check_results(c.id, from, to, limit as i64)?;
    let (runs, ok) = ctx.store.check_counts(c.id, from, to)?;
    Ok(Reply::ok(&serde_json::json!({
        "check_id": c.id, "from": clock::rfc3339(from), "to": clock::rfc3339(to),
        "uptime_percent": percent(ok, runs), "runs": runs, "data": rows, "total": rows.len()
    })))
}

/// `?days=` (1-90, default 90): one row per UTC day, oldest first; days
/// without runs are listed with a null uptime (not monitored).
pub fn uptime(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let c = find(ctx, call)?;
    let days = super::query_int(call, "days", 90, 1..=90)?;
    let today = clock::now().div_euclid(86_400) * 86_400;
    let first = today - (days - 1) * 86_400;
    let rows = ctx.store.check_days(c.id, first)?;
    let (mut runs, mut ok) = (0, 0);
    let data: Vec<Value> = (0..days)
        .map(|i| {
            let day = first + i * 86_400;
            let row = rows.iter().find(|r| r.day == day);
            runs += row.map_or(0, |r| r.runs);
            ok += row.map_or(0, |r| r.ok);
            serde_json::json!({
                "date": &clock::rfc3339(day)[..10],
                "uptime_percent": row.and_then(|r| percent(r.ok, r.runs)),
                "runs": row.map_or(0, |r| r.runs),
                "failures": row.map_or(0, |r| r.runs - r.ok),
                "avg_latency_ms": row.and_then(|r| r.avg_latency_ms.map(|v| (v * 1000.0).round() / 1000.0)),
                "max_latency_ms": row.and_then(|r| r.max_latency_ms),
            })
        })
        .collect();
    Ok(Reply::ok(&serde_json::json!({
        "check_id": c.id, "days": days, "uptime_percent": percent(ok, runs), "data": data
    })))
}

/// Response times for a sparkline: `?hours=` (1-2160, default 24) cut into
/// `points=` buckets (2-500, default 60), each with avg/max latency and
/// the runs in it; empty buckets are left out.
pub fn response_times(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let c = find(ctx, call)?;
    let hours = super::query_int(call, "hours", 24, 1..=2160)?;
    let points = super::query_int(call, "points", 60, 2..=500)?;
    let to = clock::now() + 1;
    let from = to - hours * 3600;
    let step = (hours * 3600 + points - 1) / points;
    let data = ctx.store.check_latency_series(c.id, from, to, step)?;
    Ok(Reply::ok(&serde_json::json!({
        "check_id": c.id, "from": clock::rfc3339(from), "to": clock::rfc3339(to),
        "step_s": step, "data": data
    })))
}

/// How late recent scheduled runs started (the last 1,000 to 10,000).
pub fn scheduler(ctx: &mut Ctx, _call: &Call) -> ApiResult {
    let mut lag = ctx.schedule.lag_ms.clone();
    lag.sort_unstable();
    let pick = |q: f64| lag.get(((lag.len() as f64 - 1.0) * q).round() as usize).copied();
    let secs = |ms: Option<i64>| ms.map(|m| m / 1000);
    let all = ctx.store.checks()?;
    Ok(Reply::ok(&serde_json::json!({
        "runs": lag.len(),
        "lag_p50_ms": pick(0.5), "lag_p99_ms": pick(0.99), "lag_max_ms": lag.last(),
        "lag_p50_s": secs(pick(0.5)), "lag_p99_s": secs(pick(0.99)), "lag_max_s": secs(lag.last().copied()),
        "checks": all.len(),
        "server_checks": all.iter().filter(|c| c.enabled && c.agent_node().is_none()).count(),
        "agent_checks": all.iter().filter(|c| c.enabled && c.agent_node().is_some()).count(),
    })))
}

/// `POST /api/v1/agent/check-results` (agent token): results of the checks
/// assigned to the agent's node. Each is recorded like a server run, with
/// the node's id; results for checks not assigned to this node, disabled
/// or inside a maintenance window are listed as ignored (with why).
pub fn agent_results(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let node = call.agent_node()?.to_string();
    let input: CheckResults = body(call)?;
    if input.results.len() > MAX_PROBE_REPORTS {
        return Err(ApiError::field(
            "results",
            format!("at most {MAX_PROBE_REPORTS} per request"),
        ));
    }
    let now = clock::now();
    for (i, r) in input.results.iter().enumerate() {
        let f = |name: &str| format!("results[{i}].{name}");
        if r.at > now + 300 || r.at < now - 7 * 86_400 {
            return Err(ApiError::field(
                &f("at"),
                "must be within the last 7 days and not more than 5 minutes ahead",
            ));
        }
        let o = &r.outcome;
        if o.latency_ms.is_some_and(|l| !(0.0..=3_600_000.0).contains(&l)) {
            return Err(ApiError::field(&f("outcome.latency_ms"), "must be 0 to 3600000"));
        }
        if o.packet_loss_percent.is_some_and(|p| !(0.0..=100.0).contains(&p)) {
            return Err(ApiError::field(
                &f("outcome.packet_loss_percent"),
                "must be 0 to 100",
            ));
        }
        if o.error.as_ref().is_some_and(|e| e.len() > 2000) {
            return Err(ApiError::field(&f("outcome.error"), "must be at most 2000 bytes"));
        }
        if o.addresses.len() > 64 || o.addresses.iter().any(|a| a.parse::<std::net::IpAddr>().is_err()) {
            return Err(ApiError::field(
                &f("outcome.addresses"),
                "must be at most 64 IP addresses",
            ));
        }
        if o.peer_cert.as_ref().is_some_and(|c| c.der_hex.len() > 64 * 1024) {
            return Err(ApiError::field(
                &f("outcome.peer_cert.der_hex"),
                "must be at most 64 KiB",
            ));
        }
    }
    let windows = ctx.store.windows()?;
    let (mut accepted, mut ignored) = (Vec::new(), Vec::new());
    for r in input.results {
        let why = match ctx.store.check(r.check_id)? {
            None => Some("no such check"),
            Some(c) if c.agent_node() != Some(node.as_str()) => Some("not assigned to this node"),
            Some(c) if !c.enabled => Some("paused"),
            Some(c) if checks::maintenance(&windows, &c, r.at).is_some() => Some("maintenance"),
            Some(_) => None,
        };
        match why {
            Some(why) => ignored.push(serde_json::json!({"check_id": r.check_id, "reason": why})),
            None => accepted.push((
                r.check_id,
                checks::probe::result(r.at, r.outcome, Some(node.clone())),
            )),
        }
    }
    // Answered after the one commit: an acknowledged result is stored.
    checks::record_all(ctx, &accepted)?;
    Ok(Reply::ok(
        &serde_json::json!({"accepted": accepted.len(), "ignored": ignored}),
    ))
}
