//! CPU busy share, total and per core, from deltas of `/proc/stat` tick counters.
//!
//! Parsed by hand rather than with procfs's `KernelStats`: that one returns the
//! per-core lines as a plain list, and when a core goes offline its line
//! disappears, shifting every later core. Keeping the `cpuN` number lets a
//! delta always compare a core with itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cairn_wire::Snapshot;

use super::{percent, read, round2, Collector};

/// Ticks spent busy and in total (busy + idle) since boot.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Ticks {
    busy: u64,
    total: u64,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct Stat {
    all: Ticks,
    cores: BTreeMap<u32, Ticks>,
}

pub struct Cpu {
    path: PathBuf,
    prev: Option<Stat>,
}

impl Cpu {
    pub fn new(proc_root: &Path) -> Self {
        Cpu {
            path: proc_root.join("stat"),
            prev: None,
        }
    }

    fn read(&self) -> Result<Stat, String> {
        let text = read(&self.path)?;
        parse(&text).map_err(|e| format!("parsing {}: {e}", self.path.display()))
    }
}

impl Collector for Cpu {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn prime(&mut self) {
        self.prev = self.read().ok();
    }

    fn collect(&mut self, out: &mut Snapshot) -> Result<(), String> {
        let cur = self.read()?;
        // Without an earlier reading (the first one failed) deltas against zero
        // give the average since boot: still a true figure, just a long window.
        let prev = self.prev.replace(cur.clone()).unwrap_or_default();
        out.cpu.total_percent = busy_percent(prev.all, cur.all);
        out.cpu.per_core = cur
            .cores
            .iter()
            .map(|(n, now)| busy_percent(prev.cores.get(n).copied().unwrap_or_default(), *now))
            .collect();
        out.cpu.count = u32::try_from(cur.cores.len()).unwrap_or(u32::MAX);
        Ok(())
    }
}

/// Busy share between two readings. If counters went backwards (they should
/// not; a container's /proc view can) the share is 0 rather than garbage.
fn busy_percent(prev: Ticks, cur: Ticks) -> f64 {
    if cur.total <= prev.total || cur.busy < prev.busy {
        return 0.0;
    }
    round2(percent(
        (cur.busy - prev.busy) as f64,
        (cur.total - prev.total) as f64,
    ))
}

fn parse(text: &str) -> Result<Stat, String> {
    let mut all = None;
    let mut cores = BTreeMap::new();
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(label) = fields.next() else { continue };
        let Some(which) = label.strip_prefix("cpu") else {
            continue;
        };
        let ticks = parse_ticks(fields).ok_or_else(|| format!("bad line {line:?}"))?;
        if which.is_empty() {
            all = Some(ticks);
        } else if let Ok(n) = which.parse::<u32>() {
            cores.insert(n, ticks);
        }
    }
    let all = all.ok_or("no aggregate \"cpu\" line")?;
    Ok(Stat { all, cores })
}

/// `user nice system idle [iowait irq softirq steal guest guest_nice]`: older
/// kernels print only the first four. guest and guest_nice are already counted
/// inside user and nice, so they are not added again.
fn parse_ticks<'a>(fields: impl Iterator<Item = &'a str>) -> Option<Ticks> {
    let mut v = [0u64; 8];
    let mut n = 0;
    for (slot, field) in v.iter_mut().zip(fields) {
        *slot = field.parse().ok()?;
        n += 1;
    }
    if n < 4 {
        return None;
    }
    let [user, nice, system, idle, iowait, irq, softirq, steal] = v;
    let busy = user
        .saturating_add(nice)
        .saturating_add(system)
        .saturating_add(irq)
        .saturating_add(softirq)
        .saturating_add(steal);
    let total = busy.saturating_add(idle).saturating_add(iowait);
    Some(Ticks { busy, total })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::testutil::FakeRoot;

    const T0: &str = "cpu  100 0 100 800 0 0 0 0 0 0
cpu0 50 0 50 400 0 0 0 0 0 0
cpu1 50 0 50 400 0 0 0 0 0 0
intr 12345 0 0
ctxt 999
btime 1700000000
processes 42
procs_running 1
procs_blocked 0
";
    const T1: &str = "cpu  200 0 200 1400 0 0 0 0 0 0
cpu0 150 0 50 500 0 0 0 0 0 0
cpu1 50 0 150 900 0 0 0 0 0 0
";

    #[test]
    fn busy_share_comes_from_deltas_per_core() {
        let a = parse(T0).unwrap();
        let b = parse(T1).unwrap();
        // total: busy +200 of +800 = 25 %
        assert_eq!(busy_percent(a.all, b.all), 25.0);
        // cpu0: busy +100 of +200; cpu1: busy +100 of +600
        assert_eq!(busy_percent(a.cores[&0], b.cores[&0]), 50.0);
        assert_eq!(busy_percent(a.cores[&1], b.cores[&1]), 16.67);
    }

    #[test]
    fn old_kernels_with_four_fields_parse() {
        let s = parse("cpu 1 2 3 4\ncpu0 1 2 3 4\n").unwrap();
        assert_eq!(s.all, Ticks { busy: 6, total: 10 });
    }

    #[test]
    fn iowait_counts_as_idle_and_guest_is_not_double_counted() {
        let s = parse("cpu 10 0 0 10 30 0 0 0 10 0\n").unwrap();
        assert_eq!(s.all, Ticks { busy: 10, total: 50 });
    }

    #[test]
    fn counters_going_backwards_give_zero() {
        let a = Ticks {
            busy: 100,
            total: 200,
        };
        let b = Ticks { busy: 50, total: 300 };
        assert_eq!(busy_percent(a, b), 0.0);
        assert_eq!(busy_percent(a, a), 0.0);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse("").is_err());
        assert!(parse("cpu x y z w\n").is_err());
        assert!(parse("cpu 1 2\n").is_err());
        assert!(parse("cpu 99999999999999999999999 1 1 1\n").is_err());
    }

    #[test]
    fn an_offline_core_does_not_shift_the_others() {
        let root = FakeRoot::new("cpu");
        root.file("stat", T0);
        let mut cpu = Cpu::new(root.root());
        cpu.prime();
        // cpu0 went offline; cpu1 must still be compared with cpu1.
        root.file(
            "stat",
            "cpu  200 0 200 1400 0 0 0 0 0 0\ncpu1 50 0 150 900 0 0 0 0 0 0\n",
        );
        let mut snap = Snapshot::default();
        cpu.collect(&mut snap).unwrap();
        assert_eq!(snap.cpu.count, 1);
        assert_eq!(snap.cpu.per_core, vec![16.67]);
        assert_eq!(snap.cpu.total_percent, 25.0);
    }

    #[test]
    fn missing_file_names_the_path() {
        let root = FakeRoot::new("cpu-missing");
        let mut cpu = Cpu::new(root.root());
        let err = cpu.collect(&mut Snapshot::default()).unwrap_err();
        assert!(err.contains("reading ") && err.contains("stat"), "{err}");
    }
}
