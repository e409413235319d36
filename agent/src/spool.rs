//! The on-disk queue of snapshots the server has not acknowledged yet.
//!
//! Layout: `<state_dir>/spool/<16-digit unix ms>.json`, one snapshot per
//! file, written with tmp + fsync + rename. Chosen over a segment file
//! because every operation is then one atomic filesystem step: a crash leaves
//! at worst a hidden `.tmp` file (deleted at the next start), never a half
//! record in the middle of a log. Sorting the names gives the send order.
//! Names never go backwards (a new name is at least the last one plus 1 ms),
//! so the order stays the append order even when the clock steps back, as it
//! does on a Raspberry Pi without an RTC when NTP first syncs.
//!
//! The spool is bounded by bytes on disk: past the cap the oldest snapshots
//! are dropped (a long outage loses its beginning, not its end).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use cairn_wire::Snapshot;

use crate::durable;

const NAME_DIGITS: usize = 16;
const SUFFIX: &str = ".json";

/// One spooled snapshot file.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub name: String,
    pub size: u64,
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    entries: VecDeque<Entry>,
    total: u64,
    /// Set while the cap is forcing drops, so a long outage warns once, not
    /// at every interval.
    warned_full: bool,
}

impl Spool {
    /// Opens (creating) the spool directory, removes leftovers of interrupted
    /// writes and indexes what is pending.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, String> {
        durable::create_dir(dir, 0o700)?;
        let listing = std::fs::read_dir(dir).map_err(|e| format!("listing {}: {e}", dir.display()))?;
        let mut entries = Vec::new();
        for item in listing {
            let item = item.map_err(|e| format!("listing {}: {e}", dir.display()))?;
            let name = item.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") {
                // Interrupted before its rename: never acknowledged as spooled.
                let _ = std::fs::remove_file(item.path());
                continue;
            }
            if parse_name(&name).is_none() {
                continue;
            }
            let size = item.metadata().map(|m| m.len()).unwrap_or(0);
            entries.push(Entry { name, size });
        }
        entries.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        let total = entries.iter().map(|e| e.size).sum();
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            entries: entries.into(),
            total,
            warned_full: false,
        };
        spool.enforce_cap();
        Ok(spool)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn bytes(&self) -> u64 {
        self.total
    }

    /// Writes `snap` durably (it is on disk when this returns Ok), then drops
    /// the oldest entries if the spool is over its cap.
    pub fn append(&mut self, snap: &Snapshot) -> Result<(), String> {
        let data = serde_json::to_vec(snap).map_err(|e| format!("encoding snapshot: {e}"))?;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let last = self.entries.back().and_then(|e| parse_name(&e.name));
        let ms = match last {
            Some(l) if now_ms <= l => l + 1,
            _ => now_ms,
        };
        let name = format!("{ms:0NAME_DIGITS$}{SUFFIX}");
        durable::write_atomic(&self.dir.join(&name), &data, 0o600)?;
        let size = data.len() as u64;
        self.entries.push_back(Entry { name, size });
        self.total += size;
        self.enforce_cap();
        Ok(())
    }

    /// Up to `n` of the oldest snapshots, oldest first. Files that cannot be
    /// read or decoded (disk trouble, a bug in an older agent) are deleted
    /// with a warning so they do not block the queue.
    pub fn peek(&mut self, n: usize) -> Vec<(Entry, Snapshot)> {
        let mut out = Vec::with_capacity(n.min(self.entries.len()));
        let mut i = 0;
        while out.len() < n && i < self.entries.len() {
            let entry = self.entries[i].clone();
            let path = self.dir.join(&entry.name);
            let decoded = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|data| serde_json::from_slice::<Snapshot>(&data).map_err(|e| e.to_string()));
            match decoded {
                Ok(snap) => {
                    out.push((entry, snap));
                    i += 1;
                }
                Err(e) => {
                    log::warn!("spool: dropping unreadable {}: {e}", path.display());
                    self.forget(i);
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        out
    }

    /// Deletes acknowledged (or rejected) entries.
    pub fn remove(&mut self, done: &[Entry]) -> Result<(), String> {
        let mut first_error = None;
        for entry in done {
            if let Some(i) = self.entries.iter().position(|e| e.name == entry.name) {
                self.forget(i);
            }
            match std::fs::remove_file(self.dir.join(&entry.name)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    first_error.get_or_insert(format!("deleting {}: {e}", entry.name));
                }
            }
        }
        if self.total <= self.max_bytes / 2 {
            self.warned_full = false;
        }
        // Only reported, never fatal: an entry that reappears after a crash
        // is sent again and the server ignores the duplicate.
        if let Err(e) = durable::sync_dir(&self.dir) {
            first_error.get_or_insert(e);
        }
        first_error.map_or(Ok(()), Err)
    }

    fn forget(&mut self, i: usize) {
        if let Some(e) = self.entries.remove(i) {
            self.total = self.total.saturating_sub(e.size);
        }
    }

    fn enforce_cap(&mut self) {
        let mut dropped = 0usize;
        // The newest snapshot is always kept, however small the cap.
        while self.total > self.max_bytes && self.entries.len() > 1 {
            if let Some(e) = self.entries.pop_front() {
                self.total = self.total.saturating_sub(e.size);
                let _ = std::fs::remove_file(self.dir.join(&e.name));
                dropped += 1;
            }
        }
        if dropped > 0 {
            if !self.warned_full {
                log::warn!(
                    "spool is over its {} byte cap (spool_max_bytes): dropping the oldest \
                     snapshots ({dropped} now, more will follow while the server is unreachable)",
                    self.max_bytes
                );
                self.warned_full = true;
            } else {
                log::debug!("spool full: dropped {dropped} oldest snapshot(s)");
            }
        }
    }
}

