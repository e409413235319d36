//! The API: one module per resource, each handler parse → authorise (done
//! by the dispatcher from the route's access level) → store/engine → render.
//! `ROUTES` is the single route table; the router, the OpenAPI check and the
//! role-matrix test all read it.

pub mod agent;
pub mod alert_rules;
pub mod alerts;
pub mod auth;
pub mod channels;
mod chart_json;
pub mod checks;
pub mod download;
pub mod forecast;
#[cfg(test)]
mod fuzz_tests;
pub mod heartbeats;
pub mod history;
pub mod labwatch;
pub mod maintenance;
pub mod nodes;
pub mod prometheus;
pub mod system;
pub mod tokens;
pub mod users;

use crate::app::{Call, Ctx, Shared};
use crate::http::router::{Access, RouteShape};
use crate::http::{ApiError, ApiResult, Reply};
use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};
use std::future::Future;
use std::pin::Pin;

pub type LocalFuture = Pin<Box<dyn Future<Output = ApiResult>>>;

pub enum Handler {
    /// Runs to completion with the context borrowed.
    Sync(fn(&mut Ctx, &Call) -> ApiResult),
    /// Awaits something (password hashing off-thread, a group commit).
    Async(fn(Shared, Call) -> LocalFuture),
}

pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
    pub handler: Handler,
    pub summary: &'static str,
}

impl RouteShape for Route {
    fn method(&self) -> &'static str {
        self.method
    }
    fn pattern(&self) -> &'static str {
        self.path
    }
}

macro_rules! route {
    ($m:literal, $p:literal, $a:ident, sync $h:path, $s:literal) => {
        Route {
            method: $m,
            path: $p,
            access: Access::$a,
            handler: Handler::Sync($h),
            summary: $s,
        }
    };
    ($m:literal, $p:literal, $a:ident, async $h:path, $s:literal) => {
        Route {
            method: $m,
            path: $p,
            access: Access::$a,
            handler: Handler::Async($h),
            summary: $s,
        }
    };
}

