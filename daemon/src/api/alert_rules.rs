//! Alert rules: CRUD, the effective thresholds of a node, and a dry run.

use super::{body, num_param};
use crate::app::{Call, Ctx};
use crate::clock;
use crate::engine::alerts::rules::{self, RuleFields, RuleInput};
use crate::http::{ApiError, ApiResult, Reply};

fn rule_or_404(ctx: &Ctx, id: i64) -> Result<rules::Rule, ApiError> {
    ctx.store
        .rule(id)?
        .ok_or_else(|| ApiError::not_found(format!("no alert rule {id}")))
}

fn fields(r: &rules::Rule) -> RuleFields {
    RuleFields {
        name: r.name.clone(),
        metric: r.metric.clone(),
        scope: r.scope.clone(),
        warning: r.warning,
        critical: r.critical,
        for_s: r.for_s,
        enabled: r.enabled,
    }
}

pub fn list(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let mut all = ctx.store.rules()?;
    if let Some(m) = call.req.query("metric") {
        all.retain(|r| r.metric == m);
    }
    super::list(call, all)
}

/// The catalog of metrics with their built-in defaults.
pub fn metrics(_ctx: &mut Ctx, _call: &Call) -> ApiResult {
    let list: Vec<_> = rules::METRICS
        .iter()
        .map(|d| {
            serde_json::json!({
                "metric": d.name, "unit": d.unit, "per_instance": d.per_instance,
                "warning": d.warning, "critical": d.critical, "for_s": d.for_s, "help": d.help,
            })
        })
        .collect();
    Ok(Reply::ok(
        &serde_json::json!({ "data": list, "total": list.len() }),
    ))
}

pub fn get(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let id = num_param(call, "id", "an alert rule id")?;
    Ok(Reply::ok(&rule_or_404(ctx, id)?))
}

pub fn create(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let input: RuleInput = body(call)?;
    let store = &ctx.store;
    let f = input.apply(None, |n| matches!(store.node(n), Ok(Some(_))))?;
    let id = ctx.store.insert_rule(&f, clock::now())?;
    ctx.alerting.invalidate();
    Ok(Reply::created(&rule_or_404(ctx, id)?))
}

pub fn update(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let id = num_param(call, "id", "an alert rule id")?;
    let input: RuleInput = body(call)?;
    let old = fields(&rule_or_404(ctx, id)?);
    let store = &ctx.store;
    let f = input.apply(Some(&old), |n| matches!(store.node(n), Ok(Some(_))))?;
    ctx.store.update_rule(id, &f, clock::now())?;
    ctx.alerting.invalidate();
    Ok(Reply::ok(&rule_or_404(ctx, id)?))
}

pub fn delete(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let id = num_param(call, "id", "an alert rule id")?;
    if !ctx.store.delete_rule(id)? {
        return Err(ApiError::not_found(format!("no alert rule {id}")));
    }
    ctx.alerting.invalidate();
    Ok(Reply::no_content())
}

/// `?node=`: every metric's merged thresholds and where each came from.
pub fn effective(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let node = call
        .req
        .query("node")
        .ok_or_else(|| ApiError::field("node", "is required (a node id)"))?;
    let Ctx { store, alerting, .. } = ctx;
    let eff = alerting
        .effective_for(store, node)?
        .ok_or_else(|| ApiError::not_found(format!("no node '{node}'")))?;
    Ok(Reply::ok(&serde_json::json!({ "node_id": node, "data": eff })))
}

/// Evaluates one rule against the nodes' current data; changes nothing.
pub fn test(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let id = num_param(call, "id", "an alert rule id")?;
    super::no_body(call)?;
    let rule = rule_or_404(ctx, id)?;
    let Ctx { store, alerting, .. } = ctx;
    let results = alerting.test_rule(store, &rule, clock::now())?;
    Ok(Reply::ok(
        &serde_json::json!({ "rule": rule, "results": results }),
    ))
}
