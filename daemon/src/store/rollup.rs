//! Rollups: 1 min, 5 min and 1 h buckets with sum/count/min/max per metric,
//! each level built from the one below, stored as blocks (store::blocks):
//! rows per node, metric and stretch of `slots` buckets, keyed by `row_key`
//! so that a time range is a key range. A watermark per level marks what is
//! final; a timer extends it, and backfilled snapshots (older than the
//! watermark) mark their node and time range dirty so exactly those buckets
//! are recomputed. Retention deletes each level's blocks past its own age.

use super::blocks::{self, Block, Bucket, Cell, PRESENCE};
use super::history::{METRICS, SEQ_MASK, TS_SHIFT};
use super::Store;
use rusqlite::{params, Connection, OptionalExtension};

#[derive(Clone, Copy, Debug)]
pub struct RollupTable {
    pub name: &'static str,
    pub label: &'static str,
    pub resolution_s: i64,
    /// Buckets per block. A pass rewrites the blocks it touches whole, and
    /// passes run just after multiples of engine::timers::ROLLUP_EVERY (2 h):
    /// blocks of the 1- and 5-minute levels span exactly that, so a pass
    /// writes each once, complete; the hourly level's blocks span a day.
    pub slots: i64,
}

impl RollupTable {
    /// Seconds one block covers.
    pub fn span(&self) -> i64 {
        self.resolution_s * self.slots
    }
    fn block_of(&self, ts: i64) -> i64 {
        ts.div_euclid(self.span())
    }
    /// The block's slot holding the bucket at `ts`.
    fn slot_of(&self, ts: i64) -> usize {
        (ts.div_euclid(self.resolution_s) - self.block_of(ts) * self.slots) as usize
    }
    /// The start of slot `s` of block `b`.
    fn time_of(&self, b: i64, s: usize) -> i64 {
        b * self.span() + s as i64 * self.resolution_s
    }
}

/// Bits of a rollup row's key below the block number: the node number
/// (TS_SHIFT bits) and the row's part (4 bits, store::blocks).
pub const KEY_SHIFT: i64 = TS_SHIFT + 4;

/// Deletes every rollup row of the node named `node_id` (its number sits
/// above the 4 part bits of `row_key`): a scan, as node deletion is rare.
pub fn delete_node_rows(conn: &Connection, node_id: &str) -> rusqlite::Result<()> {
    for t in TABLES.iter() {
        conn.execute(
            &format!(
                "DELETE FROM {} WHERE ((k >> 4) & {SEQ_MASK}) = (SELECT seq FROM node_seq WHERE node_id = ?1)",
                t.name
            ),
            [node_id],
        )?;
    }
    Ok(())
}

/// A rollup row's key: time-major, so retention is one key range and a pass
/// over new data writes at the end of the table; a block's rows are adjacent.
pub fn row_key(block: i64, seq: i64, part: usize) -> i64 {
    (block << KEY_SHIFT) | ((seq & SEQ_MASK) << 4) | (part as i64 & 15)
}

