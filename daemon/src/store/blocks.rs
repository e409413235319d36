//! Rollup blocks: one row per node and stretch of time holding every bucket
//! of that stretch, instead of one row per bucket.
//!
//! A 24-hour chart reads 1,440 one-minute buckets. As rows, SQLite spent
//! about 0.7 µs on each (VDBE steps and column calls), 1 ms a chart; as
//! blocks it is a dozen key lookups and a decode loop (docs/BENCHMARKS.md §3).
//!
//! Encoding (little-endian), sparse so that absent metrics and empty slots
//! cost a bit each:
//! - byte 0: format version (1);
//! - the slot bitmap: which slots hold a bucket (a snapshot whose metrics were
//!   all absent still makes a bucket, answered as nulls);
//! - per metric, in `METRICS` order: a u32 byte length, then (when non-zero)
//!   a bitmap of the slots holding a value and, per set bit, the cell:
//!   count u32, sum f64, min f64, max f64.

use super::history::METRICS;

const VERSION: u8 = 1;
const CELL_BYTES: usize = 4 + 8 * 3;

/// One metric's aggregate in one bucket.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cell {
    pub n: u32,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl Cell {
    pub fn of(v: f64) -> Cell {
        Cell {
            n: 1,
            sum: v,
            min: v,
            max: v,
        }
    }

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

/// A decoded block of `slots` buckets.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    slots: usize,
    present: Vec<bool>,
    /// Metric-major: `cells[m * slots + s]`.
    cells: Vec<Option<Cell>>,
}

fn bitmap_len(slots: usize) -> usize {
    slots.div_ceil(8)
}

/// A reader over a blob that fails (never panics) on a short or bad blob.
struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.data.len());
        let end = end.ok_or_else(|| format!("rollup block truncated at byte {}", self.at))?;
        let s = &self.data[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

fn f64_at(b: &[u8]) -> f64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    f64::from_le_bytes(a)
}

fn bit(map: &[u8], i: usize) -> bool {
    map[i / 8] & (1 << (i % 8)) != 0
}

/// Walks a blob: `each(s, None)` for each bucket present, then
/// `each(s, Some((m, cell)))` for each value of the metrics that `want(m)`
/// accepts (others are skipped by their length, undecoded).
pub fn visit(
    data: &[u8],
    slots: usize,
    want: impl Fn(usize) -> bool,
    mut each: impl FnMut(usize, Option<(usize, Cell)>),
) -> Result<(), String> {
    let mut r = Reader { data, at: 0 };
    let version = r.take(1)?[0];
    if version != VERSION {
        return Err(format!("rollup block has unknown format version {version}"));
    }
    let present = r.take(bitmap_len(slots))?;
    for s in (0..slots).filter(|s| bit(present, *s)) {
        each(s, None);
    }
    for m in 0..METRICS.len() {
        let len = r.u32()? as usize;
        let section = r.take(len)?;
        if len == 0 || !want(m) {
            continue;
        }
        let mut sr = Reader { data: section, at: 0 };
        let map = sr.take(bitmap_len(slots))?;
        for s in (0..slots).filter(|s| bit(map, *s)) {
            let b = sr.take(CELL_BYTES)?;
            let c = Cell {
                n: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                sum: f64_at(&b[4..]),
                min: f64_at(&b[12..]),
                max: f64_at(&b[20..]),
            };
            each(s, Some((m, c)));
        }
        if sr.at != section.len() {
            return Err(format!("rollup block: metric {m} has trailing bytes"));
        }
    }
    if r.at != data.len() {
        return Err("rollup block has trailing bytes".into());
    }
    Ok(())
}

impl Block {
    pub fn new(slots: usize) -> Block {
        Block {
            slots,
            present: vec![false; slots],
            cells: vec![None; slots * METRICS.len()],
        }
    }

    pub fn decode(data: &[u8], slots: usize) -> Result<Block, String> {
        let mut b = Block::new(slots);
        visit(
            data,
            slots,
            |_| true,
            |s, cell| match cell {
                None => b.present[s] = true,
                Some((m, c)) => b.cells[m * slots + s] = Some(c),
            },
        )?;
        Ok(b)
    }

