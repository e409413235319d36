//! Raw samples and history queries. A query picks its source (raw or a
//! rollup) and a bucket width so that no series exceeds the caller's point
//! budget, and reads the rollup only up to its watermark: the tail past it
//! comes from raw samples, so charts always reach the latest snapshot.

use super::rollup;
use super::Store;
use rusqlite::params;
use std::collections::HashMap;

/// The core per-node metrics, one column each in `samples` and the rollups.
pub const METRICS: [&str; 12] = [
    "cpu",
    "memory",
    "swap",
    "load1",
    "load5",
    "load15",
    "disk",
    "temperature",
    "net_rx",
    "net_tx",
    "disk_read",
    "disk_write",
];

pub fn metric_index(name: &str) -> Option<usize> {
    METRICS.iter().position(|m| *m == name)
}

/// One row of `samples`: values in METRICS order; None where the host had none.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    pub ts: i64,
    pub values: [Option<f64>; 12],
}

#[derive(Clone, Debug, Default)]
pub struct DiskSample {
    pub mount: String,
    pub used_percent: f64,
    pub used_bytes: u64,
    pub total_bytes: u64,
}

#[derive(Clone, Debug, Default)]
pub struct NetSample {
    pub interface: String,
    pub rx: f64,
    pub tx: f64,
}

/// The `detail` column of a samples row: per-mount and per-interface
/// figures, `{"disks": [[mount, used_percent, used_bytes, total_bytes], ...],
/// "net": [[interface, rx_bytes_per_s, tx_bytes_per_s], ...]}`, or None when
/// the snapshot carries neither (engine::ingest passes them for one snapshot
/// per node per 5 minutes). Kept in the row rather than in tables of their
/// own: the row's page is written by the commit anyway, and the separate
/// tables cost a third of the live WAL frames (docs/BENCHMARKS.md §4).
fn sample_detail(disks: &[DiskSample], nets: &[NetSample]) -> Option<String> {
    if disks.is_empty() && nets.is_empty() {
        return None;
    }
    #[derive(serde::Serialize)]
    struct Detail<'a> {
        disks: Vec<(&'a str, f64, u64, u64)>,
        net: Vec<(&'a str, f64, f64)>,
    }
    let detail = Detail {
        disks: disks
            .iter()
            .map(|d| (d.mount.as_str(), d.used_percent, d.used_bytes, d.total_bytes))
            .collect(),
        net: nets.iter().map(|n| (n.interface.as_str(), n.rx, n.tx)).collect(),
    };
    serde_json::to_string(&detail).ok()
}

/// One aggregated point.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Point {
    pub avg: f64,
    pub min: f64,
    pub max: f64,
}

#[derive(Clone, Debug, Default)]
pub struct Series {
    pub source: &'static str,
    pub resolution_s: i64,
    pub timestamps: Vec<i64>,
    /// Per requested metric, aligned with `timestamps`; None where no data.
    pub points: Vec<Vec<Option<Point>>>,
}

#[derive(Default, Clone, Copy)]
struct Acc {
    sum: f64,
    n: i64,
    min: f64,
    max: f64,
}

impl Acc {
    fn add(&mut self, sum: f64, n: i64, min: f64, max: f64) {
        if n == 0 {
            return;
        }
        if self.n == 0 {
            self.min = min;
            self.max = max;
        } else {
            self.min = self.min.min(min);
            self.max = self.max.max(max);
        }
        self.sum += sum;
        self.n += n;
    }
    fn point(&self) -> Option<Point> {
        (self.n > 0).then(|| Point {
            avg: self.sum / self.n as f64,
            min: self.min,
            max: self.max,
        })
    }
}

/// Raw samples are keyed `(ts << TS_SHIFT) | seq`, where `seq` is the
/// node's number in `node_seq` (schema version 7): one integer key in time
/// order, so group commits append whole pages.
pub const TS_SHIFT: i64 = 24;
/// The bits of a raw sample's key that hold the node number.
pub const SEQ_MASK: i64 = (1 << TS_SHIFT) - 1;
/// Raw samples `s` with their node `q` (`q.node_id`), for SQL text.
pub const RAW_WITH_NODE: &str = "samples s JOIN node_seq q ON q.seq = (s.ts_node & 16777215)";
/// The raw samples of the node named by `?1`, for SQL text.
pub const RAW_OF_NODE: &str = "(ts_node & 16777215) = (SELECT seq FROM node_seq WHERE node_id = ?1)";

