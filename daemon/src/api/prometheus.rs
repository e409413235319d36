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
    let latest = ctx.store.latest_samples();
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
            if let Some(v) = latest
                .get(&n.id)
                .and_then(|s| s.values[i])
                .filter(|v| v.is_finite())
            {
                let _ = writeln!(out, "{name}{{{}}} {v}", labels(n));
            }
        }
    }
    Ok(Reply::text(200, "text/plain; version=0.0.4; charset=utf-8", out))
}
