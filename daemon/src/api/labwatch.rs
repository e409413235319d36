//! labwatch agents, unchanged: register with an admin token in
//! `X-Admin-Secret`, ingest their `collectors` payload, post logs. Replies
//! use exactly the statuses labwatch agents treat as success (200/201 for
//! register, 200 for ingest, 202 for logs).

use super::{body, LocalFuture};
use crate::app::{Call, Ctx, Shared};
use crate::clock;
use crate::engine::labwatch;
use crate::http::{ApiError, ApiResult, Reply};
use crate::store::nodes::LogEntry;
use serde::Deserialize;

#[derive(Deserialize)]
struct Register {
    #[serde(default)]
    hostname: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    arch: String,
    #[serde(default)]
    agent_version: String,
}

pub fn register(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let input: Register = body(call)?;
    let hostname = super::agent::check_hostname(&input.hostname)?;
    for (f, v) in [
        ("os", &input.os),
        ("arch", &input.arch),
        ("agent_version", &input.agent_version),
    ] {
        if v.len() > 128 {
            return Err(ApiError::field(f, "must be at most 128 characters"));
        }
    }
    let (id, token) = super::agent::create_node(
        ctx,
        "labwatch",
        &hostname,
        &input.os,
        &input.arch,
        &input.agent_version,
    )?;
    log::info!("labwatch agent {hostname} registered as node {id}");
    Ok(Reply::created(&serde_json::json!({"lab_id": id, "token": token})))
}

pub fn ingest(shared: Shared, mut call: Call) -> LocalFuture {
    Box::pin(async move {
        let node_id = call.agent_node()?.to_string();
        // JSON parsing off the executor thread (see api::agent::ingest).
        let raw = std::mem::take(&mut call.req.body);
        let body = crate::engine::ingest::parse_off_executor(raw, crate::engine::ingest::parse_json).await?;
        let lab_id = labwatch::lab_id(&body)?;
        if lab_id != node_id {
            return Err(ApiError::forbidden("lab_id does not belong to this token"));
        }
        let item = {
            let mut ctx = shared.borrow_mut();
            labwatch::to_item(body, &node_id, &mut ctx.lab_counters, clock::now())?
        };
        // labwatch agents know nothing of commit delays: answered at the next commit.
        let done = shared
            .borrow_mut()
            .ingest
            .submit(node_id, vec![item], std::time::Duration::ZERO);
        done.recv()
            .await
            .map_err(|_| ApiError::internal("ingest committer stopped"))??;
        Ok(Reply::ok(
            &serde_json::json!({"status": "ok", "alerts_triggered": 0}),
        ))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Logs {
    entries: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    ts: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    level: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    unit: String,
}

pub fn logs(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let node_id = call.agent_node()?;
    if call.params.get("lab_id") != node_id {
        return Err(ApiError::forbidden("lab_id does not belong to this token"));
    }
    let input: Logs = body(call)?;
    if input.entries.len() > 1000 {
        return Err(ApiError::field("entries", "at most 1000 entries per request"));
    }
    let cut = |s: &str, n: usize| s.chars().take(n).collect::<String>();
    let entries: Vec<LogEntry> = input
        .entries
        .iter()
        .map(|e| LogEntry {
            ts: cut(&e.ts, 64),
            source: cut(&e.source, 64),
            level: cut(&e.level, 16),
            message: cut(&e.message, 4096),
            unit: cut(&e.unit, 128),
        })
        .collect();
    ctx.store.insert_logs(node_id, &entries)?;
    Ok(Reply::json(202, &serde_json::json!({"accepted": entries.len()})))
}
