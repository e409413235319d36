//! Rollup blocks: the buckets of one node, one metric and one stretch of
//! time in one row, instead of one row per bucket.
//!
//! A 24-hour chart reads 1,440 one-minute buckets. As rows, SQLite spent
//! about 0.7 µs on each (VDBE steps and column calls), 1 ms a chart; as
//! blocks it is a few dozen key lookups and a decode loop. A row per metric
//! (not per node) keeps a chart of two metrics from reading the other ten:
//! each row fits one page, where a block of all twelve spanned ten pages
//! that a fleet's worth of charts read from the OS instead of SQLite's cache
//! (docs/BENCHMARKS.md §3).
//!
//! Each block has up to 13 rows, told apart by `part`: one per metric that
//! has a value in the block (`part` = the metric's index), and one listing
//! which slots hold a bucket at all (`PRESENCE`; a snapshot whose metrics
//! were all absent still makes a bucket, answered as nulls).
//!
//! Row encoding (little-endian): byte 0 is the format version (1), then a
//! bitmap of `slots` bits; a metric row follows it with one cell per set
//! bit: count u32, sum f64, min f64, max f64.

use super::history::METRICS;

const VERSION: u8 = 1;
const CELL_BYTES: usize = 4 + 8 * 3;
/// The `part` of a block's row of present slots.
pub const PRESENCE: usize = 15;

/// One metric's aggregate in one bucket.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cell {
    pub n: u32,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl Cell {
    pub fn add(&mut self, o: &Cell) {
        self.n = self.n.saturating_add(o.n);
        self.sum += o.sum;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }
}

/// Adds `c` to an optional cell.
pub fn merge_into(slot: &mut Option<Cell>, c: &Cell) {
    match slot {
        Some(have) => have.add(c),
        None => *slot = Some(*c),
    }
}

/// One bucket: every metric's cell, None where the metric had no value.
pub type Bucket = [Option<Cell>; METRICS.len()];

fn bitmap_len(slots: usize) -> usize {
    slots.div_ceil(8)
}

fn bit(map: &[u8], i: usize) -> bool {
    map[i / 8] & (1 << (i % 8)) != 0
}

fn f64_at(b: &[u8]) -> f64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    f64::from_le_bytes(a)
}

/// The version byte and bitmap of a row, and the bytes after them.
fn split(data: &[u8], slots: usize) -> Result<(&[u8], &[u8]), String> {
    let map_end = 1 + bitmap_len(slots);
    match data.first() {
        None => Err("rollup row is empty".into()),
        Some(&v) if v != VERSION => Err(format!("rollup row has unknown format version {v}")),
        Some(_) if data.len() < map_end => Err("rollup row is shorter than its bitmap".into()),
        Some(_) => Ok((&data[1..map_end], &data[map_end..])),
    }
}

/// Calls `each(slot)` for every slot a presence row lists.
fn visit_presence(data: &[u8], slots: usize, mut each: impl FnMut(usize)) -> Result<(), String> {
    let (map, rest) = split(data, slots)?;
    if !rest.is_empty() {
        return Err("presence row has trailing bytes".into());
    }
    (0..slots).filter(|s| bit(map, *s)).for_each(&mut each);
    Ok(())
}

/// Calls `each(slot, cell)` for every value in a metric row.
fn visit_cells(data: &[u8], slots: usize, mut each: impl FnMut(usize, Cell)) -> Result<(), String> {
    let (map, cells) = split(data, slots)?;
    let count = (0..slots).filter(|s| bit(map, *s)).count();
    if cells.len() != count * CELL_BYTES {
        return Err(format!(
            "metric row holds {} bytes for {count} cells",
            cells.len()
        ));
    }
    for (s, b) in (0..slots)
        .filter(|s| bit(map, *s))
        .zip(cells.chunks_exact(CELL_BYTES))
    {
        let c = Cell {
            n: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            sum: f64_at(&b[4..]),
            min: f64_at(&b[12..]),
            max: f64_at(&b[20..]),
        };
        each(s, c);
    }
    Ok(())
}

/// Walks one stored row of a block, whatever its part: `each(slot, None)`
/// for every bucket a presence row lists, `each(slot, Some((metric, cell)))`
/// for every value of a metric row.
pub fn visit_row(
    part: usize,
    data: &[u8],
    slots: usize,
    mut each: impl FnMut(usize, Option<(usize, Cell)>),
) -> Result<(), String> {
    if part == PRESENCE {
        visit_presence(data, slots, |s| each(s, None))
    } else if part < METRICS.len() {
        visit_cells(data, slots, |s, c| each(s, Some((part, c))))
    } else {
        Err(format!("rollup row has unknown part {part}"))
    }
}

/// A block being rewritten: every row of it decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    slots: usize,
    present: Vec<bool>,
    /// Metric-major: `cells[m * slots + s]`.
    cells: Vec<Option<Cell>>,
    /// Which parts had a row when loaded (a part left empty is deleted).
    had: u16,
}

impl Block {
    pub fn new(slots: usize) -> Block {
        Block {
            slots,
            present: vec![false; slots],
            cells: vec![None; slots * METRICS.len()],
            had: 0,
        }
    }

