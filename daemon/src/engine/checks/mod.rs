//! Checks run from the server: what a check is (validation), what one run
//! finds (`probe`), and the scheduler that runs them spread over their
//! interval, off the executor thread, and turns consecutive failures and
//! successes into down/up with alerts of kind `check`.
//!
//! Today: `http` and `tcp` from the server. The other kinds of the API
//! (icmp, dns, tls) and agent-run checks are refused with a 400 saying so.

pub mod probe;

use crate::app::{Ctx, Shared};
use crate::engine::alerts::rules::Severity;
use crate::engine::alerts::Condition;
use crate::http::ApiError;
use crate::store::checks::{Check, CheckResult};
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::Duration;

pub const MIN_INTERVAL_S: i64 = 10;
/// Checks running at once (each holds a blocking-pool thread for at most its timeout).
const PARALLEL: usize = 16;

/// The `http` block of a check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// "200", "200-399"; default 200-399.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expected_status: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyword: Option<String>,
    /// true: the keyword must NOT appear.
    #[serde(default)]
    pub keyword_absent: bool,
    #[serde(default = "yes")]
    pub follow_redirects: bool,
    #[serde(default = "yes")]
    pub verify_tls: bool,
}

fn yes() -> bool {
    true
}

/// Without an `http` block: follow redirects and verify TLS, like the
/// serde defaults (a derived Default would turn verification off).
impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            method: None,
            headers: BTreeMap::new(),
            body: None,
            expected_status: Vec::new(),
            keyword: None,
            keyword_absent: false,
            follow_redirects: true,
            verify_tls: true,
        }
    }
}

/// Parses "200" or "200-399" into an inclusive range.
pub fn status_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let (a, b) = (a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?);
    ((100..=599).contains(&a) && (100..=599).contains(&b) && a <= b).then_some((a, b))
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckInput {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub target: Option<String>,
    pub interval_s: Option<i64>,
    pub timeout_s: Option<i64>,
    pub failure_threshold: Option<i64>,
    pub recovery_threshold: Option<i64>,
    pub run_from: Option<String>,
    pub enabled: Option<bool>,
    pub labels: Option<BTreeMap<String, String>>,
    pub http: Option<HttpOptions>,
}

/// Validated fields.
#[derive(Clone, Debug)]
pub struct CheckFields {
    pub name: String,
    pub kind: String,
    pub target: String,
    pub interval_s: i64,
    pub timeout_s: i64,
    pub failure_threshold: i64,
    pub recovery_threshold: i64,
    pub enabled: bool,
    pub labels: BTreeMap<String, String>,
    pub http: HttpOptions,
}

const TYPES: &[&str] = &["http", "tcp", "icmp", "dns", "tls"];

fn validate_target(kind: &str, target: &str) -> Result<(), ApiError> {
    match kind {
        "http" => {
            let uri: ureq::http::Uri = target
                .parse()
                .map_err(|_| ApiError::field("target", format!("'{target}' is not a URL")))?;
            match uri.scheme_str() {
                Some("http") | Some("https") => {}
                _ => return Err(ApiError::field("target", "must start with http:// or https://")),
            }
            if uri.host().is_none_or(str::is_empty) {
                return Err(ApiError::field("target", "has no host"));
            }
            Ok(())
        }
        _ => {
            let (host, port) = target
                .rsplit_once(':')
                .ok_or_else(|| ApiError::field("target", "must be host:port"))?;
            if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(ApiError::field("target", "has no valid host before ':port'"));
            }
            match port.parse::<u32>() {
                Ok(p) if (1..=65535).contains(&p) => Ok(()),
                _ => Err(ApiError::field(
                    "target",
                    format!("port '{port}' is not 1 to 65535"),
                )),
            }
        }
    }
}

