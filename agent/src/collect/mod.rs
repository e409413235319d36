//! Collectors: one module per source (/proc, /sys, statvfs, uname), each behind
//! the small [`Collector`] trait, and [`Collectors`], which runs them all into
//! one [`Snapshot`]. No networking, spooling or CLI here: cairnd embeds this
//! module (crate feature `client` off) to watch its own host.
//!
//! Parsers take `&str` (or a root directory standing in for `/proc`, `/sys`,
//! `/etc`) so the tests run on fixture text and fake trees.

mod cpu;
mod diskio;
mod disks;
mod load;
mod memory;
mod net;
mod pi;
mod processes;
mod system;
mod thermal;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use cairn_wire::Snapshot;

/// One source of readings. `collect` fills its part of `out`; on error it says
/// what failed and where (`"reading /proc/stat: ..."`), and whatever it could
/// not read stays at its default (empty, zero, `None`), never a guess.
pub trait Collector: Send {
    fn name(&self) -> &'static str;
    /// Takes a baseline so the first `collect` already has deltas (CPU shares,
    /// I/O and network rates). Sources without deltas need nothing here.
    fn prime(&mut self) {}
    fn collect(&mut self, out: &mut Snapshot) -> Result<(), String>;
}

/// Where the host's pseudo filesystems are. Defaults to the real ones; tests
/// (and a containerised collector with the host's trees mounted elsewhere)
/// point them at other directories.
#[derive(Clone, Debug)]
pub struct Paths {
    pub proc: PathBuf,
    pub sys: PathBuf,
    pub etc: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            proc: PathBuf::from("/proc"),
            sys: PathBuf::from("/sys"),
            etc: PathBuf::from("/etc"),
        }
    }
}

/// A failing source is logged when it starts failing, when its error changes,
/// and then at most this often, so a permanently missing source does not fill
/// the journal every 30 seconds.
const REPEAT_WARNING_EVERY: Duration = Duration::from_secs(3600);

struct Slot {
    collector: Box<dyn Collector>,
    last_error: Option<(String, Instant)>,
}

impl Slot {
    fn failed(&mut self, error: String) {
        let name = self.collector.name();
        let now = Instant::now();
        let repeat = match &self.last_error {
            Some((last, at)) => *last != error || now.duration_since(*at) >= REPEAT_WARNING_EVERY,
            None => true,
        };
        if repeat {
            log::warn!("collector {name}: {error} (left empty until it recovers)");
            self.last_error = Some((error, now));
        }
    }

    fn succeeded(&mut self) {
        if self.last_error.take().is_some() {
            log::info!("collector {}: working again", self.collector.name());
        }
    }
}

/// All collectors, holding the previous readings so rates and CPU shares come
/// from deltas.
pub struct Collectors {
    slots: Vec<Slot>,
}

impl Collectors {
    /// Takes a first reading so the next `collect` has deltas to work from.
    pub fn new() -> Self {
        Self::with_paths(Paths::default())
    }

    /// Like [`Collectors::new`] but reading `/proc`, `/sys` and `/etc` from
    /// other places. Mount usage (statvfs) and uname always describe the
    /// mount namespace and kernel this process runs in.
    pub fn with_paths(paths: Paths) -> Self {
        let collectors: Vec<Box<dyn Collector>> = vec![
            Box::new(system::System::new(&paths)),
            Box::new(cpu::Cpu::new(&paths.proc)),
            Box::new(memory::Memory::new(&paths.proc)),
            Box::new(load::Load::new(&paths.proc)),
            Box::new(disks::Disks::new(&paths)),
            Box::new(diskio::DiskIo::new(&paths)),
            Box::new(net::Net::new(&paths.proc)),
            Box::new(thermal::Thermal::new(&paths.sys)),
            Box::new(pi::Pi::new(&paths.sys)),
            Box::new(processes::Processes::new(&paths.proc)),
        ];
        let mut slots: Vec<Slot> = collectors
            .into_iter()
            .map(|collector| Slot {
                collector,
                last_error: None,
            })
            .collect();
        for slot in &mut slots {
            // A panicking parser must not take cairnd down with it (it builds
            // with panic=unwind); in the agent (panic=abort) this is a no-op.
            if catch_unwind(AssertUnwindSafe(|| slot.collector.prime())).is_err() {
                slot.failed("panicked while taking its first reading".to_string());
            }
        }
        Collectors { slots }
    }

    /// One snapshot; never fails as a whole (a broken source is logged and left empty).
    pub fn collect(&mut self) -> Snapshot {
        let mut snap = Snapshot {
            timestamp: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            ..Snapshot::default()
        };
        for slot in &mut self.slots {
            match catch_unwind(AssertUnwindSafe(|| slot.collector.collect(&mut snap))) {
                Ok(Ok(())) => slot.succeeded(),
                Ok(Err(e)) => slot.failed(e),
                Err(_) => slot.failed("panicked".to_string()),
            }
        }
        snap
    }
}

impl Default for Collectors {
    fn default() -> Self {
        Self::new()
    }
}

