//! Checks, their results and the daily rollup behind 90-day uptime.

use super::Store;
use crate::engine::checks::cert::{CertInfo, CertOptions};
use crate::engine::checks::CheckFields;
use cairn_wire::{DnsOptions, HttpOptions, IcmpOptions};
use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
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
    /// "server" or the node id of the agent that runs it.
    pub run_from: String,
    pub labels: BTreeMap<String, String>,
    pub http: HttpOptions,
    pub dns: DnsOptions,
    pub icmp: IcmpOptions,
    /// When the certificate (https, tls) alerts.
    pub certificate: CertOptions,
    /// The certificate last seen (https, tls).
    pub cert: Option<CertInfo>,
    /// "unknown" | "up" | "down" (shown as "paused" when disabled and
    /// "maintenance" inside a window).
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

impl Check {
    /// When the last result was taken (Unix seconds), if any.
    pub fn last_at(&self) -> Option<i64> {
        let at = self.last_result.as_ref()?.get("at")?.as_str()?;
        crate::clock::parse_time_param(at).ok()
    }

    pub fn agent_node(&self) -> Option<&str> {
        (self.run_from != "server").then_some(self.run_from.as_str())
    }
}

/// The blocks beside `http`, kept in one JSON column.
#[derive(Default, Serialize, Deserialize)]
#[serde(default)]
struct Options {
    dns: DnsOptions,
    icmp: IcmpOptions,
    certificate: CertOptions,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct CheckResult {
    #[serde(serialize_with = "crate::api::ser_time")]
    pub at: i64,
    pub ok: bool,
    pub latency_ms: Option<f64>,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    /// The agent that ran it (agent-run checks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packet_loss_percent: Option<f64>,
    /// Only on the latest result (the check keeps the last certificate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<CertInfo>,
}

/// One UTC day of a check's results.
#[derive(Clone, Debug, Serialize)]
pub struct CheckDay {
    pub day: i64,
    pub runs: i64,
    pub ok: i64,
    pub avg_latency_ms: Option<f64>,
    pub max_latency_ms: Option<f64>,
}

/// One bucket of the response-time series.
#[derive(Clone, Debug, Serialize)]
pub struct LatencyPoint {
    #[serde(serialize_with = "crate::api::ser_time")]
    pub at: i64,
    pub runs: i64,
    pub ok: i64,
    pub avg_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

const COLS: &str = "id, name, type, target, interval_s, timeout_s, failure_threshold, recovery_threshold, \
                    enabled, run_from, labels, http, status, fails, successes, last_result, created_at, updated_at, \
                    options, cert";

fn row(r: &Row) -> rusqlite::Result<Check> {
    let labels: String = r.get(10)?;
    let http: String = r.get(11)?;
    let last: Option<String> = r.get(15)?;
    let options: String = r.get(18)?;
    let options: Options = serde_json::from_str(&options).unwrap_or_default();
    let cert: Option<String> = r.get(19)?;
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
        dns: options.dns,
        icmp: options.icmp,
        certificate: options.certificate,
        cert: cert.and_then(|c| serde_json::from_str(&c).ok()),
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

fn options(f: &CheckFields) -> String {
    json(&Options {
        dns: f.dns.clone(),
        icmp: f.icmp.clone(),
        certificate: f.certificate.clone(),
    })
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
                 enabled, labels, http, status, created_at, updated_at, run_from, options)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'unknown', ?11, ?11, ?12, ?13)",
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
                now,
                f.run_from,
                options(f),
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// A changed target, type or prober starts over from "unknown".
    pub fn update_check(&self, id: i64, f: &CheckFields, reset: bool, now: i64) -> rusqlite::Result<()> {
        self.conn.execute(
            "UPDATE checks SET name = ?2, type = ?3, target = ?4, interval_s = ?5, timeout_s = ?6,
                 failure_threshold = ?7, recovery_threshold = ?8, enabled = ?9, labels = ?10, http = ?11,
                 status = CASE WHEN ?12 THEN 'unknown' ELSE status END,
                 fails = CASE WHEN ?12 THEN 0 ELSE fails END,
                 successes = CASE WHEN ?12 THEN 0 ELSE successes END,
                 cert = CASE WHEN ?12 THEN NULL ELSE cert END,
                 updated_at = ?13, run_from = ?14, options = ?15
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
                now,
                f.run_from,
                options(f),
            ],
        )?;
        Ok(())
    }

    pub fn delete_check(&self, id: i64) -> rusqlite::Result<bool> {
        Ok(self.conn.execute("DELETE FROM checks WHERE id = ?1", [id])? == 1)
    }

