//! The alert engine. Every committed snapshot becomes signals (cpu, disk per
//! mount, ...); each signal runs through the state machine in `evaluate`
//! against the node's effective thresholds (`rules`); what changes is
//! written in one transaction together with the outbox rows of the
//! notifications it causes, so a notification is never lost and never
//! sent for an alert that was not stored. A timer handles what no snapshot
//! announces: nodes going silent, and suppressions that ended.
//!
//! Later signal kinds (checks, heartbeats, containers) enter through
//! `Alerting::observe_signals` with their own kind and source id.

pub mod evaluate;
pub mod rules;

use crate::config::Config;
use crate::engine::ingest::Item;
use crate::engine::notify::Event;
use crate::engine::suppress::{self, Subject};
use crate::store::alerts::{Alert, NewAlert, SeverityChange};
use crate::store::nodes::NodeMeta;
use crate::store::Store;
use evaluate::{Decision, FlapGuard, Track};
use rules::{Effective, Rule, Severity};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

/// Alert kinds that exist today.
pub const KINDS: &[&str] = &["metric", "offline"];

/// One value to evaluate.
#[derive(Clone, Debug)]
pub struct Signal {
    pub kind: &'static str,
    pub metric: &'static str,
    pub instance: String,
    pub value: f64,
}

/// An open alert as the engine remembers it.
#[derive(Clone, Debug)]
struct Open {
    id: i64,
    severity: Severity,
    flapping: bool,
    suppressed: bool,
    notified: bool,
    node_id: Option<String>,
}

struct NodeInfo {
    meta: NodeMeta,
    effective: Vec<Effective>,
}

/// Settings read from the config at each call (SIGHUP reloads them).
#[derive(Clone, Debug)]
pub struct Settings {
    pub guard: FlapGuard,
    pub base_url: String,
}

impl Settings {
    pub fn of(cfg: &Config) -> Settings {
        Settings {
            guard: FlapGuard {
                max_transitions: cfg.flap_max_transitions,
                window_s: cfg.flap_window_s,
            },
            base_url: cfg.public_url(),
        }
    }
}

#[derive(Default)]
pub struct Alerting {
    loaded: bool,
    rules: Option<Rc<Vec<Rule>>>,
    nodes: HashMap<String, Rc<NodeInfo>>,
    open: HashMap<String, Open>,
    tracks: HashMap<String, Track>,
    /// Set when outbox rows were written; the caller wakes the outbox.
    pub outbox_dirty: bool,
}

/// What evaluation decided for one signal.
struct Change {
    key: String,
    decision: Decision,
    node_id: String,
    signal: Signal,
    eff: Effective,
    ts: i64,
}

pub fn key(kind: &str, metric: &str, node_id: &str, instance: &str) -> String {
    format!("{kind}:{metric}:{node_id}:{instance}")
}

fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// One line a person reads in a notification.
fn describe(
    sig_metric: &str,
    instance: &str,
    node: &str,
    value: Option<f64>,
    sev: Severity,
    threshold: Option<f64>,
    resolved: bool,
) -> String {
    let unit = rules::metric(sig_metric).map(|d| d.unit).unwrap_or("");
    let unit = if unit.is_empty() || unit == "intervals" {
        String::new()
    } else if unit == "%" {
        "%".into()
    } else {
        format!(" {unit}")
    };
    let what = if instance.is_empty() {
        format!("{sig_metric} on {node}")
    } else {
        format!("{sig_metric} {instance} on {node}")
    };
    let v = value.map(fmt_value).unwrap_or_else(|| "unknown".into());
    let t = threshold.map(fmt_value).unwrap_or_default();
    match (sig_metric, resolved) {
        ("node_offline", false) => format!(
            "{node} has sent nothing for {v} intervals ({} at ≥ {t})",
            sev.as_str()
        ),
        ("node_offline", true) => format!("{node} is reporting again"),
        (_, false) => format!("{what} is {v}{unit} ({} at ≥ {t}{unit})", sev.as_str()),
        (_, true) => format!("{what} is back to {v}{unit}"),
    }
}

impl Alerting {
    /// Forget cached rules and nodes (after a rule, node or label change).
    pub fn invalidate(&mut self) {
        self.rules = None;
        self.nodes.clear();
    }

