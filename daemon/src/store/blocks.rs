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
//! Row encoding (little-endian): byte 0 is the format version, then a
//! bitmap of `slots` bits; a metric row follows it with one cell per set
//! bit. Version 2 (written since stop 15): count u16, then f32 values, as
//! few as the count needs: one sample is its value (6 bytes); two are their
//! min and max, whose sum is the sum (10 bytes: a one-minute bucket of an
//! agent at 30 s); more are sum, min, max (14 bytes). Version 1 (read only)
//! was count u32 and sum, min, max as f64: 28 bytes.
//!
//! Why: a rollup pass writes whole pages, and a 2-hour block of one-minute
//! cells at 28 bytes (3.4 KB) took a page of its own; at 10 bytes three
//! share a page (docs/BENCHMARKS.md §4). Seven significant digits is more
//! than any chart shows (replies round to 4 decimal places; a byte rate of
//! 1.2 GB/s is off by < 100 B/s), and it is what Netdata keeps in its own
//! aggregate tiers. Raw samples stay f64, and so does arithmetic: only the
//! stored cell is narrowed.

use super::history::METRICS;

/// The format rows are written in.
const VERSION: u8 = 2;
/// Bytes per cell in format version 1.
const CELL_BYTES_V1: usize = 4 + 8 * 3;
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

fn f32_at(b: &[u8]) -> f64 {
    f32::from_le_bytes([b[0], b[1], b[2], b[3]]).into()
}

/// A value as stored: the nearest f32, held inside f32's finite range (a sum
/// that overflowed to infinity is stored as the largest finite value, never
/// as something JSON cannot carry).
fn narrow(v: f64) -> [u8; 4] {
    let v = if v.is_nan() {
        0.0
    } else {
        v.clamp(-f32::MAX as f64, f32::MAX as f64)
    };
    (v as f32).to_le_bytes()
}

/// Decodes the cell at the start of `b` (format `version`); returns it
/// and its length, or `None` if `b` is too short for it.
fn decode_cell(version: u8, b: &[u8]) -> Option<(Cell, usize)> {
    if version == 1 {
        let b = b.get(..CELL_BYTES_V1)?;
        let cell = Cell {
            n: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            sum: f64_at(&b[4..]),
            min: f64_at(&b[12..]),
            max: f64_at(&b[20..]),
        };
        return Some((cell, CELL_BYTES_V1));
    }
    let n = u16::from_le_bytes([*b.first()?, *b.get(1)?]);
    let value = |i: usize| b.get(2 + 4 * i..6 + 4 * i).map(f32_at);
    Some(match n {
        0 | 1 => {
            let v = value(0)?;
            (
                Cell {
                    n: n.into(),
                    sum: v,
                    min: v,
                    max: v,
                },
                6,
            )
        }
        2 => {
            let (min, max) = (value(0)?, value(1)?);
            (
                Cell {
                    n: 2,
                    sum: min + max,
                    min,
                    max,
                },
                10,
            )
        }
        _ => {
            let (sum, min, max) = (value(0)?, value(1)?, value(2)?);
            (
                Cell {
                    n: n.into(),
                    sum,
                    min,
                    max,
                },
                14,
            )
        }
    })
}

fn encode_cell(c: &Cell, out: &mut Vec<u8>) {
    // A bucket holds at most one sample a second (3,600 an hour); the
    // saturation only guards against a corrupt input.
    let n = c.n.min(u16::MAX.into()) as u16;
    out.extend_from_slice(&n.to_le_bytes());
    match n {
        0 | 1 => out.extend_from_slice(&narrow(c.sum)),
        2 => {
            out.extend_from_slice(&narrow(c.min));
            out.extend_from_slice(&narrow(c.max));
        }
        _ => {
            out.extend_from_slice(&narrow(c.sum));
            out.extend_from_slice(&narrow(c.min));
            out.extend_from_slice(&narrow(c.max));
        }
    }
}

/// The version byte and bitmap of a row, and the bytes after them.
fn split(data: &[u8], slots: usize) -> Result<(u8, &[u8], &[u8]), String> {
    let map_end = 1 + bitmap_len(slots);
    match data.first() {
        None => Err("rollup row is empty".into()),
        Some(&v) if v != 1 && v != VERSION => Err(format!("rollup row has unknown format version {v}")),
        Some(_) if data.len() < map_end => Err("rollup row is shorter than its bitmap".into()),
        Some(&v) => Ok((v, &data[1..map_end], &data[map_end..])),
    }
}

