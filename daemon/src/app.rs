//! The executor side: one thread, one `LocalExecutor`, one SQLite connection.
//! Every request arrives as an `Incoming` over a channel, becomes a local
//! task, is authorised against its route's access level and handled; state is
//! only ever touched on this thread, so there are no locks.

use crate::api::{self, Handler, Route};
use crate::config::Config;
use crate::engine::ingest::IngestQueue;
use crate::http::router::{self, Access, Match, Params};
use crate::http::{ApiError, HttpRequest, Incoming, Reply};
use crate::security::{ct_eq, hash_secret};
use crate::store::auth::Role;
use crate::store::Store;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

pub type Shared = Rc<RefCell<Ctx>>;

pub struct Ctx {
    pub store: Store,
    pub cfg: Config,
    pub started: Instant,
    pub ingest: IngestQueue,
    /// The node the in-process collector reports as, if enabled.
    pub local_node: Option<String>,
    /// labwatch agents send cumulative network counters; rates need the previous ones.
    pub lab_counters: crate::engine::labwatch::CounterMemory,
    pub alerting: crate::engine::alerts::Alerting,
    /// Wakes the outbox worker after deliveries were queued.
    pub outbox_wake: async_channel::Sender<()>,
    /// Heartbeat deadlines (engine::heartbeats).
    pub deadlines: crate::engine::heartbeats::Deadlines,
    /// When each check runs next (engine::checks).
    pub schedule: crate::engine::checks::Schedule,
}

impl Ctx {
    /// Tells the outbox to look for new rows, if the alert engine wrote some.
    pub fn wake_outbox(&mut self) {
        if std::mem::take(&mut self.alerting.outbox_dirty) {
            let _ = self.outbox_wake.try_send(());
        }
    }

    pub fn alert_settings(&self) -> crate::engine::alerts::Settings {
        crate::engine::alerts::Settings::of(&self.cfg)
    }

    /// A context on an in-memory store with default settings, for in-process
    /// tests. Run `engine::ingest::committer` with the returned receiver on
    /// the same executor, or ingest requests never complete.
    #[cfg(test)]
    pub fn for_tests() -> (Shared, async_channel::Receiver<()>) {
        let (ingest, wake) = IngestQueue::new();
        let ctx = Ctx {
            store: Store::memory(),
            // No commit spacing: the fuzzer sends sequentially.
            cfg: Config {
                commit_window_ms: 0,
                ..Config::default()
            },
            started: Instant::now(),
            ingest,
            local_node: None,
            lab_counters: Default::default(),
            alerting: Default::default(),
            outbox_wake: async_channel::bounded(1).0,
            deadlines: crate::engine::heartbeats::Deadlines::new().0,
            schedule: Default::default(),
        };
        (Rc::new(RefCell::new(ctx)), wake)
    }
}

/// Who is calling.
#[derive(Clone, Debug)]
pub enum Principal {
    Anonymous,
    User(UserPrincipal),
    Agent { node_id: String },
}

#[derive(Clone, Debug)]
pub struct UserPrincipal {
    pub user_id: Option<i64>,
    pub username: String,
    pub role: Role,
    pub via: Via,
}

#[derive(Clone, Debug)]
pub enum Via {
    Session {
        id: i64,
        cookie: bool,
        csrf_hash: String,
    },
    ApiToken {
        id: i64,
    },
}

/// Everything a handler gets besides the context.
pub struct Call {
    pub req: HttpRequest,
    pub params: Params,
    pub who: Principal,
}

impl Call {
    pub fn user(&self) -> Result<&UserPrincipal, ApiError> {
        match &self.who {
            Principal::User(u) => Ok(u),
            _ => Err(ApiError::unauthorized("sign in first")),
        }
    }
    pub fn agent_node(&self) -> Result<&str, ApiError> {
        match &self.who {
            Principal::Agent { node_id } => Ok(node_id),
            _ => Err(ApiError::unauthorized("an agent token is required")),
        }
    }
}

pub const SESSION_COOKIE: &str = "cairn_session";

/// Identifies the caller from `Authorization: Bearer`, the session cookie or
/// (for labwatch registration) `X-Admin-Secret`. A presented credential that
/// matches nothing is an error, never silently anonymous.
fn identify(ctx: &mut Ctx, req: &HttpRequest, access: Access) -> Result<Principal, ApiError> {
    let now = crate::clock::now();
    let (token, cookie) = if let Some(h) = req.header("authorization") {
        let t = h
            .strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("bearer "))
            .ok_or_else(|| ApiError::unauthorized("Authorization must be 'Bearer <token>'"))?;
        (t.trim().to_string(), false)
    } else if let (Access::AdminSecret, Some(s)) = (access, req.header("x-admin-secret")) {
        (s.trim().to_string(), false)
    } else if let Some(c) = req.cookie(SESSION_COOKIE) {
        (c.to_string(), true)
    } else {
        return Ok(Principal::Anonymous);
    };
    let hash = hash_secret(&token);
    let invalid = || ApiError::unauthorized("the token is invalid, expired or revoked");
    if token.starts_with("cairn_s_") {
        let (session, stored) = ctx.store.session_by_hash(&hash, now)?.ok_or_else(invalid)?;
        if !ct_eq(stored.as_bytes(), hash.as_bytes()) {
            return Err(invalid());
        }
        let user = ctx.store.user_by_id(session.user_id)?.ok_or_else(invalid)?;
        ctx.store.touch_session(session.id, now)?;
        return Ok(Principal::User(UserPrincipal {
            user_id: Some(user.id),
            username: user.username,
            role: user.role,
            via: Via::Session {
                id: session.id,
                cookie,
                csrf_hash: session.csrf_hash,
            },
        }));
    }
    if token.starts_with("cairn_t_") {
        let (tok, stored) = ctx.store.api_token_by_hash(&hash)?.ok_or_else(invalid)?;
        if !ct_eq(stored.as_bytes(), hash.as_bytes()) {
            return Err(invalid());
        }
        ctx.store.touch_api_token(tok.id, now)?;
        return Ok(Principal::User(UserPrincipal {
            user_id: None,
            username: format!("token:{}", tok.name),
            role: tok.role,
            via: Via::ApiToken { id: tok.id },
        }));
    }
    if token.starts_with("cairn_a_") {
        let (node_id, stored) = ctx.store.node_by_token_hash(&hash)?.ok_or_else(invalid)?;
        if !ct_eq(stored.as_bytes(), hash.as_bytes()) {
            return Err(invalid());
        }
        return Ok(Principal::Agent { node_id });
    }
    Err(invalid())
}

