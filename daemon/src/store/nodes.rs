//! Nodes: identity, labels, agent tokens (hashed), latest snapshot, logs.

use super::history::RAW_OF_NODE;
use super::Store;
use rusqlite::{params, OptionalExtension};
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
pub struct Node {
    pub id: String,
    pub name: String,
    pub hostname: String,
    pub kind: String,
    pub os: String,
    pub arch: String,
    pub agent_version: String,
    pub labels: BTreeMap<String, String>,
    pub location: String,
    pub interval_s: i64,
    pub created_at: i64,
    pub last_seen: Option<i64>,
    /// The latest snapshot as stored JSON text.
    pub latest: Option<String>,
}

pub struct NewNode<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub hostname: &'a str,
    pub kind: &'a str,
    pub os: &'a str,
    pub arch: &'a str,
    pub agent_version: &'a str,
    pub token_hash: Option<&'a str>,
    pub interval_s: i64,
}

impl<'a> NewNode<'a> {
    /// A plain agent node named after its id (fixtures for tests and benchmarks).
    pub fn agent(id: &'a str, interval_s: i64) -> NewNode<'a> {
        NewNode {
            id,
            name: id,
            hostname: id,
            kind: "agent",
            os: "",
            arch: "",
            agent_version: "",
            token_hash: None,
            interval_s,
        }
    }
}

/// The columns `node_row` reads, but the last (`latest`).
macro_rules! node_cols {
    () => {
        "id, name, hostname, kind, os, arch, agent_version, labels, location, interval_s, created_at, last_seen"
    };
}
const NODE_COLS: &str = concat!(node_cols!(), ", latest");
/// Lists leave the latest snapshot out.
const NODE_LIST_COLS: &str = concat!(node_cols!(), ", NULL");

fn node_row(r: &rusqlite::Row) -> rusqlite::Result<Node> {
    let labels: String = r.get(7)?;
    Ok(Node {
        id: r.get(0)?,
        name: r.get(1)?,
        hostname: r.get(2)?,
        kind: r.get(3)?,
        os: r.get(4)?,
        arch: r.get(5)?,
        agent_version: r.get(6)?,
        // Written only by us from a validated map; an unreadable value shows as no labels.
        labels: serde_json::from_str(&labels).unwrap_or_default(),
        location: r.get(8)?,
        interval_s: r.get(9)?,
        created_at: r.get(10)?,
        last_seen: r.get(11)?,
        latest: r.get(12)?,
    })
}

#[derive(Clone, Debug, Default)]
pub struct LogEntry {
    pub ts: String,
    pub source: String,
    pub level: String,
    pub message: String,
    pub unit: String,
}

/// How many log lines a node keeps; older ones are dropped on insert.
pub const LOGS_PER_NODE: i64 = 1000;

/// What the alert engine needs of a node, without its latest snapshot.
#[derive(Clone, Debug)]
pub struct NodeMeta {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub interval_s: i64,
}

impl Store {
    pub fn node_metas(&self) -> rusqlite::Result<Vec<NodeMeta>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT id, name, labels, interval_s FROM nodes ORDER BY id")?;
        let rows = st.query_map([], |r| {
            let labels: String = r.get(2)?;
            Ok(NodeMeta {
                id: r.get(0)?,
                name: r.get(1)?,
                labels: serde_json::from_str(&labels).unwrap_or_default(),
                interval_s: r.get(3)?,
            })
        })?;
        rows.collect()
    }

    pub fn insert_node(&self, n: &NewNode, now: i64) -> rusqlite::Result<()> {
        // The node and its number for raw sample keys, together.
        let tx = self.begin()?;
        self.conn.execute(
            "INSERT INTO nodes (id, name, hostname, kind, os, arch, agent_version, token_hash, interval_s, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![n.id, n.name, n.hostname, n.kind, n.os, n.arch, n.agent_version, n.token_hash, n.interval_s, now],
        )?;
        self.conn
            .execute("INSERT INTO node_seq (node_id) VALUES (?1)", [&n.id])?;
        tx.commit()
    }

    pub fn node(&self, id: &str) -> rusqlite::Result<Option<Node>> {
        Ok(self
            .conn
            .prepare_cached(&format!("SELECT {NODE_COLS} FROM nodes WHERE id = ?1"))?
            .query_row([id], node_row)
            .optional()?
            .map(|n| self.overlay(n)))
    }

    /// The in-memory newest snapshot wins over the written-behind row.
    fn overlay(&self, mut n: Node) -> Node {
        if let Some(l) = self.latest(&n.id) {
            if n.last_seen.is_none_or(|t| l.ts >= t) && l.json.is_some() {
                n.latest = l.json.clone();
            }
        }
        n.last_seen = self.last_seen(&n);
        n
    }

    /// The newer of the row's last_seen and the in-memory newest snapshot's.
    fn last_seen(&self, n: &Node) -> Option<i64> {
        match (n.last_seen, self.latest(&n.id)) {
            (Some(t), Some(l)) => Some(t.max(l.ts)),
            (t, l) => t.or(l.map(|l| l.ts)),
        }
    }