impl CheckInput {
    pub fn apply(self, base: Option<&Check>) -> Result<CheckFields, ApiError> {
        let pick_i = |v: Option<i64>, old: Option<i64>, default: i64| v.or(old).unwrap_or(default);
        let name = match (&self.name, base) {
            (Some(n), _) => crate::api::check_name("name", n, 100)?,
            (None, Some(b)) => b.name.clone(),
            (None, None) => return Err(ApiError::field("name", "is required")),
        };
        let kind = self
            .kind
            .clone()
            .or(base.map(|b| b.kind.clone()))
            .ok_or_else(|| ApiError::field("type", format!("is required: one of {}", TYPES.join(", "))))?;
        if !TYPES.contains(&kind.as_str()) {
            return Err(ApiError::field(
                "type",
                format!("'{kind}' is not one of {}", TYPES.join(", ")),
            ));
        }
        if !matches!(kind.as_str(), "http" | "tcp") {
            return Err(ApiError::field(
                "type",
                format!("'{kind}' checks are not available yet in this version (http and tcp are)"),
            ));
        }
        let target = self
            .target
            .clone()
            .or(base.map(|b| b.target.clone()))
            .ok_or_else(|| ApiError::field("target", "is required"))?;
        let target = target.trim().to_string();
        if target.len() > 2000 {
            return Err(ApiError::field("target", "must be at most 2000 bytes"));
        }
        validate_target(&kind, &target)?;
        match self.run_from.as_deref() {
            None | Some("server") => {}
            Some(_) => {
                return Err(ApiError::field(
                    "run_from",
                    "only 'server' is available yet in this version (agent-run checks are planned)",
                ))
            }
        }
        let interval_s = pick_i(self.interval_s, base.map(|b| b.interval_s), 60);
        if !(MIN_INTERVAL_S..=86_400).contains(&interval_s) {
            return Err(ApiError::field(
                "interval_s",
                format!("must be {MIN_INTERVAL_S} to 86400 seconds"),
            ));
        }
        let timeout_s = pick_i(self.timeout_s, base.map(|b| b.timeout_s), 10.min(interval_s));
        if !(1..=60).contains(&timeout_s) || timeout_s > interval_s {
            return Err(ApiError::field(
                "timeout_s",
                "must be 1 to 60 seconds and not above interval_s",
            ));
        }
        let failure_threshold = pick_i(self.failure_threshold, base.map(|b| b.failure_threshold), 2);
        if !(1..=100).contains(&failure_threshold) {
            return Err(ApiError::field("failure_threshold", "must be 1 to 100"));
        }
        let recovery_threshold = pick_i(self.recovery_threshold, base.map(|b| b.recovery_threshold), 1);
        if !(1..=100).contains(&recovery_threshold) {
            return Err(ApiError::field("recovery_threshold", "must be 1 to 100"));
        }
        let http = self.http.or(base.map(|b| b.http.clone())).unwrap_or_default();
        if let Some(m) = &http.method {
            if !["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"].contains(&m.as_str()) {
                return Err(ApiError::field(
                    "http.method",
                    format!("'{m}' is not an HTTP method (upper case)"),
                ));
            }
        }
        for (i, r) in http.expected_status.iter().enumerate() {
            if status_range(r).is_none() {
                return Err(ApiError::field(
                    &format!("http.expected_status[{i}]"),
                    format!("'{r}' is not a status (200) or a range (200-399)"),
                ));
            }
        }
        for (k, v) in &http.headers {
            let bad = |c: char| c.is_control();
            if k.is_empty() || k.chars().any(|c| bad(c) || c == ':' || c == ' ') || v.chars().any(bad) {
                return Err(ApiError::field(
                    &format!("http.headers.{k}"),
                    "is not a valid header",
                ));
            }
        }
        let labels = self.labels.or(base.map(|b| b.labels.clone())).unwrap_or_default();
        for k in labels.keys() {
            crate::api::check_name("labels", k, 64)?;
        }
        Ok(CheckFields {
            name,
            kind,
            target,
            interval_s,
            timeout_s,
            failure_threshold,
            recovery_threshold,
            enabled: self.enabled.or(base.map(|b| b.enabled)).unwrap_or(true),
            labels,
            http,
        })
    }
}

fn alert_key(id: i64) -> String {
    crate::engine::alerts::key("check", "check", &format!("ck{id}"), "")
}

/// Records a result and moves the check: `failure_threshold` failures in
/// a row take it down, `recovery_threshold` successes bring it up, each
/// once, through the alert engine.
pub fn record(ctx: &mut Ctx, id: i64, r: &CheckResult) -> rusqlite::Result<Option<Check>> {
    let Some(mut c) = ctx.store.check(id)? else {
        return Ok(None);
    };
    let old = c.status.clone();
    if r.ok {
        c.successes += 1;
        c.fails = 0;
        if c.status != "up" && c.successes >= c.recovery_threshold {
            c.status = "up".into();
        }
    } else {
        c.fails += 1;
        c.successes = 0;
        if c.status != "down" && c.fails >= c.failure_threshold {
            c.status = "down".into();
        }
    }
    ctx.store.record_check_result(&c, r)?;
    if c.status != old && (c.status == "down" || old == "down") {
        sync_alert(ctx, &c, c.status == "down", r.error.as_deref(), r.at)?;
    }
    Ok(Some(c))
}

/// Opens (down) or resolves the check's alert of kind `check`.
pub fn sync_alert(
    ctx: &mut Ctx,
    c: &Check,
    down: bool,
    error: Option<&str>,
    at: i64,
) -> rusqlite::Result<()> {
    let settings = ctx.alert_settings();
    let sid = c.id.to_string();
    let cond = Condition {
        key: alert_key(c.id),
        kind: "check",
        source_id: &sid,
        node_id: None,
        labels: &c.labels,
        severity: down.then_some(Severity::Critical),
        value: None,
        message: if down {
            format!(
                "check '{}' ({}) is down: {}",
                c.name,
                c.target,
                error.unwrap_or("failed")
            )
        } else {
            format!("check '{}' ({}) is up again", c.name, c.target)
        },
    };
    let Ctx { store, alerting, .. } = ctx;
    alerting.set_condition(store, &cond, &settings, at)?;
    ctx.wake_outbox();
    Ok(())
}