pub static ROUTES: &[Route] = &[
    // System
    route!("GET", "/api/v1/health", Public, sync system::health, "Liveness, version and uptime"),
    route!("GET", "/healthz", Public, sync system::healthz, "Plain liveness probe"),
    route!("GET", "/api/v1/version", Public, sync system::version, "Server version"),
    route!("GET", "/api/v1/openapi.json", Public, sync system::openapi, "This API as OpenAPI 3.1"),
    // Auth and users
    route!("POST", "/api/v1/auth/login", Public, async auth::login, "Sign in; returns a session token and sets a cookie"),
    route!("POST", "/api/v1/auth/logout", Viewer, sync auth::logout, "End the current session"),
    route!("GET", "/api/v1/auth/me", Viewer, sync auth::me, "Who am I"),
    route!("POST", "/api/v1/auth/password", Viewer, async auth::change_password, "Change your own password"),
    route!("GET", "/api/v1/auth/sessions", Viewer, sync auth::sessions, "Your active sessions"),
    route!("DELETE", "/api/v1/auth/sessions/{id}", Viewer, sync auth::revoke_session, "Revoke one of your sessions (admins: any)"),
    route!("POST", "/api/v1/auth/unlock", Admin, sync auth::unlock, "Reset the login rate limit for a username or IP"),
    route!("GET", "/api/v1/users", Admin, sync users::list, "List users"),
    route!("POST", "/api/v1/users", Admin, async users::create, "Create a user"),
    route!("GET", "/api/v1/users/{username}", Admin, sync users::get, "One user"),
    route!("PATCH", "/api/v1/users/{username}", Admin, async users::update, "Change a user's role or password"),
    route!("DELETE", "/api/v1/users/{username}", Admin, sync users::delete, "Delete a user"),
    route!("GET", "/api/v1/tokens", Admin, sync tokens::list, "List API tokens"),
    route!("POST", "/api/v1/tokens", Admin, sync tokens::create, "Create an API token (value shown once)"),
    route!("DELETE", "/api/v1/tokens/{id}", Admin, sync tokens::delete, "Delete an API token"),
    // Nodes, enrollment, ingest
    route!("POST", "/api/v1/enrollment-codes", Operator, sync agent::create_code, "One-time enrollment code for a new agent"),
    route!("POST", "/api/v1/agent/enroll", Public, sync agent::enroll, "Trade an enrollment code for a node id and agent token"),
    route!("POST", "/api/v1/agent/ingest", Agent, async agent::ingest, "Store one snapshot or a batch"),
    route!("POST", "/api/v1/agent/check-results", Agent, sync checks::agent_results, "Results of the checks this agent runs"),
    route!("GET", "/api/v1/nodes", Viewer, sync nodes::list, "Nodes with status and a latest summary"),
    route!("GET", "/api/v1/nodes/{id}", Viewer, sync nodes::get, "One node with its full latest snapshot"),
    route!("PATCH", "/api/v1/nodes/{id}", Operator, sync nodes::update, "Rename, relabel or relocate a node"),
    route!("DELETE", "/api/v1/nodes/{id}", Admin, sync nodes::delete, "Delete a node and all its data"),
    route!("POST", "/api/v1/nodes/{id}/rotate-token", Admin, sync nodes::rotate_token, "Issue a new agent token (old one stops working)"),
    route!("GET", "/api/v1/nodes/{id}/logs", Viewer, sync nodes::logs, "Recent log lines a labwatch agent sent"),
    // History
    route!("GET", "/api/v1/metrics", Viewer, sync history::metric_list, "The metrics history can chart"),
    route!("GET", "/api/v1/nodes/{id}/history", Viewer, sync history::node_history, "History of chosen metrics, resolution picked automatically"),
    route!("GET", "/api/v1/nodes/{id}/history.csv", Viewer, sync history::node_history_csv, "One metric's history as CSV"),
    route!("GET", "/api/v1/nodes/{id}/forecast", Viewer, sync forecast::forecast, "Trend of a metric and when it reaches a threshold"),
    route!("GET", "/api/v1/charts", Viewer, sync history::charts, "Fleet chart: one metric for every node"),
    route!("GET", "/metrics", Viewer, sync prometheus::metrics, "Prometheus exposition of the latest values"),
    // Agent distribution
    route!("GET", "/install.sh", Public, sync download::install_script, "One-line agent installer (POSIX sh; detects arch and init system, takes --code)"),
    route!("GET", "/download/cairn-agent/{arch}", Public, sync download::agent, "Static agent binary for amd64, arm64 or armv7 (append .sha256 for its checksum)"),
    // Alert rules and alerts
    route!("GET", "/api/v1/alert-rules", Viewer, sync alert_rules::list, "Alert rules"),
    route!("POST", "/api/v1/alert-rules", Admin, sync alert_rules::create, "Create an alert rule"),
    route!("GET", "/api/v1/alert-rules/effective", Viewer, sync alert_rules::effective, "A node's merged thresholds per metric and where each came from"),
    route!("GET", "/api/v1/alert-rules/metrics", Viewer, sync alert_rules::metrics, "Metrics a rule can watch, with built-in defaults"),
    route!("GET", "/api/v1/alert-rules/{id}", Viewer, sync alert_rules::get, "One alert rule"),
    route!("PATCH", "/api/v1/alert-rules/{id}", Admin, sync alert_rules::update, "Change an alert rule"),
    route!("DELETE", "/api/v1/alert-rules/{id}", Admin, sync alert_rules::delete, "Delete an alert rule"),
    route!("POST", "/api/v1/alert-rules/{id}/test", Operator, sync alert_rules::test, "Evaluate a rule against current data without side effects"),
    route!("GET", "/api/v1/alerts", Viewer, sync alerts::list, "Alerts, filtered by status, node, severity, kind, since"),
    route!("GET", "/api/v1/alerts/count", Viewer, sync alerts::count, "Open alerts by status and severity"),
    route!("GET", "/api/v1/alerts/{id}", Viewer, sync alerts::get, "One alert with its event timeline"),
    route!("POST", "/api/v1/alerts/{id}/ack", Operator, sync alerts::ack, "Acknowledge an alert (optional note)"),
    route!("POST", "/api/v1/alerts/{id}/unack", Operator, sync alerts::unack, "Take back an acknowledgement"),
    route!("POST", "/api/v1/alerts/{id}/resolve", Operator, sync alerts::resolve, "Resolve an alert by hand"),
    // Notifications
    route!("GET", "/api/v1/channels", Viewer, sync channels::list, "Notification channels (secrets masked)"),
    route!("POST", "/api/v1/channels", Admin, sync channels::create, "Create a notification channel"),
    route!("GET", "/api/v1/channels/{id}", Viewer, sync channels::get, "One channel (secrets masked)"),
    route!("PATCH", "/api/v1/channels/{id}", Admin, sync channels::update, "Change a channel; masked or absent secrets keep their value"),
    route!("DELETE", "/api/v1/channels/{id}", Admin, sync channels::delete, "Delete a channel and its delivery history"),
    route!("POST", "/api/v1/channels/{id}/test", Admin, async channels::test, "Send a test message now and report the outcome"),
    route!("GET", "/api/v1/notifications/deliveries", Viewer, sync channels::deliveries, "Delivery history of the outbox"),
    route!("GET", "/api/v1/notifications/deliveries/{id}", Viewer, sync channels::delivery, "One delivery with every attempt"),
    // Maintenance windows and silences
    route!("GET", "/api/v1/maintenance-windows", Viewer, sync maintenance::list_windows, "Maintenance windows"),
    route!("POST", "/api/v1/maintenance-windows", Operator, sync maintenance::create_window, "Create a one-off or weekly maintenance window"),
    route!("GET", "/api/v1/maintenance-windows/active", Viewer, sync maintenance::active_windows, "Maintenance windows in force now"),
    route!("GET", "/api/v1/maintenance-windows/{id}", Viewer, sync maintenance::get_window, "One maintenance window"),
    route!("PATCH", "/api/v1/maintenance-windows/{id}", Operator, sync maintenance::update_window, "Change a maintenance window"),
    route!("DELETE", "/api/v1/maintenance-windows/{id}", Operator, sync maintenance::delete_window, "Delete a maintenance window"),
    route!("GET", "/api/v1/silences", Viewer, sync maintenance::list_silences, "Silences (state=active|pending|expired|all)"),
    route!("POST", "/api/v1/silences", Operator, sync maintenance::create_silence, "Silence matching alerts until an expiry"),
    route!("GET", "/api/v1/silences/{id}", Viewer, sync maintenance::get_silence, "One silence"),
    route!("DELETE", "/api/v1/silences/{id}", Operator, sync maintenance::expire_silence, "End a silence now (kept as expired)"),
    // Checks (server-run http and tcp today)
    route!("GET", "/api/v1/checks", Viewer, sync checks::list, "Checks with status and last result"),
    route!("POST", "/api/v1/checks", Operator, sync checks::create, "Create a check (http, tcp, icmp, dns or tls; from the server or an agent)"),
    route!("GET", "/api/v1/checks/scheduler", Viewer, sync checks::scheduler, "How late recent scheduled check runs started"),
    route!("GET", "/api/v1/checks/{id}", Viewer, sync checks::get, "One check with its last result"),
    route!("PATCH", "/api/v1/checks/{id}", Operator, sync checks::update, "Change a check; enabled=false pauses it"),
    route!("DELETE", "/api/v1/checks/{id}", Admin, sync checks::delete, "Delete a check with its results"),
    route!("POST", "/api/v1/checks/{id}/run", Operator, async checks::run, "Run a check now and return the result"),
    route!("GET", "/api/v1/checks/{id}/results", Viewer, sync checks::results, "Results over hours= or from/to, newest first, with uptime"),
    route!("GET", "/api/v1/checks/{id}/uptime", Viewer, sync checks::uptime, "Daily uptime percentages and latency (days=1..90)"),
    route!("GET", "/api/v1/checks/{id}/response-times", Viewer, sync checks::response_times, "Response-time series for a sparkline (hours=, points=)"),
    // Heartbeats (cron monitoring)
    route!("GET", "/api/v1/heartbeats", Viewer, sync heartbeats::list, "Heartbeats with status, ping URL and next deadline"),
    route!("POST", "/api/v1/heartbeats", Operator, sync heartbeats::create, "Create a heartbeat (period, grace); returns its ping URL"),
    route!("GET", "/api/v1/heartbeats/{id}", Viewer, sync heartbeats::get, "One heartbeat"),
    route!("PATCH", "/api/v1/heartbeats/{id}", Operator, sync heartbeats::update, "Rename a heartbeat or change its period, grace or labels"),
    route!("DELETE", "/api/v1/heartbeats/{id}", Admin, sync heartbeats::delete, "Delete a heartbeat with its pings"),
    route!("POST", "/api/v1/heartbeats/{id}/pause", Operator, sync heartbeats::pause, "Pause: no deadlines, no alerts"),
    route!("POST", "/api/v1/heartbeats/{id}/resume", Operator, sync heartbeats::resume, "Resume: back to new until the next ping"),
    route!("GET", "/api/v1/heartbeats/{id}/pings", Viewer, sync heartbeats::pings, "Pings received, newest first, with their bodies"),
    route!("GET", "/api/v1/heartbeats/{id}/executions", Viewer, sync heartbeats::executions, "Runs: start to success, failure or timeout, with durations"),
    route!("GET", "/api/v1/heartbeats/{id}/uptime", Viewer, sync heartbeats::uptime, "Daily uptime percentages (days=1..90)"),
    route!("GET", "/ping/{uuid}", Public, sync heartbeats::ping, "Heartbeat ping: success"),
    route!("POST", "/ping/{uuid}", Public, sync heartbeats::ping, "Heartbeat ping: success (body kept)"),
    route!("GET", "/ping/{uuid}/start", Public, sync heartbeats::ping_start, "Heartbeat ping: the job started"),
    route!("POST", "/ping/{uuid}/start", Public, sync heartbeats::ping_start, "Heartbeat ping: the job started (body kept)"),
    route!("GET", "/ping/{uuid}/fail", Public, sync heartbeats::ping_fail, "Heartbeat ping: the job failed"),
    route!("POST", "/ping/{uuid}/fail", Public, sync heartbeats::ping_fail, "Heartbeat ping: the job failed (body kept)"),
    route!("GET", "/ping/{uuid}/log", Public, sync heartbeats::ping_log, "Heartbeat ping: a log line, state unchanged"),
    route!("POST", "/ping/{uuid}/log", Public, sync heartbeats::ping_log, "Heartbeat ping: a log message, state unchanged"),
    route!("GET", "/ping/{uuid}/{exit_code}", Public, sync heartbeats::ping_exit, "Heartbeat ping with an exit status (0 success, 1-255 failure)"),
    route!("POST", "/ping/{uuid}/{exit_code}", Public, sync heartbeats::ping_exit, "Heartbeat ping with an exit status (body kept)"),
    // labwatch agents, unchanged
    route!("POST", "/api/v1/register", AdminSecret, sync labwatch::register, "labwatch: register an agent (X-Admin-Secret)"),
    route!("POST", "/api/v1/ingest", Agent, async labwatch::ingest, "labwatch: ingest a collectors payload"),
    route!("POST", "/api/v1/lab/{lab_id}/logs", Agent, sync labwatch::logs, "labwatch: log lines"),
];

