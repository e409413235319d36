//! Alert rules, alerts and each alert's event timeline.

use super::Store;
use crate::engine::alerts::rules::{Level, Rule, RuleFields, Scope};
use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;

const RULE_COLS: &str = "id, name, metric, scope_node, scope_labels, warn_trigger, warn_clear, \
                         crit_trigger, crit_clear, for_s, enabled, created_at, updated_at";

fn level(t: Option<f64>, c: Option<f64>) -> Option<Level> {
    t.map(|t| Level::new(t, c.unwrap_or(t)))
}

fn rule_row(r: &Row) -> rusqlite::Result<Rule> {
    let labels: Option<String> = r.get(4)?;
    Ok(Rule {
        id: r.get(0)?,
        name: r.get(1)?,
        metric: r.get(2)?,
        scope: Scope {
            node: r.get(3)?,
            labels: labels.and_then(|l| serde_json::from_str(&l).ok()),
        },
        warning: level(r.get(5)?, r.get(6)?),
        critical: level(r.get(7)?, r.get(8)?),
        for_s: r.get(9)?,
        enabled: r.get(10)?,
        created_at: r.get(11)?,
        updated_at: r.get(12)?,
    })
}

/// One alert as listed and returned.
#[derive(Clone, Debug, Serialize)]
pub struct Alert {
    pub id: i64,
    pub key: String,
    pub rule_id: Option<i64>,
    pub kind: String,
    pub source_id: Option<String>,
    pub node_id: Option<String>,
    pub metric: String,
    pub instance: String,
    pub severity: String,
    pub status: String,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub message: String,
    #[serde(serialize_with = "crate::api::ser_time")]
    pub started_at: i64,
    #[serde(serialize_with = "crate::api::ser_time")]
    pub updated_at: i64,
    #[serde(serialize_with = "crate::api::ser_time_opt")]
    pub acknowledged_at: Option<i64>,
    pub acknowledged_by: Option<String>,
    pub ack_note: Option<String>,
    #[serde(serialize_with = "crate::api::ser_time_opt")]
    pub resolved_at: Option<i64>,
    /// Who resolved it by hand; null when it cleared by itself.
    pub resolved_by: Option<String>,
    pub flapping: bool,
    /// "maintenance:<id>" or "silence:<id>" while notifications are held back.
    pub suppressed: Option<String>,
    pub notified: bool,
}

const ALERT_COLS: &str = "id, key, rule_id, kind, source_id, node_id, metric, instance, severity, status, \
                          value, threshold, message, started_at, updated_at, acknowledged_at, acknowledged_by, \
                          ack_note, resolved_at, resolved_by, flapping, suppressed, notified";

fn alert_row(r: &Row) -> rusqlite::Result<Alert> {
    Ok(Alert {
        id: r.get(0)?,
        key: r.get(1)?,
        rule_id: r.get(2)?,
        kind: r.get(3)?,
        source_id: r.get(4)?,
        node_id: r.get(5)?,
        metric: r.get(6)?,
        instance: r.get(7)?,
        severity: r.get(8)?,
        status: r.get(9)?,
        value: r.get(10)?,
        threshold: r.get(11)?,
        message: r.get(12)?,
        started_at: r.get(13)?,
        updated_at: r.get(14)?,
        acknowledged_at: r.get(15)?,
        acknowledged_by: r.get(16)?,
        ack_note: r.get(17)?,
        resolved_at: r.get(18)?,
        resolved_by: r.get(19)?,
        flapping: r.get(20)?,
        suppressed: r.get(21)?,
        notified: r.get(22)?,
    })
}

#[derive(Clone, Debug, Serialize)]
pub struct AlertEvent {
    pub id: i64,
    #[serde(serialize_with = "crate::api::ser_time")]
    pub at: i64,
    /// fired, escalated, deescalated, resolved, acknowledged, unacknowledged,
    /// flapping, suppressed, unsuppressed
    #[serde(rename = "type")]
    pub kind: String,
    pub severity: Option<String>,
    pub value: Option<f64>,
    pub actor: Option<String>,
    pub note: Option<String>,
}

/// A new alert.
pub struct NewAlert<'a> {
    pub key: &'a str,
    pub rule_id: Option<i64>,
    pub kind: &'a str,
    pub source_id: Option<&'a str>,
    pub node_id: Option<&'a str>,
    pub metric: &'a str,
    pub instance: &'a str,
    pub severity: &'a str,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub message: &'a str,
    pub at: i64,
}

/// An open alert's new severity and what caused it.
pub struct SeverityChange<'a> {
    pub severity: &'a str,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub message: &'a str,
    pub rule_id: Option<i64>,
    pub at: i64,
}

#[derive(Default)]
pub struct AlertFilter {
    pub status: Option<String>,
    /// "open": active or acknowledged.
    pub open_only: bool,
    pub node: Option<String>,
    pub severity: Option<String>,
    pub kind: Option<String>,
    pub since: Option<i64>,
}