/// The scheduler's queue: (due time, check id).
#[derive(Default)]
pub struct Schedule {
    heap: BinaryHeap<Reverse<(i64, i64)>>,
    wake: Option<async_channel::Sender<()>>,
    /// How late the last runs started, seconds (for the lag figure).
    pub lag_s: Vec<i64>,
}

impl Schedule {
    pub fn new() -> (Schedule, async_channel::Receiver<()>) {
        let (tx, rx) = async_channel::bounded(1);
        (
            Schedule {
                wake: Some(tx),
                ..Default::default()
            },
            rx,
        )
    }

    /// First run: spread over the interval by id, so checks created together
    /// do not all fire at the same second.
    pub fn add(&mut self, c: &Check, now: i64) {
        if c.enabled {
            let offset = (c.id.wrapping_mul(2_654_435_761)).rem_euclid(c.interval_s.max(1));
            self.heap
                .push(Reverse((now + offset.min(c.interval_s - 1).max(0), c.id)));
            if let Some(w) = &self.wake {
                let _ = w.try_send(());
            }
        }
    }
}

/// The scheduler task: pops due checks, runs them on the blocking pool
/// (at most PARALLEL at once), records results, and queues the next run.
pub async fn run(shared: Shared, wake: async_channel::Receiver<()>) {
    {
        let mut ctx = shared.borrow_mut();
        let now = crate::clock::now();
        match ctx.store.checks() {
            Ok(all) => {
                for c in &all {
                    ctx.schedule.add(c, now);
                }
            }
            Err(e) => log::error!("loading checks: {e}"),
        }
    }
    let (done_tx, done_rx) = async_channel::unbounded::<(i64, CheckResult)>();
    let mut running: std::collections::HashSet<i64> = Default::default();
    loop {
        let next = shared.borrow().schedule.heap.peek().map(|Reverse((t, _))| *t);
        // With every slot busy only a result can make progress: wait for one.
        let wait = match next {
            _ if running.len() >= PARALLEL => 3600,
            Some(t) => (t - crate::clock::now()).clamp(0, 3600),
            None => 3600,
        };
        let finished = smol::future::or(
            async { done_rx.recv().await.ok() },
            smol::future::or(
                async {
                    let _ = wake.recv().await;
                    None
                },
                async {
                    async_io::Timer::after(Duration::from_secs(wait as u64)).await;
                    None
                },
            ),
        )
        .await;
        if let Some((id, r)) = finished {
            running.remove(&id);
            let mut ctx = shared.borrow_mut();
            match record(&mut ctx, id, &r) {
                Ok(Some(c)) if c.enabled => {
                    ctx.schedule.heap.push(Reverse((r.at + c.interval_s, c.id)));
                }
                Ok(_) => {}
                Err(e) => log::error!("recording check {id}: {e}"),
            }
        }
        let now = crate::clock::now();
        let mut ctx = shared.borrow_mut();
        // Start what is due while there is room; the rest waits for a result.
        while running.len() < PARALLEL {
            let Some(Reverse((t, id))) = ctx.schedule.heap.peek().copied() else {
                break;
            };
            if t > now {
                break;
            }
            ctx.schedule.heap.pop();
            let Ok(Some(c)) = ctx.store.check(id) else {
                continue;
            };
            if !c.enabled || !running.insert(id) {
                continue;
            }
            ctx.schedule.lag_s.push(now - t);
            let done = done_tx.clone();
            smol::unblock(move || {
                let r = probe::run(&c);
                let _ = done.send_blocking((c.id, r));
            })
            .detach();
        }
        let n = ctx.schedule.lag_s.len();
        if n > 10_000 {
            ctx.schedule.lag_s.drain(..n - 1000);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_ranges() {
        assert_eq!(status_range("200"), Some((200, 200)));
        assert_eq!(status_range("200-399"), Some((200, 399)));
        assert_eq!(status_range("399-200"), None);
        assert_eq!(status_range("2xx"), None);
        assert_eq!(status_range("99"), None);
    }

    #[test]
    fn defaults_and_field_names() {
        let ok: CheckInput =
            serde_json::from_str(r#"{"name":"web","type":"http","target":"https://example.lan/health"}"#)
                .unwrap();
        let f = ok.apply(None).unwrap();
        assert_eq!(
            (
                f.interval_s,
                f.timeout_s,
                f.failure_threshold,
                f.recovery_threshold
            ),
            (60, 10, 2, 1)
        );
        assert!(f.http.follow_redirects && f.http.verify_tls);
        let bad = |json: &str| {
            let i: CheckInput = serde_json::from_str(json).unwrap();
            i.apply(None).unwrap_err().message
        };
        assert!(bad(r#"{"name":"a","type":"tcp","target":"h:0"}"#).contains("'target'"));
        assert!(
            bad(r#"{"name":"a","type":"tcp","target":"h:22","interval_s":20,"timeout_s":30}"#)
                .contains("'timeout_s'")
        );
        assert!(bad(r#"{"name":"a","type":"http","target":"ftp://h/"}"#).contains("'target'"));
        assert!(
            bad(r#"{"name":"a","type":"http","target":"http://h/","http":{"method":"get"}}"#)
                .contains("'http.method'")
        );
    }
}
