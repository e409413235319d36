//! Maintenance windows and silences as stored.

use super::Store;
use crate::engine::suppress::{Matchers, Silence, Window, WindowFields};
use rusqlite::{params, OptionalExtension, Row};

const WINDOW_COLS: &str =
    "id, name, starts_at, ends_at, weekly, nodes, labels, created_by, created_at, updated_at";

fn window_row(r: &Row) -> rusqlite::Result<Window> {
    let weekly: Option<String> = r.get(4)?;
    let nodes: String = r.get(5)?;
    let labels: String = r.get(6)?;
    Ok(Window {
        id: r.get(0)?,
        name: r.get(1)?,
        start: r.get(2)?,
        end: r.get(3)?,
        weekly: weekly.and_then(|w| serde_json::from_str(&w).ok()),
        nodes: serde_json::from_str(&nodes).unwrap_or_default(),
        labels: serde_json::from_str(&labels).unwrap_or_default(),
        created_by: r.get(7)?,
        created_at: r.get(8)?,
        updated_at: r.get(9)?,
    })
}

impl Window {
    pub fn fields(&self) -> WindowFields {
        WindowFields {
            name: self.name.clone(),
            start: self.start,
            end: self.end,
            weekly: self.weekly.clone(),
            nodes: self.nodes.clone(),
            labels: self.labels.clone(),
        }
    }
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

const SILENCE_COLS: &str = "id, matchers, comment, created_by, created_at, starts_at, expires_at";

impl Store {
    pub fn windows(&self) -> rusqlite::Result<Vec<Window>> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {WINDOW_COLS} FROM maintenance_windows ORDER BY id"
        ))?;
        let rows = st.query_map([], window_row)?;
        rows.collect()
    }

    pub fn window(&self, id: i64) -> rusqlite::Result<Option<Window>> {
        self.conn
            .query_row(
                &format!("SELECT {WINDOW_COLS} FROM maintenance_windows WHERE id = ?1"),
                [id],
                window_row,
            )
            .optional()
    }

    pub fn insert_window(&self, w: &WindowFields, by: &str, now: i64) -> rusqlite::Result<i64> {
        self.conn.execute(
            "INSERT INTO maintenance_windows (name, starts_at, ends_at, weekly, nodes, labels, created_by, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
            params![
                w.name,
                w.start,
                w.end,
                w.weekly.as_ref().map(json),
                json(&w.nodes),
                json(&w.labels),
                by,
                now
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn update_window(&self, id: i64, w: &WindowFields, now: i64) -> rusqlite::Result<bool> {
        let n = self.conn.execute(
            "UPDATE maintenance_windows SET name = ?2, starts_at = ?3, ends_at = ?4, weekly = ?5, nodes = ?6,
                 labels = ?7, updated_at = ?8 WHERE id = ?1",
            params![
                id,
                w.name,
                w.start,
                w.end,
                w.weekly.as_ref().map(json),
                json(&w.nodes),
                json(&w.labels),
                now
            ],
        )?;
        Ok(n == 1)
    }

    pub fn delete_window(&self, id: i64) -> rusqlite::Result<bool> {
        Ok(self
            .conn
            .execute("DELETE FROM maintenance_windows WHERE id = ?1", [id])?
            == 1)
    }

    fn silence_row(r: &Row, now: i64) -> rusqlite::Result<Silence> {
        let matchers: String = r.get(1)?;
        let (starts_at, expires_at) = (r.get(5)?, r.get(6)?);
        Ok(Silence {
            id: r.get(0)?,
            matchers: serde_json::from_str::<Matchers>(&matchers).unwrap_or_default(),
            comment: r.get(2)?,
            created_by: r.get(3)?,
            created_at: r.get(4)?,
            starts_at,
            expires_at,
            state: Silence::state_at(starts_at, expires_at, now),
        })
    }

    /// Silences, newest first; `unexpired` leaves out the expired ones.
    pub fn silences(&self, now: i64, unexpired: bool) -> rusqlite::Result<Vec<Silence>> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {SILENCE_COLS} FROM silences WHERE (?1 = 0 OR expires_at > ?2) ORDER BY id DESC"
        ))?;
        let rows = st.query_map(params![unexpired, now], |r| Store::silence_row(r, now))?;
        rows.collect()
    }

    pub fn silence(&self, id: i64, now: i64) -> rusqlite::Result<Option<Silence>> {
        self.conn
            .query_row(
                &format!("SELECT {SILENCE_COLS} FROM silences WHERE id = ?1"),
                [id],
                |r| Store::silence_row(r, now),
            )
            .optional()
    }

    pub fn insert_silence(
        &self,
        m: &Matchers,
        comment: &str,
        by: &str,
        starts_at: i64,
        expires_at: i64,
        now: i64,
    ) -> rusqlite::Result<i64> {
        self.conn.execute(
            "INSERT INTO silences (matchers, comment, created_by, created_at, starts_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![json(m), comment, by, now, starts_at, expires_at],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Ends a silence now (kept for the record as expired).
    pub fn expire_silence(&self, id: i64, now: i64) -> rusqlite::Result<bool> {
        let n = self.conn.execute(
            "UPDATE silences SET expires_at = min(expires_at, ?2), starts_at = min(starts_at, ?2) WHERE id = ?1",
            params![id, now],
        )?;
        Ok(n == 1)
    }

    /// Forgets silences that expired before `before`.
    pub fn prune_silences(&self, before: i64) -> rusqlite::Result<usize> {
        self.conn
            .execute("DELETE FROM silences WHERE expires_at < ?1", [before])
    }
}