    /// A deleted node's alerts went with it (ON DELETE CASCADE).
    pub fn forget_node(&mut self, node_id: &str) {
        self.nodes.remove(node_id);
        self.open.retain(|_, o| o.node_id.as_deref() != Some(node_id));
        let prefix = format!(":{node_id}:");
        self.tracks.retain(|k, _| !k.contains(&prefix));
    }

    fn load(&mut self, store: &Store) -> rusqlite::Result<()> {
        if self.loaded {
            return Ok(());
        }
        for a in store.open_alerts()? {
            let Some(severity) = Severity::parse(&a.severity) else {
                continue;
            };
            self.open.insert(
                a.key.clone(),
                Open {
                    id: a.id,
                    severity,
                    flapping: a.flapping,
                    suppressed: a.suppressed.is_some(),
                    notified: a.notified,
                    node_id: a.node_id,
                },
            );
        }
        self.loaded = true;
        Ok(())
    }

    fn rules(&mut self, store: &Store) -> rusqlite::Result<Rc<Vec<Rule>>> {
        if let Some(r) = &self.rules {
            return Ok(r.clone());
        }
        let r = Rc::new(store.rules()?);
        self.rules = Some(r.clone());
        Ok(r)
    }

    fn node(&mut self, store: &Store, node_id: &str) -> rusqlite::Result<Option<Rc<NodeInfo>>> {
        if let Some(n) = self.nodes.get(node_id) {
            return Ok(Some(n.clone()));
        }
        let rules = self.rules(store)?;
        // One query fills every node: the cache is dropped as a whole.
        for meta in store.node_metas()? {
            let effective = rules::effective(&rules, &meta.id, &meta.labels);
            self.nodes
                .insert(meta.id.clone(), Rc::new(NodeInfo { meta, effective }));
        }
        Ok(self.nodes.get(node_id).cloned())
    }

    /// Effective thresholds of a node (for `/alert-rules/effective`).
    pub fn effective_for(
        &mut self,
        store: &Store,
        node_id: &str,
    ) -> rusqlite::Result<Option<Vec<Effective>>> {
        Ok(self.node(store, node_id)?.map(|n| n.effective.clone()))
    }

