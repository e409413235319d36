//! System: health, version, the OpenAPI document.

use crate::app::{Call, Ctx};
use crate::http::{ApiResult, Reply};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn health(ctx: &mut Ctx, _: &Call) -> ApiResult {
    // A trivial query proves the database answers.
    let db_ok = ctx
        .store
        .conn
        .query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
        .is_ok();
    Ok(Reply::json(
        if db_ok { 200 } else { 503 },
        &serde_json::json!({
            "status": if db_ok { "ok" } else { "degraded" },
            "version": VERSION,
            "uptime_s": ctx.started.elapsed().as_secs(),
            "database": if db_ok { "ok" } else { "unavailable" },
        }),
    ))
}

pub fn healthz(_: &mut Ctx, _: &Call) -> ApiResult {
    Ok(Reply::text(200, "text/plain; charset=utf-8", "ok\n"))
}

pub fn version(_: &mut Ctx, _: &Call) -> ApiResult {
    Ok(Reply::ok(
        &serde_json::json!({ "name": "cairnd", "version": VERSION }),
    ))
}

/// The hand-written OpenAPI document; a test keeps it equal to ROUTES.
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");

pub fn openapi(_: &mut Ctx, _: &Call) -> ApiResult {
    Ok(Reply::text(200, "application/json", OPENAPI))
}
