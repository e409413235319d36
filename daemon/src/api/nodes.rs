//! Nodes: list with status, detail, rename/labels/location, token rotation,
//! deletion with all data, logs.

use super::{body, check_name};
use crate::app::{Call, Ctx};
use crate::clock;
use crate::http::{ApiError, ApiResult, Reply};
use crate::security;
use crate::store::history::{Sample, METRICS};
use crate::store::nodes::Node;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// A node is offline after this many missed intervals.
pub const OFFLINE_AFTER_INTERVALS: i64 = 3;

pub fn status(n: &Node, now: i64) -> &'static str {
    match n.last_seen {
        None => "pending",
        Some(t) if now - t <= OFFLINE_AFTER_INTERVALS * n.interval_s.max(1) => "online",
        Some(_) => "offline",
    }
}

/// The latest values by metric name, written straight from the sample.
struct Summary<'a>(&'a Sample);

impl Serialize for Summary<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // By name, as the map this replaced wrote them.
        let mut order: [usize; METRICS.len()] = std::array::from_fn(|i| i);
        order.sort_unstable_by_key(|&i| METRICS[i]);
        let mut m = s.serialize_map(Some(METRICS.len()))?;
        for i in order {
            m.serialize_entry(METRICS[i], &self.0.values[i])?;
        }
        m.end()
    }
}

/// A node as lists and detail show it. Serialised from borrowed fields (in
/// name order): the node list of a 500-node fleet built as a value tree
/// took 4 MB of heap each dashboard refresh.
#[derive(Serialize)]
struct NodeView<'a> {
    agent_version: &'a str,
    arch: &'a str,
    created_at: String,
    hostname: &'a str,
    id: &'a str,
    interval_s: i64,
    kind: &'a str,
    labels: &'a BTreeMap<String, String>,
    last_seen: Option<String>,
    location: &'a str,
    name: &'a str,
    online: bool,
    os: &'a str,
    status: &'static str,
    summary: Option<Summary<'a>>,
}

fn render<'a>(n: &'a Node, now: i64, sample: Option<&'a Sample>) -> NodeView<'a> {
    NodeView {
        agent_version: &n.agent_version,
        arch: &n.arch,
        created_at: clock::rfc3339(n.created_at),
        hostname: &n.hostname,
        id: &n.id,
        interval_s: n.interval_s,
        kind: &n.kind,
        labels: &n.labels,
        last_seen: n.last_seen.map(clock::rfc3339),
        location: &n.location,
        name: &n.name,
        online: status(n, now) == "online",
        os: &n.os,
        status: status(n, now),
        summary: sample.map(Summary),
    }
}

pub fn find(ctx: &Ctx, id: &str) -> Result<Node, ApiError> {
    ctx.store
        .node(id)?
        .ok_or_else(|| ApiError::not_found(format!("no node '{id}'")))
}

pub fn list(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let now = clock::now();
    let status_filter = call.req.query("status");
    if let Some(s) = status_filter {
        if !matches!(s, "online" | "offline" | "pending") {
            return Err(ApiError::field("status", "must be online, offline or pending"));
        }
    }
    let nodes = ctx.store.nodes()?;
    let store = &ctx.store;
    let views: Vec<NodeView> = nodes
        .iter()
        .filter(|n| status_filter.is_none_or(|s| status(n, now) == s))
        .map(|n| render(n, now, store.latest(&n.id).map(|l| &l.sample)))
        .collect();
    super::list(call, views)
}

pub fn get(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let n = find(ctx, call.params.get("id"))?;
    let now = clock::now();
    let latest: Value = n
        .latest
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(Value::Null);
    let sample = ctx.store.latest(&n.id).map(|l| &l.sample);
    let mut v = serde_json::to_value(render(&n, now, sample)).map_err(ApiError::internal)?;
    v["latest"] = latest;
    let open = crate::store::alerts::AlertFilter {
        open_only: true,
        node: Some(n.id.clone()),
        ..Default::default()
    };
    v["alerts"] = serde_json::to_value(ctx.store.alerts(&open, 100, 0)?.0).map_err(ApiError::internal)?;
    Ok(Reply::ok(&v))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodePatch {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    location: Option<String>,
}

pub fn update(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let n = find(ctx, call.params.get("id"))?;
    let input: NodePatch = body(call)?;
    let name = input
        .name
        .as_deref()
        .map(|v| check_name("name", v, 100))
        .transpose()?;
    if let Some(labels) = &input.labels {
        if labels.len() > 32 {
            return Err(ApiError::field("labels", "at most 32 labels"));
        }
        for (k, v) in labels {
            let ok_key = !k.is_empty()
                && k.len() <= 64
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
            if !ok_key {
                return Err(ApiError::field(
                    &format!("labels.{k}"),
                    "keys are 1–64 of letters, digits, '-', '_', '.', '/'",
                ));
            }
            if v.len() > 128 || v.chars().any(|c| c.is_control()) {
                return Err(ApiError::field(
                    &format!("labels.{k}"),
                    "values are at most 128 printable characters",
                ));
            }
        }
    }
    if let Some(l) = &input.location {
        if l.len() > 200 || l.chars().any(|c| c.is_control()) {
            return Err(ApiError::field("location", "at most 200 printable characters"));
        }
    }
    ctx.store.update_node_meta(
        &n.id,
        name.as_deref(),
        input.labels.as_ref(),
        input.location.as_deref(),
    )?;
    // Labels and names feed alert scopes, routing and messages.
    ctx.alerting.invalidate();
    get(ctx, call)
}

pub fn delete(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let n = find(ctx, call.params.get("id"))?;
    // Checks its agent ran are part of its data: nothing else can run them.
    crate::engine::checks::forget_node(ctx, &n.id)?;
    ctx.store.delete_node(&n.id)?;
    ctx.alerting.forget_node(&n.id);
    log::info!("node {} ({}) deleted with all its data", n.id, n.name);
    Ok(Reply::no_content())
}

pub fn rotate_token(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let n = find(ctx, call.params.get("id"))?;
    if n.kind == "local" {
        return Err(ApiError::bad_request(
            "the built-in local node has no agent token",
        ));
    }
    let token = security::new_token("cairn_a_");
    ctx.store.set_node_token(&n.id, &security::hash_secret(&token))?;
    Ok(Reply::ok(&json!({"node_id": n.id, "token": token})))
}

pub fn logs(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let n = find(ctx, call.params.get("id"))?;
    let entries: Vec<Value> = ctx
        .store
        .logs(&n.id, 1000)?
        .into_iter()
        .map(|e| json!({"ts": e.ts, "source": e.source, "level": e.level, "message": e.message, "unit": e.unit}))
        .collect();
    super::list(call, entries)
}