    pub fn node_by_kind(&self, kind: &str) -> rusqlite::Result<Option<Node>> {
        self.conn
            .query_row(
                &format!("SELECT {NODE_COLS} FROM nodes WHERE kind = ?1 LIMIT 1"),
                [kind],
                node_row,
            )
            .optional()
    }

    /// Every node, without its latest snapshot (`latest` is `None`; `node`
    /// has it): no list shows it, and for 500 nodes the texts were 0.7 MB
    /// read, copied and freed at each dashboard refresh, which left the
    /// daemon's heap that much bigger (docs/BENCHMARKS.md §2).
    pub fn nodes(&self) -> rusqlite::Result<Vec<Node>> {
        let mut st = self
            .conn
            .prepare(&format!("SELECT {NODE_LIST_COLS} FROM nodes ORDER BY name, id"))?;
        let rows = st.query_map([], node_row)?;
        rows.map(|r| {
            r.map(|mut n| {
                n.last_seen = self.last_seen(&n);
                n
            })
        })
        .collect()
    }

    /// The node an agent token belongs to, with the stored hash for a
    /// constant-time re-check by the caller.
    pub fn node_by_token_hash(&self, token_hash: &str) -> rusqlite::Result<Option<(String, String)>> {
        // Every agent request: cached statements (here and below) skip
        // SQLite's parse and plan on the ingest path.
        self.conn
            .prepare_cached("SELECT id, token_hash FROM nodes WHERE token_hash = ?1")?
            .query_row([token_hash], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
    }

    pub fn set_node_token(&self, id: &str, token_hash: &str) -> rusqlite::Result<bool> {
        Ok(self.conn.execute(
            "UPDATE nodes SET token_hash = ?2 WHERE id = ?1",
            params![id, token_hash],
        )? > 0)
    }

    pub fn update_node_meta(
        &self,
        id: &str,
        name: Option<&str>,
        labels: Option<&BTreeMap<String, String>>,
        location: Option<&str>,
    ) -> rusqlite::Result<()> {
        if let Some(name) = name {
            self.conn
                .execute("UPDATE nodes SET name = ?2 WHERE id = ?1", params![id, name])?;
        }
        if let Some(labels) = labels {
            let text = serde_json::to_string(labels).unwrap_or_else(|_| "{}".into());
            self.conn
                .execute("UPDATE nodes SET labels = ?2 WHERE id = ?1", params![id, text])?;
        }
        if let Some(location) = location {
            self.conn.execute(
                "UPDATE nodes SET location = ?2 WHERE id = ?1",
                params![id, location],
            )?;
        }
        Ok(())
    }

    pub fn set_node_interval(&self, id: &str, interval_s: i64) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached("UPDATE nodes SET interval_s = ?2 WHERE id = ?1 AND interval_s != ?2")?
            .execute(params![id, interval_s])?;
        Ok(())
    }

    pub fn update_node_system(
        &self,
        id: &str,
        os: &str,
        arch: &str,
        agent_version: &str,
    ) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE nodes SET os = ?2, arch = ?3, agent_version = ?4 WHERE id = ?1
                   AND (os != ?2 OR arch != ?3 OR agent_version != ?4)",
            )?
            .execute(params![id, os, arch, agent_version])?;
        Ok(())
    }

    /// Deletes a node; every table keyed by node cascades. Raw samples are
    /// keyed by time first, so the node's rows are found by a scan.
    pub fn delete_node(&mut self, id: &str) -> rusqlite::Result<bool> {
        self.forget_latest(id);
        self.forget_tail(id);
        let tx = self.begin()?;
        self.conn
            .execute(&format!("DELETE FROM samples WHERE {RAW_OF_NODE}"), [id])?;
        super::rollup::delete_node_rows(&self.conn, id)?;
        let deleted = self.conn.execute("DELETE FROM nodes WHERE id = ?1", [id])? > 0;
        tx.commit()?;
        Ok(deleted)
    }

    pub fn insert_logs(&self, node_id: &str, entries: &[LogEntry]) -> rusqlite::Result<()> {
        let mut st = self.conn.prepare_cached(
            "INSERT INTO node_logs (node_id, ts, source, level, message, unit) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for e in entries {
            st.execute(params![node_id, e.ts, e.source, e.level, e.message, e.unit])?;
        }
        self.conn.execute(
            "DELETE FROM node_logs WHERE node_id = ?1 AND id <= (
                SELECT id FROM node_logs WHERE node_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
            params![node_id, LOGS_PER_NODE],
        )?;
        Ok(())
    }

    pub fn logs(&self, node_id: &str, limit: i64) -> rusqlite::Result<Vec<LogEntry>> {
        let mut st = self.conn.prepare(
            "SELECT ts, source, level, message, unit FROM node_logs WHERE node_id = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = st.query_map(params![node_id, limit], |r| {
            Ok(LogEntry {
                ts: r.get(0)?,
                source: r.get(1)?,
                level: r.get(2)?,
                message: r.get(3)?,
                unit: r.get(4)?,
            })
        })?;
        rows.collect()
    }
}