impl Store {
    /// The node's number in raw sample keys.
    pub fn node_seq(&self, node_id: &str) -> rusqlite::Result<Option<i64>> {
        use rusqlite::OptionalExtension;
        self.conn
            .prepare_cached("SELECT seq FROM node_seq WHERE node_id = ?1")?
            .query_row([node_id], |r| r.get(0))
            .optional()
    }

    /// The node's number in raw sample keys (`insert_sample` takes it), or
    /// the error a missing node gave when samples had a foreign key.
    pub fn sample_node(&self, node_id: &str) -> rusqlite::Result<i64> {
        self.node_seq(node_id)?.ok_or_else(|| {
            rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY),
                Some(format!("no node '{node_id}' to store samples for")),
            )
        })
    }

    /// Inserts one snapshot's rows for the node numbered `seq`
    /// (`sample_node`, looked up once per request); false if (node, ts) was
    /// already stored.
    pub fn insert_sample(
        &self,
        node_id: &str,
        seq: i64,
        s: &Sample,
        disks: &[DiskSample],
        nets: &[NetSample],
    ) -> rusqlite::Result<bool> {
        // One row of VALUES, not `INSERT … SELECT … FROM node_seq`: SQLite
        // gives a statement that may write several rows a statement journal,
        // which copied the 4 KiB page each row went into (10-15 % of the
        // executor in a backfill, BENCHMARKS §1 "Stop 20").
        const _: () = assert!(TS_SHIFT == 24, "INSERT_SAMPLE spells the shift out");
        const INSERT_SAMPLE: &str = "INSERT OR IGNORE INTO samples (ts_node, cpu, memory, swap, load1, load5,
                 load15, disk, temperature, net_rx, net_tx, disk_read, disk_write, detail)
             VALUES ((?1 << 24) | ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)";
        let mut st = self.conn.prepare_cached(INSERT_SAMPLE)?;
        let v = &s.values;
        let detail = sample_detail(disks, nets);
        let inserted = st.execute(params![
            s.ts, seq, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], detail
        ])? > 0;
        if inserted {
            self.note_tail(node_id, s.ts);
        }
        Ok(inserted)
    }

    /// `insert_sample` with the node's number looked up, for tests.
    #[cfg(test)]
    pub fn insert_sample_of(
        &self,
        node_id: &str,
        s: &Sample,
        disks: &[DiskSample],
        nets: &[NetSample],
    ) -> rusqlite::Result<bool> {
        self.insert_sample(node_id, self.sample_node(node_id)?, s, disks, nets)
    }

    /// History of `metrics` (indexes into METRICS) for [from, to) with at
    /// most about `max_points` buckets.
    pub fn history(
        &self,
        node_id: &str,
        metrics: &[usize],
        from: i64,
        to: i64,
        max_points: i64,
        now: i64,
    ) -> rusqlite::Result<Series> {
        let one = self.history_many(&[node_id], metrics, from, to, max_points, now)?;
        Ok(one.series(0))
    }

    /// `history` for several nodes at once, in `node_ids` order. Each node's
    /// rollup blocks are read by key; the tail past the watermark comes from
    /// one scan of the time-major raw table for all of them (per node, that
    /// scan would read every node's rows once per node).
    pub fn history_many(
        &self,
        node_ids: &[&str],
        metrics: &[usize],
        from: i64,
        to: i64,
        max_points: i64,
        now: i64,
    ) -> rusqlite::Result<Fleet> {
        let span = (to - from).max(1);
        // Buckets are aligned to multiples of their width, so a window can touch
        // one more bucket than span/width: size for max_points - 1.
        let slots = (max_points - 1).max(1);
        let needed = (span + slots - 1) / slots;
        let table = rollup::pick_source(needed, (from, to), now, &self.retention());
        // A rollup's buckets are whole multiples of its resolution: 87 s
        // buckets over 1-minute rows would hold one row or two by turns,
        // and the chart would saw-tooth with the count.
        let bucket = match table {
            Some(t) => (needed.max(1) + t.resolution_s - 1) / t.resolution_s * t.resolution_s,
            None => needed.max(1),
        };
        let mut grid = Fleet::new(node_ids.len(), metrics.len(), from, to, bucket);
        let mut raw_from = from;
        if let Some(t) = table {
            let wm = self.rollup_watermark(t)?;
            let rollup_to = to.min(wm);
            if rollup_to > from {
                let w = Window {
                    metrics,
                    from,
                    to: rollup_to,
                    bucket,
                };
                // Which requested metric each stored one is, if any.
                let mut wanted = [None; METRICS.len()];
                for (i, &m) in w.metrics.iter().enumerate() {
                    wanted[m] = Some(i);
                }
                for (i, node) in node_ids.iter().enumerate() {
                    let Some(seq) = self.node_seq(node)? else { continue };
                    rollup::read_level(
                        &self.conn,
                        t,
                        seq,
                        (w.from, w.to),
                        &|m| wanted[m].is_some(),
                        &mut |ts, cell| {
                            let b = ts.div_euclid(bucket) * bucket;
                            match cell {
                                None => grid.touch(i, b),
                                Some((m, c)) => {
                                    if let Some(mi) = wanted[m] {
                                        grid.add(i, b, mi, &c)
                                    }
                                }
                            }
                        },
                    )?;
                }
                raw_from = rollup_to.max(from);
            }
        }
        if raw_from < to {
            let w = Window {
                metrics,
                from: raw_from,
                to,
                bucket,
            };
            if let [node] = node_ids {
                let mut each = |_: &str, b: i64, row: &rusqlite::Row| grid.merge(0, b, row);
                match self.tail_times(node, raw_from, to) {
                    // The listed part by key lookups, anything older by a scan.
                    Some((listed_from, times)) => {
                        if raw_from < listed_from {
                            let older = Window {
                                to: listed_from.min(to),
                                ..w
                            };
                            self.accumulate(Some(node), &older, &mut each)?;
                        }
                        self.accumulate_at(node, &times, &w, &mut each)?;
                    }
                    None => self.accumulate(Some(node), &w, &mut each)?,
                }
            } else {
                let index: HashMap<&str, usize> = node_ids.iter().enumerate().map(|(i, n)| (*n, i)).collect();
                self.accumulate(None, &w, &mut |node, b, row| match index.get(node) {
                    Some(&i) => grid.merge(i, b, row),
                    None => Ok(()),
                })?;
            }
        }
        grid.source = table.map(|t| t.label).unwrap_or("raw");
        Ok(grid)
    }

    /// `accumulate` for one node's raw samples at the given seconds, each
    /// read by its key (store::tail lists them).
    fn accumulate_at(
        &self,
        node: &str,
        times: &[i64],
        w: &Window,
        each: &mut dyn FnMut(&str, i64, &rusqlite::Row) -> rusqlite::Result<()>,
    ) -> rusqlite::Result<()> {
        let Some(seq) = self.node_seq(node)? else {
            return Ok(());
        };
        let cols = raw_cols(w.metrics);
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT ?3, ((ts_node >> {TS_SHIFT}) / ?4) * ?4{cols} FROM samples
             WHERE ts_node = (?1 << {TS_SHIFT}) | ?2"
        ))?;
        for &ts in times {
            let mut rows = st.query(params![ts, seq, node, w.bucket])?;
            while let Some(r) = rows.next()? {
                each(node, r.get(1)?, r)?;
            }
        }
        Ok(())
    }

    /// Streams the raw-sample buckets of `w` of one node (or of every node,
    /// one scan for a fleet) to `each(node_id, bucket, row)`; the row holds
    /// sum, count, min and max per metric from column 2 on. Rollups are read
    /// by `rollup::read_level`.
    fn accumulate(
        &self,
        node: Option<&str>,
        w: &Window,
        each: &mut dyn FnMut(&str, i64, &rusqlite::Row) -> rusqlite::Result<()>,
    ) -> rusqlite::Result<()> {
        // Column names come from the METRICS constant, never from input.
        // `Fleet::merge` folds rows into their bucket in any order, so no
        // read needs a GROUP BY (whose sorter cost more than the reads; a
        // fleet's raw tail of two hours is 120,000 rows at 500 nodes) or an
        // ORDER BY: with a range bound to parameters, an ORDER BY made SQLite
        // re-prepare the statement at every execution.
        let cols = raw_cols(w.metrics);
        // One node names itself (no column read per row); raw samples are
        // read by their time range.
        let sql = match node {
            Some(_) => format!(
                "SELECT ?1, ((ts_node >> {TS_SHIFT}) / ?4) * ?4{cols} FROM samples
                     WHERE ts_node >= (?2 << {TS_SHIFT}) AND ts_node < (?3 << {TS_SHIFT})
                       AND {RAW_OF_NODE}"
            ),
            None => format!(
                "SELECT q.node_id, ((s.ts_node >> {TS_SHIFT}) / ?4) * ?4{cols}
                     FROM {RAW_WITH_NODE}
                     WHERE ?1 IS NULL AND s.ts_node >= (?2 << {TS_SHIFT}) AND s.ts_node < (?3 << {TS_SHIFT})"
            ),
        };
        let mut st = self.conn.prepare_cached(&sql)?;
        let mut rows = st.query(params![node, w.from, w.to, w.bucket])?;
        while let Some(r) = rows.next()? {
            // A one-node source knows its node; a fleet's row names it
            // (borrowed from the row, not copied).
            let name = match node {
                Some(n) => n,
                None => r.get_ref(0)?.as_str()?,
            };
            each(name, r.get(1)?, r)?;
        }
        Ok(())
    }
}

