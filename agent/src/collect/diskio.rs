//! Disk throughput from deltas of `/proc/diskstats` (lines parsed by procfs),
//! whole disks only.
//!
//! Partitions are left out because their I/O is already in their disk's
//! figures. A whole disk is one listed in `/sys/block`; where sysfs is not
//! available (some containers) the names decide. loop, ram, zram and floppy
//! devices are noise (snap images, swap in RAM) and are skipped; dm-* and md*
//! are kept because LVM, LUKS and RAID users watch them.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use cairn_wire::{DiskIo as Io, Snapshot};

use super::{read, round2, Collector, Paths};

/// /proc/diskstats counts 512-byte sectors whatever the device's real sector size.
const SECTOR: u64 = 512;

#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Counters {
    reads: u64,
    writes: u64,
    sectors_read: u64,
    sectors_written: u64,
}

struct Reading {
    at: Instant,
    disks: Vec<(String, Counters)>,
}

pub struct DiskIo {
    path: PathBuf,
    sys_block: PathBuf,
    prev: Option<Reading>,
}

impl DiskIo {
    pub fn new(paths: &Paths) -> Self {
        DiskIo {
            path: paths.proc.join("diskstats"),
            sys_block: paths.sys.join("block"),
            prev: None,
        }
    }

    fn read(&self) -> Result<Reading, String> {
        let text = read(&self.path)?;
        let at = Instant::now();
        let whole = whole_disks(&self.sys_block);
        Ok(Reading {
            at,
            disks: parse(&text, whole.as_ref()),
        })
    }
}

impl Collector for DiskIo {
    fn name(&self) -> &'static str {
        "diskio"
    }

    fn prime(&mut self) {
        self.prev = self.read().ok();
    }

    fn collect(&mut self, out: &mut Snapshot) -> Result<(), String> {
        let cur = self.read()?;
        out.disk_io = rates(self.prev.as_ref(), &cur);
        self.prev = Some(cur);
        Ok(())
    }
}

fn rates(prev: Option<&Reading>, cur: &Reading) -> Vec<Io> {
    let before: HashMap<&str, (Counters, Instant)> = prev
        .map(|p| p.disks.iter().map(|(n, c)| (n.as_str(), (*c, p.at))).collect())
        .unwrap_or_default();
    cur.disks
        .iter()
        .map(|(name, now)| {
            // A disk seen for the first time (hot-plugged) has no rate yet.
            let (then, at) = before.get(name.as_str()).copied().unwrap_or((*now, cur.at));
            let secs = cur.at.duration_since(at).as_secs_f64();
            let r = |a: u64, b: u64| round2(super::rate(a, b, secs));
            Io {
                device: name.clone(),
                read_bytes_per_s: r(
                    then.sectors_read.saturating_mul(SECTOR),
                    now.sectors_read.saturating_mul(SECTOR),
                ),
                write_bytes_per_s: r(
                    then.sectors_written.saturating_mul(SECTOR),
                    now.sectors_written.saturating_mul(SECTOR),
                ),
                reads_per_s: r(then.reads, now.reads),
                writes_per_s: r(then.writes, now.writes),
            }
        })
        .collect()
}

/// Names in /sys/block, or `None` when that directory cannot be listed.
fn whole_disks(sys_block: &Path) -> Option<HashSet<String>> {
    let names: HashSet<String> = std::fs::read_dir(sys_block)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    (!names.is_empty()).then_some(names)
}

fn parse(text: &str, whole: Option<&HashSet<String>>) -> Vec<(String, Counters)> {
    let mut disks: Vec<(String, Counters)> = text
        .lines()
        .filter_map(|line| procfs::DiskStat::from_line(line).ok())
        .filter(|d| !is_noise(&d.name))
        .filter(|d| match whole {
            Some(set) => set.contains(&d.name),
            None => !looks_like_partition(&d.name),
        })
        .map(|d| {
            (
                d.name,
                Counters {
                    reads: d.reads,
                    writes: d.writes,
                    sectors_read: d.sectors_read,
                    sectors_written: d.sectors_written,
                },
            )
        })
        .collect();
    disks.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    disks
}

