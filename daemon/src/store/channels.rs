//! Notification channels and the delivery outbox with its attempts.

use super::Store;
use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Which alerts a channel hears about (all empty: every alert).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Routing {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Channel {
    pub id: i64,
    pub name: String,
    pub kind: String,
    /// The stored config, secrets included: never render it to a client
    /// without `engine::notify::masked`.
    pub config: Value,
    pub min_severity: String,
    pub enabled: bool,
    pub filter: Routing,
    pub notify_on: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

pub struct ChannelFields {
    pub name: String,
    pub kind: String,
    pub config: Value,
    pub min_severity: String,
    pub enabled: bool,
    pub filter: Routing,
    pub notify_on: Vec<String>,
}

const CHANNEL_COLS: &str =
    "id, name, type, config, min_severity, enabled, filter, notify_on, created_at, updated_at";

fn channel_row(r: &Row) -> rusqlite::Result<Channel> {
    let config: String = r.get(3)?;
    let filter: String = r.get(6)?;
    let notify_on: String = r.get(7)?;
    Ok(Channel {
        id: r.get(0)?,
        name: r.get(1)?,
        kind: r.get(2)?,
        config: serde_json::from_str(&config).unwrap_or(Value::Null),
        min_severity: r.get(4)?,
        enabled: r.get(5)?,
        filter: serde_json::from_str(&filter).unwrap_or_default(),
        notify_on: serde_json::from_str(&notify_on).unwrap_or_default(),
        created_at: r.get(8)?,
        updated_at: r.get(9)?,
    })
}

#[derive(Clone, Debug, Serialize)]
pub struct Delivery {
    pub id: i64,
    pub channel_id: i64,
    pub alert_id: Option<i64>,
    pub event: String,
    pub status: String,
    pub attempts: i64,
    #[serde(serialize_with = "crate::api::ser_time")]
    pub next_attempt_at: i64,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    #[serde(serialize_with = "crate::api::ser_time")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::api::ser_time_opt")]
    pub delivered_at: Option<i64>,
    #[serde(skip)]
    pub payload: String,
}

const DELIVERY_COLS: &str = "id, channel_id, alert_id, event, status, attempts, next_attempt_at, \
                             last_status_code, last_error, created_at, delivered_at, payload";

fn delivery_row(r: &Row) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        id: r.get(0)?,
        channel_id: r.get(1)?,
        alert_id: r.get(2)?,
        event: r.get(3)?,
        status: r.get(4)?,
        attempts: r.get(5)?,
        next_attempt_at: r.get(6)?,
        last_status_code: r.get(7)?,
        last_error: r.get(8)?,
        created_at: r.get(9)?,
        delivered_at: r.get(10)?,
        payload: r.get(11)?,
    })
}

#[derive(Clone, Debug, Serialize)]
pub struct DeliveryAttempt {
    #[serde(serialize_with = "crate::api::ser_time")]
    pub at: i64,
    pub ok: bool,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

impl Store {
    pub fn channels(&self) -> rusqlite::Result<Vec<Channel>> {
        let mut st = self
            .conn
            .prepare_cached(&format!("SELECT {CHANNEL_COLS} FROM channels ORDER BY id"))?;
        let rows = st.query_map([], channel_row)?;
        rows.collect()
    }

    pub fn channel(&self, id: i64) -> rusqlite::Result<Option<Channel>> {
        self.conn
            .query_row(
                &format!("SELECT {CHANNEL_COLS} FROM channels WHERE id = ?1"),
                [id],
                channel_row,
            )
            .optional()
    }

