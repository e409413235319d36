//! API tokens (admin only): the value is shown once at creation; afterwards
//! only its first and last characters identify it.

use super::{body, check_name};
use crate::app::{Call, Ctx};
use crate::clock;
use crate::http::{ApiError, ApiResult, Reply};
use crate::security;
use crate::store::auth::{NewApiToken, Role};
use crate::store::Store;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    role: String,
}

pub fn list(ctx: &mut Ctx, call: &Call) -> ApiResult {
    super::list(call, ctx.store.api_tokens()?)
}

pub fn create(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let input: NewToken = body(call)?;
    let name = check_name("name", &input.name, 100)?;
    let role = Role::parse(&input.role).ok_or_else(|| {
        ApiError::field(
            "role",
            format!("'{}' is not one of viewer, operator, admin", input.role),
        )
    })?;
    let creator = call.user()?.username.clone();
    let (id, token) = issue(&ctx.store, &name, role, &creator)?;
    let stored = ctx
        .store
        .api_token(id)?
        .ok_or_else(|| ApiError::internal("token vanished"))?;
    let mut v = serde_json::to_value(&stored).map_err(ApiError::internal)?;
    v["token"] = serde_json::Value::String(token);
    Ok(Reply::created(&v))
}

/// Creates a token; returns (id, secret). Used by the CLI too.
pub fn issue(store: &Store, name: &str, role: Role, creator: &str) -> rusqlite::Result<(i64, String)> {
    let token = security::new_token("cairn_t_");
    // Prefix and suffix identify a token in lists without revealing it.
    let prefix = &token[..12];
    let suffix = &token[token.len() - 4..];
    let id = store.insert_api_token(&NewApiToken {
        name,
        token_hash: &security::hash_secret(&token),
        prefix,
        suffix,
        role,
        created_by: creator,
        now: clock::now(),
    })?;
    Ok((id, token))
}

pub fn delete(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let id: i64 = call
        .params
        .get("id")
        .parse()
        .map_err(|_| ApiError::field("id", "must be a token id (a number)"))?;
    if !ctx.store.delete_api_token(id)? {
        return Err(ApiError::not_found(format!("no token {id}")));
    }
    Ok(Reply::no_content())
}
