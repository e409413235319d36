//! Rollups: 1 min, 5 min and 1 h buckets with sum/count/min/max per metric,
//! each level built from the one below. A watermark per level marks what is
//! final; a timer extends it, and backfilled snapshots (older than the
//! watermark) mark their node and time range dirty so exactly those buckets
//! are recomputed. Retention deletes each level past its own age.

use super::history::{METRICS, RAW_WITH_NODE, TS_SHIFT};
use super::Store;
use rusqlite::{params, OptionalExtension};

#[derive(Clone, Copy, Debug)]
pub struct RollupTable {
    pub name: &'static str,
    pub label: &'static str,
    pub resolution_s: i64,
    /// The table this level is computed from, and whether that is raw samples.
    source: &'static str,
    source_is_raw: bool,
}

pub const TABLES: [RollupTable; 3] = [
    RollupTable {
        name: "rollup_1m",
        label: "1m",
        resolution_s: 60,
        source: "samples",
        source_is_raw: true,
    },
    RollupTable {
        name: "rollup_5m",
        label: "5m",
        resolution_s: 300,
        source: "rollup_1m",
        source_is_raw: false,
    },
    RollupTable {
        name: "rollup_1h",
        label: "1h",
        resolution_s: 3600,
        source: "rollup_5m",
        source_is_raw: false,
    },
];

/// How long each resolution is kept, in seconds.
#[derive(Clone, Debug, PartialEq)]
pub struct Retention {
    pub raw_s: i64,
    pub m1_s: i64,
    pub m5_s: i64,
    pub h1_s: i64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            raw_s: 2 * 86400,
            m1_s: 8 * 86400,
            m5_s: 32 * 86400,
            h1_s: 400 * 86400,
        }
    }
}

impl Retention {
    fn of(&self, label: &str) -> i64 {
        match label {
            "1m" => self.m1_s,
            "5m" => self.m5_s,
            _ => self.h1_s,
        }
    }
}

/// Seconds a bucket stays open for samples that arrive a little late.
const SETTLE_S: i64 = 120;

/// Raw samples are read for windows up to this long. The raw table is
/// time-major (cheap to write), so a per-node read scans every node's rows
/// in the window; longer windows read the node-major rollups.
pub const RAW_MAX_SPAN_S: i64 = 3600;

/// Raw for short windows; otherwise the coarsest level not coarser than
/// `needed` seconds per point (1 min at least) that still holds data back to
/// `from`, or a coarser one if the finer levels have aged out.
pub fn pick_source(
    needed: i64,
    (from, to): (i64, i64),
    now: i64,
    retention: &Retention,
) -> Option<&'static RollupTable> {
    let covers = |label: &str| now - retention.of(label) <= from;
    let raw_covers = now - retention.raw_s <= from;
    if raw_covers && to - from <= RAW_MAX_SPAN_S {
        return None;
    }
    let needed = needed.max(TABLES[0].resolution_s);
    let mut choice: Option<&'static RollupTable> = None;
    for t in TABLES.iter() {
        if t.resolution_s <= needed {
            choice = Some(t);
        }
    }
    // Walk coarser while the chosen level has aged out at `from`.
    if let Some(mut t) = choice {
        while !covers(t.label) {
            match TABLES.iter().find(|n| n.resolution_s > t.resolution_s) {
                Some(next) => t = next,
                None => break,
            }
        }
        return Some(t);
    }
    None
}

/// Which nodes one rollup statement covers.
#[derive(Clone, Copy)]
enum Scope {
    All,
    /// `?3` names the node (a primary-key range on node-major tables).
    Node,
    /// Nodes with a dirty mark (one range scan of the time-major raw table).
    Dirty,
}

fn rollup_select(t: &RollupTable, scope: Scope) -> String {
    let mut cols = String::new();
    let mut aggs = String::new();
    for m in METRICS {
        cols.push_str(&format!(", {m}_sum, {m}_min, {m}_max, {m}_n"));
        if t.source_is_raw {
            aggs.push_str(&format!(", sum({m}), min({m}), max({m}), count({m})"));
        } else {
            aggs.push_str(&format!(", sum({m}_sum), min({m}_min), max({m}_max), sum({m}_n)"));
        }
    }
    let node = match scope {
        Scope::All => "",
        Scope::Node => " AND node_id = ?3",
        Scope::Dirty => " AND node_id IN (SELECT substr(key, 7) FROM settings WHERE key LIKE 'dirty:%')",
    };
    let (table, res) = (t.name, t.resolution_s);
    if t.source_is_raw {
        // Raw keys are (ts << TS_SHIFT) | node number: a time range is a key range.
        format!(
            "INSERT OR REPLACE INTO {table} (node_id, ts{cols})
             SELECT node_id, ((s.ts_node >> {TS_SHIFT}) / {res}) * {res} AS b{aggs}
             FROM {RAW_WITH_NODE}
             WHERE s.ts_node >= (?1 << {TS_SHIFT}) AND s.ts_node < (?2 << {TS_SHIFT}){node}
             GROUP BY node_id, b"
        )
    } else {
        format!(
            "INSERT OR REPLACE INTO {table} (node_id, ts{cols})
             SELECT node_id, (ts / {res}) * {res} AS b{aggs} FROM {src}
             WHERE ts >= ?1 AND ts < ?2{node} GROUP BY node_id, b",
            src = t.source,
        )
    }
}

