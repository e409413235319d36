//! History: per-node series, CSV export, fleet chart, metric list.

use crate::app::{Call, Ctx};
use crate::clock;
use crate::http::{ApiError, ApiResult, Reply};
use crate::store::history::{metric_index, Fleet, Point, METRICS};
use crate::store::nodes::Node;
use serde::Serialize;
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

pub fn node_history(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let node = super::nodes::find(ctx, call.params.get("id"))?;
    let metrics = metrics_param(call, "metrics", "cpu,memory")?;
    let now = clock::now();
    ctx.store.settle_rollups(now)?;
    let (from, to) = window(call, now)?;
    let fleet = ctx
        .store
        .history_many(&[node.id.as_str()], &metrics, from, to, MAX_POINTS, now)?;
    // Serialised straight from the buckets, like the fleet chart: ~7,000
    // JSON values for a 1,000-point answer cost more than reading it.
    Ok(Reply::ok(&NodeHistory {
        node_id: &node.id,
        from: clock::rfc3339(from),
        to: clock::rfc3339(to),
        resolution_s: fleet.resolution_s,
        source: fleet.source,
        timestamps: Stamps(&fleet, 0),
        series: ByMetric {
            metrics: &metrics,
            fleet: &fleet,
        },
    }))
}

#[derive(Serialize)]
struct NodeHistory<'a> {
    node_id: &'a str,
    from: String,
    to: String,
    resolution_s: i64,
    source: &'static str,
    timestamps: Stamps<'a>,
    series: ByMetric<'a>,
}

/// `{"cpu": {"avg": [...], "min": [...], "max": [...]}, ...}` in request order,
/// for the one node of `fleet`.
struct ByMetric<'a> {
    metrics: &'a [usize],
    fleet: &'a Fleet,
}

impl Serialize for ByMetric<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.metrics.len()))?;
        for (metric, &m) in self.metrics.iter().enumerate() {
            let pick = |field| Pick {
                fleet: self.fleet,
                node: 0,
                metric,
                field,
            };
            let stats = Stats {
                avg: pick(|p| p.avg),
                min: pick(|p| p.min),
                max: pick(|p| p.max),
            };
            map.serialize_entry(METRICS[m], &stats)?;
        }
        map.end()
    }
}

/// One metric's buckets as three arrays, null where a bucket has no value.
#[derive(Serialize)]
struct Stats<'a> {
    avg: Pick<'a>,
    min: Pick<'a>,
    max: Pick<'a>,
}

/// One field of one requested metric in every bucket of one node, null
/// where a bucket has no value.
struct Pick<'a> {
    fleet: &'a Fleet,
    node: usize,
    metric: usize,
    field: fn(&Point) -> f64,
}

impl Serialize for Pick<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let field = self.field;
        s.collect_seq(
            self.fleet
                .points(self.node, self.metric)
                .map(|p| p.as_ref().map(|p| chart_value(field(p)))),
        )
    }
}

/// Chart values to 4 decimal places: finer than any chart draws, and a
/// bucket's average printed in full (`60.45833333333333`) made up most of a
/// reply's bytes and its formatting time.
fn chart_value(v: f64) -> f64 {
    let r = (v * 1e4).round() / 1e4;
    // Adding 0.0 turns -0.0 into 0.0; values too large to scale stay as they are.
    if r.is_finite() {
        r + 0.0
    } else {
        v
    }
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
    // Serialised straight from the buckets: a fleet of 500 nodes is ~100k
    // points, which as a JSON value tree cost several times the body.
    let chart = Chart {
        metric: METRICS[metrics[0]],
        from: clock::rfc3339(from),
        to: clock::rfc3339(to),
        resolution_s: if ids.is_empty() { 0 } else { fleet.resolution_s },
        nodes: ChartNodes {
            nodes: &nodes,
            fleet: &fleet,
        },
    };
    Ok(Reply::ok(&chart))
}

#[derive(Serialize)]
struct Chart<'a> {
    metric: &'static str,
    from: String,
    to: String,
    resolution_s: i64,
    nodes: ChartNodes<'a>,
}

/// `[{"id", "name", "timestamps", "avg"}, ...]`, one per node, in order.
struct ChartNodes<'a> {
    nodes: &'a [Node],
    fleet: &'a Fleet,
}

impl Serialize for ChartNodes<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.nodes.iter().enumerate().map(|(i, n)| ChartNode {
            id: &n.id,
            name: &n.name,
            timestamps: Stamps(self.fleet, i),
            avg: Pick {
                fleet: self.fleet,
                node: i,
                metric: 0,
                field: |p| p.avg,
            },
        }))
    }
}

#[derive(Serialize)]
struct ChartNode<'a> {
    id: &'a str,
    name: &'a str,
    timestamps: Stamps<'a>,
    avg: Pick<'a>,
}

/// A bucket time written as an RFC 3339 string without an allocation.
struct Rfc3339(i64);

impl Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&clock::rfc3339_display(self.0))
    }
}

/// One node's bucket times, as RFC 3339 strings.
struct Stamps<'a>(&'a Fleet, usize);

impl Serialize for Stamps<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.timestamps(self.1).map(Rfc3339))
    }
}
