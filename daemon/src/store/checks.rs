//! Checks and their results.

use super::Store;
use crate::engine::checks::{CheckFields, HttpOptions};
use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub id: i64,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub target: String,
    pub interval_s: i64,
    pub timeout_s: i64,
    pub failure_threshold: i64,
    pub recovery_threshold: i64,
    pub enabled: bool,
    pub run_from: String,
    pub labels: BTreeMap<String, String>,
    pub http: HttpOptions,
    /// "unknown" | "up" | "down" (shown as "paused" when disabled).
    pub status: String,
    /// Consecutive failures / successes so far.
    pub fails: i64,
    pub successes: i64,
    pub last_result: Option<serde_json::Value>,
    #[serde(serialize_with = "crate::api::ser_time")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::api::ser_time")]
    pub updated_at: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckResult {
    #[serde(serialize_with = "crate::api::ser_time")]
    pub at: i64,
    pub ok: bool,
    pub latency_ms: Option<i64>,
    pub status_code: Option<u16>,
    pub error: Option<String>,
}

const COLS: &str = "id, name, type, target, interval_s, timeout_s, failure_threshold, recovery_threshold, \
                    enabled, run_from, labels, http, status, fails, successes, last_result, created_at, updated_at";

fn row(r: &Row) -> rusqlite::Result<Check> {
    let labels: String = r.get(10)?;
    let http: String = r.get(11)?;
    let last: Option<String> = r.get(15)?;
    Ok(Check {
        id: r.get(0)?,
        name: r.get(1)?,
        kind: r.get(2)?,
        target: r.get(3)?,
        interval_s: r.get(4)?,
        timeout_s: r.get(5)?,
        failure_threshold: r.get(6)?,
        recovery_threshold: r.get(7)?,
        enabled: r.get(8)?,
        run_from: r.get(9)?,
        labels: serde_json::from_str(&labels).unwrap_or_default(),
        http: serde_json::from_str(&http).unwrap_or_default(),
        status: r.get(12)?,
        fails: r.get(13)?,
        successes: r.get(14)?,
        last_result: last.and_then(|l| serde_json::from_str(&l).ok()),
        created_at: r.get(16)?,
        updated_at: r.get(17)?,
    })
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "{}".into())
}

impl Store {
    pub fn checks(&self) -> rusqlite::Result<Vec<Check>> {
        let mut st = self
            .conn
            .prepare_cached(&format!("SELECT {COLS} FROM checks ORDER BY id"))?;
        let rows = st.query_map([], row)?;
        rows.collect()
    }

    pub fn check(&self, id: i64) -> rusqlite::Result<Option<Check>> {
        self.conn
            .prepare_cached(&format!("SELECT {COLS} FROM checks WHERE id = ?1"))?
            .query_row([id], row)
            .optional()
    }

    pub fn insert_check(&self, f: &CheckFields, now: i64) -> rusqlite::Result<i64> {
        self.conn.execute(
            "INSERT INTO checks (name, type, target, interval_s, timeout_s, failure_threshold, recovery_threshold,
                 enabled, labels, http, status, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'unknown', ?11, ?11)",
            params![
                f.name,
                f.kind,
                f.target,
                f.interval_s,
                f.timeout_s,
                f.failure_threshold,
                f.recovery_threshold,
                f.enabled,
                json(&f.labels),
                json(&f.http),
                now
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// A changed target or type starts over from "unknown".
    pub fn update_check(&self, id: i64, f: &CheckFields, reset: bool, now: i64) -> rusqlite::Result<()> {
        self.conn.execute(
            "UPDATE checks SET name = ?2, type = ?3, target = ?4, interval_s = ?5, timeout_s = ?6,
                 failure_threshold = ?7, recovery_threshold = ?8, enabled = ?9, labels = ?10, http = ?11,
                 status = CASE WHEN ?12 THEN 'unknown' ELSE status END,
                 fails = CASE WHEN ?12 THEN 0 ELSE fails END,
                 successes = CASE WHEN ?12 THEN 0 ELSE successes END, updated_at = ?13
             WHERE id = ?1",
            params![
                id,
                f.name,
                f.kind,
                f.target,
                f.interval_s,
                f.timeout_s,
                f.failure_threshold,
                f.recovery_threshold,
                f.enabled,
                json(&f.labels),
                json(&f.http),
                reset,
                now
            ],
        )?;
        Ok(())
    }

    pub fn delete_check(&self, id: i64) -> rusqlite::Result<bool> {
        Ok(self.conn.execute("DELETE FROM checks WHERE id = ?1", [id])? == 1)
    }

    /// Stores a result and the check's new state in one transaction.
    pub fn record_check_result(&mut self, c: &Check, r: &CheckResult) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        tx.prepare_cached(
            "INSERT INTO check_results (check_id, at, ok, latency_ms, status_code, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![c.id, r.at, r.ok, r.latency_ms, r.status_code, r.error])?;
        tx.prepare_cached(
            "UPDATE checks SET status = ?2, fails = ?3, successes = ?4, last_result = ?5 WHERE id = ?1",
        )?
        .execute(params![c.id, c.status, c.fails, c.successes, json(r)])?;
        tx.commit()
    }

    /// Results in [from, to], newest first.
    pub fn check_results(
        &self,
        id: i64,
        from: i64,
        to: i64,
        limit: i64,
    ) -> rusqlite::Result<Vec<CheckResult>> {
        let mut st = self.conn.prepare_cached(
            "SELECT at, ok, latency_ms, status_code, error FROM check_results
             WHERE check_id = ?1 AND at >= ?2 AND at <= ?3 ORDER BY at DESC LIMIT ?4",
        )?;
        let rows = st.query_map(params![id, from, to, limit], |r| {
            Ok(CheckResult {
                at: r.get(0)?,
                ok: r.get(1)?,
                latency_ms: r.get(2)?,
                status_code: r.get(3)?,
                error: r.get(4)?,
            })
        })?;
        rows.collect()
    }

    pub fn prune_check_results(&self, before: i64) -> rusqlite::Result<usize> {
        self.conn
            .execute("DELETE FROM check_results WHERE at < ?1", [before])
    }
}