impl Store {
    pub fn retention(&self) -> Retention {
        self.setting("retention")
            .ok()
            .flatten()
            .and_then(|s| {
                let v: serde_json::Value = serde_json::from_str(&s).ok()?;
                Some(Retention {
                    raw_s: v.get("raw_s")?.as_i64()?,
                    m1_s: v.get("m1_s")?.as_i64()?,
                    m5_s: v.get("m5_s")?.as_i64()?,
                    h1_s: v.get("h1_s")?.as_i64()?,
                })
            })
            .unwrap_or_default()
    }

    pub fn set_retention(&self, r: &Retention) -> rusqlite::Result<()> {
        let v = serde_json::json!({"raw_s": r.raw_s, "m1_s": r.m1_s, "m5_s": r.m5_s, "h1_s": r.h1_s});
        self.set_setting("retention", &v.to_string())
    }

    pub fn setting(&self, key: &str) -> rusqlite::Result<Option<String>> {
        // Read for every ingested snapshot (the rollup watermark): cached.
        self.conn
            .prepare_cached("SELECT value FROM settings WHERE key = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()
    }

    pub fn set_setting(&self, key: &str, value: &str) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![key, value])?;
        Ok(())
    }

    /// Everything before this time is final in `t`.
    pub fn rollup_watermark(&self, t: &RollupTable) -> rusqlite::Result<i64> {
        Ok(self
            .setting(&format!("watermark_{}", t.name))?
            .and_then(|s| s.parse().ok())
            .unwrap_or(0))
    }

    /// Notes that `node_id` received samples at `ts`, behind the 1-minute
    /// watermark: those buckets are recomputed on the next rollup pass.
    pub fn mark_rollup_dirty(&self, node_id: &str, ts: i64) -> rusqlite::Result<()> {
        let wm = self.rollup_watermark(&TABLES[0])?;
        if ts < wm {
            self.conn
                .prepare_cached(
                    "INSERT INTO settings (key, value) VALUES ('dirty:' || ?1, ?2)
                     ON CONFLICT(key) DO UPDATE SET value = min(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
                )?
                .execute(params![node_id, ts])?;
        }
        Ok(())
    }

    /// One rollup pass: extend every level's watermark to the last settled
    /// bucket, recompute dirty ranges, all in one transaction.
    /// The raw level is built from the time-major raw table with one range
    /// scan over all (or all dirty) nodes; coarser levels read the
    /// node-major level below through per-node key ranges, so no pass ever
    /// scans a whole table.
    pub fn roll_up(&mut self, now: i64) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        let store = StoreTx(&tx);
        let dirty: Vec<(String, i64)> = {
            let mut st = tx.prepare(
                "SELECT substr(key, 7), CAST(value AS INTEGER) FROM settings WHERE key LIKE 'dirty:%'",
            )?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let nodes: Vec<String> = {
            let mut st = tx.prepare("SELECT id FROM nodes")?;
            let rows = st.query_map([], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut lower_end = now - SETTLE_S;
        for t in TABLES.iter() {
            let end = (lower_end / t.resolution_s) * t.resolution_s;
            let wm = store.watermark(t)?;
            // A fresh database starts at the oldest data that still matters.
            let start = if wm == 0 { end - 2 * 86400 } else { wm };
            if t.source_is_raw {
                if end > start {
                    tx.execute(&rollup_select(t, Scope::All), params![start, end])?;
                }
                if let Some(from) = dirty.iter().map(|(_, f)| *f).min() {
                    let from = from.div_euclid(t.resolution_s) * t.resolution_s;
                    if from < start {
                        tx.execute(&rollup_select(t, Scope::Dirty), params![from, start])?;
                    }
                }
            } else {
                let mut per_node = tx.prepare_cached(&rollup_select(t, Scope::Node))?;
                if end > start {
                    for node in &nodes {
                        per_node.execute(params![start, end, node])?;
                    }
                }
                for (node, from) in &dirty {
                    let from = from.div_euclid(t.resolution_s) * t.resolution_s;
                    if from < start {
                        per_node.execute(params![from, start, node])?;
                    }
                }
            }
            if end > start {
                store.set_watermark(t, end)?;
            }
            lower_end = end.max(wm);
        }
        tx.execute("DELETE FROM settings WHERE key LIKE 'dirty:%'", [])?;
        tx.commit()?;
        // The tail is now a few minutes long: list it afresh.
        self.rebuild_tail()
    }

    /// Backfilled samples behind the watermark are invisible to rollup-based
    /// queries until their buckets are recomputed; history reads call this
    /// first so a chart never shows a gap that the data does not have.
    pub fn settle_rollups(&mut self, now: i64) -> rusqlite::Result<()> {
        // Before every history read: cached.
        let dirty: Option<i64> = self
            .conn
            .prepare_cached("SELECT 1 FROM settings WHERE key LIKE 'dirty:%' LIMIT 1")?
            .query_row([], |r| r.get(0))
            .optional()?;
        if dirty.is_some() {
            self.roll_up(now)?;
        }
        Ok(())
    }

    /// Deletes what has aged out at every resolution. Returns rows deleted.
    pub fn apply_retention(&self, now: i64) -> rusqlite::Result<usize> {
        let r = self.retention();
        let mut n = 0;
        n += self.conn.execute(
            &format!("DELETE FROM samples WHERE ts_node < (?1 << {TS_SHIFT})"),
            [now - r.raw_s],
        )?;
        for t in TABLES.iter() {
            n += self.conn.execute(
                &format!("DELETE FROM {} WHERE ts < ?1", t.name),
                [now - r.of(t.label)],
            )?;
        }
        Ok(n)
    }
}

/// Watermark access inside a transaction.
struct StoreTx<'a>(&'a rusqlite::Transaction<'a>);

impl StoreTx<'_> {
    fn watermark(&self, t: &RollupTable) -> rusqlite::Result<i64> {
        Ok(self
            .0
            .query_row(
                "SELECT value FROM settings WHERE key = ?1",
                [format!("watermark_{}", t.name)],
                |r| r.get::<_, String>(0),
            )
            .optional()?
            .and_then(|s| s.parse().ok())
            .unwrap_or(0))
    }
    fn set_watermark(&self, t: &RollupTable, v: i64) -> rusqlite::Result<()> {
        self.0.execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![format!("watermark_{}", t.name), v.to_string()],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::history::Sample;

    fn setup() -> Store {
        Store::memory_with_node("n1")
    }

    fn cpu(ts: i64, v: f64) -> Sample {
        let mut values = [None; 12];
        values[0] = Some(v);
        Sample { ts, values }
    }

    #[test]
    fn rollups_match_raw_and_backfill_is_recomputed() {
        let mut s = setup();
        let now = 10 * 86400;
        // Six hours of samples every 30 s, cpu = minute-of-hour.
        for ts in (now - 6 * 3600..now).step_by(30) {
            s.insert_sample("n1", &cpu(ts, ((ts / 60) % 60) as f64), &[], &[])
                .unwrap();
        }
        s.roll_up(now).unwrap();
        let wm = s.rollup_watermark(&TABLES[0]).unwrap();
        assert!(wm > now - 300 && wm <= now - SETTLE_S);
        // The 1 h rollup averages 0..59 = 29.5 for every full hour.
        let h = s
            .history("n1", &[0], now - 5 * 3600, now - 2 * 3600, 3, now)
            .unwrap();
        assert_eq!(h.source, "1h");
        assert!(
            h.points[0].iter().flatten().all(|p| (p.avg - 29.5).abs() < 1e-9),
            "{:?}",
            h.points
        );

        // A gap filled later (backfill) lands in the rollups after the next pass.
        let old = now - 3 * 3600 + 15;
        s.insert_sample("n1", &cpu(old, 1000.0), &[], &[]).unwrap();
        s.mark_rollup_dirty("n1", old).unwrap();
        s.roll_up(now + 60).unwrap();
        let max: Option<f64> = s
            .conn
            .query_row(
                "SELECT max(cpu_max) FROM rollup_1h WHERE node_id = 'n1'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(max, Some(1000.0));
    }

    #[test]
    fn retention_drops_old_rows_per_level() {
        let s = setup();
        let now = 100 * 86400;
        s.insert_sample("n1", &cpu(now - 3 * 86400, 1.0), &[], &[])
            .unwrap();
        s.insert_sample("n1", &cpu(now - 60, 1.0), &[], &[]).unwrap();
        assert_eq!(s.apply_retention(now).unwrap(), 1);
        assert_eq!(s.sample_count("n1").unwrap(), 1);
    }

    #[test]
    fn source_choice_follows_span_and_age() {
        let r = Retention::default();
        let now = 1000 * 86400;
        assert!(pick_source(5, (now - 3600, now), now, &r).is_none());
        assert!(
            pick_source(5, (now - 7200, now - 6000), now, &r).is_none(),
            "short and old: raw"
        );
        assert_eq!(pick_source(8, (now - 7200, now), now, &r).unwrap().label, "1m");
        assert_eq!(pick_source(90, (now - 86400, now), now, &r).unwrap().label, "1m");
        assert_eq!(
            pick_source(2600, (now - 30 * 86400, now), now, &r).unwrap().label,
            "5m"
        );
        assert_eq!(
            pick_source(60, (now - 20 * 86400, now), now, &r).unwrap().label,
            "5m"
        );
        assert_eq!(
            pick_source(60, (now - 200 * 86400, now), now, &r).unwrap().label,
            "1h"
        );
    }
}
