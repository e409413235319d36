//! Users (admin only).

use super::{body, check_name, LocalFuture};
use crate::app::{Call, Ctx, Shared};
use crate::clock;
use crate::http::{ApiError, ApiResult, Reply};
use crate::security;
use crate::store::auth::{Role, User};
use serde::Deserialize;

fn parse_role(field: &str, s: &str) -> Result<Role, ApiError> {
    Role::parse(s)
        .ok_or_else(|| ApiError::field(field, format!("'{s}' is not one of viewer, operator, admin")))
}

pub fn check_username(name: &str) -> Result<String, ApiError> {
    let name = check_name("username", name, 64)?;
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
    {
        return Err(ApiError::field(
            "username",
            "may use letters, digits, '-', '_', '.', '@'",
        ));
    }
    Ok(name)
}

fn find(ctx: &Ctx, call: &Call) -> Result<User, ApiError> {
    let name = call.params.get("username");
    ctx.store
        .user_by_name(name)?
        .ok_or_else(|| ApiError::not_found(format!("no user '{name}'")))
}

pub fn list(ctx: &mut Ctx, call: &Call) -> ApiResult {
    super::list(call, ctx.store.users()?)
}

pub fn get(ctx: &mut Ctx, call: &Call) -> ApiResult {
    Ok(Reply::ok(&find(ctx, call)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    username: String,
    password: String,
    role: String,
}

pub fn create(shared: Shared, call: Call) -> LocalFuture {
    Box::pin(async move {
        let input: NewUser = body(&call)?;
        let username = check_username(&input.username)?;
        let role = parse_role("role", &input.role)?;
        security::check_password_strength(&input.password).map_err(|e| ApiError::field("password", e))?;
        if shared.borrow().store.user_by_name(&username)?.is_some() {
            return Err(ApiError::conflict(format!("user '{username}' already exists")));
        }
        let password = input.password;
        let hash = smol::unblock(move || security::hash_password(&password))
            .await
            .map_err(ApiError::internal)?;
        let ctx = shared.borrow();
        // Checked again: another request may have created it while we hashed.
        if ctx.store.user_by_name(&username)?.is_some() {
            return Err(ApiError::conflict(format!("user '{username}' already exists")));
        }
        let id = ctx.store.insert_user(&username, &hash, role, clock::now())?;
        let user = ctx
            .store
            .user_by_id(id)?
            .ok_or_else(|| ApiError::internal("user vanished"))?;
        log::info!("user '{username}' created with role {}", role.as_str());
        Ok(Reply::created(&user))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserPatch {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

pub fn update(shared: Shared, call: Call) -> LocalFuture {
    Box::pin(async move {
        let input: UserPatch = body(&call)?;
        let user = find(&shared.borrow(), &call)?;
        let role = input.role.as_deref().map(|r| parse_role("role", r)).transpose()?;
        if let Some(p) = &input.password {
            security::check_password_strength(p).map_err(|e| ApiError::field("password", e))?;
        }
        if role.is_none() && input.password.is_none() {
            return Err(ApiError::bad_request(
                "nothing to change: give 'role' and/or 'password'",
            ));
        }
        let hash = match input.password {
            Some(p) => Some(
                smol::unblock(move || security::hash_password(&p))
                    .await
                    .map_err(ApiError::internal)?,
            ),
            None => None,
        };
        let ctx = shared.borrow();
        let now = clock::now();
        if let Some(role) = role {
            if user.role == Role::Admin && role != Role::Admin && ctx.store.admin_count()? <= 1 {
                return Err(ApiError::conflict("cannot demote the last admin"));
            }
            ctx.store.set_user_role(user.id, role, now)?;
        }
        if let Some(hash) = hash {
            ctx.store.set_user_password(user.id, &hash, now)?;
        }
        let user = ctx
            .store
            .user_by_id(user.id)?
            .ok_or_else(|| ApiError::not_found("user vanished"))?;
        Ok(Reply::ok(&user))
    })
}

pub fn delete(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let user = find(ctx, call)?;
    if user.role == Role::Admin && ctx.store.admin_count()? <= 1 {
        return Err(ApiError::conflict("cannot delete the last admin"));
    }
    ctx.store.delete_user(user.id)?;
    log::info!("user '{}' deleted", user.username);
    Ok(Reply::no_content())
}
