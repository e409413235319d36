//! Checks: what a check is (validation), one run (`probe`, shared with the
//! agent), the certificate monitor (`cert`), and the scheduler that runs
//! server checks spread over their interval, off the executor thread, and
//! turns consecutive failures and successes into down/up with alerts of
//! kind `check` (and `certificate` for expiring or invalid certificates).
//!
//! Agent-run checks (`run_from` = a node id) are handed to that agent in
//! its ingest reply and their results come back through
//! `POST /api/v1/agent/check-results`; the scheduler only watches that
//! they keep coming, and reports the check `unknown` when they stop.

pub mod cert;
pub mod probe;

use crate::app::{Ctx, Shared};
use crate::engine::alerts::rules::Severity;
use crate::engine::alerts::Condition;
use crate::http::ApiError;
use crate::store::checks::{Check, CheckResult};
pub use cairn_wire::{status_range, DnsOptions, HttpOptions, IcmpOptions};
use cert::CertOptions;
use serde::Deserialize;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::time::Duration;

pub const MIN_INTERVAL_S: i64 = 10;
/// Checks running at once (each holds a blocking-pool thread for at most its timeout).
const PARALLEL: usize = 16;

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
    pub dns: Option<DnsOptions>,
    pub icmp: Option<IcmpOptions>,
    pub certificate: Option<CertOptions>,
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
    pub run_from: String,
    pub http: HttpOptions,
    pub dns: DnsOptions,
    pub icmp: IcmpOptions,
    pub certificate: CertOptions,
}

const TYPES: &[&str] = &["http", "tcp", "icmp", "dns", "tls"];