/// One raw sample as the (sum, count, min, max) of each metric.
fn raw_cols(metrics: &[usize]) -> String {
    metrics
        .iter()
        .map(|&m| {
            let name = METRICS[m];
            format!(", {name}, {name} IS NOT NULL, {name}, {name}")
        })
        .collect()
}

/// What `accumulate` reads: the metrics, a window and a bucket width.
struct Window<'a> {
    metrics: &'a [usize],
    from: i64,
    to: i64,
    bucket: i64,
}

/// Every node's buckets on one grid of `slots` aligned buckets from `first`:
/// one dense allocation however many nodes (a fleet chart of 500 nodes x 200
/// buckets is ~3 MB; as per-node vectors it was 1,000 allocations that the
/// allocator kept after the reply, most of cairnd's steady-state heap).
pub struct Fleet {
    pub source: &'static str,
    pub resolution_s: i64,
    metrics: usize,
    first: i64,
    slots: usize,
    /// Per node and slot: whether any row fell into it (a row whose metrics
    /// are all null still makes a bucket, answered as null).
    seen: Vec<bool>,
    /// `metrics` accumulators per node and slot.
    accs: Vec<Acc>,
}

impl Fleet {
    fn new(nodes: usize, metrics: usize, from: i64, to: i64, bucket: i64) -> Fleet {
        let first = from.div_euclid(bucket) * bucket;
        let slots = ((to - 1).div_euclid(bucket) * bucket - first) / bucket + 1;
        let slots = slots.max(1) as usize;
        Fleet {
            source: "raw",
            resolution_s: bucket,
            metrics,
            first,
            slots,
            seen: vec![false; nodes * slots],
            accs: vec![Acc::default(); nodes * slots * metrics],
        }
    }