fn is_noise(name: &str) -> bool {
    ["loop", "ram", "zram", "fd"]
        .iter()
        .any(|p| name.strip_prefix(p).is_some_and(is_number))
        // eMMC boot and replay-protected areas show up as disks of their own.
        || (name.starts_with("mmcblk") && (name.contains("boot") || name.ends_with("rpmb")))
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Fallback when /sys/block is not there: sda1, vdb2, xvda1, nvme0n1p1,
/// mmcblk0p2, md0p1 are partitions; sda, nvme0n1, mmcblk0, md0, dm-0 are not.
fn looks_like_partition(name: &str) -> bool {
    for prefix in ["sd", "hd", "vd", "xvd"] {
        if let Some(rest) = name.strip_prefix(prefix) {
            let letters = rest.trim_end_matches(|c: char| c.is_ascii_digit());
            return letters.len() < rest.len() && letters.bytes().all(|b| b.is_ascii_lowercase());
        }
    }
    for prefix in ["nvme", "mmcblk", "md", "nbd"] {
        if let Some(rest) = name.strip_prefix(prefix) {
            return rest.rsplit_once('p').is_some_and(|(_, n)| is_number(n));
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const DISKSTATS: &str = "   7       0 loop0 100 0 800 0 0 0 0 0 0 0 0 0 0 0 0 0 0
 252       0 zram0 50 0 400 0 50 0 400 0 0 0 0 0 0 0 0 0 0
   8       0 sda 1000 10 20000 500 2000 20 40000 900 0 1000 1400
   8       1 sda1 900 10 18000 450 1900 20 38000 850 0 900 1300
 259       0 nvme0n1 5000 0 100000 100 3000 0 60000 200 0 300 300 0 0 0 0 0 0
 259       1 nvme0n1p1 5000 0 100000 100 3000 0 60000 200 0 300 300 0 0 0 0 0 0
 179       0 mmcblk0 10 0 80 0 0 0 0 0 0 0 0
 179       1 mmcblk0p1 10 0 80 0 0 0 0 0 0 0 0
 179      32 mmcblk0boot0 1 0 8 0 0 0 0 0 0 0 0
 253       0 dm-0 10 0 80 0 10 0 80 0 0 0 0
   9       0 md0 10 0 80 0 10 0 80 0 0 0 0
 broken line
";

    fn names(v: &[(String, Counters)]) -> Vec<&str> {
        v.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn partitions_and_noise_are_skipped_by_name_without_sysfs() {
        let d = parse(DISKSTATS, None);
        assert_eq!(names(&d), vec!["dm-0", "md0", "mmcblk0", "nvme0n1", "sda"]);
    }

    #[test]
    fn sysfs_decides_what_a_whole_disk_is() {
        let whole: HashSet<String> = ["sda", "loop0", "nvme0n1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let d = parse(DISKSTATS, Some(&whole));
        assert_eq!(names(&d), vec!["nvme0n1", "sda"]);
    }

    #[test]
    fn partition_names() {
        for p in [
            "sda1",
            "vdb12",
            "xvda1",
            "nvme0n1p1",
            "mmcblk0p2",
            "md0p1",
            "nbd0p1",
        ] {
            assert!(looks_like_partition(p), "{p}");
        }
        for d in ["sda", "sdaa", "nvme0n1", "mmcblk0", "md0", "dm-0", "vda"] {
            assert!(!looks_like_partition(d), "{d}");
        }
    }

    #[test]
    fn rates_are_bytes_and_operations_per_second() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(2);
        let a = Reading {
            at: t0,
            disks: vec![(
                "sda".into(),
                Counters {
                    reads: 100,
                    writes: 10,
                    sectors_read: 1000,
                    sectors_written: 100,
                },
            )],
        };
        let b = Reading {
            at: t1,
            disks: vec![
                (
                    "sda".into(),
                    Counters {
                        reads: 300,
                        writes: 30,
                        sectors_read: 5000,
                        sectors_written: 50, // went backwards: reset
                    },
                ),
                ("sdb".into(), Counters::default()),
            ],
        };
        let r = rates(Some(&a), &b);
        assert_eq!(r[0].device, "sda");
        assert_eq!(r[0].reads_per_s, 100.0);
        assert_eq!(r[0].writes_per_s, 10.0);
        assert_eq!(r[0].read_bytes_per_s, 4000.0 * 512.0 / 2.0);
        assert_eq!(r[0].write_bytes_per_s, 0.0);
        assert_eq!(r[1].device, "sdb");
        assert_eq!(r[1].read_bytes_per_s, 0.0);
    }
}
