//! Heartbeats (cron monitoring): monitors, pings, executions, status flips.

use super::Store;
use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Clone, Debug, Serialize)]
pub struct Heartbeat {
    pub id: i64,
    pub uuid: String,
    pub name: String,
    pub period_s: i64,
    pub grace_s: i64,
    pub paused: bool,
    pub labels: BTreeMap<String, String>,
    /// Stored: "new" | "up" | "down" (shown as "paused" while paused).
    pub status: String,
    #[serde(serialize_with = "crate::api::ser_time_opt")]
    pub last_ping_at: Option<i64>,
    #[serde(serialize_with = "crate::api::ser_time_opt")]
    pub last_success_at: Option<i64>,
    #[serde(serialize_with = "crate::api::ser_time_opt")]
    pub running_since: Option<i64>,
    #[serde(serialize_with = "crate::api::ser_time")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::api::ser_time")]
    pub updated_at: i64,
}

impl Heartbeat {
    /// When it goes down if nothing arrives: the running execution's grace
    /// runs out, or the period and grace since the last success. None while
    /// new, paused or already down.
    pub fn deadline(&self) -> Option<i64> {
        if self.paused || self.status != "up" && self.running_since.is_none() {
            return None;
        }
        let run = self.running_since.map(|t| t + self.grace_s);
        let period = self
            .last_success_at
            .filter(|_| self.status == "up")
            .map(|t| t + self.period_s + self.grace_s);
        match (run, period) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

const COLS: &str =
    "id, uuid, name, period_s, grace_s, paused, labels, status, last_ping_at, last_success_at, \
                    running_since, created_at, updated_at";

fn row(r: &Row) -> rusqlite::Result<Heartbeat> {
    let labels: String = r.get(6)?;
    Ok(Heartbeat {
        id: r.get(0)?,
        uuid: r.get(1)?,
        name: r.get(2)?,
        period_s: r.get(3)?,
        grace_s: r.get(4)?,
        paused: r.get(5)?,
        labels: serde_json::from_str(&labels).unwrap_or_default(),
        status: r.get(7)?,
        last_ping_at: r.get(8)?,
        last_success_at: r.get(9)?,
        running_since: r.get(10)?,
        created_at: r.get(11)?,
        updated_at: r.get(12)?,
    })
}

#[derive(Clone, Debug, Serialize)]
pub struct Ping {
    pub id: i64,
    #[serde(serialize_with = "crate::api::ser_time")]
    pub at: i64,
    /// "success" | "start" | "fail" | "log"
    pub kind: String,
    pub exit_code: Option<i64>,
    pub method: String,
    pub remote_ip: String,
    pub user_agent: String,
    pub body: String,
    pub truncated: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Execution {
    pub id: i64,
    #[serde(serialize_with = "crate::api::ser_time_opt")]
    pub started_at: Option<i64>,
    #[serde(serialize_with = "crate::api::ser_time")]
    pub ended_at: i64,
    /// "success" | "fail" | "timeout"
    pub outcome: String,
    pub exit_code: Option<i64>,
    pub duration_ms: Option<i64>,
}

pub struct HeartbeatFields {
    pub name: String,
    pub period_s: i64,
    pub grace_s: i64,
    pub labels: BTreeMap<String, String>,
}

pub struct NewPing<'a> {
    pub at: i64,
    pub kind: &'a str,
    pub exit_code: Option<i64>,
    pub method: &'a str,
    pub remote_ip: &'a str,
    pub user_agent: &'a str,
    pub body: &'a str,
    pub truncated: bool,
}

/// The status in force at a time, then every (time, status) change after it.
pub type Flips = (Option<String>, Vec<(i64, String)>);

/// Pings kept per heartbeat; older ones are dropped on insert.
pub const PINGS_KEPT: i64 = 1000;

impl Store {
    pub fn heartbeats(&self) -> rusqlite::Result<Vec<Heartbeat>> {
        let mut st = self
            .conn
            .prepare_cached(&format!("SELECT {COLS} FROM heartbeats ORDER BY id"))?;
        let rows = st.query_map([], row)?;
        rows.collect()
    }

    pub fn heartbeat(&self, id: i64) -> rusqlite::Result<Option<Heartbeat>> {
        self.conn
            .prepare_cached(&format!("SELECT {COLS} FROM heartbeats WHERE id = ?1"))?
            .query_row([id], row)
            .optional()
    }

    pub fn heartbeat_by_uuid(&self, uuid: &str) -> rusqlite::Result<Option<Heartbeat>> {
        self.conn
            .prepare_cached(&format!("SELECT {COLS} FROM heartbeats WHERE uuid = ?1"))?
            .query_row([uuid], row)
            .optional()
    }

    pub fn insert_heartbeat(&self, uuid: &str, f: &HeartbeatFields, now: i64) -> rusqlite::Result<i64> {
        self.conn.execute(
            "INSERT INTO heartbeats (uuid, name, period_s, grace_s, labels, status, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'new', ?6, ?6)",
            params![
                uuid,
                f.name,
                f.period_s,
                f.grace_s,
                serde_json::to_string(&f.labels).unwrap_or_default(),
                now
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn update_heartbeat(&self, id: i64, f: &HeartbeatFields, now: i64) -> rusqlite::Result<()> {
        self.conn.execute(
            "UPDATE heartbeats SET name = ?2, period_s = ?3, grace_s = ?4, labels = ?5, updated_at = ?6 WHERE id = ?1",
            params![id, f.name, f.period_s, f.grace_s, serde_json::to_string(&f.labels).unwrap_or_default(), now],
        )?;
        Ok(())
    }

    pub fn delete_heartbeat(&self, id: i64) -> rusqlite::Result<bool> {
        Ok(self.conn.execute("DELETE FROM heartbeats WHERE id = ?1", [id])? == 1)
    }

    pub fn set_heartbeat_paused(&self, id: i64, paused: bool, now: i64) -> rusqlite::Result<()> {
        self.conn.execute(
            "UPDATE heartbeats SET paused = ?2, running_since = CASE WHEN ?2 THEN NULL ELSE running_since END,
                 updated_at = ?3 WHERE id = ?1",
            params![id, paused, now],
        )?;
        Ok(())
    }

    /// The monitor's state after a ping or a missed deadline; records a
    /// flip when the status changed.
    pub fn set_heartbeat_state(&self, hb: &Heartbeat, old_status: &str, now: i64) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE heartbeats SET status = ?2, last_ping_at = ?3, last_success_at = ?4, running_since = ?5,
                     updated_at = ?6 WHERE id = ?1",
            )?
            .execute(params![hb.id, hb.status, hb.last_ping_at, hb.last_success_at, hb.running_since, now])?;
        if hb.status != old_status {
            self.conn
                .prepare_cached("INSERT INTO heartbeat_flips (heartbeat_id, at, status) VALUES (?1, ?2, ?3)")?
                .execute(params![hb.id, now, hb.status])?;
        }
        Ok(())
    }

    pub fn insert_ping(&self, heartbeat_id: i64, p: &NewPing) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO heartbeat_pings (heartbeat_id, at, kind, exit_code, method, remote_ip, user_agent, body, truncated)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                heartbeat_id,
                p.at,
                p.kind,
                p.exit_code,
                p.method,
                p.remote_ip,
                p.user_agent,
                p.body,
                p.truncated
            ])?;
        let id = self.conn.last_insert_rowid();
        self.conn
            .prepare_cached("DELETE FROM heartbeat_pings WHERE heartbeat_id = ?1 AND id <= ?2")?
            .execute(params![heartbeat_id, id - PINGS_KEPT])?;
        Ok(())
    }