/// A JSON body into `T`; errors name the field (`a.b[2].c: invalid type`).
pub fn body<T: DeserializeOwned>(call: &Call) -> Result<T, ApiError> {
    let value = crate::engine::ingest::parse_json(&call.req.body)?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." || path.is_empty() {
            ApiError::bad_request(inner)
        } else {
            ApiError::field(&path, inner)
        }
    })
}

pub fn ser_time<S: Serializer>(ts: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::clock::rfc3339(*ts))
}

pub fn ser_time_opt<S: Serializer>(ts: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match ts {
        Some(t) => s.serialize_str(&crate::clock::rfc3339(*t)),
        None => s.serialize_none(),
    }
}

/// For routes that take no input: an empty body or a JSON object is fine,
/// anything else is refused like on every other route.
pub fn no_body(call: &Call) -> Result<(), ApiError> {
    if call.req.body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(());
    }
    match crate::engine::ingest::parse_json(&call.req.body)? {
        serde_json::Value::Object(_) => Ok(()),
        _ => Err(ApiError::bad_request(
            "this route takes no input; send no body or {}",
        )),
    }
}

/// A numeric path parameter.
pub fn num_param(call: &Call, name: &str, what: &str) -> Result<i64, ApiError> {
    call.params
        .get(name)
        .parse()
        .map_err(|_| ApiError::field(name, format!("must be {what} (a number)")))
}