/// The unix-ms of a spool file name, or `None` if it is not one.
fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);
    impl Dir {
        fn new(tag: &str) -> Dir {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "cairn-spool-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&p);
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn snap(n: u32) -> Snapshot {
        Snapshot {
            timestamp: format!("2024-01-01T00:00:{:02}Z", n % 60),
            hostname: format!("host{n}"),
            uptime_seconds: u64::from(n),
            ..Snapshot::default()
        }
    }

    fn hosts(items: &[(Entry, Snapshot)]) -> Vec<String> {
        items.iter().map(|(_, s)| s.hostname.clone()).collect()
    }

    #[test]
    fn snapshots_come_back_oldest_first_and_survive_reopening() {
        let d = Dir::new("order");
        let mut s = Spool::open(&d.0, 1 << 20).unwrap();
        for n in 0..5 {
            s.append(&snap(n)).unwrap();
        }
        assert_eq!(s.len(), 5);
        let first = s.peek(2);
        assert_eq!(hosts(&first), vec!["host0", "host1"]);
        let done: Vec<Entry> = first.into_iter().map(|(e, _)| e).collect();
        s.remove(&done).unwrap();

        let mut s = Spool::open(&d.0, 1 << 20).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(hosts(&s.peek(10)), vec!["host2", "host3", "host4"]);
        let on_disk: u64 = std::fs::read_dir(&d.0)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert_eq!(s.bytes(), on_disk);
    }

    #[test]
    fn names_never_go_backwards() {
        let d = Dir::new("mono");
        std::fs::create_dir_all(&d.0).unwrap();
        // An entry "from the future", as after a clock step back.
        let future = format!("{:016}.json", 9_000_000_000_000u64);
        std::fs::write(d.0.join(&future), serde_json::to_vec(&snap(0)).unwrap()).unwrap();
        let mut s = Spool::open(&d.0, 1 << 20).unwrap();
        s.append(&snap(1)).unwrap();
        assert_eq!(hosts(&s.peek(10)), vec!["host0", "host1"]);
        assert_eq!(s.entries[1].name, format!("{:016}.json", 9_000_000_000_001u64));
    }

    #[test]
    fn over_the_cap_the_oldest_are_dropped() {
        let d = Dir::new("cap");
        let one = serde_json::to_vec(&snap(0)).unwrap().len() as u64;
        let mut s = Spool::open(&d.0, one * 3 + one / 2).unwrap();
        for n in 0..6 {
            s.append(&snap(n)).unwrap();
        }
        assert_eq!(s.len(), 3);
        assert!(s.bytes() <= one * 3 + one / 2);
        assert_eq!(hosts(&s.peek(10)), vec!["host3", "host4", "host5"]);
        assert_eq!(std::fs::read_dir(&d.0).unwrap().count(), 3);

        // A smaller cap on restart trims at open; the newest always stays.
        let mut s = Spool::open(&d.0, 1).unwrap();
        assert_eq!(hosts(&s.peek(10)), vec!["host5"]);
    }

    #[test]
    fn corrupt_and_partial_files_are_skipped_and_removed() {
        let d = Dir::new("corrupt");
        let mut s = Spool::open(&d.0, 1 << 20).unwrap();
        s.append(&snap(0)).unwrap();
        s.append(&snap(1)).unwrap();
        s.append(&snap(2)).unwrap();
        // Damage the middle one (truncated), and leave an interrupted write
        // and a stranger in the directory.
        let middle = s.entries[1].name.clone();
        let full = std::fs::read(d.0.join(&middle)).unwrap();
        std::fs::write(d.0.join(&middle), &full[..full.len() / 2]).unwrap();
        std::fs::write(d.0.join(".0000000000000009.json.tmp"), b"{\"time").unwrap();
        std::fs::write(d.0.join("README"), b"not a snapshot").unwrap();

        let mut s = Spool::open(&d.0, 1 << 20).unwrap();
        assert!(!d.0.join(".0000000000000009.json.tmp").exists());
        assert_eq!(s.len(), 3);
        assert_eq!(hosts(&s.peek(10)), vec!["host0", "host2"]);
        assert_eq!(s.len(), 2);
        assert!(!d.0.join(&middle).exists());
        assert!(d.0.join("README").exists(), "only spool files are touched");
    }

    #[test]
    fn file_names_are_strict() {
        assert_eq!(parse_name("0001700000000000.json"), Some(1_700_000_000_000));
        assert_eq!(parse_name("1700000000000.json"), None);
        assert_eq!(parse_name("000170000000000x.json"), None);
        assert_eq!(parse_name("0001700000000000.json.tmp"), None);
    }
}