/// Calls `each(slot)` for every slot a presence row lists.
fn visit_presence(data: &[u8], slots: usize, mut each: impl FnMut(usize)) -> Result<(), String> {
    let (_, map, rest) = split(data, slots)?;
    if !rest.is_empty() {
        return Err("presence row has trailing bytes".into());
    }
    (0..slots).filter(|s| bit(map, *s)).for_each(&mut each);
    Ok(())
}

/// Calls `each(slot, cell)` for every value in a metric row.
fn visit_cells(data: &[u8], slots: usize, mut each: impl FnMut(usize, Cell)) -> Result<(), String> {
    let (version, map, mut cells) = split(data, slots)?;
    for s in (0..slots).filter(|s| bit(map, *s)) {
        let (cell, len) = decode_cell(version, cells)
            .ok_or_else(|| format!("metric row ends inside the cell of slot {s}"))?;
        each(s, cell);
        cells = &cells[len..];
    }
    if !cells.is_empty() {
        return Err(format!("metric row has {} trailing bytes", cells.len()));
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
            out.reserve(count * 14);
            for c in cells.iter().flatten() {
                encode_cell(c, &mut out);
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

    #[test]
    fn version_1_rows_still_decode() {
        // A row as stop 14 wrote it: slots 1 and 3 of 4 hold a cell.
        let mut row = vec![1u8, 0b1010];
        for (n, sum, min, max) in [(2u32, 3.25f64, 1.0f64, 2.25f64), (1, 1e-9, 1e-9, 1e-9)] {
            row.extend_from_slice(&n.to_le_bytes());
            for v in [sum, min, max] {
                row.extend_from_slice(&v.to_le_bytes());
            }
        }
        let mut seen = Vec::new();
        visit_row(5, &row, 4, |s, c| seen.push((s, c))).unwrap();
        assert_eq!(
            seen,
            vec![
                (
                    1,
                    Some((
                        5,
                        Cell {
                            n: 2,
                            sum: 3.25,
                            min: 1.0,
                            max: 2.25
                        }
                    ))
                ),
                (3, Some((5, cell(1e-9)))),
            ],
            "version 1 keeps its full f64 values"
        );
        let mut b = Block::new(4);
        b.load(5, &row).unwrap();
        let rewritten = b.rows();
        assert_eq!(rewritten[0].0, 5);
        assert_eq!(
            rewritten[0].1.as_ref().unwrap()[0],
            VERSION,
            "a rewrite uses the new format"
        );
    }

    #[test]
    fn stored_values_keep_seven_digits_and_stay_finite() {
        let mut b = Block::new(4);
        let values = [
            60.458333333,
            1_234_567_890.5,
            -40.125,
            1e-3,
            f64::MAX,
            f64::INFINITY,
            f64::NAN,
        ];
        for (i, v) in values.iter().enumerate() {
            let mut one: Bucket = [None; METRICS.len()];
            one[0] = Some(Cell {
                n: 70_000,
                sum: *v,
                min: *v,
                max: *v,
            });
            b.set(i % 4, &one);
            let back = reload(&b);
            let c = back.cells[i % 4].unwrap();
            assert_eq!(c.n, u16::MAX as u32, "count saturates");
            for got in [c.sum, c.min, c.max] {
                assert!(got.is_finite(), "{v} came back as {got}");
                if v.is_finite() && v.abs() < f32::MAX as f64 {
                    assert!((got - v).abs() <= v.abs() * 1e-7, "{v} came back as {got}");
                }
            }
        }
    }

    #[test]
    fn a_cell_takes_as_many_values_as_its_count_needs() {
        let cells = [
            cell(7.25),
            Cell {
                n: 2,
                sum: 3.5,
                min: 1.25,
                max: 2.25,
            },
            Cell {
                n: 3,
                sum: 6.0,
                min: 1.0,
                max: 3.0,
            },
        ];
        let mut b = Block::new(3);
        for (s, c) in cells.iter().enumerate() {
            let mut one: Bucket = [None; METRICS.len()];
            one[4] = Some(*c);
            b.set(s, &one);
        }
        let rows = b.rows();
        let row = rows
            .iter()
            .find(|(p, _)| *p == 4)
            .and_then(|(_, d)| d.clone())
            .unwrap();
        assert_eq!(row.len(), 1 + 1 + 6 + 10 + 14);
        let mut seen = Vec::new();
        visit_row(4, &row, 3, |_, c| seen.push(c.unwrap().1)).unwrap();
        assert_eq!(seen, cells, "exact for values f32 holds");
    }
}