    /// Stores a result, the day's rollup and the check's new state in one
    /// transaction (committed before anyone is told).
    pub fn record_check_result(&self, c: &Check, r: &CheckResult) -> rusqlite::Result<()> {
        let tx = self.begin()?;
        let addresses = (!r.addresses.is_empty()).then(|| json(&r.addresses));
        self.conn.prepare_cached(
            "INSERT INTO check_results (check_id, at, ok, latency_ms, status_code, error, node_id, packet_loss, addresses)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
            c.id,
            r.at,
            r.ok,
            r.latency_ms,
            r.status_code,
            r.error,
            r.node_id,
            r.packet_loss_percent,
            addresses
        ])?;
        self.conn.prepare_cached(
            "INSERT INTO check_daily (check_id, day, runs, ok, latency_sum, latency_n, latency_max)
             VALUES (?1, ?2, 1, ?3, COALESCE(?4, 0), ?4 IS NOT NULL, ?4)
             ON CONFLICT (check_id, day) DO UPDATE SET runs = runs + 1, ok = ok + excluded.ok,
                 latency_sum = latency_sum + excluded.latency_sum, latency_n = latency_n + excluded.latency_n,
                 latency_max = MAX(COALESCE(latency_max, excluded.latency_max), COALESCE(excluded.latency_max, latency_max))",
        )?
        .execute(params![c.id, r.at - r.at.rem_euclid(86_400), r.ok, r.latency_ms])?;
        self.conn
            .prepare_cached(
                "UPDATE checks SET status = ?2, fails = ?3, successes = ?4, last_result = ?5,
                 cert = COALESCE(?6, cert) WHERE id = ?1",
            )?
            .execute(params![
                c.id,
                c.status,
                c.fails,
                c.successes,
                json(r),
                r.cert.as_ref().map(json)
            ])?;
        tx.commit()
    }

    /// A status change without a result (an agent-run check whose agent
    /// went quiet becomes "unknown").
    pub fn set_check_status(&self, id: i64, status: &str) -> rusqlite::Result<()> {
        self.conn.execute(
            "UPDATE checks SET status = ?2, fails = 0, successes = 0 WHERE id = ?1",
            params![id, status],
        )?;
        Ok(())
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
            "SELECT at, ok, latency_ms, status_code, error, node_id, packet_loss, addresses FROM check_results
             WHERE check_id = ?1 AND at >= ?2 AND at <= ?3 ORDER BY at DESC LIMIT ?4",
        )?;
        let rows = st.query_map(params![id, from, to, limit], |r| {
            let addresses: Option<String> = r.get(7)?;
            Ok(CheckResult {
                at: r.get(0)?,
                ok: r.get(1)?,
                latency_ms: r.get(2)?,
                status_code: r.get(3)?,
                error: r.get(4)?,
                node_id: r.get(5)?,
                packet_loss_percent: r.get(6)?,
                addresses: addresses
                    .and_then(|a| serde_json::from_str(&a).ok())
                    .unwrap_or_default(),
                cert: None,
            })
        })?;
        rows.collect()
    }

    /// Runs and successes in [from, to] (the uptime of a window).
    pub fn check_counts(&self, id: i64, from: i64, to: i64) -> rusqlite::Result<(i64, i64)> {
        self.conn
            .prepare_cached(
                "SELECT COUNT(*), COALESCE(SUM(ok), 0) FROM check_results
                 WHERE check_id = ?1 AND at >= ?2 AND at <= ?3",
            )?
            .query_row(params![id, from, to], |r| Ok((r.get(0)?, r.get(1)?)))
    }

    /// Daily rows from `from_day` on, oldest first.
    pub fn check_days(&self, id: i64, from_day: i64) -> rusqlite::Result<Vec<CheckDay>> {
        let mut st = self.conn.prepare_cached(
            "SELECT day, runs, ok, CASE WHEN latency_n > 0 THEN latency_sum / latency_n END, latency_max
             FROM check_daily WHERE check_id = ?1 AND day >= ?2 ORDER BY day",
        )?;
        let rows = st.query_map(params![id, from_day], |r| {
            Ok(CheckDay {
                day: r.get(0)?,
                runs: r.get(1)?,
                ok: r.get(2)?,
                avg_latency_ms: r.get(3)?,
                max_latency_ms: r.get(4)?,
            })
        })?;
        rows.collect()
    }

    /// Response times in `step`-second buckets over [from, to), oldest first;
    /// only buckets with results.
    pub fn check_latency_series(
        &self,
        id: i64,
        from: i64,
        to: i64,
        step: i64,
    ) -> rusqlite::Result<Vec<LatencyPoint>> {
        let mut st = self.conn.prepare_cached(
            "SELECT ?2 + ((at - ?2) / ?4) * ?4 AS b, COUNT(*), SUM(ok), AVG(latency_ms), MAX(latency_ms)
             FROM check_results WHERE check_id = ?1 AND at >= ?2 AND at < ?3 GROUP BY b ORDER BY b",
        )?;
        let rows = st.query_map(params![id, from, to, step.max(1)], |r| {
            Ok(LatencyPoint {
                at: r.get(0)?,
                runs: r.get(1)?,
                ok: r.get(2)?,
                avg_ms: r.get::<_, Option<f64>>(3)?.map(|v| (v * 1000.0).round() / 1000.0),
                max_ms: r.get(4)?,
            })
        })?;
        rows.collect()
    }

    /// Raw results before `before`, daily rows before `days_before`.
    pub fn prune_check_results(&self, before: i64, days_before: i64) -> rusqlite::Result<usize> {
        let n = self
            .conn
            .execute("DELETE FROM check_results WHERE at < ?1", [before])?;
        Ok(n + self
            .conn
            .execute("DELETE FROM check_daily WHERE day < ?1", [days_before])?)
    }
}