pub const TABLES: [RollupTable; 3] = [
    RollupTable {
        name: "rollup_1m",
        label: "1m",
        resolution_s: 60,
        slots: 120,
    },
    RollupTable {
        name: "rollup_5m",
        label: "5m",
        resolution_s: 300,
        slots: 24,
    },
    RollupTable {
        name: "rollup_1h",
        label: "1h",
        resolution_s: 3600,
        slots: 24,
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
pub const SETTLE_S: i64 = 120;

/// Raw samples are read for windows up to this long. The raw table is
/// time-major (cheap to write), so a per-node read scans every node's rows
/// in the window; longer windows read the node's rollup blocks by key.
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

/// The 1-minute buckets of raw samples in [?1, ?2) per node number, in
/// (node, bucket) order, as (seq, bucket, then sum/count/min/max per metric);
/// `dirty_only` keeps nodes with a dirty mark.
fn raw_buckets_sql(dirty_only: bool) -> String {
    let res = TABLES[0].resolution_s;
    let mut aggs = String::new();
    for m in METRICS {
        aggs.push_str(&format!(", sum({m}), count({m}), min({m}), max({m})"));
    }
    let nodes = if dirty_only {
        format!(
            " AND (ts_node & {SEQ_MASK}) IN (SELECT seq FROM node_seq WHERE node_id IN
              (SELECT substr(key, 7) FROM settings WHERE key LIKE 'dirty:%'))"
        )
    } else {
        String::new()
    };
    // Raw keys are (ts << TS_SHIFT) | node number: a time range is a key range.
    format!(
        "SELECT ts_node & {SEQ_MASK} AS q, ((ts_node >> {TS_SHIFT}) / {res}) * {res} AS b{aggs}
         FROM samples WHERE ts_node >= (?1 << {TS_SHIFT}) AND ts_node < (?2 << {TS_SHIFT}){nodes}
         GROUP BY q, b"
    )
}

/// A bucket from columns `first..` holding sum, count, min, max per metric.
fn bucket_from_row(r: &rusqlite::Row, first: usize) -> rusqlite::Result<Bucket> {
    let mut b: Bucket = [None; METRICS.len()];
    for (i, c) in b.iter_mut().enumerate() {
        let at = first + i * 4;
        let n: i64 = r.get::<_, Option<i64>>(at + 1)?.unwrap_or(0);
        if n > 0 {
            *c = Some(Cell {
                n: u32::try_from(n).unwrap_or(u32::MAX),
                sum: r.get::<_, Option<f64>>(at)?.unwrap_or(0.0),
                min: r.get::<_, Option<f64>>(at + 2)?.unwrap_or(0.0),
                max: r.get::<_, Option<f64>>(at + 3)?.unwrap_or(0.0),
            });
        }
    }
    Ok(b)
}

fn corrupt(table: &str, e: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, format!("{table}: {e}").into())
}

/// Buckets of node `seq` in level `t` within [from, to): `each(ts, None)`
/// for each bucket, `each(ts, Some((metric, cell)))` for each value of a
/// metric `want` accepts.
pub fn read_level(
    conn: &Connection,
    t: &RollupTable,
    seq: i64,
    (from, to): (i64, i64),
    want: &dyn Fn(usize) -> bool,
    each: &mut dyn FnMut(i64, Option<(usize, Cell)>),
) -> rusqlite::Result<()> {
    if to <= from {
        return Ok(());
    }
    let mut st = conn.prepare_cached(&format!("SELECT data FROM {} WHERE k = ?1", t.name))?;
    let slots = t.slots as usize;
    for b in t.block_of(from)..=t.block_of(to - 1) {
        let inside = |s: usize| Some(t.time_of(b, s)).filter(|ts| (from..to).contains(ts));
        // One key lookup per wanted metric: a row is about a page.
        for part in std::iter::once(PRESENCE).chain((0..METRICS.len()).filter(|m| want(*m))) {
            let mut rows = st.query([row_key(b, seq, part)])?;
            let Some(row) = rows.next()? else {
                if part == PRESENCE {
                    break; // no bucket in this block
                }
                continue;
            };
            let data = row.get_ref(0)?.as_blob()?;
            blocks::visit_row(part, data, slots, |s, cell| {
                if let Some(ts) = inside(s) {
                    each(ts, cell)
                }
            })
            .map_err(|e| corrupt(t.name, e))?;
        }
    }
    Ok(())
}

/// Writes recomputed buckets into their blocks. Buckets arrive grouped by
/// (node, block) for speed, but any order is correct: a block is read,
/// updated and written back whenever the run of its buckets ends.
struct Packer<'c> {
    conn: &'c Connection,
    t: &'static RollupTable,
    open: Option<(i64, i64, Block)>,
}

