//! What the engine evaluates and what it says: the signals in a snapshot
//! (cpu, disk per mount, ...) and the one-line messages of alerts.

use super::rules::{self, Severity};
use super::Signal;
use crate::engine::ingest::Item;

/// The signals in one snapshot.
pub fn of_item(item: &Item) -> Vec<Signal> {
    let v = &item.sample.values;
    let mut out = Vec::with_capacity(10 + item.disks.len());
    let mut push = |metric: &'static str, value: Option<f64>| {
        if let Some(value) = value.filter(|x| x.is_finite()) {
            out.push(Signal {
                kind: "metric",
                metric,
                instance: String::new(),
                value,
            });
        }
    };
    push("cpu", v[0]);
    push("memory", v[1]);
    push("swap", v[2]);
    push("load", v[3]);
    push(
        "load_per_core",
        v[3].filter(|_| item.cores > 0).map(|l| l / item.cores as f64),
    );
    push("temperature", v[7]);
    push("net_rx", v[8]);
    push("net_tx", v[9]);
    for d in &item.disks {
        out.push(Signal {
            kind: "metric",
            metric: "disk",
            instance: d.mount.clone(),
            value: d.used_percent,
        });
    }
    // A snapshot means the node is online.
    out.push(Signal {
        kind: "offline",
        metric: "node_offline",
        instance: String::new(),
        value: 0.0,
    });
    out
}

fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// One line a person reads in a notification.
pub fn describe(
    sig_metric: &str,
    instance: &str,
    node: &str,
    value: Option<f64>,
    sev: Severity,
    threshold: Option<f64>,
    resolved: bool,
) -> String {
    let unit = rules::metric(sig_metric).map(|d| d.unit).unwrap_or("");
    let unit = if unit.is_empty() || unit == "intervals" {
        String::new()
    } else if unit == "%" {
        "%".into()
    } else {
        format!(" {unit}")
    };
    let what = if instance.is_empty() {
        format!("{sig_metric} on {node}")
    } else {
        format!("{sig_metric} {instance} on {node}")
    };
    let v = value.map(fmt_value).unwrap_or_else(|| "unknown".into());
    let t = threshold.map(fmt_value).unwrap_or_default();
    match (sig_metric, resolved) {
        ("node_offline", false) => format!(
            "{node} has sent nothing for {v} intervals ({} at ≥ {t})",
            sev.as_str()
        ),
        ("node_offline", true) => format!("{node} is reporting again"),
        (_, false) => format!("{what} is {v}{unit} ({} at ≥ {t}{unit})", sev.as_str()),
        (_, true) => format!("{what} is back to {v}{unit}"),
    }
}

fn latest_json(json: Option<&str>) -> Option<serde_json::Value> {
    json.and_then(|j| serde_json::from_str(j).ok())
}

/// Mounts from a stored latest snapshot (native or labwatch-mapped shape).
pub fn latest_disks(json: Option<&str>) -> Vec<crate::store::history::DiskSample> {
    let Some(v) = latest_json(json) else {
        return Vec::new();
    };
    v["disks"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| {
                    Some(crate::store::history::DiskSample {
                        mount: d["mount"].as_str()?.to_string(),
                        used_percent: d["used_percent"].as_f64()?,
                        used_bytes: 0,
                        total_bytes: 0,
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn latest_cores(json: Option<&str>) -> u32 {
    latest_json(json)
        .and_then(|v| v["cpu"]["count"].as_u64())
        .unwrap_or(0) as u32
}
