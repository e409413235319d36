//! Each node's newest snapshot, kept in memory and written behind. Updating
//! `nodes.latest` on every ingest rewrote one page per node per commit, the
//! largest share of disk writes; now the row is refreshed every few minutes
//! and at shutdown. The samples themselves are committed before every
//! acknowledgement, so a crash loses nothing acknowledged: at start the
//! newest raw sample of each node restores `last_seen` and its summary, and
//! only the full detail JSON may be up to one flush interval old until the
//! node's next snapshot.

use super::history::{Sample, RAW_WITH_NODE, TS_SHIFT};
use super::Store;
use rusqlite::params;
use std::collections::HashMap;

#[derive(Clone, Debug)]
pub struct Latest {
    pub ts: i64,
    /// The full snapshot as JSON text (what node detail shows).
    pub json: Option<String>,
    pub sample: Sample,
    dirty: bool,
}

#[derive(Default)]
pub struct LatestCache {
    map: HashMap<String, Latest>,
    /// Per node, the 5-minute bucket whose per-mount/per-interface detail is stored.
    detail_bucket: HashMap<String, i64>,
}

/// Seconds between stored per-mount / per-interface detail rows of a node.
pub const DETAIL_EVERY_S: i64 = 300;

/// Whether a snapshot at `ts`, stored right after one of the same node at
/// `previous`, can have its detail stored: only the first snapshot of each
/// bucket does (`wants_detail` remembers the bucket last seen, stored or not).
pub fn new_detail_bucket(previous: i64, ts: i64) -> bool {
    previous.div_euclid(DETAIL_EVERY_S) != ts.div_euclid(DETAIL_EVERY_S)
}

fn sample_row(r: &rusqlite::Row, first: usize) -> rusqlite::Result<[Option<f64>; 12]> {
    let mut values = [None; 12];
    for (i, v) in values.iter_mut().enumerate() {
        *v = r.get(first + i)?;
    }
    Ok(values)
}

const SAMPLE_COLS: &str =
    "cpu, memory, swap, load1, load5, load15, disk, temperature, net_rx, net_tx, disk_read, disk_write";

impl Store {
    /// Fills the cache from the nodes table, then lets newer raw samples
    /// (written after the last flush, before a crash) win.
    pub fn load_latest(&mut self) -> rusqlite::Result<()> {
        let mut map: HashMap<String, Latest> = HashMap::new();
        {
            let mut st = self.conn.prepare(&format!(
                "SELECT n.id, n.last_seen, n.latest, {SAMPLE_COLS} FROM nodes n
                 LEFT JOIN node_seq q ON q.node_id = n.id
                 LEFT JOIN samples s ON s.ts_node = (n.last_seen << {TS_SHIFT}) | q.seq
                 WHERE n.last_seen IS NOT NULL"
            ))?;
            let rows = st.query_map([], |r| {
                let ts: i64 = r.get(1)?;
                Ok((
                    r.get::<_, String>(0)?,
                    Latest {
                        ts,
                        json: r.get(2)?,
                        sample: Sample {
                            ts,
                            values: sample_row(r, 3)?,
                        },
                        dirty: false,
                    },
                ))
            })?;
            for row in rows {
                let (id, l) = row?;
                map.insert(id, l);
            }
        }
        // The newest hour of raw data is a cheap range at the end of the
        // time-major table.
        let mut st = self.conn.prepare(&format!(
            "SELECT q.node_id, s.ts_node >> {TS_SHIFT}, {SAMPLE_COLS}
             FROM {RAW_WITH_NODE}
             WHERE s.ts_node >= (((SELECT coalesce(max(ts_node), 0) FROM samples) >> {TS_SHIFT}) - 3600) << {TS_SHIFT}
             ORDER BY s.ts_node"
        ))?;
        let rows = st.query_map([], |r| {
            let ts: i64 = r.get(1)?;
            Ok((
                r.get::<_, String>(0)?,
                Sample {
                    ts,
                    values: sample_row(r, 2)?,
                },
            ))
        })?;
        for row in rows {
            let (id, sample) = row?;
            match map.get_mut(&id) {
                Some(l) if l.ts >= sample.ts => {}
                Some(l) => {
                    l.ts = sample.ts;
                    l.sample = sample;
                    l.dirty = true;
                }
                None => {
                    map.insert(
                        id,
                        Latest {
                            ts: sample.ts,
                            json: None,
                            sample,
                            dirty: true,
                        },
                    );
                }
            }
        }
        drop(st);
        self.latest.map = map;
        Ok(())
    }

    /// Records a committed snapshot as the node's newest unless a newer one
    /// is known (backfill arrives oldest first and must not go back in time).
    /// Returns whether it became the latest.
    pub fn note_latest(&mut self, node_id: &str, ts: i64, json: String, sample: Sample) -> bool {
        let newer = self.latest.map.get(node_id).is_none_or(|l| ts >= l.ts);
        if newer {
            self.latest.map.insert(
                node_id.to_string(),
                Latest {
                    ts,
                    json: Some(json),
                    sample,
                    dirty: true,
                },
            );
        }
        newer
    }

    pub fn latest(&self, node_id: &str) -> Option<&Latest> {
        self.latest.map.get(node_id)
    }

    pub fn forget_latest(&mut self, node_id: &str) {
        self.latest.map.remove(node_id);
        self.latest.detail_bucket.remove(node_id);
    }

    /// Whether this snapshot's per-mount / per-interface rows should be kept:
    /// the first of each node's 5-minute (wall-clock) buckets. Aligning to
    /// the clock means the detail tables are touched in a few commits per
    /// bucket rather than in every commit.
    /// Forgets which detail buckets these nodes have stored (a rolled-back
    /// transaction): their next snapshots store their detail again.
    pub fn forget_detail_marks<'a>(&mut self, nodes: impl Iterator<Item = &'a str>) {
        for id in nodes {
            self.latest.detail_bucket.remove(id);
        }
    }

    pub fn wants_detail(&mut self, node_id: &str, ts: i64) -> bool {
        let bucket = ts.div_euclid(DETAIL_EVERY_S);
        match self.latest.detail_bucket.get(node_id) {
            Some(b) if *b == bucket => false,
            _ => {
                self.latest.detail_bucket.insert(node_id.to_string(), bucket);
                true
            }
        }
    }

    /// Writes changed entries to `nodes` in one transaction; returns how many.
    pub fn flush_latest(&mut self) -> rusqlite::Result<usize> {
        let dirty: Vec<(String, i64, Option<String>)> = self
            .latest
            .map
            .iter()
            .filter(|(_, l)| l.dirty)
            .map(|(id, l)| (id.clone(), l.ts, l.json.clone()))
            .collect();
        if dirty.is_empty() {
            return Ok(0);
        }
        let tx = self.conn.transaction()?;
        {
            let mut st = tx.prepare_cached(
                "UPDATE nodes SET last_seen = ?2, latest = coalesce(?3, latest)
                 WHERE id = ?1 AND (last_seen IS NULL OR last_seen <= ?2)",
            )?;
            for (id, ts, json) in &dirty {
                st.execute(params![id, ts, json])?;
            }
        }
        tx.commit()?;
        for (id, ts, _) in &dirty {
            if let Some(l) = self.latest.map.get_mut(id) {
                if l.ts == *ts {
                    l.dirty = false;
                }
            }
        }
        Ok(dirty.len())
    }
}
