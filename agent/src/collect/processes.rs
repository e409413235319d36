//! The five processes that used the most CPU since the previous collection,
//! from `/proc/<pid>/stat` (parsed by procfs).
//!
//! `cpu_percent` is like top's: percent of one core, so a busy multithreaded
//! process can exceed 100. A pid is matched with its previous reading only if
//! its start time is the same, so a recycled pid does not inherit a stranger's
//! ticks.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use cairn_wire::{Process, Snapshot};
use procfs::FromRead;

use super::{finite, round2, Collector};

const TOP: usize = 5;

#[derive(Clone, Copy, Debug, PartialEq)]
struct Sample {
    start: u64,
    ticks: u64,
}

struct Row {
    pid: u32,
    name: String,
    sample: Sample,
    rss_pages: u64,
}

pub struct Processes {
    proc: PathBuf,
    ticks_per_s: f64,
    page_size: u64,
    prev: HashMap<u32, Sample>,
    prev_at: Option<Instant>,
}

impl Processes {
    pub fn new(proc_root: &Path) -> Self {
        Processes {
            proc: proc_root.to_path_buf(),
            ticks_per_s: procfs::ticks_per_second() as f64,
            page_size: procfs::page_size(),
            prev: HashMap::new(),
            prev_at: None,
        }
    }

    fn scan(&self) -> Result<Vec<Row>, String> {
        let entries =
            std::fs::read_dir(&self.proc).map_err(|e| format!("listing {}: {e}", self.proc.display()))?;
        let mut rows = Vec::new();
        for entry in entries.filter_map(|e| e.ok()) {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            // The process may exit between listing and reading: skip quietly.
            let Ok(text) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            if let Some(row) = parse_stat(pid, &text) {
                rows.push(row);
            }
        }
        Ok(rows)
    }
}

fn parse_stat(pid: u32, text: &str) -> Option<Row> {
    let st = procfs::process::Stat::from_read(text.as_bytes()).ok()?;
    Some(Row {
        pid,
        name: st.comm,
        sample: Sample {
            start: st.starttime,
            ticks: st.utime.saturating_add(st.stime),
        },
        rss_pages: st.rss,
    })
}

impl Collector for Processes {
    fn name(&self) -> &'static str {
        "processes"
    }

    fn prime(&mut self) {
        if let Ok(rows) = self.scan() {
            self.prev = rows.iter().map(|r| (r.pid, r.sample)).collect();
            self.prev_at = Some(Instant::now());
        }
    }

    fn collect(&mut self, out: &mut Snapshot) -> Result<(), String> {
        let rows = self.scan()?;
        let now = Instant::now();
        let secs = self
            .prev_at
            .map(|t| now.duration_since(t).as_secs_f64())
            .unwrap_or(0.0);
        out.processes = top(&rows, &self.prev, secs * self.ticks_per_s, self.page_size);
        self.prev = rows.iter().map(|r| (r.pid, r.sample)).collect();
        self.prev_at = Some(now);
        Ok(())
    }
}

/// Top processes by CPU over `ticks_elapsed` (wall time in clock ticks), then
/// by memory. Without a previous reading there is no CPU figure: no list.
fn top(rows: &[Row], prev: &HashMap<u32, Sample>, ticks_elapsed: f64, page: u64) -> Vec<Process> {
    if ticks_elapsed <= 0.0 {
        return Vec::new();
    }
    let mut all: Vec<Process> = rows
        .iter()
        .map(|r| {
            let used = match prev.get(&r.pid) {
                Some(p) if p.start == r.sample.start => r.sample.ticks.saturating_sub(p.ticks),
                // Started since the last reading: all its ticks are recent.
                _ => r.sample.ticks,
            };
            Process {
                pid: r.pid,
                name: r.name.clone(),
                cpu_percent: round2(finite(used as f64 / ticks_elapsed * 100.0).max(0.0)),
                memory_bytes: r.rss_pages.saturating_mul(page),
            }
        })
        .collect();
    all.sort_unstable_by(|a, b| {
        b.cpu_percent
            .total_cmp(&a.cpu_percent)
            .then(b.memory_bytes.cmp(&a.memory_bytes))
            .then(a.pid.cmp(&b.pid))
    });
    all.truncate(TOP);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat_line(pid: u32, comm: &str, utime: u64, stime: u64, start: u64, rss: u64) -> String {
        format!(
            "{pid} ({comm}) S 1 {pid} {pid} 0 -1 4194560 100 0 0 0 {utime} {stime} 0 0 20 0 1 0 \
             {start} 1000000 {rss} 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0"
        )
    }

    #[test]
    fn parses_comm_with_spaces_and_parens() {
        let r = parse_stat(42, &stat_line(42, "my (odd) name", 10, 5, 999, 256)).unwrap();
        assert_eq!(r.name, "my (odd) name");
        assert_eq!(
            r.sample,
            Sample {
                start: 999,
                ticks: 15
            }
        );
        assert_eq!(r.rss_pages, 256);
        assert!(parse_stat(1, "garbage").is_none());
        assert!(parse_stat(1, "").is_none());
    }

    #[test]
    fn top_five_by_cpu_delta_with_recycled_pids_not_inheriting_ticks() {
        let rows: Vec<Row> = (1..=7)
            .map(|pid| Row {
                pid,
                name: format!("p{pid}"),
                sample: Sample {
                    start: if pid == 7 { 500 } else { 1 },
                    ticks: 1000 + u64::from(pid) * 10,
                },
                rss_pages: u64::from(pid),
            })
            .collect();
        let prev: HashMap<u32, Sample> = (1..=7)
            .map(|pid| {
                (
                    pid,
                    Sample {
                        start: 1,
                        ticks: 1000,
                    },
                )
            })
            .collect();
        // 100 ticks of wall time.
        let t = top(&rows, &prev, 100.0, 4096);
        assert_eq!(t.len(), 5);
        // pid 7 was recycled (new start time): all its 1070 ticks count.
        assert_eq!(t[0].pid, 7);
        assert_eq!(t[0].cpu_percent, 1070.0);
        assert_eq!(t[1].pid, 6);
        assert_eq!(t[1].cpu_percent, 60.0);
        assert_eq!(t[1].memory_bytes, 6 * 4096);
        assert!(top(&rows, &prev, 0.0, 4096).is_empty());
    }
}
