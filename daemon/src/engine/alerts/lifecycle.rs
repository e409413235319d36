//! Writing what evaluation decided: alerts and their timeline, the outbox
//! rows of the notifications they cause (one transaction each time), the
//! suppression by maintenance windows and silences, and what people do to
//! alerts (acknowledge, resolve).

use super::evaluate::Decision;
use super::rules::Severity;
use super::signals::describe;
use super::{Alerting, Change, Condition, Open, Settings};
use crate::engine::notify::Event;
use crate::engine::suppress::{self, Silence, Subject, Window};
use crate::store::alerts::{Alert, NewAlert, SeverityChange};
use crate::store::Store;
use std::collections::BTreeMap;

/// What every change of one `apply` shares.
struct Scene<'a> {
    windows: Vec<Window>,
    silences: Vec<Silence>,
    s: &'a Settings,
    now: i64,
}

impl Scene<'_> {
    fn suppressed_by(&self, alert: &Alert, labels: &BTreeMap<String, String>) -> Option<String> {
        suppress::suppressed_by(&self.windows, &self.silences, self.now, &subject(alert, labels))
    }
}

/// The node and value one change is about.
struct About {
    node_name: String,
    labels: BTreeMap<String, String>,
    value: Option<f64>,
}

impl Alerting {
    /// Open alerts held back by a window or silence that has since ended
    /// are notified now, as they would have been.
    pub(super) fn release_suppressed(
        &mut self,
        store: &mut Store,
        s: &Settings,
        now: i64,
    ) -> rusqlite::Result<()> {
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
        let tx = store.begin()?;
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

    pub(super) fn labels_of(
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
    pub(super) fn apply(
        &mut self,
        store: &mut Store,
        changes: Vec<Change>,
        s: &Settings,
        now: i64,
    ) -> rusqlite::Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let sc = Scene {
            windows: store.windows()?,
            silences: store.silences(now, true)?,
            s,
            now,
        };
        let tx = store.begin()?;
        for c in changes {
            let node = self.node(store, &c.node_id)?;
            let a = About {
                node_name: node.as_ref().map_or(c.node_id.clone(), |n| n.meta.name.clone()),
                labels: node.as_ref().map(|n| n.meta.labels.clone()).unwrap_or_default(),
                value: Some(c.signal.value).filter(|v| v.is_finite()),
            };
            match c.decision {
                Decision::Nothing => {}
                Decision::Fire(sev) => self.fire(store, &c, sev, &a, &sc)?,
                Decision::Change(sev) => self.change(store, &c, sev, &a, &sc)?,
                Decision::Resolve => self.resolve(store, &c, &a, &sc)?,
                Decision::StartFlapping => self.start_flapping(store, &c, &a, &sc)?,
            }
        }
        tx.commit()
    }

    /// A new alert; notified unless a window or silence holds it back.
    fn fire(
        &mut self,
        store: &Store,
        c: &Change,
        sev: Severity,
        a: &About,
        sc: &Scene,
    ) -> rusqlite::Result<()> {
        let sig = &c.signal;
        let level = c.eff.level(sev);
        let threshold = level.map(|l| l.trigger);
        let message = describe(
            sig.metric,
            &sig.instance,
            &a.node_name,
            a.value,
            sev,
            threshold,
            false,
        );
        let new = NewAlert {
            key: &c.key,
            rule_id: c.eff.source(sev).rule_id,
            kind: sig.kind,
            source_id: None,
            node_id: Some(&c.node_id),
            metric: sig.metric,
            instance: &sig.instance,
            severity: sev.as_str(),
            value: a.value,
            threshold,
            message: &message,
            at: c.ts,
        };
        self.open_alert(store, &new, sev, &a.labels, sc)
    }

    /// Stores a new alert, then notifies it or records what suppresses it.
    fn open_alert(
        &mut self,
        store: &Store,
        new: &NewAlert,
        sev: Severity,
        labels: &BTreeMap<String, String>,
        sc: &Scene,
    ) -> rusqlite::Result<()> {
        let id = store.insert_alert(new)?;
        store.add_alert_event(id, new.at, "fired", Some(sev.as_str()), new.value, None, None)?;
        let mut open = Open {
            id,
            severity: sev,
            flapping: false,
            suppressed: false,
            notified: false,
            node_id: new.node_id.map(str::to_string),
        };
        let alert = store.alert(id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
        match sc.suppressed_by(&alert, labels) {
            Some(by) => {
                store.set_alert_suppressed(id, Some(&by))?;
                store.add_alert_event(id, new.at, "suppressed", None, None, None, Some(&by))?;
                open.suppressed = true;
            }
            None => {
                self.notify(store, &alert, "fired", sc.s, sc.now)?;
                store.set_alert_notified(id)?;
                open.notified = true;
            }
        }
        self.open.insert(new.key.to_string(), open);
        Ok(())
    }

    /// Escalation (notified) or de-escalation (recorded) of an open alert.
    fn change(
        &mut self,
        store: &Store,
        c: &Change,
        sev: Severity,
        a: &About,
        sc: &Scene,
    ) -> rusqlite::Result<()> {
        let sig = &c.signal;
        let Some(open) = self.open.get(&c.key).cloned() else {
            return Ok(());
        };
        let threshold = c.eff.level(sev).map(|l| l.trigger);
        let message = describe(
            sig.metric,
            &sig.instance,
            &a.node_name,
            a.value,
            sev,
            threshold,
            false,
        );
        store.set_alert_severity(
            open.id,
            &SeverityChange {
                severity: sev.as_str(),
                value: a.value,
                threshold,
                message: &message,
                rule_id: c.eff.source(sev).rule_id,
                at: c.ts,
            },
        )?;
        let up = sev > open.severity;
        let kind = if up { "escalated" } else { "deescalated" };
        store.add_alert_event(open.id, c.ts, kind, Some(sev.as_str()), a.value, None, None)?;
        if let Some(o) = self.open.get_mut(&c.key) {
            o.severity = sev;
        }
        // Escalations are news; a de-escalation waits for the resolve.
        if up && open.notified {
            if let Some(alert) = store.alert(open.id)? {
                if sc.suppressed_by(&alert, &a.labels).is_none() {
                    self.notify(store, &alert, "escalated", sc.s, sc.now)?;
                }
            }
        }
        Ok(())
    }

    /// The value cleared (or its mount went away).
    fn resolve(&mut self, store: &Store, c: &Change, a: &About, sc: &Scene) -> rusqlite::Result<()> {
        let sig = &c.signal;
        let Some(open) = self.open.remove(&c.key) else {
            return Ok(());
        };
        let message = describe(
            sig.metric,
            &sig.instance,
            &a.node_name,
            a.value,
            open.severity,
            None,
            true,
        );
        let message = if a.value.is_none() && sig.metric == "disk" {
            format!(
                "{} {} on {} is no longer reported",
                sig.metric, sig.instance, a.node_name
            )
        } else {
            message
        };
        store.resolve_alert(open.id, a.value, Some(&message), None, c.ts)?;
        store.add_alert_event(open.id, c.ts, "resolved", None, a.value, None, None)?;
        if open.notified {
            if let Some(alert) = store.alert(open.id)? {
                self.notify(store, &alert, "resolved", sc.s, sc.now)?;
            }
        }
        Ok(())
    }

    /// Would have resolved, but flaps: held open and notified once.
    fn start_flapping(&mut self, store: &Store, c: &Change, a: &About, sc: &Scene) -> rusqlite::Result<()> {
        let Some(open) = self.open.get_mut(&c.key) else {
            return Ok(());
        };
        open.flapping = true;
        let (id, notified) = (open.id, open.notified);
        store.set_alert_flapping(id, true, c.ts)?;
        store.add_alert_event(id, c.ts, "flapping", None, a.value, None, None)?;
        if notified {
            if let Some(alert) = store.alert(id)? {
                self.notify(store, &alert, "flapping", sc.s, sc.now)?;
            }
        }
        Ok(())
    }

    /// A condition without thresholds (a heartbeat that missed its
    /// deadline; later a check that is down): opens or updates the alert
    /// for `c.key` at `c.severity`, or resolves it when `c.severity` is None.
    pub fn set_condition(
        &mut self,
        store: &mut Store,
        c: &Condition,
        s: &Settings,
        now: i64,
    ) -> rusqlite::Result<()> {
        self.load(store)?;
        let open = self.open.get(&c.key).cloned();
        let sc = Scene {
            windows: store.windows()?,
            silences: store.silences(now, true)?,
            s,
            now,
        };
        let labels = match c.node_id {
            Some(_) => self.labels_of(store, c.node_id)?,
            None => c.labels.clone(),
        };
        let tx = store.begin()?;
        match (open, c.severity) {
            (None, None) => {}
            (None, Some(sev)) => {
                let new = NewAlert {
                    key: &c.key,
                    rule_id: None,
                    kind: c.kind,
                    source_id: Some(c.source_id),
                    node_id: c.node_id,
                    metric: c.kind,
                    instance: "",
                    severity: sev.as_str(),
                    value: c.value,
                    threshold: None,
                    message: &c.message,
                    at: now,
                };
                self.open_alert(store, &new, sev, &labels, &sc)?;
            }
            (Some(o), Some(sev)) if o.severity != sev => {
                store.set_alert_severity(
                    o.id,
                    &SeverityChange {
                        severity: sev.as_str(),
                        value: c.value,
                        threshold: None,
                        message: &c.message,
                        rule_id: None,
                        at: now,
                    },
                )?;
                let kind = if sev > o.severity {
                    "escalated"
                } else {
                    "deescalated"
                };
                store.add_alert_event(o.id, now, kind, Some(sev.as_str()), c.value, None, None)?;
                if let Some(x) = self.open.get_mut(&c.key) {
                    x.severity = sev;
                }
            }
            (Some(_), Some(_)) => {}
            (Some(o), None) => {
                self.open.remove(&c.key);
                store.resolve_alert(o.id, c.value, Some(&c.message), None, now)?;
                store.add_alert_event(o.id, now, "resolved", None, c.value, None, None)?;
                if o.notified {
                    if let Some(alert) = store.alert(o.id)? {
                        self.notify(store, &alert, "resolved", s, now)?;
                    }
                }
            }
        }
        tx.commit()
    }

    /// Queues an event for every channel that wants it. Runs inside the
    /// caller's transaction.
    pub(super) fn notify(
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
        let tx = store.begin()?;
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
        let tx = store.begin()?;
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
