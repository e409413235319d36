//! The raw tail's index: for every node, the seconds it has raw samples for
//! at or after the 1-minute rollup watermark, kept in memory.
//!
//! Raw samples are keyed time first (cheap appends, docs/BENCHMARKS.md §4),
//! so reading one node's tail from SQLite scans every node's rows in it:
//! 0.1 µs a row, about 13 ms for two hours of 500 nodes at 30 s. With the
//! seconds known, the read is one key lookup per sample instead, and rollup
//! passes can be hours apart (each pass costs pages per node whatever it
//! adds, so rarer passes write less). The index is rebuilt from the table
//! after every rollup pass, when the tail is a few minutes long; between
//! passes each stored sample adds its second. Seconds are offsets from the
//! watermark in 16 bits: 240 samples of a node at 30 s take 480 bytes.
//! Anything that does not fit drops the index, and reads scan as before.

use super::history::{RAW_WITH_NODE, TS_SHIFT};
use super::rollup::TABLES;
use super::Store;
use std::collections::HashMap;

/// Beyond this many samples in the tail (a rollup pass that keeps failing),
/// the index is dropped rather than grown: 2 MB.
const MAX_ENTRIES: usize = 1 << 20;

pub struct RawTail {
    /// Every raw sample at or after this second is listed.
    from: i64,
    /// Sorted offsets from `from`, per node.
    by_node: HashMap<String, Vec<u16>>,
    entries: usize,
}

impl RawTail {
    /// Adds a stored sample; false if it cannot be listed (the index must go).
    fn note(&mut self, node_id: &str, ts: i64) -> bool {
        if ts < self.from {
            return true; // behind the watermark: read from rollups, not listed
        }
        let Ok(offset) = u16::try_from(ts - self.from) else {
            return false;
        };
        if self.entries >= MAX_ENTRIES {
            return false;
        }
        let list = match self.by_node.get_mut(node_id) {
            Some(l) => l,
            None => self.by_node.entry(node_id.to_string()).or_default(),
        };
        // Samples arrive in time order, except backfills.
        match list.last() {
            Some(&last) if last >= offset => {
                if let Err(at) = list.binary_search(&offset) {
                    list.insert(at, offset);
                    self.entries += 1;
                }
            }
            _ => {
                list.push(offset);
                self.entries += 1;
            }
        }
        true
    }
}

