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
mod lifecycle;
pub mod rules;
pub mod signals;

use crate::config::Config;
use crate::engine::ingest::Item;
use crate::store::nodes::NodeMeta;
use crate::store::Store;
use evaluate::{Decision, FlapGuard, Track};
use rules::{Effective, Rule, Severity};
use std::collections::HashMap;
use std::rc::Rc;

/// Alert kinds that exist today.
pub const KINDS: &[&str] = &["metric", "offline", "heartbeat", "check", "certificate"];

/// A condition that is on or off rather than measured against thresholds.
pub struct Condition<'a> {
    pub key: String,
    /// Also the alert's `metric`.
    pub kind: &'static str,
    pub source_id: &'a str,
    pub node_id: Option<&'a str>,
    /// The monitored object's own labels (used for windows and silences
    /// when there is no node).
    pub labels: &'a std::collections::BTreeMap<String, String>,
    /// None: the condition cleared.
    pub severity: Option<rules::Severity>,
    pub value: Option<f64>,
    pub message: String,
}

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

    /// Evaluates a node's committed snapshot.
    pub fn observe(
        &mut self,
        store: &mut Store,
        node_id: &str,
        item: &Item,
        s: &Settings,
        now: i64,
    ) -> rusqlite::Result<()> {
        let signals = signals::of_item(item);
        // A mount that is no longer reported cannot clear its alert by itself.
        let mounts: Vec<&str> = item.disks.iter().map(|d| d.mount.as_str()).collect();
        // Built once per snapshot, from the one place that defines the key layout.
        let disk_prefix = key("metric", "disk", node_id, "");
        let gone: Vec<String> = self
            .open
            .keys()
            .filter(|k| {
                k.strip_prefix(disk_prefix.as_str())
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
                        disks: signals::latest_disks(l.json.as_deref()),
                        nets: Vec::new(),
                        latest: None,
                        system: Default::default(),
                        cores: signals::latest_cores(l.json.as_deref()),
                    };
                    signals::of_item(&item)
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
