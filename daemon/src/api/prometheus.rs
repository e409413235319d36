//! Prometheus exposition: the latest value of every history metric per node,
//! plus up/last-seen, so Prometheus or VictoriaMetrics can scrape everything
//! cairnd knows with a viewer API token.

use crate::app::{Call, Ctx};
use crate::clock;
use crate::http::{ApiResult, Reply};
use crate::store::history::METRICS;
use std::fmt::Write;

/// (metric, Prometheus name, help)
const EXPORTED: [(&str, &str, &str); 12] = [
    ("cpu", "cairn_cpu_percent", "CPU busy, percent of all cores"),
    ("memory", "cairn_memory_used_percent", "Memory used, percent"),
    ("swap", "cairn_swap_used_percent", "Swap used, percent"),
    ("load1", "cairn_load1", "Load average, 1 minute"),
    ("load5", "cairn_load5", "Load average, 5 minutes"),
    ("load15", "cairn_load15", "Load average, 15 minutes"),
    (
        "disk",
        "cairn_disk_used_percent_max",
        "Fullest mounted filesystem, percent used",
    ),
    (
        "temperature",
        "cairn_temperature_celsius_max",
        "Hottest sensor, degrees Celsius",
    ),
    (
        "net_rx",
        "cairn_network_receive_bytes_per_second",
        "Network receive rate, all interfaces",
    ),
    (
        "net_tx",
        "cairn_network_transmit_bytes_per_second",
        "Network transmit rate, all interfaces",
    ),
    (
        "disk_read",
        "cairn_disk_read_bytes_per_second",
        "Disk read rate, all disks",
    ),
    (
        "disk_write",
        "cairn_disk_write_bytes_per_second",
        "Disk write rate, all disks",
    ),
];

/// Label values escaped per the exposition format.
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

pub fn metrics(ctx: &mut Ctx, _: &Call) -> ApiResult {
    let now = clock::now();
    let nodes = ctx.store.nodes()?;
    let mut out = String::new();
    let labels = |n: &crate::store::nodes::Node| format!("node=\"{}\",name=\"{}\"", esc(&n.id), esc(&n.name));
    let _ = writeln!(
        out,
        "# HELP cairn_node_up 1 if the node reported within 3 intervals"
    );
    let _ = writeln!(out, "# TYPE cairn_node_up gauge");
    for n in &nodes {
        let up = super::nodes::status(n, now) == "online";
        let _ = writeln!(out, "cairn_node_up{{{}}} {}", labels(n), u8::from(up));
    }
    let _ = writeln!(
        out,
        "# HELP cairn_node_last_seen_seconds Unix time of the latest snapshot"
    );
    let _ = writeln!(out, "# TYPE cairn_node_last_seen_seconds gauge");
    for n in &nodes {
        if let Some(t) = n.last_seen {
            let _ = writeln!(out, "cairn_node_last_seen_seconds{{{}}} {t}", labels(n));
        }
    }
    for (metric, name, help) in EXPORTED {
        let i = METRICS.iter().position(|m| *m == metric).unwrap_or(0);
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for n in &nodes {
            if let Some(v) = ctx
                .store
                .latest(&n.id)
                .and_then(|l| l.sample.values[i])
                .filter(|v| v.is_finite())
            {
                let _ = writeln!(out, "{name}{{{}}} {v}", labels(n));
            }
        }
    }
    let (requests, snapshots) = ctx.ingest.waiting();
    let _ = writeln!(
        out,
        "# HELP cairnd_ingest_waiting_requests Ingest requests waiting for their commit\n\
         # TYPE cairnd_ingest_waiting_requests gauge\ncairnd_ingest_waiting_requests {requests}\n\
         # HELP cairnd_ingest_waiting_snapshots Snapshots waiting for their commit (an agent's \
         Cairn-Commit-Within lets them wait)\n\
         # TYPE cairnd_ingest_waiting_snapshots gauge\ncairnd_ingest_waiting_snapshots {snapshots}"
    );
    daemon_memory(&mut out);
    Ok(Reply::text(200, "text/plain; version=0.0.4; charset=utf-8", out))
}

/// cairnd's own memory: what a Raspberry Pi owner watches, and how the
/// benchmarks tell SQLite's share (page cache, statements, sorts) from the
/// rest.
fn daemon_memory(out: &mut String) {
    // SAFETY: plain reads of SQLite's global memory counters.
    let (used, high) = unsafe {
        (
            rusqlite::ffi::sqlite3_memory_used(),
            rusqlite::ffi::sqlite3_memory_highwater(0),
        )
    };
    for (name, help, v) in [
        (
            "cairnd_sqlite_memory_bytes",
            "Heap memory SQLite holds (page cache, statements, sorts)",
            used,
        ),
        (
            "cairnd_sqlite_memory_highwater_bytes",
            "Most heap memory SQLite has held since start",
            high,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
    }
    if let Some(rss) = resident_bytes() {
        let _ = writeln!(
            out,
            "# HELP process_resident_memory_bytes Resident memory of cairnd\n\
             # TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {rss}"
        );
    }
}

fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok()??;
    Some(pages * page as u64)
}