    pub fn pings(&self, heartbeat_id: i64, limit: i64, offset: i64) -> rusqlite::Result<(Vec<Ping>, i64)> {
        let total = self.conn.query_row(
            "SELECT count(*) FROM heartbeat_pings WHERE heartbeat_id = ?1",
            [heartbeat_id],
            |r| r.get(0),
        )?;
        let mut st = self.conn.prepare_cached(
            "SELECT id, at, kind, exit_code, method, remote_ip, user_agent, body, truncated FROM heartbeat_pings
             WHERE heartbeat_id = ?1 ORDER BY id DESC LIMIT ?2 OFFSET ?3",
        )?;
        let rows = st.query_map(params![heartbeat_id, limit, offset], |r| {
            Ok(Ping {
                id: r.get(0)?,
                at: r.get(1)?,
                kind: r.get(2)?,
                exit_code: r.get(3)?,
                method: r.get(4)?,
                remote_ip: r.get(5)?,
                user_agent: r.get(6)?,
                body: r.get(7)?,
                truncated: r.get(8)?,
            })
        })?;
        Ok((rows.collect::<rusqlite::Result<_>>()?, total))
    }

    pub fn insert_execution(&self, heartbeat_id: i64, e: &Execution) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO heartbeat_executions (heartbeat_id, started_at, ended_at, outcome, exit_code, duration_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![heartbeat_id, e.started_at, e.ended_at, e.outcome, e.exit_code, e.duration_ms])?;
        Ok(())
    }

    pub fn executions(
        &self,
        heartbeat_id: i64,
        limit: i64,
        offset: i64,
    ) -> rusqlite::Result<(Vec<Execution>, i64)> {
        let total = self.conn.query_row(
            "SELECT count(*) FROM heartbeat_executions WHERE heartbeat_id = ?1",
            [heartbeat_id],
            |r| r.get(0),
        )?;
        let mut st = self.conn.prepare_cached(
            "SELECT id, started_at, ended_at, outcome, exit_code, duration_ms FROM heartbeat_executions
             WHERE heartbeat_id = ?1 ORDER BY id DESC LIMIT ?2 OFFSET ?3",
        )?;
        let rows = st.query_map(params![heartbeat_id, limit, offset], |r| {
            Ok(Execution {
                id: r.get(0)?,
                started_at: r.get(1)?,
                ended_at: r.get(2)?,
                outcome: r.get(3)?,
                exit_code: r.get(4)?,
                duration_ms: r.get(5)?,
            })
        })?;
        Ok((rows.collect::<rusqlite::Result<_>>()?, total))
    }

    /// Status flips since `from` plus the status in force at `from`.
    pub fn flips(&self, heartbeat_id: i64, from: i64) -> rusqlite::Result<Flips> {
        let before: Option<String> = self
            .conn
            .query_row(
                "SELECT status FROM heartbeat_flips WHERE heartbeat_id = ?1 AND at < ?2 ORDER BY at DESC LIMIT 1",
                params![heartbeat_id, from],
                |r| r.get(0),
            )
            .optional()?;
        let mut st = self.conn.prepare_cached(
            "SELECT at, status FROM heartbeat_flips WHERE heartbeat_id = ?1 AND at >= ?2 ORDER BY at",
        )?;
        let rows = st.query_map(params![heartbeat_id, from], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok((before, rows.collect::<rusqlite::Result<_>>()?))
    }
}