impl<'c> Packer<'c> {
    fn new(conn: &'c Connection, t: &'static RollupTable) -> Packer<'c> {
        Packer { conn, t, open: None }
    }

    /// Replaces node `seq`'s bucket at `ts` (a multiple of the resolution).
    fn put(&mut self, seq: i64, ts: i64, bucket: &Bucket) -> rusqlite::Result<()> {
        let b = self.t.block_of(ts);
        if !matches!(&self.open, Some((q, ob, _)) if *q == seq && *ob == b) {
            self.flush()?;
            let mut block = Block::new(self.t.slots as usize);
            let mut st = self.conn.prepare_cached(&format!(
                "SELECT k & 15, data FROM {} WHERE k >= ?1 AND k <= ?2",
                self.t.name
            ))?;
            let mut rows = st.query([row_key(b, seq, 0), row_key(b, seq, 15)])?;
            while let Some(r) = rows.next()? {
                let part: i64 = r.get(0)?;
                block
                    .load(part as usize, r.get_ref(1)?.as_blob()?)
                    .map_err(|e| corrupt(self.t.name, e))?;
            }
            self.open = Some((seq, b, block));
        }
        if let Some((_, _, block)) = &mut self.open {
            block.set(self.t.slot_of(ts), bucket);
        }
        Ok(())
    }

    fn flush(&mut self) -> rusqlite::Result<()> {
        if let Some((seq, b, block)) = self.open.take() {
            for (part, data) in block.rows() {
                let k = row_key(b, seq, part);
                let name = self.t.name;
                match data {
                    Some(d) => self
                        .conn
                        .prepare_cached(&format!(
                            "INSERT OR REPLACE INTO {name} (k, data) VALUES (?1, ?2)"
                        ))?
                        .execute(params![k, d])?,
                    None => self
                        .conn
                        .prepare_cached(&format!("DELETE FROM {name} WHERE k = ?1"))?
                        .execute([k])?,
                };
            }
        }
        Ok(())
    }
}

/// Writes the buckets that `sql` selects as (node number, bucket start, then
/// sum, count, min, max per metric) into level `t`'s blocks.
pub fn pack_rows(
    conn: &Connection,
    t: &'static RollupTable,
    sql: &str,
    args: impl rusqlite::Params,
) -> rusqlite::Result<()> {
    let mut out = Packer::new(conn, t);
    let mut st = conn.prepare_cached(sql)?;
    let mut rows = st.query(args)?;
    while let Some(r) = rows.next()? {
        out.put(r.get(0)?, r.get(1)?, &bucket_from_row(r, 2)?)?;
    }
    out.flush()
}