/// This host's name and description without a full collection (enrollment
/// needs only these).
pub fn host_info() -> (String, cairn_wire::SystemInfo) {
    let mut snap = Snapshot::default();
    // An unreadable /proc/uptime does not matter here; the rest is filled first.
    let _ = system::System::new(&Paths::default()).collect(&mut snap);
    (snap.hostname, snap.system)
}

/// Reads a whole (small) file, naming it in the error.
pub(crate) fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))
}

/// Reads a one-line sysfs attribute, trimmed; `None` when absent or unreadable
/// (sysfs attributes routinely fail with EIO/ENODATA on sensors that are not
/// ready, which is not worth an error).
pub(crate) fn read_attr(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(
        text.trim_matches(|c: char| c.is_whitespace() || c == '\0')
            .to_string(),
    )
}

/// Per-second rate of a monotonically increasing kernel counter. A counter
/// that went backwards was reset (driver reload, device re-plugged) or wrapped;
/// either way the true delta is unknown, so the rate is 0, never negative.
pub(crate) fn rate(prev: u64, cur: u64, secs: f64) -> f64 {
    if cur < prev || secs <= 0.0 {
        return 0.0;
    }
    finite((cur - prev) as f64 / secs)
}

/// `part / whole` as a percentage clamped to 0–100; 0 when `whole` is 0.
pub(crate) fn percent(part: f64, whole: f64) -> f64 {
    if whole <= 0.0 {
        return 0.0;
    }
    finite(part / whole * 100.0).clamp(0.0, 100.0)
}

/// The wire carries only finite numbers (JSON has no NaN or infinity).
pub(crate) fn finite(x: f64) -> f64 {
    if x.is_finite() {
        x
    } else {
        0.0
    }
}

/// Rounds to two decimals so snapshots stay small and readable.
pub(crate) fn round2(x: f64) -> f64 {
    finite((x * 100.0).round() / 100.0)
}

/// Directory entries `<prefix><number>` sorted by number (hwmon10 after hwmon2).
pub(crate) fn numbered_entries(dir: &Path, prefix: &str) -> Vec<(u32, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(u32, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name();
            let n = name.to_str()?.strip_prefix(prefix)?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    found.sort_unstable();
    found
}

#[cfg(test)]
pub(crate) mod testutil {
    use std::path::{Path, PathBuf};

    /// A temporary directory tree standing in for /proc, /sys or /etc;
    /// removed on drop.
    pub struct FakeRoot {
        pub path: PathBuf,
    }

    impl FakeRoot {
        pub fn new(tag: &str) -> Self {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let path = std::env::temp_dir().join(format!(
                "cairn-agent-test-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).expect("creating fake root");
            FakeRoot { path }
        }

        /// Writes `rel` (creating parent directories) with `text`.
        pub fn file(&self, rel: &str, text: &str) -> &Self {
            let p = self.path.join(rel);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).expect("creating fake dir");
            }
            std::fs::write(&p, text).expect("writing fake file");
            self
        }

        pub fn join(&self, rel: &str) -> PathBuf {
            self.path.join(rel)
        }

        pub fn root(&self) -> &Path {
            &self.path
        }
    }

    impl Drop for FakeRoot {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_going_backwards_is_a_zero_rate_not_negative() {
        assert_eq!(rate(1000, 500, 1.0), 0.0);
        assert_eq!(rate(1000, 3000, 2.0), 1000.0);
        assert_eq!(rate(0, 10, 0.0), 0.0);
    }

    #[test]
    fn percent_is_clamped_and_finite() {
        assert_eq!(percent(5.0, 0.0), 0.0);
        assert_eq!(percent(150.0, 100.0), 100.0);
        assert_eq!(percent(-1.0, 100.0), 0.0);
        assert_eq!(percent(f64::NAN, 100.0), 0.0);
        assert_eq!(percent(25.0, 100.0), 25.0);
    }

    #[test]
    fn collectors_can_move_to_another_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<Collectors>();
    }

    #[test]
    fn collect_on_this_host_fills_the_basics() {
        let mut c = Collectors::new();
        let snap = c.collect();
        assert!(snap.timestamp.ends_with('Z'), "{}", snap.timestamp);
        assert!(!snap.hostname.is_empty());
        assert!(snap.cpu.count > 0);
        assert!(snap.memory.total_bytes > 0);
        assert!(snap.cpu.total_percent >= 0.0 && snap.cpu.total_percent <= 100.0);
    }

    #[test]
    fn collect_with_empty_roots_still_returns_a_snapshot() {
        let root = testutil::FakeRoot::new("empty");
        let mut c = Collectors::with_paths(Paths {
            proc: root.join("proc"),
            sys: root.join("sys"),
            etc: root.join("etc"),
        });
        let snap = c.collect();
        assert!(!snap.timestamp.is_empty());
        assert_eq!(snap.cpu.count, 0);
        assert!(snap.disks.is_empty());
        assert!(snap.pi.is_none());
    }
}
