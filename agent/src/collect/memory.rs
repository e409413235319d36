//! Memory and swap from `/proc/meminfo` (parsed by procfs).

use std::path::{Path, PathBuf};

use cairn_wire::Snapshot;
use procfs::FromBufRead;

use super::{percent, read, round2, Collector};

pub struct Memory {
    path: PathBuf,
}

impl Memory {
    pub fn new(proc_root: &Path) -> Self {
        Memory {
            path: proc_root.join("meminfo"),
        }
    }
}

impl Collector for Memory {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn collect(&mut self, out: &mut Snapshot) -> Result<(), String> {
        let text = read(&self.path)?;
        out.memory = parse(&text).map_err(|e| format!("parsing {}: {e}", self.path.display()))?;
        Ok(())
    }
}

fn parse(text: &str) -> Result<cairn_wire::Memory, String> {
    let m = procfs::Meminfo::from_buf_read(text.as_bytes()).map_err(|e| e.to_string())?;
    let total = m.mem_total;
    // MemAvailable exists since Linux 3.14; before that, free + buffers + page
    // cache is the usual (optimistic) estimate.
    let available = m
        .mem_available
        .unwrap_or_else(|| m.mem_free.saturating_add(m.buffers).saturating_add(m.cached))
        .min(total);
    let used = total - available;
    let swap_used = m.swap_total.saturating_sub(m.swap_free);
    Ok(cairn_wire::Memory {
        total_bytes: total,
        used_bytes: used,
        available_bytes: available,
        used_percent: round2(percent(used as f64, total as f64)),
        swap_total_bytes: m.swap_total,
        swap_used_bytes: swap_used,
        swap_percent: round2(percent(swap_used as f64, m.swap_total as f64)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "MemTotal:        8000000 kB
MemFree:         1000000 kB
MemAvailable:    6000000 kB
Buffers:          100000 kB
Cached:          3000000 kB
SwapCached:            0 kB
Active:          2000000 kB
Inactive:        2000000 kB
SwapTotal:       2000000 kB
SwapFree:        1500000 kB
Dirty:                 0 kB
Writeback:             0 kB
Mapped:           100000 kB
Shmem:             10000 kB
Slab:             100000 kB
SReclaimable:      50000 kB
SUnreclaim:        50000 kB
KernelStack:        5000 kB
PageTables:         5000 kB
NFS_Unstable:          0 kB
Bounce:                0 kB
WritebackTmp:          0 kB
CommitLimit:     6000000 kB
Committed_AS:    3000000 kB
VmallocTotal:   34359738367 kB
VmallocUsed:           0 kB
VmallocChunk:          0 kB
AnonPages:       1000000 kB
";

    #[test]
    fn used_is_total_minus_available() {
        let m = parse(MEMINFO).unwrap();
        assert_eq!(m.total_bytes, 8_000_000 * 1024);
        assert_eq!(m.available_bytes, 6_000_000 * 1024);
        assert_eq!(m.used_bytes, 2_000_000 * 1024);
        assert_eq!(m.used_percent, 25.0);
        assert_eq!(m.swap_total_bytes, 2_000_000 * 1024);
        assert_eq!(m.swap_used_bytes, 500_000 * 1024);
        assert_eq!(m.swap_percent, 25.0);
    }

    #[test]
    fn old_kernel_without_memavailable_estimates_it() {
        let text = MEMINFO.replace("MemAvailable:    6000000 kB\n", "");
        let m = parse(&text).unwrap();
        assert_eq!(m.available_bytes, 4_100_000 * 1024);
    }

    #[test]
    fn no_swap_is_zero_percent() {
        let text = MEMINFO
            .replace("SwapTotal:       2000000 kB", "SwapTotal:             0 kB")
            .replace("SwapFree:        1500000 kB", "SwapFree:              0 kB");
        let m = parse(&text).unwrap();
        assert_eq!(m.swap_percent, 0.0);
        assert_eq!(m.swap_used_bytes, 0);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse("").is_err());
        assert!(parse("MemTotal: lots kB\n").is_err());
    }
}
