//! The role matrix: every operation in docs/openapi.json × every kind of
//! caller, against one real cairnd. Each operation's `x-cairn-role` says who
//! may call it; a caller below that role gets 403, no (or a bogus)
//! credential gets 401, agent tokens only work on agent routes and user
//! credentials never do. Calls that are allowed get real ids and a plausible
//! body so they reach the handler, and must answer neither 401/403 nor 5xx.
//!
//! Destructive rows (DELETE of users, tokens, sessions, nodes; token
//! rotation; logout) never touch the fixtures the other rows need: an allowed
//! call gets a throwaway object (or a fresh session), a refused call aims at a
//! "victim" object that is checked to have survived at the end.
//!
//! `admin-secret` (labwatch registration) is identified from
//! `Authorization: Bearer` first and `X-Admin-Secret` only when there is no
//! Authorization header (daemon/src/app.rs `identify`), so an admin Bearer
//! credential is accepted too, and so is an admin *session* token in
//! X-Admin-Secret; on every other route X-Admin-Secret is ignored (401).

use cairn_e2e::*;
use serde_json::{json, Value};
use std::cell::Cell;
use std::collections::BTreeSet;
use std::fmt::Write as _;

/// Who calls, and how the credential travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Nobody,
    /// A well-formed but unknown session token.
    Forged,
    Viewer,
    Operator,
    Admin,
    AdminToken,
    Agent,
    // The same secrets in X-Admin-Secret instead of Authorization.
    SecretAdminToken,
    SecretAdminSession,
    SecretViewerToken,
    SecretViewerSession,
    SecretAgent,
    SecretForged,
}

const EVERYONE: [Who; 13] = [
    Who::Nobody,
    Who::Forged,
    Who::Viewer,
    Who::Operator,
    Who::Admin,
    Who::AdminToken,
    Who::Agent,
    Who::SecretAdminToken,
    Who::SecretAdminSession,
    Who::SecretViewerToken,
    Who::SecretViewerSession,
    Who::SecretAgent,
    Who::SecretForged,
];