/// An integer query parameter within `range`; `default` when absent.
pub fn query_int(
    call: &Call,
    name: &str,
    default: i64,
    range: std::ops::RangeInclusive<i64>,
) -> Result<i64, ApiError> {
    match call.req.query(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| ApiError::field(name, format!("must be {} to {}", range.start(), range.end()))),
    }
}

/// The list envelope with `limit` (1..=1000, default 100) and `offset`.
pub fn list<T: Serialize>(call: &Call, items: Vec<T>) -> ApiResult {
    let (limit, offset) = paging(call)?;
    let total = items.len();
    let page = items.get(offset.min(total)..).unwrap_or_default();
    Ok(Reply::ok(&Page {
        data: &page[..limit.min(page.len())],
        limit,
        offset,
        total,
    }))
}

/// The list envelope, written from borrowed items: `json!` would copy
/// every item into a value tree first.
#[derive(Serialize)]
pub struct Page<'a, T> {
    pub data: &'a [T],
    pub limit: usize,
    pub offset: usize,
    pub total: usize,
}

/// `limit` (1..=1000, default 100) and `offset` from the query.
pub fn paging(call: &Call) -> Result<(usize, usize), ApiError> {
    let limit = match call.req.query("limit") {
        None => 100,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => return Err(ApiError::field("limit", "must be a whole number from 1 to 1000")),
        },
    };
    let offset = match call.req.query("offset") {
        None => 0,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| ApiError::field("offset", "must be a whole number ≥ 0"))?,
    };
    Ok((limit, offset))
}