    /// Node `node`'s bucket starting at `b`, if on the grid (everything
    /// read from [from, to) is).
    fn at(&self, node: usize, b: i64) -> Option<usize> {
        let slot = (b - self.first).div_euclid(self.resolution_s);
        let slot = usize::try_from(slot).ok().filter(|s| *s < self.slots)?;
        Some(node * self.slots + slot)
    }

    /// Adds one bucket row of `accumulate` (sum, count, min, max per metric
    /// from column 2) to node `node`'s bucket starting at `b`, in any order.
    fn merge(&mut self, node: usize, b: i64, r: &rusqlite::Row) -> rusqlite::Result<()> {
        let Some(at) = self.at(node, b) else { return Ok(()) };
        self.seen[at] = true;
        add_row(&mut self.accs[at * self.metrics..(at + 1) * self.metrics], r)
    }

    /// Marks node `node`'s bucket at `b` as holding data (even if no value).
    fn touch(&mut self, node: usize, b: i64) {
        if let Some(at) = self.at(node, b) {
            self.seen[at] = true;
        }
    }

    /// Adds a rollup cell to the `metric`-th requested metric of a bucket.
    fn add(&mut self, node: usize, b: i64, metric: usize, c: &super::blocks::Cell) {
        if let Some(at) = self.at(node, b) {
            self.seen[at] = true;
            self.accs[at * self.metrics + metric].add(c.sum, i64::from(c.n), c.min, c.max);
        }
    }

    /// Node `node`'s (bucket start, slot index) for every bucket with a row.
    fn buckets(&self, node: usize) -> impl Iterator<Item = (i64, usize)> + '_ {
        let base = node * self.slots;
        (0..self.slots)
            .filter(move |s| self.seen[base + s])
            .map(move |s| (self.first + s as i64 * self.resolution_s, base + s))
    }

    /// Start times of node `node`'s buckets.
    pub fn timestamps(&self, node: usize) -> impl Iterator<Item = i64> + '_ {
        self.buckets(node).map(|(ts, _)| ts)
    }

    /// The `metric`-th requested metric of node `node`, aligned with
    /// `timestamps`; None where a bucket has no value.
    pub fn points(&self, node: usize, metric: usize) -> impl Iterator<Item = Option<Point>> + '_ {
        self.buckets(node)
            .map(move |(_, at)| self.accs[at * self.metrics + metric].point())
    }

    /// Node `node`'s buckets as an owned series.
    pub fn series(&self, node: usize) -> Series {
        Series {
            source: self.source,
            resolution_s: self.resolution_s,
            timestamps: self.timestamps(node).collect(),
            points: (0..self.metrics)
                .map(|m| self.points(node, m).collect())
                .collect(),
        }
    }
}