    /// Takes in one stored row of the block.
    pub fn load(&mut self, part: usize, data: &[u8]) -> Result<(), String> {
        let slots = self.slots;
        visit_row(part, data, slots, |s, cell| match cell {
            None => self.present[s] = true,
            Some((m, c)) => self.cells[m * slots + s] = Some(c),
        })?;
        self.had |= 1 << part;
        Ok(())
    }

    /// Replaces slot `s` with `bucket` (the bucket was recomputed whole).
    pub fn set(&mut self, s: usize, bucket: &Bucket) {
        self.present[s] = true;
        for (m, c) in bucket.iter().enumerate() {
            self.cells[m * self.slots + s] = *c;
        }
    }

    /// The rows to store, per part: Some(bytes) to write, None to delete.
    pub fn rows(&self) -> Vec<(usize, Option<Vec<u8>>)> {
        let map_len = bitmap_len(self.slots);
        let bitmap = |has: &dyn Fn(usize) -> bool| {
            let mut out = Vec::with_capacity(1 + map_len);
            out.push(VERSION);
            let mut map = vec![0u8; map_len];
            for s in (0..self.slots).filter(|s| has(*s)) {
                map[s / 8] |= 1 << (s % 8);
            }
            out.extend_from_slice(&map);
            out
        };
        let mut rows = Vec::new();
        if self.present.iter().any(|p| *p) {
            rows.push((PRESENCE, Some(bitmap(&|s| self.present[s]))));
        }
        for m in 0..METRICS.len() {
            let cells = &self.cells[m * self.slots..(m + 1) * self.slots];
            let count = cells.iter().flatten().count();
            if count == 0 {
                if self.had & (1 << m) != 0 {
                    rows.push((m, None));
                }
                continue;
            }
            let mut out = bitmap(&|s| cells[s].is_some());
            out.reserve(count * CELL_BYTES);
            for c in cells.iter().flatten() {
                out.extend_from_slice(&c.n.to_le_bytes());
                out.extend_from_slice(&c.sum.to_le_bytes());
                out.extend_from_slice(&c.min.to_le_bytes());
                out.extend_from_slice(&c.max.to_le_bytes());
            }
            rows.push((m, Some(out)));
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(v: f64) -> Cell {
        Cell {
            n: 1,
            sum: v,
            min: v,
            max: v,
        }
    }

    fn reload(b: &Block) -> Block {
        let mut back = Block::new(b.slots);
        for (part, data) in b.rows() {
            if let Some(d) = data {
                back.load(part, &d).unwrap();
            }
        }
        back
    }

    #[test]
    fn blocks_round_trip_sparse_cells_and_empty_buckets() {
        let mut b = Block::new(12);
        let mut full: Bucket = [None; METRICS.len()];
        full[0] = Some(cell(1.5));
        full[11] = Some(Cell {
            n: 3,
            sum: 9.0,
            min: 1.0,
            max: 5.0,
        });
        b.set(0, &full);
        b.set(11, &[None; METRICS.len()]);
        b.set(7, &full);
        let rows = b.rows();
        let parts: Vec<usize> = rows.iter().map(|(p, _)| *p).collect();
        assert_eq!(parts, vec![PRESENCE, 0, 11], "absent metrics have no row");
        let mut back = reload(&b);
        back.had = 0;
        assert_eq!(back, b);
        let mut present = Vec::new();
        visit_presence(rows[0].1.as_deref().unwrap(), 12, |s| present.push(s)).unwrap();
        assert_eq!(present, vec![0, 7, 11], "an empty bucket stays a bucket");
        let mut seen = Vec::new();
        visit_cells(rows[2].1.as_deref().unwrap(), 12, |s, c| {
            seen.push((s, c.n, c.sum))
        })
        .unwrap();
        assert_eq!(seen, vec![(0, 3, 9.0), (7, 3, 9.0)]);
    }

    #[test]
    fn a_metric_emptied_by_a_recompute_is_deleted() {
        let mut b = Block::new(4);
        let mut one: Bucket = [None; METRICS.len()];
        one[3] = Some(cell(2.0));
        b.set(1, &one);
        let mut back = reload(&b);
        back.set(1, &[None; METRICS.len()]);
        let rows = back.rows();
        assert!(rows.contains(&(3, None)), "{rows:?}");
    }

    #[test]
    fn bad_rows_are_errors_not_panics() {
        let mut b = Block::new(8);
        let mut one: Bucket = [None; METRICS.len()];
        one[2] = Some(cell(4.0));
        b.set(3, &one);
        let rows = b.rows();
        let good = rows[1].1.clone().unwrap();
        for cut in 0..good.len() {
            assert!(Block::new(8).load(2, &good[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = good.clone();
        long.push(0);
        assert!(Block::new(8).load(2, &long).is_err());
        let mut version = good.clone();
        version[0] = 9;
        assert!(Block::new(8).load(2, &version).is_err());
        assert!(Block::new(120).load(2, &good).is_err(), "wrong slot count");
        assert!(Block::new(8).load(13, &good).is_err(), "unknown part");
        let presence = rows[0].1.clone().unwrap();
        assert!(Block::new(8)
            .load(PRESENCE, &[presence.clone(), vec![1]].concat())
            .is_err());
    }
}