impl Who {
    fn label(self) -> &'static str {
        match self {
            Who::Nobody => "none",
            Who::Forged => "forged",
            Who::Viewer => "viewer",
            Who::Operator => "oper",
            Who::Admin => "admin",
            Who::AdminToken => "adm-tok",
            Who::Agent => "agent",
            Who::SecretAdminToken => "X:adm-tok",
            Who::SecretAdminSession => "X:adm",
            Who::SecretViewerToken => "X:vw-tok",
            Who::SecretViewerSession => "X:vw",
            Who::SecretAgent => "X:agent",
            Who::SecretForged => "X:forged",
        }
    }
    fn in_admin_secret_header(self) -> bool {
        matches!(
            self,
            Who::SecretAdminToken
                | Who::SecretAdminSession
                | Who::SecretViewerToken
                | Who::SecretViewerSession
                | Who::SecretAgent
                | Who::SecretForged
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Allowed,
    Unauthorized,
    Forbidden,
}

/// Levels of the user roles, as the daemon orders them.
fn role_level(role: &str) -> u8 {
    match role {
        "viewer" => 1,
        "operator" => 2,
        "admin" | "admin-secret" => 3,
        other => panic!("unknown x-cairn-role '{other}' in docs/openapi.json"),
    }
}

fn expected(role: &str, who: Who) -> Expect {
    if role == "public" {
        return Expect::Allowed;
    }
    assert!(
        matches!(role, "viewer" | "operator" | "admin" | "agent" | "admin-secret"),
        "unknown x-cairn-role '{role}' in docs/openapi.json"
    );
    enum Caller {
        User(u8),
        Agent,
    }
    let caller = match who {
        Who::Nobody | Who::Forged | Who::SecretForged => return Expect::Unauthorized,
        // X-Admin-Secret is read on admin-secret routes only; elsewhere the
        // caller is anonymous.
        w if w.in_admin_secret_header() && role != "admin-secret" => return Expect::Unauthorized,
        Who::Viewer | Who::SecretViewerToken | Who::SecretViewerSession => Caller::User(1),
        Who::Operator => Caller::User(2),
        Who::Admin | Who::AdminToken | Who::SecretAdminToken | Who::SecretAdminSession => Caller::User(3),
        Who::Agent | Who::SecretAgent => Caller::Agent,
    };
    match (role, caller) {
        ("agent", Caller::Agent) => Expect::Allowed,
        (_, Caller::Agent) | ("agent", Caller::User(_)) => Expect::Forbidden,
        (role, Caller::User(level)) if level >= role_level(role) => Expect::Allowed,
        (_, Caller::User(_)) => Expect::Forbidden,
    }
}

const FORGED_SESSION: &str = "cairn_s_forgedforgedforgedforgedforgedforged0";
const FORGED_TOKEN: &str = "cairn_t_forgedforgedforgedforgedforgedforged0";
const PASSWORD_SUFFIX: &str = "-password-123";

/// Everything the rows need, created once.
struct Fx<'a> {
    d: &'a Daemon,
    /// Setup only (creating throwaways); never a matrix column.
    setup: String,
    viewer: String,
    operator: String,
    admin: String,
    admin_token: String,
    viewer_token: String,
    agent: String,
    node: String,
    /// Targets of refused destructive calls; must survive the matrix.
    victim_node: String,
    victim_agent: String,
    victim_token_id: i64,
    victim_token: String,
    victim_session_id: i64,
    victim_session: String,
    /// Alerting objects: (collection path, id) of one of each kind.
    alert_objects: Vec<(&'static str, i64)>,
    alert_id: i64,
    seq: Cell<u32>,
}

/// Bodies that create one of each alerting object.
fn alerting_body(collection: &str, node: &str) -> Value {
    match collection {
        "/api/v1/alert-rules" => {
            json!({"metric": "cpu", "scope": {"node": node}, "critical": {"trigger": 50, "clear": 40}, "for_s": 0})
        }
        // Port 9 on 127.0.0.1: nothing listens, so a test send fails fast.
        "/api/v1/channels" => {
            json!({"name": "matrix", "type": "webhook", "config": {"url": "http://127.0.0.1:9/hook"}})
        }
        "/api/v1/maintenance-windows" => {
            json!({"name": "matrix", "start": rfc3339(now() + 86_400), "end": rfc3339(now() + 90_000)})
        }
        "/api/v1/silences" => {
            json!({"matchers": {"metric": "swap"}, "comment": "matrix", "duration_s": 3600})
        }
        "/api/v1/heartbeats" => json!({"name": "matrix", "period_s": 3600}),
        // Port 9 again: a run-now fails fast.
        "/api/v1/checks" => {
            json!({"name": "matrix", "type": "tcp", "target": "127.0.0.1:9", "interval_s": 3600})
        }
        other => panic!("no alerting body for {other}"),
    }
}

const ALERTING: [&str; 6] = [
    "/api/v1/checks",
    "/api/v1/alert-rules",
    "/api/v1/channels",
    "/api/v1/maintenance-windows",
    "/api/v1/silences",
    "/api/v1/heartbeats",
];

const VIEWER: &str = "matrix-viewer";
const OPERATOR: &str = "matrix-operator";
const TARGET_USER: &str = "matrix-target";
const VICTIM_USER: &str = "matrix-victim";

/// A request ready to send.
struct Req {
    path: String,
    body: Option<Value>,
    secret: Option<String>,
}

impl<'a> Fx<'a> {
    fn new(d: &'a Daemon) -> Fx<'a> {
        let c = &d.client;
        let setup = d.admin();
        let viewer = d.user_token(&setup, VIEWER, "viewer");
        let operator = d.user_token(&setup, OPERATOR, "operator");
        d.user_token(&setup, TARGET_USER, "operator");
        d.user_token(&setup, VICTIM_USER, "viewer");
        let admin = d.admin();
        let token = |name: &str, role: &str| {
            let r = c.post(
                "/api/v1/tokens",
                Some(&setup),
                &json!({"name": name, "role": role}),
            );
            assert_eq!(r.status, 201, "creating token {name}: {}", r.text);
            let v = r.json();
            (
                v["id"].as_i64().expect("token id"),
                v["token"].as_str().expect("token value").to_string(),
            )
        };
        let (_, admin_token) = token("matrix-admin", "admin");
        let (_, viewer_token) = token("matrix-viewer", "viewer");
        let (victim_token_id, victim_token) = token("matrix-victim", "viewer");
        let (node, agent) = d.enroll(&setup, "matrix-node");
        let (victim_node, victim_agent) = d.enroll(&setup, "matrix-victim-node");
        let victim_session = d.admin();
        let victim_session_id = session_id(d, &victim_session);
        let alert_objects: Vec<(&'static str, i64)> = ALERTING
            .iter()
            .map(|c| {
                let r = d.client.post(c, Some(&setup), &alerting_body(c, &node));
                assert_eq!(r.status, 201, "creating {c}: {}", r.text);
                (*c, r.json()["id"].as_i64().expect("id"))
            })
            .collect();
        // The node rule above (critical at 50, no wait) opens an alert.
        let r = d
            .client
            .post("/api/v1/agent/ingest", Some(&agent), &snapshot(now() - 2, 99.0));
        assert_eq!(r.status, 200, "{}", r.text);
        let alert_id = poll(
            "an alert from the matrix rule",
            std::time::Duration::from_secs(10),
            || {
                let r = d.client.get("/api/v1/alerts?status=active", Some(&setup));
                r.json()["data"][0]["id"].as_i64()
            },
        );
        Fx {
            d,
            setup,
            viewer,
            operator,
            admin,
            admin_token,
            viewer_token,
            agent,
            node,
            victim_node,
            victim_agent,
            victim_token_id,
            victim_token,
            victim_session_id,
            victim_session,
            alert_objects,
            alert_id,
            seq: Cell::new(0),
        }
    }

    fn next(&self) -> u32 {
        self.seq.set(self.seq.get() + 1);
        self.seq.get()
    }

    /// The secret `who` presents (in Authorization or X-Admin-Secret).
    fn secret(&self, who: Who) -> Option<String> {
        let s = match who {
            Who::Nobody => return None,
            Who::Forged => FORGED_SESSION,
            Who::SecretForged => FORGED_TOKEN,
            Who::Viewer | Who::SecretViewerSession => &self.viewer,
            Who::Operator => &self.operator,
            Who::Admin | Who::SecretAdminSession => &self.admin,
            Who::AdminToken | Who::SecretAdminToken => &self.admin_token,
            Who::SecretViewerToken => &self.viewer_token,
            Who::Agent | Who::SecretAgent => &self.agent,
        };
        Some(s.to_string())
    }

    fn login(&self, username: &str) -> String {
        if username == "admin" {
            self.d.admin()
        } else {
            self.d.login(username, &format!("{username}{PASSWORD_SUFFIX}"))
        }
    }

    /// The user behind a session-or-token principal, for "your own" objects.
    fn username_of(&self, who: Who) -> Option<&'static str> {
        match who {
            Who::Viewer | Who::SecretViewerSession | Who::SecretViewerToken => Some(VIEWER),
            Who::Operator => Some(OPERATOR),
            Who::Admin | Who::AdminToken | Who::SecretAdminToken | Who::SecretAdminSession => Some("admin"),
            _ => None,
        }
    }

    fn throwaway_user(&self) -> String {
        let name = format!("matrix-doomed-{}", self.next());
        let r = self.d.client.post(
            "/api/v1/users",
            Some(&self.setup),
            &json!({"username": name, "password": format!("{name}{PASSWORD_SUFFIX}"), "role": "viewer"}),
        );
        assert_eq!(r.status, 201, "creating {name}: {}", r.text);
        name
    }

    fn throwaway_token(&self) -> i64 {
        let r = self.d.client.post(
            "/api/v1/tokens",
            Some(&self.setup),
            &json!({"name": format!("matrix-doomed-{}", self.next()), "role": "viewer"}),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        r.json()["id"].as_i64().expect("token id")
    }

    fn throwaway_node(&self) -> String {
        self.d
            .enroll(&self.setup, &format!("matrix-doomed-{}", self.next()))
            .0
    }

    fn enrollment_code(&self) -> String {
        let r = self
            .d
            .client
            .post("/api/v1/enrollment-codes", Some(&self.setup), &json!({}));
        assert_eq!(r.status, 201, "{}", r.text);
        r.json()["code"].as_str().expect("code").to_string()
    }

    /// Path, body and credential for one cell. `allowed` says whether the
    /// call is expected to reach the handler (then it gets a throwaway
    /// object where it would destroy something).
    fn prepare(&self, method: &str, template: &str, who: Who, allowed: bool) -> Req {
        let node = self.node.as_str();
        let mut secret = self.secret(who);
        let (path, body): (String, Option<Value>) = match (method, template) {
            ("POST", "/api/v1/auth/login") => (
                template.into(),
                Some(json!({"username": VIEWER, "password": format!("{VIEWER}{PASSWORD_SUFFIX}")})),
            ),
            ("POST", "/api/v1/auth/logout") => {
                // Ending the caller's session would break its later rows.
                if allowed && matches!(who, Who::Viewer | Who::Operator | Who::Admin) {
                    secret = Some(self.login(self.username_of(who).expect("a user")));
                }
                (template.into(), Some(json!({})))
            }
            ("POST", "/api/v1/auth/password") => (
                template.into(),
                Some(
                    json!({"current_password": "not-the-password", "new_password": "matrix-new-password-1"}),
                ),
            ),
            ("DELETE", "/api/v1/auth/sessions/{id}") => {
                let id = match self.username_of(who) {
                    Some(user) if allowed => session_id(self.d, &self.login(user)),
                    _ => self.victim_session_id,
                };
                (format!("/api/v1/auth/sessions/{id}"), None)
            }
            ("POST", "/api/v1/auth/unlock") => (template.into(), Some(json!({"username": "matrix-nobody"}))),
            ("POST", "/api/v1/users") => {
                let name = format!("matrix-new-{}", self.next());
                (
                    template.into(),
                    Some(
                        json!({"username": name, "password": format!("{name}{PASSWORD_SUFFIX}"), "role": "viewer"}),
                    ),
                )
            }
            ("PATCH", "/api/v1/users/{username}") => (
                format!("/api/v1/users/{TARGET_USER}"),
                Some(json!({"role": "operator"})),
            ),
            ("DELETE", "/api/v1/users/{username}") => {
                let name = if allowed {
                    self.throwaway_user()
                } else {
                    VICTIM_USER.to_string()
                };
                (format!("/api/v1/users/{name}"), None)
            }
            ("POST", "/api/v1/tokens") => (
                template.into(),
                Some(json!({"name": format!("matrix-new-{}", self.next()), "role": "viewer"})),
            ),
            ("DELETE", "/api/v1/tokens/{id}") => {
                let id = if allowed {
                    self.throwaway_token()
                } else {
                    self.victim_token_id
                };
                (format!("/api/v1/tokens/{id}"), None)
            }
            ("POST", "/api/v1/enrollment-codes") => (template.into(), Some(json!({"ttl_s": 600}))),
            ("POST", "/api/v1/agent/enroll") => (
                template.into(),
                Some(json!({
                    "code": self.enrollment_code(),
                    "hostname": format!("matrix-enrolled-{}", self.next()),
                    "os": "Linux", "arch": "x86_64", "agent_version": "test"
                })),
            ),
            ("POST", "/api/v1/agent/ingest") => (template.into(), Some(snapshot(now() - 5, 12.5))),
            ("PATCH", "/api/v1/nodes/{id}") => (
                format!("/api/v1/nodes/{node}"),
                Some(json!({"labels": {"matrix": "yes"}, "location": "rack 1"})),
            ),
            ("DELETE", "/api/v1/nodes/{id}") | ("POST", "/api/v1/nodes/{id}/rotate-token") => {
                let id = if allowed {
                    self.throwaway_node()
                } else {
                    self.victim_node.clone()
                };
                let body = (method == "POST").then(|| json!({}));
                (template.replace("{id}", &id), body)
            }
            ("GET", "/api/v1/nodes/{id}/history") => (
                format!("/api/v1/nodes/{node}/history?metrics=cpu,memory&hours=1"),
                None,
            ),
            ("GET", "/api/v1/nodes/{id}/history.csv") => (
                format!("/api/v1/nodes/{node}/history.csv?metric=cpu&hours=1"),
                None,
            ),
            ("GET", "/api/v1/charts") => ("/api/v1/charts?metric=cpu&hours=1".into(), None),
            ("POST", "/api/v1/register") => (
                template.into(),
                Some(json!({
                    "hostname": format!("matrix-lab-{}", self.next()),
                    "os": "Linux", "arch": "x86_64", "agent_version": "labwatch-test"
                })),
            ),
            ("POST", "/api/v1/ingest") => (
                template.into(),
                Some(json!({"lab_id": node, "collectors": {"system": {"cpu": {"percent": 5.0}}}})),
            ),
            ("POST", "/api/v1/lab/{lab_id}/logs") => (
                format!("/api/v1/lab/{node}/logs"),
                Some(json!({"entries": [{
                    "ts": rfc3339(now()), "source": "matrix", "level": "info",
                    "message": "hello from the role matrix", "unit": "test"
                }]})),
            ),
            (m, t) if ALERTING.iter().any(|c| t.starts_with(&format!("{c}/{{id}}"))) => {
                let collection = ALERTING.iter().find(|c| t.starts_with(**c)).expect("collection");
                let id = if m == "DELETE" && allowed {
                    let r =
                        self.d
                            .client
                            .post(collection, Some(&self.setup), &alerting_body(collection, node));
                    assert_eq!(r.status, 201, "{}", r.text);
                    r.json()["id"].as_i64().expect("id")
                } else {
                    self.alert_objects
                        .iter()
                        .find(|(c, _)| c == collection)
                        .expect("fixture")
                        .1
                };
                let body = match m {
                    "PATCH" if *collection == "/api/v1/silences" => None,
                    "PATCH" => Some(json!({"name": "matrix renamed"})),
                    "POST" => Some(json!({})),
                    _ => None,
                };
                (t.replace("{id}", &id.to_string()), body)
            }
            ("POST", t) if ALERTING.contains(&t) => (t.into(), Some(alerting_body(t, node))),
            ("GET", "/api/v1/alert-rules/effective") => (format!("{template}?node={node}"), None),
            (m, t) if t.starts_with("/api/v1/alerts/{id}") => {
                let body = (m == "POST").then(|| json!({"note": "matrix"}));
                (t.replace("{id}", &self.alert_id.to_string()), body)
            }
            // Anything added later still gets its auth checked: real ids
            // where the parameter name says what it is, `{}` for writes.
            _ => {
                let path = template
                    .replace("{id}", node)
                    .replace("{lab_id}", node)
                    .replace("{username}", TARGET_USER)
                    .replace("{arch}", "amd64");
                let path = fill_other_params(&path);
                let body = (!matches!(method, "GET" | "HEAD" | "DELETE")).then(|| json!({}));
                (path, body)
            }
        };
        Req { path, body, secret }
    }

    fn send(&self, method: &str, req: &Req, who: Who) -> Resp {
        let mut headers: Vec<(&str, String)> = Vec::new();
        if let Some(s) = &req.secret {
            if who.in_admin_secret_header() {
                headers.push(("X-Admin-Secret", s.clone()));
            } else {
                headers.push(("Authorization", format!("Bearer {s}")));
            }
        }
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let body = req
            .body
            .as_ref()
            .map(|b| serde_json::to_vec(b).expect("serialising body"));
        self.d.client.send(method, &req.path, &headers, body.as_deref())
    }
}

/// The id of a session token (what DELETE /api/v1/auth/sessions/{id} takes).
fn session_id(d: &Daemon, session: &str) -> i64 {
    let me = d.client.get("/api/v1/auth/me", Some(session));
    assert_eq!(me.status, 200, "{}", me.text);
    me.json()["auth_id"].as_i64().expect("auth_id of a session")
}

/// Any `{param}` left after the known ones: a harmless id-shaped value.
fn fill_other_params(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        let end = rest[start..]
            .find('}')
            .map(|e| start + e)
            .unwrap_or(rest.len() - 1);
        out.push_str(&rest[..start]);
        out.push_str("matrix");
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// (method, path template, x-cairn-role) of every operation in the document.
fn operations(doc: &Value) -> Vec<(String, String, String)> {
    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "patch", "head", "options", "trace",
    ];
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths object") {
        for (method, op) in item.as_object().expect("path item object") {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            let role = op["x-cairn-role"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no x-cairn-role"));
            ops.push((method.to_uppercase(), path.clone(), role.to_string()));
        }
    }
    ops
}

fn load_doc() -> Value {
    let path = workspace().join("docs/openapi.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).expect("docs/openapi.json parses")
}

/// Checks one answer against the expectation; Err says what is wrong.
fn judge(expect: Expect, r: &Resp) -> Result<(), String> {
    let body: Option<Value> = serde_json::from_str(&r.text).ok();
    let text: String = r.text.chars().take(200).collect();
    let error = |code: &str| -> Result<(), String> {
        let e = body.as_ref().map(|b| &b["error"]);
        match e {
            Some(e) if e["code"] == code && e["message"].is_string() => Ok(()),
            _ => Err(format!("no JSON error with code '{code}': {text}")),
        }
    };
    match expect {
        Expect::Unauthorized if r.status == 401 => error("unauthorized"),
        Expect::Forbidden if r.status == 403 => error("forbidden"),
        Expect::Unauthorized => Err(format!("expected 401, got {}: {text}", r.status)),
        Expect::Forbidden => Err(format!("expected 403, got {}: {text}", r.status)),
        Expect::Allowed => {
            let no_route = r.status == 404
                && body
                    .as_ref()
                    .and_then(|b| b["error"]["message"].as_str())
                    .is_some_and(|m| m.starts_with("no route"));
            if r.status == 401 || r.status == 403 {
                Err(format!("allowed, but got {}: {text}", r.status))
            } else if r.status >= 500 {
                Err(format!("server error {}: {text}", r.status))
            } else if r.status == 405 || no_route {
                Err(format!("did not reach a route ({}): {text}", r.status))
            } else {
                Ok(())
            }
        }
    }
}

struct Outcome {
    method: String,
    path: String,
    role: String,
    status: u16,
    problem: Option<String>,
}

/// One line per operation, one column per caller; failing cells end in '!'.
fn table(outcomes: &[Outcome]) -> String {
    let route_w = outcomes
        .iter()
        .map(|o| o.method.len() + 1 + o.path.len())
        .max()
        .unwrap_or(5);
    let mut out = format!("{:<route_w$} {:<12}", "route", "role");
    for w in EVERYONE {
        let _ = write!(out, " {}", w.label());
    }
    out.push('\n');
    for row in outcomes.chunks(EVERYONE.len()) {
        let route = format!("{} {}", row[0].method, row[0].path);
        let _ = write!(out, "{route:<route_w$} {:<12}", row[0].role);
        for (o, w) in row.iter().zip(EVERYONE) {
            let mark = if o.problem.is_some() { "!" } else { "" };
            let width = w.label().len();
            let _ = write!(out, " {:>width$}", format!("{}{mark}", o.status));
        }
        out.push('\n');
    }
    out
}

#[test]
fn every_operation_answers_every_caller_according_to_its_role() {
    let doc = load_doc();
    let mut ops = operations(&doc);
    assert!(!ops.is_empty(), "docs/openapi.json lists no operations");
    // Deletes last (they use throwaway objects anyway).
    ops.sort_by_key(|(m, _, _)| m == "DELETE");

    let d = Daemon::start();
    let served = d.client.get("/api/v1/openapi.json", None);
    assert_eq!(served.status, 200);
    assert_eq!(served.json(), doc, "the daemon serves docs/openapi.json as built");
    let fx = Fx::new(&d);

    let mut outcomes = Vec::new();
    for (method, template, role) in &ops {
        for who in EVERYONE {
            let expect = expected(role, who);
            let req = fx.prepare(method, template, who, expect == Expect::Allowed);
            let r = fx.send(method, &req, who);
            outcomes.push(Outcome {
                method: method.clone(),
                path: template.clone(),
                role: role.clone(),
                status: r.status,
                problem: judge(expect, &r)
                    .err()
                    .map(|e| format!("{method} {} as {} ({expect:?}): {e}", req.path, who.label())),
            });
        }
    }

    // Coverage: every documented operation, every caller, exactly once.
    let covered: BTreeSet<(&str, &str)> = outcomes
        .iter()
        .map(|o| (o.method.as_str(), o.path.as_str()))
        .collect();
    let documented = operations(&doc).len();
    assert_eq!(covered.len(), documented, "operations covered vs documented");
    assert_eq!(outcomes.len(), documented * EVERYONE.len());

    // Refused destructive calls destroyed nothing; the fixtures survived.
    let c = &d.client;
    let setup = Some(fx.setup.as_str());
    let mut survivors: Vec<String> = Vec::new();
    let mut want = |what: &str, r: Resp, status: u16| {
        if r.status != status {
            survivors.push(format!("{what}: expected {status}, got {} {}", r.status, r.text));
        }
    };
    want(
        "victim user",
        c.get(&format!("/api/v1/users/{VICTIM_USER}"), setup),
        200,
    );
    want(
        "victim token",
        c.get("/api/v1/nodes", Some(&fx.victim_token)),
        200,
    );
    want(
        "victim session",
        c.get("/api/v1/auth/me", Some(&fx.victim_session)),
        200,
    );
    want(
        "victim node",
        c.get(&format!("/api/v1/nodes/{}", fx.victim_node), setup),
        200,
    );
    want(
        "victim agent token (not rotated)",
        c.post(
            &format!("/api/v1/lab/{}/logs", fx.victim_node),
            Some(&fx.victim_agent),
            &json!({"entries": [{"message": "still here"}]}),
        ),
        202,
    );
    for (name, token) in [
        ("viewer session", &fx.viewer),
        ("operator session", &fx.operator),
        ("admin session", &fx.admin),
        ("admin API token", &fx.admin_token),
    ] {
        want(name, c.get("/api/v1/auth/me", Some(token)), 200);
    }
    want(
        "agent token",
        c.post("/api/v1/agent/ingest", Some(&fx.agent), &snapshot(now() - 1, 1.0)),
        200,
    );
    // Handler-level ownership: below admin, only your own sessions.
    for (name, token) in [("viewer", &fx.viewer), ("operator", &fx.operator)] {
        want(
            &format!("{name} revoking another user's session"),
            c.delete(
                &format!("/api/v1/auth/sessions/{}", fx.victim_session_id),
                Some(token),
            ),
            404,
        );
    }
    want(
        "victim session after foreign revokes",
        c.get("/api/v1/auth/me", Some(&fx.victim_session)),
        200,
    );

    let grid = table(&outcomes);
    let problems: Vec<&str> = outcomes.iter().filter_map(|o| o.problem.as_deref()).collect();
    if problems.is_empty() && survivors.is_empty() {
        println!("{grid}");
    }
    assert!(
        problems.is_empty() && survivors.is_empty(),
        "role matrix: {} of {} cells wrong, {} fixture problems\n{grid}\n{}\n{}",
        problems.len(),
        outcomes.len(),
        survivors.len(),
        problems.join("\n"),
        survivors.join("\n")
    );
}

/// Logs in and returns (`Cookie` header value, csrf token).
fn cookie_login(d: &Daemon, username: &str, password: &str) -> (String, String) {
    let r = d.client.post(
        "/api/v1/auth/login",
        None,
        &json!({"username": username, "password": password}),
    );
    assert_eq!(r.status, 200, "login as {username}: {}", r.text);
    let cookie = r
        .header("set-cookie")
        .expect("login sets a cookie")
        .split(';')
        .next()
        .expect("cookie pair")
        .to_string();
    let csrf = r.json()["csrf_token"].as_str().expect("csrf_token").to_string();
    (cookie, csrf)
}

/// One cookie-authenticated write route for one role level.
struct CsrfCase<'a> {
    level: &'static str,
    /// (Cookie header value, csrf token) from [`cookie_login`].
    session: &'a (String, String),
    /// A read the same cookie may do without a CSRF token.
    read: &'static str,
    method: &'static str,
    template: &'static str,
    path: String,
    body: Option<&'static str>,
    success: u16,
}

#[test]
fn cookie_writes_need_the_csrf_header_at_every_role_level() {
    let doc = load_doc();
    let role_of = |method: &str, path: &str| -> String {
        operations(&doc)
            .into_iter()
            .find(|(m, p, _)| m == method && p == path)
            .unwrap_or_else(|| panic!("{method} {path} is not in docs/openapi.json"))
            .2
    };
    let d = Daemon::start();
    let c = &d.client;
    let admin = d.admin();
    d.user_token(&admin, "csrf-viewer", "viewer");
    d.user_token(&admin, "csrf-operator", "operator");
    d.user_token(&admin, "csrf-doomed", "viewer");
    let (node, _) = d.enroll(&admin, "csrf-node");
    let admin_pw = d.admin_password.clone();
    let viewer = cookie_login(&d, "csrf-viewer", &format!("csrf-viewer{PASSWORD_SUFFIX}"));
    let operator = cookie_login(&d, "csrf-operator", &format!("csrf-operator{PASSWORD_SUFFIX}"));
    let admin_cookie = cookie_login(&d, "admin", &admin_pw);
    // A valid CSRF token, but of another session: must not work either.
    let (_, foreign_csrf) = cookie_login(&d, "admin", &admin_pw);

    let node_path = format!("/api/v1/nodes/{node}");
    let node_count = || {
        c.get("/api/v1/nodes", Some(&admin)).json()["total"]
            .as_u64()
            .expect("total")
    };
    let nodes_before = node_count();
    let cases = [
        CsrfCase {
            level: "viewer",
            session: &viewer,
            read: "/api/v1/auth/me",
            method: "POST",
            template: "/api/v1/auth/logout",
            path: "/api/v1/auth/logout".into(),
            body: Some("{}"),
            success: 200,
        },
        CsrfCase {
            level: "operator",
            session: &operator,
            read: "/api/v1/nodes",
            method: "PATCH",
            template: "/api/v1/nodes/{id}",
            path: node_path.clone(),
            body: Some(r#"{"location": "attic"}"#),
            success: 200,
        },
        CsrfCase {
            level: "admin",
            session: &admin_cookie,
            read: "/api/v1/users",
            method: "DELETE",
            template: "/api/v1/users/{username}",
            path: "/api/v1/users/csrf-doomed".into(),
            body: None,
            success: 204,
        },
        CsrfCase {
            level: "admin-secret",
            session: &admin_cookie,
            read: "/api/v1/tokens",
            method: "POST",
            template: "/api/v1/register",
            path: "/api/v1/register".into(),
            body: Some(r#"{"hostname": "csrf-lab"}"#),
            success: 201,
        },
    ];
    for case in &cases {
        let CsrfCase {
            level,
            session: (cookie, csrf),
            read,
            method,
            template,
            path,
            body,
            success,
        } = case;
        let (level, read, method) = (*level, *read, *method);
        assert_eq!(
            role_of(method, template),
            level,
            "{method} {template} is a {level} route"
        );
        let body = body.map(str::as_bytes);
        let r = c.send("GET", read, &[("Cookie", cookie)], None);
        assert_eq!(
            r.status, 200,
            "{level}: cookie reads need no CSRF token: {}",
            r.text
        );
        for (what, headers) in [
            ("no X-CSRF-Token", vec![("Cookie", cookie.as_str())]),
            (
                "an empty X-CSRF-Token",
                vec![("Cookie", cookie.as_str()), ("X-CSRF-Token", "")],
            ),
            (
                "a wrong X-CSRF-Token",
                vec![("Cookie", cookie.as_str()), ("X-CSRF-Token", "wrong")],
            ),
            (
                "another session's X-CSRF-Token",
                vec![
                    ("Cookie", cookie.as_str()),
                    ("X-CSRF-Token", foreign_csrf.as_str()),
                ],
            ),
        ] {
            let r = c.send(method, path, &headers, body);
            assert_eq!(r.status, 403, "{level}: {method} {path} with {what}: {}", r.text);
            assert_eq!(r.error_code(), "forbidden");
            assert!(
                r.error_message().contains("X-CSRF-Token"),
                "the refusal names the header: {}",
                r.text
            );
        }
        // Nothing happened.
        assert_eq!(c.send("GET", read, &[("Cookie", cookie)], None).status, 200);
        match level {
            "operator" => assert!(c.get(&node_path, Some(&admin)).json()["location"] != "attic"),
            "admin" => assert_eq!(c.get("/api/v1/users/csrf-doomed", Some(&admin)).status, 200),
            "admin-secret" => assert_eq!(node_count(), nodes_before),
            _ => {}
        }
        let r = c.send(method, path, &[("Cookie", cookie), ("X-CSRF-Token", csrf)], body);
        assert_eq!(
            r.status, *success,
            "{level}: {method} {path} with the right token: {}",
            r.text
        );
    }
    // The viewer's logout went through: its cookie no longer works.
    assert_eq!(
        c.send("GET", "/api/v1/auth/me", &[("Cookie", &viewer.0)], None)
            .status,
        401
    );
    assert_eq!(c.get(&node_path, Some(&admin)).json()["location"], "attic");
    assert_eq!(c.get("/api/v1/users/csrf-doomed", Some(&admin)).status, 404);
    assert_eq!(node_count(), nodes_before + 1);
}