/// A host name or an IP address (IPv6 with or without brackets).
fn valid_host(host: &str) -> bool {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !bare.is_empty()
        && bare.len() <= 253
        && bare.split('.').enumerate().all(|(i, l)| {
            (!l.is_empty() || i > 0)
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

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
        "icmp" | "dns" => {
            if valid_host(target) {
                Ok(())
            } else {
                Err(ApiError::field(
                    "target",
                    format!("'{target}' is not a host name or IP address (no port, no scheme)"),
                ))
            }
        }
        _ => {
            let (host, port) = target
                .rsplit_once(':')
                .ok_or_else(|| ApiError::field("target", "must be host:port"))?;
            if !valid_host(host) {
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
    /// `node_exists` answers for `run_from` node ids.
    pub fn apply(
        self,
        base: Option<&Check>,
        node_exists: impl Fn(&str) -> bool,
    ) -> Result<CheckFields, ApiError> {
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
        let run_from = self
            .run_from
            .clone()
            .or(base.map(|b| b.run_from.clone()))
            .unwrap_or_else(|| "server".into());
        if run_from != "server" && !node_exists(&run_from) {
            return Err(ApiError::field(
                "run_from",
                format!("'{run_from}' is neither 'server' nor the id of a node"),
            ));
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
        let dns = self.dns.or(base.map(|b| b.dns.clone())).unwrap_or_default();
        match dns.record_type.as_deref() {
            None | Some("A") | Some("AAAA") | Some("any") => {}
            Some(t) => {
                return Err(ApiError::field(
                    "dns.record_type",
                    format!("'{t}' is not A, AAAA or any"),
                ))
            }
        }
        for (i, e) in dns.expected.iter().enumerate() {
            let ok = match (e.parse::<std::net::IpAddr>(), dns.record_type.as_deref()) {
                (Ok(ip), Some("A")) => ip.is_ipv4(),
                (Ok(ip), Some("AAAA")) => ip.is_ipv6(),
                (Ok(_), _) => true,
                (Err(_), _) => false,
            };
            if !ok || dns.expected.len() > 32 {
                return Err(ApiError::field(
                    &format!("dns.expected[{i}]"),
                    format!("'{e}' is not an address of the record type (at most 32)"),
                ));
            }
        }
        let icmp = self.icmp.or(base.map(|b| b.icmp.clone())).unwrap_or_default();
        if !(1..=10).contains(&icmp.count) {
            return Err(ApiError::field("icmp.count", "must be 1 to 10"));
        }
        let certificate = self
            .certificate
            .or(base.map(|b| b.certificate.clone()))
            .unwrap_or_default();
        if !(0..=365).contains(&certificate.critical_days) {
            return Err(ApiError::field("certificate.critical_days", "must be 0 to 365"));
        }
        if !(certificate.critical_days..=365).contains(&certificate.warning_days) {
            return Err(ApiError::field(
                "certificate.warning_days",
                "must be at least critical_days and at most 365",
            ));
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
            run_from,
            http,
            dns,
            icmp,
            certificate,
        })
    }
}

fn alert_key(id: i64) -> String {
    crate::engine::alerts::key("check", "check", &format!("ck{id}"), "")
}

fn cert_alert_key(id: i64) -> String {
    crate::engine::alerts::key("certificate", "certificate", &format!("ck{id}"), "")
}

/// Records a result and moves the check: `failure_threshold` failures in
/// a row take it down, `recovery_threshold` successes bring it up, each
/// once, through the alert engine. A certificate in the result goes to the
/// certificate monitor.
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
    if let Some(info) = &r.cert {
        let chain_matters = c.kind == "tls" || c.http.verify_tls;
        let verdict = cert::verdict(info, &c.certificate, chain_matters);
        sync_cert_alert(ctx, &c, verdict, r.at)?;
    }
    Ok(Some(c))
}

/// Records several results in one transaction (one disk sync for a batch:
/// a scheduler tick's results, or an agent's report). Each result still
/// succeeds or fails on its own, inside it.
pub fn record_all(ctx: &mut Ctx, items: &[(i64, CheckResult)]) -> rusqlite::Result<Vec<Option<Check>>> {
    ctx.store.conn.execute_batch("BEGIN IMMEDIATE")?;
    let mut out = Vec::with_capacity(items.len());
    for (id, r) in items {
        match record(ctx, *id, r) {
            Ok(c) => out.push(c),
            Err(e) => {
                log::error!("recording a result of check {id}: {e}");
                out.push(None);
            }
        }
    }
    if let Err(e) = ctx.store.conn.execute_batch("COMMIT") {
        let _ = ctx.store.conn.execute_batch("ROLLBACK");
        return Err(e);
    }
    Ok(out)
}

/// Opens (down) or resolves the check's alert of kind `check`.
pub fn sync_alert(
    ctx: &mut Ctx,
    c: &Check,
    down: bool,
    error: Option<&str>,
    at: i64,
) -> rusqlite::Result<()> {
    let message = if down {
        format!(
            "check '{}' ({}) is down: {}",
            c.name,
            c.target,
            error.unwrap_or("failed")
        )
    } else {
        match error {
            Some(why) => format!("check '{}' ({}) is unknown: {why}", c.name, c.target),
            None => format!("check '{}' ({}) is up again", c.name, c.target),
        }
    };
    let severity = down.then_some(Severity::Critical);
    condition(ctx, c, alert_key(c.id), "check", severity, message, at)
}

/// Opens, changes or resolves the check's alert of kind `certificate`.
pub fn sync_cert_alert(
    ctx: &mut Ctx,
    c: &Check,
    verdict: Option<(Severity, String)>,
    at: i64,
) -> rusqlite::Result<()> {
    let (severity, message) = match verdict {
        Some((s, m)) => (Some(s), format!("check '{}': {m}", c.name)),
        None => (None, format!("check '{}': the certificate is fine again", c.name)),
    };
    condition(ctx, c, cert_alert_key(c.id), "certificate", severity, message, at)
}

fn condition(
    ctx: &mut Ctx,
    c: &Check,
    key: String,
    kind: &'static str,
    severity: Option<Severity>,
    message: String,
    at: i64,
) -> rusqlite::Result<()> {
    let settings = ctx.alert_settings();
    let sid = c.id.to_string();
    let cond = Condition {
        key,
        kind,
        source_id: &sid,
        node_id: c.agent_node(),
        labels: &c.labels,
        severity,
        value: None,
        message,
    };
    let Ctx { store, alerting, .. } = ctx;
    alerting.set_condition(store, &cond, &settings, at)?;
    ctx.wake_outbox();
    Ok(())
}

/// Removes a check's open alerts (before it is deleted).
pub fn resolve_alerts(ctx: &mut Ctx, c: &Check, at: i64) -> rusqlite::Result<()> {
    sync_alert(ctx, c, false, None, at)?;
    sync_cert_alert(ctx, c, None, at)
}

/// Deletes the checks run by `node_id`'s agent (the node is going away),
/// resolving their alerts first.
pub fn forget_node(ctx: &mut Ctx, node_id: &str) -> rusqlite::Result<()> {
    let now = crate::clock::now();
    let all = ctx.store.checks()?;
    for c in all.iter().filter(|c| c.agent_node() == Some(node_id)) {
        resolve_alerts(ctx, c, now)?;
        ctx.store.delete_check(c.id)?;
        log::info!("check {} ({}) deleted with node {node_id}", c.id, c.name);
    }
    let all = ctx.store.checks()?;
    ctx.schedule.refresh_agent_checks(&all);
    Ok(())
}

/// The maintenance window that covers the check now, if any: a window for
/// every node, for the check's agent node, or whose labels the check has.
pub fn maintenance(windows: &[crate::engine::suppress::Window], c: &Check, now: i64) -> Option<i64> {
    windows
        .iter()
        .find(|w| w.active_at(now) && w.covers(c.agent_node(), &c.labels))
        .map(|w| w.id)
}

/// What the agent on `node_id` should run: its enabled checks outside
/// maintenance. Answered from a cache the API refreshes on check changes.
pub fn probes_for(ctx: &Ctx, node_id: &str) -> Vec<cairn_wire::ProbeSpec> {
    let Some(list) = ctx.schedule.agent_checks.get(node_id).filter(|l| !l.is_empty()) else {
        return Vec::new();
    };
    let now = crate::clock::now();
    let windows = ctx.store.windows().unwrap_or_default();
    list.iter()
        .filter(|c| maintenance(&windows, c, now).is_none())
        .map(probe::spec)
        .collect()
}

/// The scheduler's queue: (due time, check id).
#[derive(Default)]
pub struct Schedule {
    heap: BinaryHeap<Reverse<(i64, i64)>>,
    wake: Option<async_channel::Sender<()>>,
    /// How late the last runs started, milliseconds (for the lag figure).
    pub lag_ms: Vec<i64>,
    /// Enabled agent-run checks by node id (for ingest replies).
    pub agent_checks: HashMap<String, Vec<Check>>,
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
    /// do not all fire at the same second. For an agent-run check this is
    /// the first look at whether its results arrive.
    pub fn add(&mut self, c: &Check, now: i64) {
        if c.enabled {
            let offset = (c.id.wrapping_mul(2_654_435_761)).rem_euclid(c.interval_s.max(1));
            let first = match c.agent_node() {
                None => now + offset.min(c.interval_s - 1).max(0),
                Some(_) => now + c.interval_s,
            };
            self.heap.push(Reverse((first, c.id)));
            if let Some(w) = &self.wake {
                let _ = w.try_send(());
            }
        }
    }

    /// Rebuilds the agent-run map after a check changed.
    pub fn refresh_agent_checks(&mut self, all: &[Check]) {
        self.agent_checks.clear();
        for c in all.iter().filter(|c| c.enabled) {
            if let Some(node) = c.agent_node() {
                self.agent_checks
                    .entry(node.to_string())
                    .or_default()
                    .push(c.clone());
            }
        }
    }
}

/// Without a result for this long an agent-run check is "unknown": two
/// of its intervals plus two of the agent's reporting intervals (the probe
/// list reaches the agent with an ingest reply) and a little slack.
fn stale_after(c: &Check, agent_interval_s: i64) -> i64 {
    2 * c.interval_s + 2 * agent_interval_s + 5
}

/// An agent-run check's turn: no result for too long → unknown.
fn watch_agent_check(ctx: &mut Ctx, c: &Check, now: i64) -> rusqlite::Result<()> {
    let limit = stale_after(c, ctx.cfg.interval_s.into());
    let quiet = c.last_at().is_none_or(|t| now - t >= limit);
    if quiet && c.status != "unknown" {
        let why = format!("no result from the agent on node {} for {limit} s", c.run_from);
        log::info!("check {} ({}): {why}; status unknown", c.id, c.name);
        ctx.store.set_check_status(c.id, "unknown")?;
        if c.status == "down" {
            sync_alert(ctx, c, false, Some(&why), now)?;
        }
    }
    Ok(())
}

/// The scheduler task: pops due checks, runs server checks on the blocking
/// pool (at most PARALLEL at once), records results, watches agent-run
/// checks, skips checks in maintenance, and queues the next turn.
pub async fn run(shared: Shared, wake: async_channel::Receiver<()>) {
    {
        let mut ctx = shared.borrow_mut();
        let now = crate::clock::now();
        match ctx.store.checks() {
            Ok(all) => {
                for c in &all {
                    ctx.schedule.add(c, now);
                }
                ctx.schedule.refresh_agent_checks(&all);
            }
            Err(e) => log::error!("loading checks: {e}"),
        }
    }
    let (done_tx, done_rx) = async_channel::unbounded::<(i64, CheckResult)>();
    let mut running: std::collections::HashSet<i64> = Default::default();
    // Results wait up to the commit window and are written together.
    let mut batch: Vec<(i64, CheckResult)> = Vec::new();
    let mut flush_at_ms: Option<i64> = None;
    loop {
        let next = shared.borrow().schedule.heap.peek().map(|Reverse((t, _))| *t);
        let now_ms = crate::clock::now_ms();
        // With every slot busy only a result can make progress: wait for one.
        let mut wait_ms = match next {
            _ if running.len() >= PARALLEL => 3_600_000,
            Some(t) => (t * 1000 - now_ms).clamp(0, 3_600_000),
            None => 3_600_000,
        };
        if let Some(f) = flush_at_ms {
            wait_ms = wait_ms.min((f - now_ms).max(0));
        }
        let finished =
            crate::engine::timers::next_done(&done_rx, &wake, Duration::from_millis(wait_ms as u64)).await;
        if let Some(first) = finished {
            let window = shared.borrow().cfg.commit_window_ms as i64;
            flush_at_ms.get_or_insert(crate::clock::now_ms() + window);
            for (id, r) in std::iter::once(first).chain(std::iter::from_fn(|| done_rx.try_recv().ok())) {
                running.remove(&id);
                batch.push((id, r));
            }
        }
        if flush_at_ms.is_some_and(|f| crate::clock::now_ms() >= f) {
            flush_at_ms = None;
            let items = std::mem::take(&mut batch);
            let mut ctx = shared.borrow_mut();
            match record_all(&mut ctx, &items) {
                Ok(checks) => {
                    for ((_, r), c) in items.iter().zip(checks) {
                        if let Some(c) = c.filter(|c| c.enabled && c.agent_node().is_none()) {
                            ctx.schedule.heap.push(Reverse((r.at + c.interval_s, c.id)));
                        }
                    }
                }
                Err(e) => {
                    log::error!("recording {} check result(s): {e}", items.len());
                    // Their next runs still happen.
                    for (id, r) in &items {
                        ctx.schedule.heap.push(Reverse((r.at + 60, *id)));
                    }
                }
            }
        }
        let now_ms = crate::clock::now_ms();
        let now = now_ms / 1000;
        let mut ctx = shared.borrow_mut();
        let mut windows = None;
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
            if !c.enabled || running.contains(&id) {
                continue;
            }
            if c.agent_node().is_some() {
                if let Err(e) = watch_agent_check(&mut ctx, &c, now) {
                    log::error!("check {id}: {e}");
                }
                ctx.schedule.heap.push(Reverse((now + c.interval_s, id)));
                continue;
            }
            let windows = windows.get_or_insert_with(|| ctx.store.windows().unwrap_or_default());
            if maintenance(windows, &c, now).is_some() {
                log::debug!("check {id} skipped: maintenance");
                ctx.schedule.heap.push(Reverse((now + c.interval_s, id)));
                continue;
            }
            running.insert(id);
            ctx.schedule.lag_ms.push(now_ms - t * 1000);
            let done = done_tx.clone();
            smol::unblock(move || {
                let r = probe::run(&c);
                let _ = done.send_blocking((c.id, r));
            })
            .detach();
        }
        let n = ctx.schedule.lag_ms.len();
        if n > 10_000 {
            ctx.schedule.lag_ms.drain(..n - 1000);
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
        let f = ok.apply(None, |_| false).unwrap();
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
            i.apply(None, |n| n == "node1").unwrap_err().message
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