    pub fn insert_channel(&self, c: &ChannelFields, now: i64) -> rusqlite::Result<i64> {
        self.conn.execute(
            "INSERT INTO channels (name, type, config, min_severity, enabled, filter, notify_on, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
            params![
                c.name,
                c.kind,
                c.config.to_string(),
                c.min_severity,
                c.enabled,
                serde_json::to_string(&c.filter).unwrap_or_else(|_| "{}".into()),
                serde_json::to_string(&c.notify_on).unwrap_or_else(|_| "[]".into()),
                now
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn update_channel(&self, id: i64, c: &ChannelFields, now: i64) -> rusqlite::Result<bool> {
        let n = self.conn.execute(
            "UPDATE channels SET name = ?2, type = ?3, config = ?4, min_severity = ?5, enabled = ?6,
                 filter = ?7, notify_on = ?8, updated_at = ?9 WHERE id = ?1",
            params![
                id,
                c.name,
                c.kind,
                c.config.to_string(),
                c.min_severity,
                c.enabled,
                serde_json::to_string(&c.filter).unwrap_or_else(|_| "{}".into()),
                serde_json::to_string(&c.notify_on).unwrap_or_else(|_| "[]".into()),
                now
            ],
        )?;
        Ok(n == 1)
    }

    pub fn delete_channel(&self, id: i64) -> rusqlite::Result<bool> {
        Ok(self.conn.execute("DELETE FROM channels WHERE id = ?1", [id])? == 1)
    }

    pub fn insert_delivery(
        &self,
        channel_id: i64,
        alert_id: Option<i64>,
        event: &str,
        payload: &str,
        now: i64,
    ) -> rusqlite::Result<i64> {
        self.conn
            .prepare_cached(
                "INSERT INTO deliveries (channel_id, alert_id, event, payload, status, next_attempt_at, created_at)
                 VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5)",
            )?
            .execute(params![channel_id, alert_id, event, payload, now])?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn delivery(&self, id: i64) -> rusqlite::Result<Option<Delivery>> {
        self.conn
            .query_row(
                &format!("SELECT {DELIVERY_COLS} FROM deliveries WHERE id = ?1"),
                [id],
                delivery_row,
            )
            .optional()
    }

    /// Pending deliveries due by `now`, oldest first.
    pub fn due_deliveries(&self, now: i64, limit: i64) -> rusqlite::Result<Vec<Delivery>> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {DELIVERY_COLS} FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ?1
             ORDER BY id LIMIT ?2"
        ))?;
        let rows = st.query_map(params![now, limit], delivery_row)?;
        rows.collect()
    }

    /// When the next pending delivery falls due, if any.
    pub fn next_delivery_due(&self) -> rusqlite::Result<Option<i64>> {
        self.conn.query_row(
            "SELECT min(next_attempt_at) FROM deliveries WHERE status = 'pending'",
            [],
            |r| r.get(0),
        )
    }

    pub fn deliveries(
        &self,
        channel: Option<i64>,
        alert: Option<i64>,
        status: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> rusqlite::Result<(Vec<Delivery>, i64)> {
        let filter = "(?1 IS NULL OR channel_id = ?1) AND (?2 IS NULL OR alert_id = ?2) AND (?3 IS NULL OR status = ?3)";
        let total = self.conn.query_row(
            &format!("SELECT count(*) FROM deliveries WHERE {filter}"),
            params![channel, alert, status],
            |r| r.get(0),
        )?;
        let mut st = self.conn.prepare(&format!(
            "SELECT {DELIVERY_COLS} FROM deliveries WHERE {filter} ORDER BY id DESC LIMIT ?4 OFFSET ?5"
        ))?;
        let rows = st.query_map(params![channel, alert, status, limit, offset], delivery_row)?;
        Ok((rows.collect::<rusqlite::Result<_>>()?, total))
    }

    pub fn delivery_attempts(&self, delivery_id: i64) -> rusqlite::Result<Vec<DeliveryAttempt>> {
        let mut st = self.conn.prepare_cached(
            "SELECT at, ok, status_code, error, duration_ms FROM delivery_attempts WHERE delivery_id = ?1 ORDER BY id",
        )?;
        let rows = st.query_map([delivery_id], |r| {
            Ok(DeliveryAttempt {
                at: r.get(0)?,
                ok: r.get(1)?,
                status_code: r.get(2)?,
                error: r.get(3)?,
                duration_ms: r.get(4)?,
            })
        })?;
        rows.collect()
    }

    /// Records one attempt and the delivery's new state in one transaction.
    /// `next` is the retry time, or None when the delivery is finished
    /// (delivered when the attempt was ok, failed otherwise).
    #[allow(clippy::too_many_arguments)]
    pub fn record_attempt(
        &mut self,
        delivery_id: i64,
        at: i64,
        ok: bool,
        status_code: Option<u16>,
        error: Option<&str>,
        duration_ms: u64,
        next: Option<i64>,
    ) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO delivery_attempts (delivery_id, at, ok, status_code, error, duration_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![delivery_id, at, ok, status_code, error, duration_ms as i64],
        )?;
        let status = match (ok, next) {
            (true, _) => "delivered",
            (false, Some(_)) => "pending",
            (false, None) => "failed",
        };
        tx.execute(
            "UPDATE deliveries SET status = ?2, attempts = attempts + 1, next_attempt_at = coalesce(?3, next_attempt_at),
                 last_status_code = ?4, last_error = ?5, delivered_at = CASE WHEN ?6 THEN ?7 END
             WHERE id = ?1",
            params![delivery_id, status, next, status_code, error, ok, at],
        )?;
        tx.commit()
    }
}
