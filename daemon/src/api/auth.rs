//! Sign-in, sessions, own password, login throttling.

use super::{body, LocalFuture};
use crate::app::{Call, Ctx, Shared, Via, SESSION_COOKIE};
use crate::clock;
use crate::http::{ApiError, ApiResult, Reply};
use crate::security;
use crate::store::auth::NewSession;
use serde::Deserialize;

/// Failed logins are counted over this window.
pub const THROTTLE_WINDOW_S: i64 = 15 * 60;
pub const MAX_FAILURES_PER_USER: i64 = 5;
pub const MAX_FAILURES_PER_IP: i64 = 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    username: String,
    password: String,
}

/// 429 with Retry-After if this username or address has failed too often.
fn check_throttle(ctx: &Ctx, username: &str, ip: &str, now: i64) -> Result<(), ApiError> {
    let since = now - THROTTLE_WINDOW_S;
    let (by_user, by_ip, user_oldest, ip_oldest) = ctx.store.login_failures(username, ip, since)?;
    let blocked_until = if by_user >= MAX_FAILURES_PER_USER {
        Some(user_oldest + THROTTLE_WINDOW_S)
    } else if by_ip >= MAX_FAILURES_PER_IP {
        Some(ip_oldest + THROTTLE_WINDOW_S)
    } else {
        None
    };
    if let Some(until) = blocked_until {
        let wait = (until - now).max(1);
        let mut e = ApiError::new(
            429,
            "too_many_attempts",
            format!(
                "too many failed sign-ins for this account or address; try again in {} minute(s) or ask an admin to unlock it",
                (wait + 59) / 60
            ),
        );
        e.retry_after = Some(wait as u64);
        return Err(e);
    }
    Ok(())
}

pub fn login(shared: Shared, call: Call) -> LocalFuture {
    Box::pin(async move {
        let input: Login = body(&call)?;
        let username = input.username.trim().to_string();
        if username.is_empty() || username.len() > 64 {
            return Err(ApiError::field("username", "must be 1–64 characters"));
        }
        if input.password.len() > 1024 {
            return Err(ApiError::field("password", "must be at most 1024 bytes"));
        }
        let ip = call.req.remote_ip.clone();
        let now = clock::now();
        let stored = {
            let ctx = shared.borrow();
            check_throttle(&ctx, &username, &ip, now)?;
            ctx.store.user_by_name(&username)?
        };
        let hash = stored
            .as_ref()
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| security::dummy_password_hash().to_string());
        let password = input.password;
        // Argon2 takes tens of milliseconds: off the executor thread.
        let ok = smol::unblock(move || security::verify_password(&password, &hash)).await;
        let ctx = shared.borrow();
        let user = match (ok, stored) {
            (true, Some(user)) => user,
            _ => {
                ctx.store.record_login_failure(&username, &ip, now)?;
                log::info!("failed sign-in for '{username}' from {ip}");
                return Err(ApiError::unauthorized("invalid username or password"));
            }
        };
        ctx.store.clear_login_failures(Some(&username), None)?;
        let token = security::new_token("cairn_s_");
        let csrf = security::random_string(32);
        let expires_at = now + ctx.cfg.session_ttl_s;
        let agent = call
            .req
            .header("user-agent")
            .unwrap_or("")
            .chars()
            .take(200)
            .collect::<String>();
        ctx.store.insert_session(&NewSession {
            token_hash: &security::hash_secret(&token),
            csrf_hash: &security::hash_secret(&csrf),
            user_id: user.id,
            now,
            expires_at,
            ip: &ip,
            user_agent: &agent,
        })?;
        log::info!("'{}' signed in from {ip}", user.username);
        let cookie = format!(
            "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
            ctx.cfg.session_ttl_s
        );
        Ok(Reply::ok(&serde_json::json!({
            "token": token,
            "csrf_token": csrf,
            "username": user.username,
            "role": user.role,
            "expires_at": clock::rfc3339(expires_at),
        }))
        .with_header("Set-Cookie", cookie))
    })
}

pub fn logout(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let user = call.user()?;
    match user.via {
        Via::Session { id, .. } => {
            ctx.store.delete_session(id, None)?;
        }
        Via::ApiToken { .. } => {
            return Err(ApiError::bad_request(
                "API tokens have no session to end; delete the token instead",
            ))
        }
    }
    Ok(
        Reply::ok(&serde_json::json!({"status": "signed out"})).with_header(
            "Set-Cookie",
            format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
        ),
    )
}

pub fn me(_: &mut Ctx, call: &Call) -> ApiResult {
    let user = call.user()?;
    let (via, id) = match user.via {
        Via::Session { id, .. } => ("session", id),
        Via::ApiToken { id } => ("api_token", id),
    };
    Ok(Reply::ok(&serde_json::json!({
        "username": user.username, "role": user.role, "auth": via, "auth_id": id,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangePassword {
    current_password: String,
    new_password: String,
}

pub fn change_password(shared: Shared, call: Call) -> LocalFuture {
    Box::pin(async move {
        let input: ChangePassword = body(&call)?;
        let uid = call
            .user()?
            .user_id
            .ok_or_else(|| ApiError::bad_request("API tokens have no password; sign in as the user"))?;
        security::check_password_strength(&input.new_password)
            .map_err(|e| ApiError::field("new_password", e))?;
        let stored = shared
            .borrow()
            .store
            .user_by_id(uid)?
            .ok_or_else(|| ApiError::not_found("user no longer exists"))?;
        let (current, new) = (input.current_password, input.new_password);
        let hash = stored.password_hash.clone();
        let result = smol::unblock(move || {
            if !security::verify_password(&current, &hash) {
                return Err(ApiError::field(
                    "current_password",
                    "is not your current password",
                ));
            }
            security::hash_password(&new).map_err(ApiError::internal)
        })
        .await?;
        shared
            .borrow()
            .store
            .set_user_password(uid, &result, clock::now())?;
        Ok(Reply::ok(
            &serde_json::json!({"status": "password changed; sign in again"}),
        ))
    })
}

pub fn sessions(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let uid = call
        .user()?
        .user_id
        .ok_or_else(|| ApiError::bad_request("API tokens have no sessions"))?;
    let list = ctx.store.sessions_of(uid, clock::now())?;
    super::list(call, list)
}

pub fn revoke_session(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let user = call.user()?;
    let id: i64 = call
        .params
        .get("id")
        .parse()
        .map_err(|_| ApiError::field("id", "must be a session id (a number)"))?;
    let owner = if user.role == crate::store::auth::Role::Admin {
        None
    } else {
        Some(user.user_id.unwrap_or(-1))
    };
    if !ctx.store.delete_session(id, owner)? {
        return Err(ApiError::not_found(format!("no session {id}")));
    }
    Ok(Reply::no_content())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Unlock {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    ip: Option<String>,
}

pub fn unlock(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let input: Unlock = body(call)?;
    if input.username.is_none() && input.ip.is_none() {
        return Err(ApiError::bad_request("give 'username', 'ip' or both"));
    }
    let n = ctx
        .store
        .clear_login_failures(input.username.as_deref(), input.ip.as_deref())?;
    Ok(Reply::ok(&serde_json::json!({"cleared": n})))
}