/// The access check every route goes through: 401 without credentials, 403
/// with the wrong kind or too small a role, CSRF for cookie-borne writes.
fn authorize(access: Access, who: &Principal, req: &HttpRequest) -> Result<(), ApiError> {
    let need = match access {
        Access::Public => return Ok(()),
        Access::Agent => {
            return match who {
                Principal::Agent { .. } => Ok(()),
                Principal::Anonymous => Err(ApiError::unauthorized("an agent token is required")),
                Principal::User(_) => Err(ApiError::forbidden("this route is for agents only")),
            }
        }
        Access::Viewer => Role::Viewer,
        Access::Operator => Role::Operator,
        Access::Admin | Access::AdminSecret => Role::Admin,
    };
    let user = match who {
        Principal::User(u) => u,
        Principal::Anonymous => return Err(ApiError::unauthorized("sign in or send a Bearer token")),
        Principal::Agent { .. } => return Err(ApiError::forbidden("agent tokens only work on agent routes")),
    };
    if user.role < need {
        return Err(ApiError::forbidden(format!(
            "this needs the {} role; you are {}",
            need.as_str(),
            user.role.as_str()
        )));
    }
    if let Via::Session {
        cookie: true,
        csrf_hash,
        ..
    } = &user.via
    {
        if req.is_write() {
            let sent = req.header("x-csrf-token").unwrap_or("");
            if sent.is_empty() || !ct_eq(hash_secret(sent).as_bytes(), csrf_hash.as_bytes()) {
                return Err(ApiError::forbidden(
                    "cookie-authenticated writes need the X-CSRF-Token header from login",
                ));
            }
        }
    }
    Ok(())
}

/// Handles one request to completion. Panics in handlers are caught where
/// the build unwinds (profile release-daemon) and answered with a 500.
pub async fn handle(shared: Shared, incoming: Incoming) {
    let Incoming { req, reply } = incoming;
    let started = Instant::now();
    let method = req.method.clone();
    let path = req.path.clone();
    let out = match dispatch(shared, req).await {
        Ok(r) => r,
        Err(e) => e.into_reply(),
    };
    log::debug!("{method} {path} -> {} in {:?}", out.status, started.elapsed());
    reply.send(out);
}

async fn dispatch(shared: Shared, req: HttpRequest) -> Result<Reply, ApiError> {
    let (route, params): (&'static Route, Params) = match router::find(api::ROUTES, &req.method, &req.path) {
        Match::Found(r, p) => (r, p),
        Match::NotFound => {
            return Err(ApiError::not_found(format!(
                "no route for {} {}",
                req.method, req.path
            )))
        }
        Match::MethodNotAllowed(allowed) => {
            let mut e = ApiError::new(
                405,
                "method_not_allowed",
                format!("{} is not allowed here; use {}", req.method, allowed.join(", ")),
            )
            .into_reply();
            e.headers.push(("Allow".into(), allowed.join(", ")));
            return Ok(e);
        }
        Match::BadParam(e) => return Err(e),
    };
    let who = if route.access == Access::Public {
        Principal::Anonymous
    } else {
        let mut ctx = shared.borrow_mut();
        identify(&mut ctx, &req, route.access)?
    };
    if let Err(e) = authorize(route.access, &who, &req) {
        log::debug!(
            "{} {} needs {}: {}",
            req.method,
            req.path,
            route.access.as_str(),
            e.message
        );
        return Err(e);
    }
    let call = Call { req, params, who };
    match route.handler {
        Handler::Sync(f) => {
            let mut ctx = shared.borrow_mut();
            guard(|| f(&mut ctx, &call))
        }
        Handler::Async(f) => {
            use smol::future::FutureExt;
            // A panic inside an async handler drops its borrows while
            // unwinding, so the context stays usable for everyone else.
            match std::panic::AssertUnwindSafe(f(shared.clone(), call))
                .catch_unwind()
                .await
            {
                Ok(r) => r,
                Err(_) => Err(ApiError::internal("a handler panicked")),
            }
        }
    }
}

fn guard(f: impl FnOnce() -> Result<Reply, ApiError>) -> Result<Reply, ApiError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => Err(ApiError::internal("a handler panicked")),
    }
}