impl Store {
    /// Lists the raw samples past the 1-minute watermark; called after every
    /// rollup pass (the tail is then a few minutes long). Until the first
    /// one (cairnd runs it at start-up) there is no index and reads scan.
    pub fn rebuild_tail(&self) -> rusqlite::Result<()> {
        let from = self.rollup_watermark(&TABLES[0])?;
        let mut tail = RawTail {
            from,
            by_node: HashMap::new(),
            entries: 0,
        };
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT q.node_id, s.ts_node >> {TS_SHIFT} FROM {RAW_WITH_NODE}
             WHERE s.ts_node >= (?1 << {TS_SHIFT})"
        ))?;
        let mut rows = st.query([from])?;
        let mut fits = true;
        while let Some(r) = rows.next()? {
            if !tail.note(r.get_ref(0)?.as_str()?, r.get(1)?) {
                fits = false;
                break;
            }
        }
        if !fits {
            log::warn!("the raw tail since {from} is too long to index; one-node reads scan it");
        }
        *self.tail.borrow_mut() = fits.then_some(tail);
        Ok(())
    }

    /// Records a sample just stored.
    pub(super) fn note_tail(&self, node_id: &str, ts: i64) {
        let mut tail = self.tail.borrow_mut();
        if let Some(t) = tail.as_mut() {
            if !t.note(node_id, ts) {
                log::warn!("the raw tail is too long to index until the next rollup pass");
                *tail = None;
            }
        }
    }

    pub(super) fn forget_tail(&self, node_id: &str) {
        if let Some(t) = self.tail.borrow_mut().as_mut() {
            if let Some(l) = t.by_node.remove(node_id) {
                t.entries -= l.len();
            }
        }
    }

    /// `node_id`'s raw sample seconds in [from, to) past the watermark, and
    /// where the index starts (the part of the window before it is not
    /// listed); None without an index.
    pub(super) fn tail_times(&self, node_id: &str, from: i64, to: i64) -> Option<(i64, Vec<i64>)> {
        let tail = self.tail.borrow();
        let t = tail.as_ref()?;
        let times = t
            .by_node
            .get(node_id)
            .map(|l| {
                l.iter()
                    .map(|&o| t.from + i64::from(o))
                    .filter(|ts| (from..to).contains(ts))
                    .collect()
            })
            .unwrap_or_default();
        Some((t.from, times))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail(from: i64) -> RawTail {
        RawTail {
            from,
            by_node: HashMap::new(),
            entries: 0,
        }
    }

    fn sample(ts: i64, cpu: f64) -> crate::store::history::Sample {
        let mut values = [None; 12];
        values[0] = Some(cpu);
        values[1] = Some(cpu / 2.0);
        crate::store::history::Sample { ts, values }
    }

    /// Reads through the index answer exactly what a scan of the table does.
    #[test]
    fn one_node_reads_by_the_index_match_a_scan() {
        let mut s = Store::memory_with_node("n1");
        s.insert_node(&crate::store::nodes::NewNode::agent("n2", 30), 0)
            .unwrap();
        let now = 10 * 86400;
        for ts in (now - 6 * 3600..now - 600).step_by(30) {
            s.insert_sample_of("n1", &sample(ts, (ts % 89) as f64), &[], &[])
                .unwrap();
            s.insert_sample_of("n2", &sample(ts + 3, (ts % 7) as f64), &[], &[])
                .unwrap();
        }
        s.roll_up(now - 1800).unwrap();
        let listed_from = s.tail_times("n1", 0, now).unwrap().0;
        assert!((now - 1980..=now - 1800).contains(&listed_from), "{listed_from}");
        // Live samples, a backfilled one in the middle of the tail, a
        // duplicate, and one behind the watermark.
        for ts in (now - 600..now).step_by(30) {
            s.insert_sample_of("n1", &sample(ts + 1, 60.0), &[], &[]).unwrap();
        }
        for ts in [now - 905, now - 601 + 1, now - 7200 + 13] {
            s.insert_sample_of("n1", &sample(ts, 99.0), &[], &[]).unwrap();
        }
        let (_, listed) = s.tail_times("n1", 0, now).unwrap();
        assert!(listed.contains(&(now - 905)) && !listed.contains(&(now - 7200 + 13)));
        let windows = [
            (now - 3000, now),        // raw source, starting before the listed part
            (now - 1200, now - 300),  // raw, listed only
            (now - 6 * 3600, now),    // rollups, then the tail
            (now - 1800, now - 1750), // a few seconds
        ];
        for (from, to) in windows {
            let by_index = s.history("n1", &[0, 1], from, to, 1000, now).unwrap();
            let kept = s.tail.borrow_mut().take();
            let by_scan = s.history("n1", &[0, 1], from, to, 1000, now).unwrap();
            *s.tail.borrow_mut() = kept;
            assert_eq!(by_index.timestamps, by_scan.timestamps, "{from}..{to}");
            assert_eq!(by_index.points, by_scan.points, "{from}..{to}");
            assert!(!by_index.timestamps.is_empty());
        }
        s.delete_node("n1").unwrap();
        assert_eq!(s.tail_times("n1", 0, now).unwrap().1, Vec::<i64>::new());
        assert!(!s.tail_times("n2", 0, now).unwrap().1.is_empty());
    }

    #[test]
    fn notes_keep_each_node_sorted_and_unique() {
        let mut t = tail(1000);
        for ts in [1000, 1030, 1060, 1045, 1030, 999] {
            assert!(t.note("a", ts));
        }
        assert_eq!(t.by_node["a"], vec![0, 30, 45, 60]);
        assert_eq!(
            t.entries, 4,
            "a duplicate and a second behind the watermark are not listed"
        );
        assert!(
            !t.note("a", 1000 + 65_536),
            "an offset past 16 bits drops the index"
        );
    }
}