/// Adds a row's sum, count, min and max per metric (from column 2).
fn add_row(accs: &mut [Acc], r: &rusqlite::Row) -> rusqlite::Result<()> {
    for (i, acc) in accs.iter_mut().enumerate() {
        let base = 2 + i * 4;
        let n: i64 = r.get::<_, Option<i64>>(base + 1)?.unwrap_or(0);
        if n > 0 {
            let sum: f64 = r.get::<_, Option<f64>>(base)?.unwrap_or(0.0);
            let min: f64 = r.get::<_, Option<f64>>(base + 2)?.unwrap_or(0.0);
            let max: f64 = r.get::<_, Option<f64>>(base + 3)?.unwrap_or(0.0);
            acc.add(sum, n, min, max);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with_node() -> Store {
        Store::memory_with_node("n1")
    }

    impl Store {
        pub fn sample_count(&self, node_id: &str) -> rusqlite::Result<i64> {
            self.conn.query_row(
                &format!("SELECT count(*) FROM samples WHERE {RAW_OF_NODE}"),
                [node_id],
                |r| r.get(0),
            )
        }
    }

    fn sample(ts: i64, cpu: f64) -> Sample {
        let mut values = [None; 12];
        values[0] = Some(cpu);
        Sample { ts, values }
    }

    #[test]
    fn detail_is_kept_in_the_sample_row_only_when_given() {
        let s = store_with_node();
        let disks = [DiskSample {
            mount: "/".into(),
            used_percent: 12.5,
            used_bytes: 100,
            total_bytes: 800,
        }];
        let nets = [NetSample {
            interface: "eth0".into(),
            rx: 1.5,
            tx: 2.5,
        }];
        s.insert_sample_of("n1", &sample(100, 1.0), &disks, &nets)
            .unwrap();
        s.insert_sample_of("n1", &sample(130, 1.0), &[], &[]).unwrap();
        let rows: Vec<Option<String>> = s
            .conn
            .prepare("SELECT detail FROM samples ORDER BY ts_node")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            vec![
                Some(r#"{"disks":[["/",12.5,100,800]],"net":[["eth0",1.5,2.5]]}"#.to_string()),
                None
            ]
        );
    }

    #[test]
    fn duplicate_timestamps_are_ignored() {
        let s = store_with_node();
        assert!(s.insert_sample_of("n1", &sample(100, 1.0), &[], &[]).unwrap());
        assert!(!s.insert_sample_of("n1", &sample(100, 2.0), &[], &[]).unwrap());
        assert_eq!(s.sample_count("n1").unwrap(), 1);
    }

    #[test]
    fn samples_of_an_unknown_node_are_refused_naming_it() {
        let s = store_with_node();
        let e = s
            .insert_sample_of("gone", &sample(100, 1.0), &[], &[])
            .unwrap_err();
        assert!(e.to_string().contains("no node 'gone'"), "{e}");
        // The refusal leaves the store as it was.
        assert!(s.insert_sample_of("n1", &sample(100, 1.0), &[], &[]).unwrap());
        assert_eq!(s.sample_count("n1").unwrap(), 1);
    }

    #[test]
    fn history_never_exceeds_point_budget_and_averages() {
        let s = store_with_node();
        let now = 1_000_000;
        for i in 0..3000 {
            s.insert_sample_of("n1", &sample(now - 3000 * 10 + i * 10, (i % 10) as f64), &[], &[])
                .unwrap();
        }
        let h = s.history("n1", &[0], now - 30_000, now, 1000, now).unwrap();
        assert!(h.timestamps.len() <= 1000, "{} points", h.timestamps.len());
        // Longer than an hour: 1-minute buckets at the finest (500 here).
        assert!(h.timestamps.len() >= 450, "{} points", h.timestamps.len());
        let h = s.history("n1", &[0], now - 30_000, now, 11, now).unwrap();
        assert_eq!(h.resolution_s, 3000);
        assert!(h.timestamps.len() <= 11);
        let p = h.points[0][1].unwrap();
        assert!((p.avg - 4.5).abs() < 1e-9, "avg {}", p.avg);
        assert_eq!((p.min, p.max), (0.0, 9.0));
    }

    #[test]
    fn rollup_buckets_are_whole_multiples_of_the_rollup() {
        let mut s = store_with_node();
        let now = 10 * 86400;
        for ts in (now - 26 * 3600..now).step_by(30) {
            s.insert_sample_of("n1", &sample(ts, 50.0), &[], &[]).unwrap();
        }
        s.roll_up(now).unwrap();
        // 24 h in at most 1,000 points needs 87 s per point: from 1-minute
        // rows that is 2 minutes, every bucket two rows wide.
        let h = s.history("n1", &[0], now - 86400, now, 1000, now).unwrap();
        assert_eq!((h.source, h.resolution_s), ("1m", 120));
        assert_eq!(h.timestamps.len(), 720);
        assert!(h.timestamps.windows(2).all(|w| w[1] - w[0] == 120));
        let h = s.history("n1", &[0], now - 86400, now, 200, now).unwrap();
        assert_eq!((h.source, h.resolution_s), ("5m", 600));
    }

    #[test]
    fn many_nodes_read_like_one_each_across_rollups_and_raw_tail() {
        let mut s = store_with_node();
        for id in ["n2", "n3"] {
            s.insert_node(&super::super::nodes::NewNode::agent(id, 30), 0)
                .unwrap();
        }
        let now = 10 * 86400;
        for ts in (now - 6 * 3600..now).step_by(30) {
            s.insert_sample_of("n1", &sample(ts, (ts % 97) as f64), &[], &[])
                .unwrap();
            s.insert_sample_of("n2", &sample(ts + 7, (ts % 13) as f64), &[], &[])
                .unwrap();
        }
        // Rolled up to 40 minutes ago: the rest is read from the raw tail.
        s.roll_up(now - 40 * 60).unwrap();
        let ids = ["n2", "n3", "n1"];
        for (from, points) in [(now - 6 * 3600, 200), (now - 1800, 200), (now - 6 * 3600, 1000)] {
            let fleet = s.history_many(&ids, &[0], from, now, points, now).unwrap();
            let many: Vec<Series> = (0..ids.len()).map(|i| fleet.series(i)).collect();
            for (id, got) in ids.iter().zip(&many) {
                let one = s.history(id, &[0], from, now, points, now).unwrap();
                assert_eq!(got.timestamps, one.timestamps, "{id} from {from}");
                assert_eq!(got.points, one.points, "{id} from {from}");
            }
            assert!(many[1].timestamps.is_empty(), "n3 has no samples");
            assert!(many[0].timestamps.len() > 10 && many[2].timestamps.len() > 10);
            assert_eq!(
                many[0].timestamps.last().map(|t| t / many[0].resolution_s),
                Some((now - 30 + 7) / many[0].resolution_s),
                "the raw tail reaches the newest sample"
            );
        }
    }

    #[test]
    fn buckets_merge_rows_in_any_order() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let mut st = conn
            .prepare(
                "SELECT 'n', column1, column2, column3, column4, column5 FROM (VALUES
                    (60, 10.0, 2, 4.0, 6.0), (0, 3.0, 1, 3.0, 3.0), (60, 2.0, 1, 2.0, 2.0),
                    (120, 0.0, 0, 0.0, 0.0), (30, 5.0, 1, 5.0, 5.0))",
            )
            .unwrap();
        let mut rows = st.query([]).unwrap();
        let mut b = Fleet::new(2, 1, 0, 150, 30);
        while let Some(r) = rows.next().unwrap() {
            b.merge(1, r.get(1).unwrap(), r).unwrap();
        }
        assert_eq!(
            b.series(0).timestamps,
            Vec::<i64>::new(),
            "the other node is untouched"
        );
        let s = b.series(1);
        assert_eq!(s.timestamps, vec![0, 30, 60, 120]);
        let p = |avg, min, max| Some(Point { avg, min, max });
        assert_eq!(
            s.points[0],
            vec![p(3.0, 3.0, 3.0), p(5.0, 5.0, 5.0), p(4.0, 2.0, 6.0), None]
        );
    }

    #[test]
    fn sql_fragments_use_the_key_layout() {
        assert!(RAW_WITH_NODE.contains(&format!("& {SEQ_MASK})")));
        assert!(RAW_OF_NODE.contains(&format!("& {SEQ_MASK})")));
    }
}