    /// Replaces slot `s` with `bucket` (the bucket was recomputed whole).
    pub fn set(&mut self, s: usize, bucket: &Bucket) {
        self.present[s] = true;
        for (m, c) in bucket.iter().enumerate() {
            self.cells[m * self.slots + s] = *c;
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let map_len = bitmap_len(self.slots);
        let mut out = Vec::with_capacity(1 + map_len * 2 + METRICS.len() * 4);
        out.push(VERSION);
        let mut map = vec![0u8; map_len];
        for (s, _) in self.present.iter().enumerate().filter(|(_, p)| **p) {
            map[s / 8] |= 1 << (s % 8);
        }
        out.extend_from_slice(&map);
        for m in 0..METRICS.len() {
            let cells = &self.cells[m * self.slots..(m + 1) * self.slots];
            let count = cells.iter().flatten().count();
            if count == 0 {
                out.extend_from_slice(&0u32.to_le_bytes());
                continue;
            }
            let len = map_len + count * CELL_BYTES;
            out.extend_from_slice(&(len as u32).to_le_bytes());
            let mut map = vec![0u8; map_len];
            for (s, _) in cells.iter().enumerate().filter(|(_, c)| c.is_some()) {
                map[s / 8] |= 1 << (s % 8);
            }
            out.extend_from_slice(&map);
            for c in cells.iter().flatten() {
                out.extend_from_slice(&c.n.to_le_bytes());
                out.extend_from_slice(&c.sum.to_le_bytes());
                out.extend_from_slice(&c.min.to_le_bytes());
                out.extend_from_slice(&c.max.to_le_bytes());
            }
        }
        out
    }

    /// Slot `s` as a bucket, if present.
    pub fn bucket(&self, s: usize) -> Option<Bucket> {
        if !self.present.get(s).copied().unwrap_or(false) {
            return None;
        }
        let mut b: Bucket = [None; METRICS.len()];
        for (m, c) in b.iter_mut().enumerate() {
            *c = self.cells[m * self.slots + s];
        }
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_sparse_cells_and_empty_buckets() {
        let mut b = Block::new(12);
        let mut full: Bucket = [None; METRICS.len()];
        full[0] = Some(Cell::of(1.5));
        full[11] = Some(Cell {
            n: 3,
            sum: 9.0,
            min: 1.0,
            max: 5.0,
        });
        b.set(0, &full);
        b.set(11, &[None; METRICS.len()]);
        b.set(7, &full);
        let data = b.encode();
        let back = Block::decode(&data, 12).unwrap();
        assert_eq!(back, b);
        assert_eq!(
            back.bucket(11),
            Some([None; METRICS.len()]),
            "an empty bucket stays a bucket"
        );
        assert_eq!(back.bucket(3), None);
        assert_eq!(back.bucket(7).unwrap()[11].unwrap().n, 3);
        // Only the wanted metric is handed out.
        let mut seen = Vec::new();
        visit(
            &data,
            12,
            |m| m == 11,
            |s, cell| {
                if let Some((m, c)) = cell {
                    seen.push((m, s, c.sum))
                }
            },
        )
        .unwrap();
        assert_eq!(seen, vec![(11, 0, 9.0), (11, 7, 9.0)]);
    }

    #[test]
    fn bad_blobs_are_errors_not_panics() {
        let mut b = Block::new(8);
        let mut one: Bucket = [None; METRICS.len()];
        one[2] = Some(Cell::of(4.0));
        b.set(3, &one);
        let good = b.encode();
        for cut in 0..good.len() {
            assert!(Block::decode(&good[..cut], 8).is_err(), "cut at {cut}");
        }
        let mut long = good.clone();
        long.push(0);
        assert!(Block::decode(&long, 8).is_err());
        let mut version = good.clone();
        version[0] = 9;
        assert!(Block::decode(&version, 8).is_err());
        assert!(Block::decode(&good, 120).is_err(), "wrong slot count");
    }
}