/// Recomputes level `t`'s buckets of node `seq` in [from, to) from the level
/// below, one target block at a time (memory stays one block's worth).
fn roll_node(
    conn: &Connection,
    src: &RollupTable,
    t: &'static RollupTable,
    seq: i64,
    (from, to): (i64, i64),
) -> rusqlite::Result<()> {
    let mut out = Packer::new(conn, t);
    let mut start = from;
    while start < to {
        let end = ((t.block_of(start) + 1) * t.span()).min(to);
        let mut fresh: Vec<Option<Bucket>> = vec![None; t.slots as usize];
        read_level(conn, src, seq, (start, end), &|_| true, &mut |ts, cell| {
            let b = fresh[t.slot_of(ts)].get_or_insert([None; METRICS.len()]);
            if let Some((m, c)) = cell {
                blocks::merge_into(&mut b[m], &c);
            }
        })?;
        let base = t.block_of(start) * t.span();
        for (s, b) in fresh.iter().enumerate() {
            if let Some(b) = b {
                out.put(seq, base + s as i64 * t.resolution_s, b)?;
            }
        }
        start = end;
    }
    out.flush()
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
    /// scan over all (or all dirty) nodes; coarser levels read the level
    /// below's blocks per node by key, so no pass ever scans a whole table.
    pub fn roll_up(&mut self, now: i64) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        let store = StoreTx(&tx);
        let dirty: Vec<(i64, i64)> = {
            let mut st = tx.prepare(
                "SELECT q.seq, CAST(s.value AS INTEGER) FROM settings s
                 JOIN node_seq q ON q.node_id = substr(s.key, 7) WHERE s.key LIKE 'dirty:%'",
            )?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let nodes: Vec<i64> = {
            let mut st = tx.prepare("SELECT seq FROM node_seq")?;
            let rows = st.query_map([], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut lower_end = now - SETTLE_S;
        for (i, t) in TABLES.iter().enumerate() {
            let end = (lower_end / t.resolution_s) * t.resolution_s;
            let wm = store.watermark(t)?;
            // A fresh database starts at the oldest data that still matters.
            let start = if wm == 0 { end - 2 * 86400 } else { wm };
            if i == 0 {
                // Raw samples are time-major: one range scan for all (or all
                // dirty) nodes, its rows grouped by node and bucket.
                let mut ranges = Vec::new();
                if end > start {
                    ranges.push((false, start, end));
                }
                if let Some(from) = dirty.iter().map(|(_, f)| *f).min() {
                    let from = from.div_euclid(t.resolution_s) * t.resolution_s;
                    if from < start {
                        ranges.push((true, from, start));
                    }
                }
                for (dirty_only, from, to) in ranges {
                    pack_rows(&tx, t, &raw_buckets_sql(dirty_only), params![from, to])?;
                }
            } else {
                let src = &TABLES[i - 1];
                if end > start {
                    for &seq in &nodes {
                        roll_node(&tx, src, t, seq, (start, end))?;
                    }
                }
                for &(seq, from) in &dirty {
                    let from = from.div_euclid(t.resolution_s) * t.resolution_s;
                    if from < start {
                        roll_node(&tx, src, t, seq, (from, start))?;
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
            // Whole blocks only: a block goes once all of it has aged out.
            n += self.conn.execute(
                &format!("DELETE FROM {} WHERE k < (?1 << {KEY_SHIFT})", t.name),
                [t.block_of(now - r.of(t.label))],
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
            s.insert_sample_of("n1", &cpu(ts, ((ts / 60) % 60) as f64), &[], &[])
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
        s.insert_sample_of("n1", &cpu(old, 1000.0), &[], &[]).unwrap();
        s.mark_rollup_dirty("n1", old).unwrap();
        s.roll_up(now + 60).unwrap();
        let seq = s.node_seq("n1").unwrap().unwrap();
        let mut max = None::<f64>;
        read_level(
            &s.conn,
            &TABLES[2],
            seq,
            (0, now + 86400),
            &|m| m == 0,
            &mut |_, cell| {
                if let Some((_, c)) = cell {
                    max = Some(max.map_or(c.max, |m| m.max(c.max)))
                }
            },
        )
        .unwrap();
        assert_eq!(max, Some(1000.0));
    }

    #[test]
    fn retention_drops_old_rows_per_level() {
        let s = setup();
        let now = 100 * 86400;
        s.insert_sample_of("n1", &cpu(now - 3 * 86400, 1.0), &[], &[])
            .unwrap();
        s.insert_sample_of("n1", &cpu(now - 60, 1.0), &[], &[]).unwrap();
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

    #[test]
    fn a_deleted_node_leaves_no_rollup_blocks() {
        let mut s = setup();
        let now = 10 * 86400;
        for ts in (now - 3 * 3600..now).step_by(30) {
            s.insert_sample_of("n1", &cpu(ts, 1.0), &[], &[]).unwrap();
        }
        s.roll_up(now).unwrap();
        let blocks = |s: &Store| -> i64 {
            TABLES
                .iter()
                .map(|t| {
                    s.conn
                        .query_row(&format!("SELECT count(*) FROM {}", t.name), [], |r| {
                            r.get::<_, i64>(0)
                        })
                        .unwrap()
                })
                .sum()
        };
        assert!(blocks(&s) >= 3, "every level has blocks");
        assert!(s.delete_node("n1").unwrap());
        assert_eq!(blocks(&s), 0);
    }
}
