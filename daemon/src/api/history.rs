//! History: per-node series, CSV export, fleet chart, metric list.

use super::chart_json::Json;
use crate::app::{Call, Ctx};
use crate::clock;
use crate::http::{ApiError, ApiResult, Reply};
use crate::store::history::{metric_index, Point, METRICS};
use serde_json::{json, Value};

/// Points per series in a node's history, and per node in the fleet chart.
pub const MAX_POINTS: i64 = 1000;
pub const MAX_CHART_POINTS: i64 = 200;
const MAX_WINDOW_S: i64 = 5 * 366 * 86400;

/// The window from `from`/`to` (RFC 3339 or Unix seconds) or `hours=`.
pub fn window(call: &Call, now: i64) -> Result<(i64, i64), ApiError> {
    let q = |n| call.req.query(n);
    let to = match q("to") {
        Some(v) => clock::parse_time_param(v).map_err(|e| ApiError::field("to", e))?,
        None => now,
    };
    let from = match (q("from"), q("hours")) {
        (Some(_), Some(_)) => return Err(ApiError::bad_request("give either 'from' or 'hours', not both")),
        (Some(v), None) => clock::parse_time_param(v).map_err(|e| ApiError::field("from", e))?,
        (None, Some(h)) => {
            let h: f64 = h
                .parse()
                .ok()
                .filter(|h: &f64| h.is_finite() && *h > 0.0 && *h <= (MAX_WINDOW_S / 3600) as f64)
                .ok_or_else(|| ApiError::field("hours", "must be a number above 0 and at most 43920"))?;
            to - (h * 3600.0) as i64
        }
        (None, None) => to - 86400,
    };
    if from >= to {
        return Err(ApiError::field("from", "must be before 'to'"));
    }
    if to - from > MAX_WINDOW_S {
        return Err(ApiError::field("from", "the window is longer than 5 years"));
    }
    Ok((from, to))
}

fn metrics_param(call: &Call, name: &str, default: &str) -> Result<Vec<usize>, ApiError> {
    let raw = call.req.query(name).unwrap_or(default);
    let mut out = Vec::new();
    for m in raw.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let i = metric_index(m).ok_or_else(|| {
            ApiError::field(
                name,
                format!("unknown metric '{m}'; known: {}", METRICS.join(", ")),
            )
        })?;
        if !out.contains(&i) {
            out.push(i);
        }
    }
    if out.is_empty() {
        return Err(ApiError::field(name, "name at least one metric"));
    }
    Ok(out)
}

pub fn metric_list(_: &mut Ctx, _: &Call) -> ApiResult {
    let units = ["%", "%", "%", "", "", "", "%", "°C", "B/s", "B/s", "B/s", "B/s"];
    let data: Vec<Value> = METRICS
        .iter()
        .zip(units)
        .map(|(m, u)| json!({"name": m, "unit": u}))
        .collect();
    Ok(Reply::ok(&json!({"data": data, "total": data.len()})))
}

/// One statistic of a bucket.
type Field = fn(&Point) -> f64;

pub fn node_history(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let node = super::nodes::find(ctx, call.params.get("id"))?;
    let metrics = metrics_param(call, "metrics", "cpu,memory")?;
    let now = clock::now();
    ctx.store.settle_rollups(now)?;
    let (from, to) = window(call, now)?;
    let fleet = ctx
        .store
        .history_many(&[node.id.as_str()], &metrics, from, to, MAX_POINTS, now)?;
    // Written straight from the buckets (chart_json): ~5,000 values for a
    // 24-hour chart of two metrics cost more through serde than reading them.
    let mut j = Json::new();
    j.raw("{").key("node_id").str(&node.id);
    j.raw(",").key("from").time(from).raw(",").key("to").time(to);
    j.raw(",").key("resolution_s").int(fleet.resolution_s);
    j.raw(",").key("source").str(fleet.source);
    j.raw(",").key("timestamps").times(fleet.timestamps(0));
    j.raw(",").key("series").raw("{");
    for (i, &m) in metrics.iter().enumerate() {
        if i > 0 {
            j.raw(",");
        }
        j.key(METRICS[m]).raw("{");
        let fields: [(&str, Field); 3] = [("avg", |p| p.avg), ("min", |p| p.min), ("max", |p| p.max)];
        for (k, (name, field)) in fields.into_iter().enumerate() {
            if k > 0 {
                j.raw(",");
            }
            j.key(name)
                .values(fleet.points(0, i).map(|p| p.as_ref().map(field)));
        }
        j.raw("}");
    }
    j.raw("}}");
    Ok(Reply::text(200, "application/json", j.0))
}

pub fn node_history_csv(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let node = super::nodes::find(ctx, call.params.get("id"))?;
    let metrics = metrics_param(call, "metric", "cpu")?;
    if metrics.len() != 1 {
        return Err(ApiError::field("metric", "CSV export takes exactly one metric"));
    }
    let now = clock::now();
    ctx.store.settle_rollups(now)?;
    let (from, to) = window(call, now)?;
    let series = ctx.store.history(&node.id, &metrics, from, to, MAX_POINTS, now)?;
    let mut csv = String::from("timestamp,avg,min,max\n");
    for (i, ts) in series.timestamps.iter().enumerate() {
        if let Some(p) = series.points[0][i] {
            csv.push_str(&format!(
                "{},{},{},{}\n",
                clock::rfc3339(*ts),
                p.avg,
                p.min,
                p.max
            ));
        }
    }
    let filename = format!("{}-{}.csv", node.id, METRICS[metrics[0]]);
    Ok(Reply::text(200, "text/csv; charset=utf-8", csv).with_header(
        "Content-Disposition",
        format!("attachment; filename=\"{filename}\""),
    ))
}

pub fn charts(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let metrics = metrics_param(call, "metric", "cpu")?;
    if metrics.len() != 1 {
        return Err(ApiError::field(
            "metric",
            "the fleet chart takes exactly one metric",
        ));
    }
    let now = clock::now();
    ctx.store.settle_rollups(now)?;
    let (from, to) = window(call, now)?;
    let nodes = ctx.store.nodes()?;
    let ids: Vec<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
    let fleet = ctx
        .store
        .history_many(&ids, &metrics, from, to, MAX_CHART_POINTS, now)?;
    // Written straight from the buckets (chart_json): a fleet of 500 nodes
    // is ~100k points, which as a JSON value tree cost several times the body.
    let mut j = Json::new();
    j.raw("{").key("metric").str(METRICS[metrics[0]]);
    j.raw(",").key("from").time(from).raw(",").key("to").time(to);
    j.raw(",")
        .key("resolution_s")
        .int(if ids.is_empty() { 0 } else { fleet.resolution_s });
    j.raw(",").key("nodes").raw("[");
    for (i, n) in nodes.iter().enumerate() {
        if i > 0 {
            j.raw(",");
        }
        j.raw("{").key("id").str(&n.id).raw(",").key("name").str(&n.name);
        j.raw(",").key("timestamps").times(fleet.timestamps(i));
        j.raw(",")
            .key("avg")
            .values(fleet.points(i, 0).map(|p| p.map(|p| p.avg)));
        j.raw("}");
    }
    j.raw("]}");
    Ok(Reply::text(200, "application/json", j.0))
}