impl Store {
    pub fn rules(&self) -> rusqlite::Result<Vec<Rule>> {
        let mut st = self
            .conn
            .prepare(&format!("SELECT {RULE_COLS} FROM alert_rules ORDER BY id"))?;
        let rows = st.query_map([], rule_row)?;
        rows.collect()
    }

    pub fn rule(&self, id: i64) -> rusqlite::Result<Option<Rule>> {
        self.conn
            .query_row(
                &format!("SELECT {RULE_COLS} FROM alert_rules WHERE id = ?1"),
                [id],
                rule_row,
            )
            .optional()
    }

    fn rule_params(f: &RuleFields) -> (Option<String>, [Option<f64>; 4]) {
        let labels = f
            .scope
            .labels
            .as_ref()
            .map(|l| serde_json::to_string(l).unwrap_or_else(|_| "{}".into()));
        (
            labels,
            [
                f.warning.map(|l| l.trigger),
                f.warning.map(|l| l.clear),
                f.critical.map(|l| l.trigger),
                f.critical.map(|l| l.clear),
            ],
        )
    }

    pub fn insert_rule(&self, f: &RuleFields, now: i64) -> rusqlite::Result<i64> {
        let (labels, t) = Store::rule_params(f);
        self.conn.execute(
            "INSERT INTO alert_rules (name, metric, scope_node, scope_labels, warn_trigger, warn_clear,
                 crit_trigger, crit_clear, for_s, enabled, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)",
            params![
                f.name,
                f.metric,
                f.scope.node,
                labels,
                t[0],
                t[1],
                t[2],
                t[3],
                f.for_s,
                f.enabled,
                now
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn update_rule(&self, id: i64, f: &RuleFields, now: i64) -> rusqlite::Result<bool> {
        let (labels, t) = Store::rule_params(f);
        let n = self.conn.execute(
            "UPDATE alert_rules SET name = ?2, metric = ?3, scope_node = ?4, scope_labels = ?5,
                 warn_trigger = ?6, warn_clear = ?7, crit_trigger = ?8, crit_clear = ?9, for_s = ?10,
                 enabled = ?11, updated_at = ?12 WHERE id = ?1",
            params![
                id,
                f.name,
                f.metric,
                f.scope.node,
                labels,
                t[0],
                t[1],
                t[2],
                t[3],
                f.for_s,
                f.enabled,
                now
            ],
        )?;
        Ok(n == 1)
    }

    pub fn delete_rule(&self, id: i64) -> rusqlite::Result<bool> {
        Ok(self.conn.execute("DELETE FROM alert_rules WHERE id = ?1", [id])? == 1)
    }

    pub fn insert_alert(&self, a: &NewAlert) -> rusqlite::Result<i64> {
        self.conn.execute(
            "INSERT INTO alerts (key, rule_id, kind, source_id, node_id, metric, instance, severity, status,
                 value, threshold, message, started_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'active', ?9, ?10, ?11, ?12, ?12)",
            params![
                a.key,
                a.rule_id,
                a.kind,
                a.source_id,
                a.node_id,
                a.metric,
                a.instance,
                a.severity,
                a.value,
                a.threshold,
                a.message,
                a.at
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn alert(&self, id: i64) -> rusqlite::Result<Option<Alert>> {
        self.conn
            .query_row(
                &format!("SELECT {ALERT_COLS} FROM alerts WHERE id = ?1"),
                [id],
                alert_row,
            )
            .optional()
    }

    /// Every open (active or acknowledged) alert: the engine's start-up state.
    pub fn open_alerts(&self) -> rusqlite::Result<Vec<Alert>> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {ALERT_COLS} FROM alerts WHERE status != 'resolved'"
        ))?;
        let rows = st.query_map([], alert_row)?;
        rows.collect()
    }

    /// Alerts matching a filter, newest first, with the total count.
    pub fn alerts(&self, f: &AlertFilter, limit: i64, offset: i64) -> rusqlite::Result<(Vec<Alert>, i64)> {
        let mut clauses = vec!["1 = 1".to_string()];
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        let mut arg = |clause: &str, v: rusqlite::types::Value| {
            args.push(v);
            clauses.push(clause.replace('?', &format!("?{}", args.len())));
        };
        if let Some(s) = &f.status {
            arg("status = ?", s.clone().into());
        }
        if let Some(n) = &f.node {
            arg("node_id = ?", n.clone().into());
        }
        if let Some(s) = &f.severity {
            arg("severity = ?", s.clone().into());
        }
        if let Some(k) = &f.kind {
            arg("kind = ?", k.clone().into());
        }
        if let Some(t) = f.since {
            arg("coalesce(resolved_at, updated_at) >= ?", t.into());
        }
        if f.open_only {
            clauses.push("status != 'resolved'".into());
        }
        let filter = clauses.join(" AND ");
        let total: i64 = self.conn.query_row(
            &format!("SELECT count(*) FROM alerts WHERE {filter}"),
            rusqlite::params_from_iter(args.iter()),
            |r| r.get(0),
        )?;
        args.push(limit.into());
        args.push(offset.into());
        let n = args.len();
        let mut st = self.conn.prepare(&format!(
            "SELECT {ALERT_COLS} FROM alerts WHERE {filter} ORDER BY id DESC LIMIT ?{} OFFSET ?{n}",
            n - 1
        ))?;
        let rows = st.query_map(rusqlite::params_from_iter(args.iter()), alert_row)?;
        Ok((rows.collect::<rusqlite::Result<_>>()?, total))
    }

    /// Open alerts by status and severity: (status, severity, count).
    pub fn alert_counts(&self) -> rusqlite::Result<Vec<(String, String, i64)>> {
        let mut st = self.conn.prepare(
            "SELECT status, severity, count(*) FROM alerts WHERE status != 'resolved' GROUP BY status, severity",
        )?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect()
    }

    pub fn alert_events(&self, alert_id: i64) -> rusqlite::Result<Vec<AlertEvent>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, at, type, severity, value, actor, note FROM alert_events WHERE alert_id = ?1 ORDER BY id",
        )?;
        let rows = st.query_map([alert_id], |r| {
            Ok(AlertEvent {
                id: r.get(0)?,
                at: r.get(1)?,
                kind: r.get(2)?,
                severity: r.get(3)?,
                value: r.get(4)?,
                actor: r.get(5)?,
                note: r.get(6)?,
            })
        })?;
        rows.collect()
    }

    #[allow(clippy::too_many_arguments)]
    pub fn add_alert_event(
        &self,
        alert_id: i64,
        at: i64,
        kind: &str,
        severity: Option<&str>,
        value: Option<f64>,
        actor: Option<&str>,
        note: Option<&str>,
    ) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO alert_events (alert_id, at, type, severity, value, actor, note)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![alert_id, at, kind, severity, value, actor, note])?;
        Ok(())
    }

    /// Severity change of an open alert.
    pub fn set_alert_severity(&self, id: i64, c: &SeverityChange) -> rusqlite::Result<()> {
        self.conn.execute(
            "UPDATE alerts SET severity = ?2, value = ?3, threshold = ?4, message = ?5, rule_id = ?6,
                 updated_at = ?7 WHERE id = ?1",
            params![id, c.severity, c.value, c.threshold, c.message, c.rule_id, c.at],
        )?;
        Ok(())
    }

    pub fn resolve_alert(
        &self,
        id: i64,
        value: Option<f64>,
        message: Option<&str>,
        by: Option<&str>,
        at: i64,
    ) -> rusqlite::Result<bool> {
        let n = self.conn.execute(
            "UPDATE alerts SET status = 'resolved', value = coalesce(?2, value), message = coalesce(?3, message),
                 resolved_by = ?4, resolved_at = ?5, updated_at = ?5 WHERE id = ?1 AND status != 'resolved'",
            params![id, value, message, by, at],
        )?;
        Ok(n == 1)
    }

    pub fn set_alert_ack(
        &self,
        id: i64,
        ack: Option<(&str, Option<&str>)>,
        at: i64,
    ) -> rusqlite::Result<bool> {
        let n = match ack {
            Some((by, note)) => self.conn.execute(
                "UPDATE alerts SET status = 'acknowledged', acknowledged_at = ?2, acknowledged_by = ?3,
                     ack_note = ?4, updated_at = ?2 WHERE id = ?1 AND status = 'active'",
                params![id, at, by, note],
            )?,
            None => self.conn.execute(
                "UPDATE alerts SET status = 'active', acknowledged_at = NULL, acknowledged_by = NULL,
                     ack_note = NULL, updated_at = ?2 WHERE id = ?1 AND status = 'acknowledged'",
                params![id, at],
            )?,
        };
        Ok(n == 1)
    }

    pub fn set_alert_flapping(&self, id: i64, flapping: bool, at: i64) -> rusqlite::Result<()> {
        self.conn.execute(
            "UPDATE alerts SET flapping = ?2, updated_at = ?3 WHERE id = ?1",
            params![id, flapping, at],
        )?;
        Ok(())
    }

    pub fn set_alert_suppressed(&self, id: i64, by: Option<&str>) -> rusqlite::Result<()> {
        self.conn
            .execute("UPDATE alerts SET suppressed = ?2 WHERE id = ?1", params![id, by])?;
        Ok(())
    }

    pub fn set_alert_notified(&self, id: i64) -> rusqlite::Result<()> {
        self.conn
            .execute("UPDATE alerts SET notified = 1 WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Drops resolved alerts (with their events) and finished deliveries
    /// older than `before`.
    pub fn prune_alerts(&self, before: i64) -> rusqlite::Result<usize> {
        let a = self.conn.execute(
            "DELETE FROM alerts WHERE status = 'resolved' AND resolved_at < ?1",
            [before],
        )?;
        let d = self.conn.execute(
            "DELETE FROM deliveries WHERE status != 'pending' AND created_at < ?1",
            [before],
        )?;
        Ok(a + d)
    }
}
