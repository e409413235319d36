//! Enrollment and agent ingest.

use super::{body, LocalFuture};
use crate::app::{Call, Ctx, Shared};
use crate::clock;
use crate::engine::ingest;
use crate::http::{ApiError, ApiResult, Reply};
use crate::security;
use crate::store::nodes::NewNode;
use cairn_wire::{AgentConfig, EnrollReply, EnrollRequest, IngestReply};
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NewCode {
    #[serde(default)]
    ttl_s: Option<i64>,
}

/// Codes are typed by people: 12 unambiguous characters in three groups.
fn normalise_code(code: &str) -> String {
    code.chars().filter(|c| c.is_ascii_alphanumeric()).collect()
}

pub fn create_code(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let input: NewCode = if call.req.body.is_empty() {
        NewCode::default()
    } else {
        body(call)?
    };
    let ttl = input.ttl_s.unwrap_or(ctx.cfg.enrollment_ttl_s);
    if !(60..=7 * 86400).contains(&ttl) {
        return Err(ApiError::field("ttl_s", "must be between 60 and 604800 seconds"));
    }
    let raw = security::random_string(12);
    let code = format!("{}-{}-{}", &raw[0..4], &raw[4..8], &raw[8..12]);
    let now = clock::now();
    let creator = call.user()?.username.clone();
    ctx.store.insert_enrollment_code(
        &security::hash_secret(&normalise_code(&code)),
        &creator,
        now,
        now + ttl,
    )?;
    let url = ctx.cfg.public_url();
    Ok(Reply::created(&serde_json::json!({
        "code": code,
        "expires_at": clock::rfc3339(now + ttl),
        "install_command": format!("curl -fsSL {url}/install.sh | sh -s -- --code {code}"),
        "enroll_command": format!("cairn-agent enroll --server {url} --code {code}"),
    })))
}

pub fn check_hostname(h: &str) -> Result<String, ApiError> {
    let h = h.trim();
    if h.is_empty() || h.len() > 253 {
        return Err(ApiError::field("hostname", "must be 1–253 characters"));
    }
    if !h
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(ApiError::field(
            "hostname",
            "may use letters, digits, '-', '_', '.'",
        ));
    }
    Ok(h.to_string())
}

fn short(field: &str, v: &str) -> Result<(), ApiError> {
    if v.len() > 128 || v.chars().any(|c| c.is_control()) {
        return Err(ApiError::field(field, "must be at most 128 printable characters"));
    }
    Ok(())
}

/// Creates a node with a fresh agent token; returns (node id, token).
pub fn create_node(
    ctx: &Ctx,
    kind: &str,
    hostname: &str,
    os: &str,
    arch: &str,
    agent_version: &str,
) -> Result<(String, String), ApiError> {
    let id = format!("n_{}", security::random_string(10));
    let token = security::new_token("cairn_a_");
    ctx.store.insert_node(
        &NewNode {
            id: &id,
            name: hostname,
            hostname,
            kind,
            os,
            arch,
            agent_version,
            token_hash: Some(&security::hash_secret(&token)),
            // labwatch agents report every 60 s by default and ignore our
            // interval, so their offline threshold is based on that.
            interval_s: if kind == "labwatch" {
                60
            } else {
                ctx.cfg.interval_s as i64
            },
        },
        clock::now(),
    )?;
    Ok((id, token))
}

pub fn enroll(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let input: EnrollRequest = body(call)?;
    if input.code.trim().is_empty() {
        return Err(ApiError::field("code", "is required"));
    }
    let hostname = check_hostname(&input.hostname)?;
    short("os", &input.os)?;
    short("arch", &input.arch)?;
    short("agent_version", &input.agent_version)?;
    let now = clock::now();
    let code_hash = security::hash_secret(&normalise_code(&input.code));
    // Consume first, inside one transaction with the node's creation, so a
    // code can never make two nodes and a failure leaves the code unused.
    ctx.store.conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        let (id, token) = create_node(
            ctx,
            "agent",
            &hostname,
            &input.os,
            &input.arch,
            &input.agent_version,
        )?;
        match ctx.store.consume_enrollment_code(&code_hash, now, &id)? {
            Some(_) => Ok((id, token)),
            None => Err(ApiError::new(
                403,
                "invalid_code",
                "the enrollment code is invalid, expired or already used; create a new one",
            )),
        }
    })();
    match result {
        Ok((node_id, token)) => {
            ctx.store.conn.execute_batch("COMMIT")?;
            log::info!("node {node_id} ({hostname}) enrolled from {}", call.req.remote_ip);
            Ok(Reply::created(&EnrollReply {
                node_id,
                token,
                interval_s: ctx.cfg.interval_s,
            }))
        }
        Err(e) => {
            let _ = ctx.store.conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

pub fn ingest(shared: Shared, mut call: Call) -> LocalFuture {
    Box::pin(async move {
        let node_id = call.agent_node()?.to_string();
        // Parsing and validating is the CPU-heavy part of ingest: it runs on
        // the blocking pool so the executor (and the other core) stay free.
        let body = std::mem::take(&mut call.req.body);
        let items = ingest::parse_off_executor(body, |b| ingest::parse_native(b, clock::now())).await?;
        let done = {
            let mut ctx = shared.borrow_mut();
            let within = ingest::requested_delay(
                call.req.header(ingest::COMMIT_WITHIN_HEADER),
                ctx.cfg.commit_delay_max_ms,
            );
            ctx.ingest.submit(node_id.clone(), items, within)
        };
        let (accepted, duplicates) = done
            .recv()
            .await
            .map_err(|_| ApiError::internal("ingest committer stopped"))??;
        // The configured interval is handed to the agent; the node row
        // follows it so offline detection uses what the agent was told.
        let (interval, probes) = {
            let mut ctx = shared.borrow_mut();
            let interval = ctx.cfg.interval_s;
            let Ctx { ingest, store, .. } = &mut *ctx;
            ingest.store_interval(store, &node_id, interval)?;
            (interval, crate::engine::checks::probes_for(&ctx, &node_id))
        };
        Ok(Reply::ok(&IngestReply {
            accepted,
            duplicates,
            config: AgentConfig {
                interval_s: interval,
                probes,
            },
        }))
    })
}