    /// The signals in one snapshot.
    pub fn signals_of(item: &Item) -> Vec<Signal> {
        let v = &item.sample.values;
        let mut out = Vec::with_capacity(10 + item.disks.len());
        let mut push = |metric: &'static str, value: Option<f64>| {
            if let Some(value) = value.filter(|x| x.is_finite()) {
                out.push(Signal {
                    kind: "metric",
                    metric,
                    instance: String::new(),
                    value,
                });
            }
        };
        push("cpu", v[0]);
        push("memory", v[1]);
        push("swap", v[2]);
        push("load", v[3]);
        push(
            "load_per_core",
            v[3].filter(|_| item.cores > 0).map(|l| l / item.cores as f64),
        );
        push("temperature", v[7]);
        push("net_rx", v[8]);
        push("net_tx", v[9]);
        for d in &item.disks {
            out.push(Signal {
                kind: "metric",
                metric: "disk",
                instance: d.mount.clone(),
                value: d.used_percent,
            });
        }
        // A snapshot means the node is online.
        out.push(Signal {
            kind: "offline",
            metric: "node_offline",
            instance: String::new(),
            value: 0.0,
        });
        out
    }

    /// Evaluates a node's committed snapshot.
    pub fn observe(
        &mut self,
        store: &mut Store,
        node_id: &str,
        item: &Item,
        s: &Settings,
        now: i64,
    ) -> rusqlite::Result<()> {
        let signals = Alerting::signals_of(item);
        // A mount that is no longer reported cannot clear its alert by itself.
        let mounts: Vec<&str> = item.disks.iter().map(|d| d.mount.as_str()).collect();
        let gone: Vec<String> = self
            .open
            .keys()
            .filter(|k| {
                k.strip_prefix(&format!("metric:disk:{node_id}:"))
                    .is_some_and(|m| !mounts.contains(&m))
            })
            .cloned()
            .collect();
        let mut changes = self.evaluate(store, node_id, &signals, item.ts, s)?;
        for k in gone {
            if let Some(eff) = self
                .node(store, node_id)?
                .and_then(|n| n.effective.iter().find(|e| e.metric == "disk").cloned())
            {
                let instance = k.rsplit_once(':').map(|(_, i)| i.to_string()).unwrap_or_default();
                changes.push(Change {
                    key: k,
                    decision: Decision::Resolve,
                    node_id: node_id.to_string(),
                    signal: Signal {
                        kind: "metric",
                        metric: "disk",
                        instance,
                        value: f64::NAN,
                    },
                    eff,
                    ts: item.ts,
                });
            }
        }
        self.apply(store, changes, s, now)
    }

    /// Evaluates signals that do not come from a snapshot (later: check
    /// results, heartbeat deadlines) and writes what changes.
    pub fn observe_signals(
        &mut self,
        store: &mut Store,
        node_id: &str,
        signals: &[Signal],
        ts: i64,
        s: &Settings,
        now: i64,
    ) -> rusqlite::Result<()> {
        let changes = self.evaluate(store, node_id, signals, ts, s)?;
        self.apply(store, changes, s, now)
    }

    /// Evaluates signals of a node at `ts`; no writes.
    fn evaluate(
        &mut self,
        store: &Store,
        node_id: &str,
        signals: &[Signal],
        ts: i64,
        s: &Settings,
    ) -> rusqlite::Result<Vec<Change>> {
        self.load(store)?;
        let Some(node) = self.node(store, node_id)? else {
            return Ok(Vec::new());
        };
        let mut changes = Vec::new();
        for sig in signals {
            let Some(eff) = node.effective.iter().find(|e| e.metric == sig.metric) else {
                continue;
            };
            let key = key(sig.kind, sig.metric, node_id, &sig.instance);
            let open = self.open.get(&key);
            if open.is_none() && !eff.any_enabled() {
                continue;
            }
            let (open_sev, flapping) = open.map_or((None, false), |o| (Some(o.severity), o.flapping));
            let track = self.tracks.entry(key.clone()).or_default();
            let decision = evaluate::step(eff, open_sev, flapping, track, sig.value, ts, s.guard);
            if decision != Decision::Nothing {
                changes.push(Change {
                    key,
                    decision,
                    node_id: node_id.to_string(),
                    signal: sig.clone(),
                    eff: eff.clone(),
                    ts,
                });
            }
        }
        Ok(changes)
    }

    /// The offline check and suppression changes; run on a timer.
    pub fn tick(&mut self, store: &mut Store, s: &Settings, now: i64) -> rusqlite::Result<()> {
        self.load(store)?;
        let metas = store.node_metas()?;
        let mut changes = Vec::new();
        for meta in &metas {
            let Some(last) = store.latest(&meta.id).map(|l| l.ts) else {
                continue;
            };
            let missed = (now - last).max(0) as f64 / meta.interval_s.max(1) as f64;
            let sig = Signal {
                kind: "offline",
                metric: "node_offline",
                instance: String::new(),
                value: (missed * 10.0).floor() / 10.0,
            };
            changes.extend(self.evaluate(store, &meta.id, std::slice::from_ref(&sig), now, s)?);
        }
        self.apply(store, changes, s, now)?;
        self.release_suppressed(store, s, now)
    }

    /// Open alerts held back by a window or silence that has since ended
    /// are notified now, as they would have been.
    fn release_suppressed(&mut self, store: &mut Store, s: &Settings, now: i64) -> rusqlite::Result<()> {
        let held: Vec<(String, i64)> = self
            .open
            .iter()
            .filter(|(_, o)| o.suppressed && !o.notified)
            .map(|(k, o)| (k.clone(), o.id))
            .collect();
        if held.is_empty() {
            return Ok(());
        }
        let (windows, silences) = (store.windows()?, store.silences(now, true)?);
        let tx = store.conn.unchecked_transaction()?;
        for (key, id) in held {
            let Some(alert) = store.alert(id)? else { continue };
            let labels = self.labels_of(store, alert.node_id.as_deref())?;
            if suppress::suppressed_by(&windows, &silences, now, &subject(&alert, &labels)).is_some() {
                continue;
            }
            store.set_alert_suppressed(id, None)?;
            store.add_alert_event(id, now, "unsuppressed", None, None, None, None)?;
            self.notify(store, &alert, "fired", s, now)?;
            store.set_alert_notified(id)?;
            if let Some(o) = self.open.get_mut(&key) {
                o.suppressed = false;
                o.notified = true;
            }
        }
        tx.commit()
    }

    fn labels_of(
        &mut self,
        store: &Store,
        node_id: Option<&str>,
    ) -> rusqlite::Result<BTreeMap<String, String>> {
        Ok(match node_id {
            Some(n) => self
                .node(store, n)?
                .map(|n| n.meta.labels.clone())
                .unwrap_or_default(),
            None => BTreeMap::new(),
        })
    }

    /// Writes changes and their notifications in one transaction.
    fn apply(
        &mut self,
        store: &mut Store,
        changes: Vec<Change>,
        s: &Settings,
        now: i64,
    ) -> rusqlite::Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let (windows, silences) = (store.windows()?, store.silences(now, true)?);
        let tx = store.conn.unchecked_transaction()?;
        for c in changes {
            let node = self.node(store, &c.node_id)?;
            let node_name = node.as_ref().map_or(c.node_id.clone(), |n| n.meta.name.clone());
            let labels = node.as_ref().map(|n| n.meta.labels.clone()).unwrap_or_default();
            let sig = &c.signal;
            let value = Some(sig.value).filter(|v| v.is_finite());
            match c.decision {
                Decision::Nothing => {}
                Decision::Fire(sev) => {
                    let level = c.eff.level(sev);
                    let threshold = level.map(|l| l.trigger);
                    let message = describe(
                        sig.metric,
                        &sig.instance,
                        &node_name,
                        value,
                        sev,
                        threshold,
                        false,
                    );
                    let id = store.insert_alert(&NewAlert {
                        key: &c.key,
                        rule_id: c.eff.source(sev).rule_id,
                        kind: sig.kind,
                        source_id: None,
                        node_id: Some(&c.node_id),
                        metric: sig.metric,
                        instance: &sig.instance,
                        severity: sev.as_str(),
                        value,
                        threshold,
                        message: &message,
                        at: c.ts,
                    })?;
                    store.add_alert_event(id, c.ts, "fired", Some(sev.as_str()), value, None, None)?;
                    let mut open = Open {
                        id,
                        severity: sev,
                        flapping: false,
                        suppressed: false,
                        notified: false,
                        node_id: Some(c.node_id.clone()),
                    };
                    let alert = store.alert(id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
                    match suppress::suppressed_by(&windows, &silences, now, &subject(&alert, &labels)) {
                        Some(by) => {
                            store.set_alert_suppressed(id, Some(&by))?;
                            store.add_alert_event(id, c.ts, "suppressed", None, None, None, Some(&by))?;
                            open.suppressed = true;
                        }
                        None => {
                            self.notify(store, &alert, "fired", s, now)?;
                            store.set_alert_notified(id)?;
                            open.notified = true;
                        }
                    }
                    self.open.insert(c.key.clone(), open);
                }
                Decision::Change(sev) => {
                    let Some(open) = self.open.get(&c.key).cloned() else {
                        continue;
                    };
                    let threshold = c.eff.level(sev).map(|l| l.trigger);
                    let message = describe(
                        sig.metric,
                        &sig.instance,
                        &node_name,
                        value,
                        sev,
                        threshold,
                        false,
                    );
                    store.set_alert_severity(
                        open.id,
                        &SeverityChange {
                            severity: sev.as_str(),
                            value,
                            threshold,
                            message: &message,
                            rule_id: c.eff.source(sev).rule_id,
                            at: c.ts,
                        },
                    )?;
                    let up = sev > open.severity;
                    let kind = if up { "escalated" } else { "deescalated" };
                    store.add_alert_event(open.id, c.ts, kind, Some(sev.as_str()), value, None, None)?;
                    if let Some(o) = self.open.get_mut(&c.key) {
                        o.severity = sev;
                    }
                    // Escalations are news; a de-escalation waits for the resolve.
                    if up && open.notified {
                        if let Some(alert) = store.alert(open.id)? {
                            if suppress::suppressed_by(&windows, &silences, now, &subject(&alert, &labels))
                                .is_none()
                            {
                                self.notify(store, &alert, "escalated", s, now)?;
                            }
                        }
                    }
                }
                Decision::Resolve => {
                    let Some(open) = self.open.remove(&c.key) else {
                        continue;
                    };
                    let message = describe(
                        sig.metric,
                        &sig.instance,
                        &node_name,
                        value,
                        open.severity,
                        None,
                        true,
                    );
                    let message = if value.is_none() && sig.metric == "disk" {
                        format!(
                            "{} {} on {node_name} is no longer reported",
                            sig.metric, sig.instance
                        )
                    } else {
                        message
                    };
                    store.resolve_alert(open.id, value, Some(&message), None, c.ts)?;
                    store.add_alert_event(open.id, c.ts, "resolved", None, value, None, None)?;
                    if open.notified {
                        if let Some(alert) = store.alert(open.id)? {
                            self.notify(store, &alert, "resolved", s, now)?;
                        }
                    }
                }
                Decision::StartFlapping => {
                    let Some(open) = self.open.get_mut(&c.key) else {
                        continue;
                    };
                    open.flapping = true;
                    let (id, notified) = (open.id, open.notified);
                    store.set_alert_flapping(id, true, c.ts)?;
                    store.add_alert_event(id, c.ts, "flapping", None, value, None, None)?;
                    if notified {
                        if let Some(alert) = store.alert(id)? {
                            self.notify(store, &alert, "flapping", s, now)?;
                        }
                    }
                }
            }
        }
        tx.commit()
    }

    /// Queues an event for every channel that wants it. Runs inside the
    /// caller's transaction.
    fn notify(
        &mut self,
        store: &Store,
        alert: &Alert,
        event: &str,
        s: &Settings,
        now: i64,
    ) -> rusqlite::Result<()> {
        let channels = store.channels()?;
        if channels.is_empty() {
            return Ok(());
        }
        let node = match &alert.node_id {
            Some(n) => self.node(store, n)?,
            None => None,
        };
        let labels = node.as_ref().map(|n| n.meta.labels.clone()).unwrap_or_default();
        let ev = Event {
            event: event.to_string(),
            alert_id: Some(alert.id),
            kind: alert.kind.clone(),
            node_id: alert.node_id.clone().unwrap_or_default(),
            node: node.as_ref().map(|n| n.meta.name.clone()).unwrap_or_default(),
            metric: alert.metric.clone(),
            instance: alert.instance.clone(),
            severity: alert.severity.clone(),
            status: alert.status.clone(),
            value: alert.value,
            threshold: alert.threshold,
            message: alert.message.clone(),
            url: format!("{}/api/v1/alerts/{}", s.base_url, alert.id),
            at: now,
        };
        let payload = serde_json::to_string(&ev).unwrap_or_default();
        let sev = Severity::parse(&alert.severity).unwrap_or(Severity::Critical);
        for ch in channels {
            let min = Severity::parse(&ch.min_severity).unwrap_or(Severity::Warning);
            let f = &ch.filter;
            let wanted = ch.enabled
                && ch.notify_on.iter().any(|e| e == event)
                && sev >= min
                && (f.nodes.is_empty() || alert.node_id.as_ref().is_some_and(|n| f.nodes.contains(n)))
                && f.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
                && (f.kinds.is_empty() || f.kinds.contains(&alert.kind));
            if wanted {
                store.insert_delivery(ch.id, Some(alert.id), event, &payload, now)?;
                self.outbox_dirty = true;
            }
        }
        Ok(())
    }

    /// Acknowledge (`Some(note)`) or unacknowledge (`None`) by a person.
    pub fn set_ack(
        &mut self,
        store: &mut Store,
        id: i64,
        by: &str,
        ack: Option<Option<&str>>,
        s: &Settings,
        now: i64,
    ) -> rusqlite::Result<Option<bool>> {
        self.load(store)?;
        let Some(_) = store.alert(id)? else {
            return Ok(None);
        };
        let tx = store.conn.unchecked_transaction()?;
        let changed = store.set_alert_ack(id, ack.map(|note| (by, note)), now)?;
        if changed {
            let (kind, note) = match ack {
                Some(note) => ("acknowledged", note),
                None => ("unacknowledged", None),
            };
            store.add_alert_event(id, now, kind, None, None, Some(by), note)?;
            if let Some(alert) = store.alert(id)? {
                if alert.notified {
                    self.notify(store, &alert, kind, s, now)?;
                }
            }
        }
        tx.commit()?;
        Ok(Some(changed))
    }

    /// Resolves an alert by hand. If the condition still holds, the next
    /// evaluation opens a new alert: resolving does not silence.
    pub fn resolve_by(
        &mut self,
        store: &mut Store,
        id: i64,
        by: &str,
        note: Option<&str>,
        s: &Settings,
        now: i64,
    ) -> rusqlite::Result<Option<bool>> {
        self.load(store)?;
        let Some(alert) = store.alert(id)? else {
            return Ok(None);
        };
        let tx = store.conn.unchecked_transaction()?;
        let changed = store.resolve_alert(id, None, None, Some(by), now)?;
        if changed {
            store.add_alert_event(id, now, "resolved", None, None, Some(by), note)?;
            self.open.remove(&alert.key);
            self.tracks.remove(&alert.key);
            if alert.notified {
                if let Some(alert) = store.alert(id)? {
                    self.notify(store, &alert, "resolved", s, now)?;
                }
            }
        }
        tx.commit()?;
        Ok(Some(changed))
    }

    /// What a rule alone would do with the nodes' current data: no writes,
    /// no state touched.
    pub fn test_rule(
        &mut self,
        store: &Store,
        rule: &Rule,
        now: i64,
    ) -> rusqlite::Result<Vec<serde_json::Value>> {
        self.load(store)?;
        let mut out = Vec::new();
        let one = Rc::new(vec![rule.clone()]);
        for meta in store.node_metas()? {
            if !rule.scope.matches(&meta.id, &meta.labels) {
                continue;
            }
            let eff = rules::effective(&one, &meta.id, &meta.labels)
                .into_iter()
                .find(|e| e.metric == rule.metric);
            let Some(mut eff) = eff else { continue };
            // Only the rule's own levels count; inherited ones are not its business.
            if rule.warning.is_none() {
                eff.warning = None;
            }
            if rule.critical.is_none() {
                eff.critical = None;
            }
            let latest = store.latest(&meta.id);
            let signals: Vec<Signal> = match latest {
                Some(l) if rule.metric == "node_offline" => vec![Signal {
                    kind: "offline",
                    metric: "node_offline",
                    instance: String::new(),
                    value: (now - l.ts).max(0) as f64 / meta.interval_s.max(1) as f64,
                }],
                Some(l) => {
                    let item = Item {
                        ts: l.ts,
                        sample: l.sample.clone(),
                        disks: latest_disks(l.json.as_deref()),
                        nets: Vec::new(),
                        latest: String::new(),
                        system: Default::default(),
                        cores: latest_cores(l.json.as_deref()),
                    };
                    Alerting::signals_of(&item)
                        .into_iter()
                        .filter(|s| s.metric == rule.metric)
                        .collect()
                }
                None => Vec::new(),
            };
            if signals.is_empty() {
                out.push(serde_json::json!({
                    "node_id": meta.id, "node": meta.name, "instance": "", "value": null,
                    "would_fire": null, "note": "no current data for this metric"
                }));
            }
            for sig in signals {
                let level = eff
                    .levels()
                    .filter(|(_, l, _)| sig.value >= l.trigger)
                    .map(|(s, _, _)| s)
                    .max();
                let open = self.open.get(&key(sig.kind, sig.metric, &meta.id, &sig.instance));
                out.push(serde_json::json!({
                    "node_id": meta.id, "node": meta.name, "instance": sig.instance, "value": sig.value,
                    "would_fire": level.map(|s| s.as_str()),
                    "for_s": eff.for_s,
                    "open_alert": open.map(|o| o.id),
                }));
            }
        }
        Ok(out)
    }
}

fn subject<'a>(a: &'a Alert, labels: &'a BTreeMap<String, String>) -> Subject<'a> {
    Subject {
        node_id: a.node_id.as_deref(),
        labels,
        kind: &a.kind,
        metric: &a.metric,
        severity: &a.severity,
    }
}

fn latest_json(json: Option<&str>) -> Option<serde_json::Value> {
    json.and_then(|j| serde_json::from_str(j).ok())
}

/// Mounts from a stored latest snapshot (native or labwatch-mapped shape).
fn latest_disks(json: Option<&str>) -> Vec<crate::store::history::DiskSample> {
    let Some(v) = latest_json(json) else {
        return Vec::new();
    };
    v["disks"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| {
                    Some(crate::store::history::DiskSample {
                        mount: d["mount"].as_str()?.to_string(),
                        used_percent: d["used_percent"].as_f64()?,
                        used_bytes: 0,
                        total_bytes: 0,
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

fn latest_cores(json: Option<&str>) -> u32 {
    latest_json(json)
        .and_then(|v| v["cpu"]["count"].as_u64())
        .unwrap_or(0) as u32
}