/// Names and labels: printable, trimmed, bounded.
pub fn check_name(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(ApiError::field(field, "must not be empty"));
    }
    if v.len() > max {
        return Err(ApiError::field(field, format!("must be at most {max} bytes")));
    }
    if v.chars().any(|c| c.is_control()) {
        return Err(ApiError::field(field, "must not contain control characters"));
    }
    Ok(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn code_routes() -> BTreeSet<(String, String, String)> {
        ROUTES
            .iter()
            .map(|r| {
                (
                    r.method.to_lowercase(),
                    r.path.to_string(),
                    r.access.as_str().to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn openapi_document_lists_exactly_the_routes_in_code() {
        let doc: serde_json::Value = serde_json::from_str(system::OPENAPI).expect("docs/openapi.json parses");
        let mut documented = BTreeSet::new();
        for (path, ops) in doc["paths"].as_object().expect("paths object") {
            for (method, op) in ops.as_object().expect("operations object") {
                let role = op["x-cairn-role"].as_str().unwrap_or("(missing x-cairn-role)");
                if let Some(r) = ROUTES
                    .iter()
                    .find(|r| r.path == path && r.method.eq_ignore_ascii_case(method))
                {
                    assert_eq!(
                        op["summary"].as_str(),
                        Some(r.summary),
                        "summary of {method} {path}"
                    );
                }
                documented.insert((method.clone(), path.clone(), role.to_string()));
            }
        }
        let code = code_routes();
        let missing: Vec<_> = code.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&code).collect();
        assert!(
            missing.is_empty(),
            "in code but not in docs/openapi.json (or role differs): {missing:?}"
        );
        assert!(
            extra.is_empty(),
            "in docs/openapi.json but not in code (or role differs): {extra:?}"
        );
    }

    #[test]
    fn api_md_lists_every_route_with_its_role() {
        let md = include_str!("../../../docs/API.md");
        for r in ROUTES {
            let line = format!("`{} {}`", r.method, r.path);
            let found = md.lines().find(|l| l.starts_with(&format!("| {line}")));
            let found = found.unwrap_or_else(|| panic!("docs/API.md does not list {line}"));
            assert!(
                found.contains(r.access.as_str()),
                "docs/API.md lists {line} without its role '{}'",
                r.access.as_str()
            );
        }
    }

    #[test]
    fn route_patterns_are_unique() {
        let mut seen = BTreeSet::new();
        for r in ROUTES {
            assert!(
                seen.insert((r.method, r.path)),
                "duplicate route {} {}",
                r.method,
                r.path
            );
        }
    }
}
