//! labwatch compatibility: existing labwatch agents post their `collectors`
//! payload; we map it onto our snapshot. Real agents differ from labwatch's
//! documented example, so every known spelling is accepted: `system` bare or
//! wrapped in `{"data": ...}`, `total_percent`/`percent`, `mountpoint`/`mount`,
//! `load1`/`1m`, cumulative network counters (rates are derived here from the
//! previous report). Unknown collectors are kept verbatim in the latest
//! snapshot for later features, never rejected.

use crate::clock;
use crate::engine::ingest::{self, Item};
use crate::http::ApiError;
use cairn_wire::{Cpu, Disk, Load, Memory, NetIf, Process, Snapshot, Temperature};
use serde_json::{Map, Value};
use std::collections::HashMap;

/// Previous cumulative network counters per (node, interface): (ts, sent, recv).
#[derive(Default)]
pub struct CounterMemory {
    last: HashMap<(String, String), (i64, u64, u64)>,
}

struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Obj<'a> {
    fn new(v: &'a Value, path: &str) -> Result<Option<Obj<'a>>, ApiError> {
        match v {
            Value::Null => Ok(None),
            Value::Object(map) => Ok(Some(Obj {
                map,
                path: path.to_string(),
            })),
            _ => Err(ApiError::field(path, "must be an object")),
        }
    }
    fn first(&self, names: &[&str]) -> Option<(&'a Value, String)> {
        names.iter().find_map(|n| match self.map.get(*n) {
            None | Some(Value::Null) => None,
            Some(v) => Some((v, format!("{}.{n}", self.path))),
        })
    }
    fn num(&self, names: &[&str]) -> Result<Option<f64>, ApiError> {
        match self.first(names) {
            None => Ok(None),
            Some((Value::Number(n), path)) => n
                .as_f64()
                .filter(|f| f.is_finite())
                .map(Some)
                .ok_or_else(|| ApiError::field(&path, "must be a finite number")),
            Some((_, path)) => Err(ApiError::field(&path, "must be a number")),
        }
    }
    fn f(&self, names: &[&str]) -> Result<f64, ApiError> {
        Ok(self.num(names)?.unwrap_or(0.0))
    }
    fn u(&self, names: &[&str]) -> Result<u64, ApiError> {
        match self.num(names)? {
            None => Ok(0),
            Some(v) if v >= 0.0 && v <= u64::MAX as f64 => Ok(v as u64),
            Some(v) => Err(ApiError::field(
                &format!("{}.{}", self.path, names[0]),
                format!("{v} must be a non-negative count"),
            )),
        }
    }
    fn s(&self, names: &[&str]) -> Result<String, ApiError> {
        match self.first(names) {
            None => Ok(String::new()),
            Some((Value::String(s), _)) => Ok(s.clone()),
            Some((Value::Number(n), _)) => Ok(n.to_string()),
            Some((_, path)) => Err(ApiError::field(&path, "must be a string")),
        }
    }
    fn arr(&self, names: &[&str]) -> Result<Vec<(&'a Value, String)>, ApiError> {
        match self.first(names) {
            None => Ok(Vec::new()),
            Some((Value::Array(a), path)) => Ok(a
                .iter()
                .enumerate()
                .map(|(i, v)| (v, format!("{path}[{i}]")))
                .collect()),
            Some((_, path)) => Err(ApiError::field(&path, "must be an array")),
        }
    }
    fn obj(&self, names: &[&str]) -> Result<Option<Obj<'a>>, ApiError> {
        match self.first(names) {
            None => Ok(None),
            Some((v, path)) => Obj::new(v, &path),
        }
    }
}

/// The labwatch body's `lab_id` (checked against the token's node by the caller).
pub fn lab_id(body: &Value) -> Result<String, ApiError> {
    match body.get("lab_id") {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(ApiError::field(
            "lab_id",
            "is required (the id returned by /api/v1/register)",
        )),
    }
}

/// Maps a labwatch ingest body to one validated item for `node_id`.
pub fn to_item(body: Value, node_id: &str, counters: &mut CounterMemory, now: i64) -> Result<Item, ApiError> {
    let root =
        Obj::new(&body, "body")?.ok_or_else(|| ApiError::bad_request("the body must be a JSON object"))?;
    let ts = match root.first(&["timestamp"]) {
        None => now,
        Some((Value::String(s), _)) => {
            clock::parse_iso8601(s).map_err(|e| ApiError::field("timestamp", e))?
        }
        Some((Value::Number(n), _)) => n
            .as_i64()
            .ok_or_else(|| ApiError::field("timestamp", "must be Unix seconds or ISO 8601"))?,
        Some(_) => return Err(ApiError::field("timestamp", "must be Unix seconds or ISO 8601")),
    };
    // Range-checked before the counter memory sees it: `9223372036854775807`
    // overflowed `ts - previous` (a panic in debug builds) and an absurd
    // timestamp would be remembered as the node's newest report.
    if ts > now + ingest::MAX_FUTURE_S {
        return Err(ApiError::field(
            "timestamp",
            format!("is {} s in the future; check the agent's clock", ts - now),
        ));
    }
    if ts < 946_684_800 {
        return Err(ApiError::field("timestamp", "is before the year 2000"));
    }
    let collectors = root
        .obj(&["collectors"])?
        .ok_or_else(|| ApiError::field("collectors", "is required (an object keyed by collector)"))?;
    let mut snap = Snapshot {
        timestamp: clock::rfc3339(ts),
        hostname: root.s(&["hostname"])?,
        ..Snapshot::default()
    };
    if let Some(system) = collectors.obj(&["system"])? {
        // Wrapped as {"data": {...}} by some agent versions, bare by others.
        let system = match system.obj(&["data"])? {
            Some(inner) => inner,
            None => system,
        };
        map_system(&system, &mut snap, node_id, ts, counters)?;
    }
    let raw = serde_json::json!({
        "timestamp": snap.timestamp,
        "hostname": snap.hostname,
        "system": snap.system,
        "cpu": snap.cpu,
        "memory": snap.memory,
        "load": snap.load,
        "uptime_seconds": snap.uptime_seconds,
        "disks": snap.disks,
        "net": snap.net,
        "temperatures": snap.temperatures,
        "processes": snap.processes,
        "labwatch_collectors": body.get("collectors"),
    });
    ingest::to_item(snap, ingest::Detail::Json(raw), "", now)
}

fn map_system(
    sys: &Obj,
    snap: &mut Snapshot,
    node_id: &str,
    ts: i64,
    counters: &mut CounterMemory,
) -> Result<(), ApiError> {
    if let Some(cpu) = sys.obj(&["cpu"])? {
        let per_core = match cpu.first(&["usage_percent", "per_core", "percpu"]) {
            Some((Value::Array(a), path)) => a
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_f64()
                        .filter(|f| f.is_finite())
                        .ok_or_else(|| ApiError::field(&format!("{path}[{i}]"), "must be a number"))
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => Vec::new(),
        };
        // `usage_percent` is per-core when it is an array, a total otherwise.
        let total = match cpu.num(&["total_percent", "percent"])? {
            Some(t) => t,
            None => match cpu.first(&["usage_percent"]) {
                Some((Value::Number(n), _)) => n.as_f64().unwrap_or(0.0),
                _ if !per_core.is_empty() => per_core.iter().sum::<f64>() / per_core.len() as f64,
                _ => 0.0,
            },
        };
        snap.cpu = Cpu {
            total_percent: total,
            count: cpu.u(&["count", "cores"])? as u32,
            per_core,
        };
    }
    if let Some(m) = sys.obj(&["memory"])? {
        snap.memory = Memory {
            total_bytes: m.u(&["total_bytes", "total"])?,
            used_bytes: m.u(&["used_bytes", "used"])?,
            available_bytes: m.u(&["available_bytes", "available"])?,
            used_percent: m.f(&["used_percent", "percent"])?,
            swap_total_bytes: m.u(&["swap_total_bytes", "swap_total"])?,
            swap_used_bytes: m.u(&["swap_used_bytes", "swap_used"])?,
            swap_percent: m.f(&["swap_percent"])?,
        };
    }
    for (v, path) in sys.arr(&["disk", "disks"])? {
        let Some(d) = Obj::new(v, &path)? else { continue };
        snap.disks.push(Disk {
            mount: d.s(&["mountpoint", "mount", "path"])?,
            device: d.s(&["device"])?,
            fstype: d.s(&["fstype"])?,
            total_bytes: d.u(&["total_bytes", "total"])?,
            used_bytes: d.u(&["used_bytes", "used"])?,
            free_bytes: d.u(&["free_bytes", "free"])?,
            used_percent: d.f(&["used_percent", "percent"])?,
            inodes_total: d.u(&["inodes_total"])?,
            inodes_used: d.u(&["inodes_used"])?,
        });
    }
    match sys.first(&["load_average", "load"]) {
        Some((Value::Array(a), path)) => {
            let get = |i: usize| -> Result<f64, ApiError> {
                a.get(i)
                    .map(|v| {
                        v.as_f64()
                            .ok_or_else(|| ApiError::field(&format!("{path}[{i}]"), "must be a number"))
                    })
                    .unwrap_or(Ok(0.0))
            };
            snap.load = Load {
                load1: get(0)?,
                load5: get(1)?,
                load15: get(2)?,
            };
        }
        Some((v, path)) => {
            if let Some(l) = Obj::new(v, &path)? {
                snap.load = Load {
                    load1: l.f(&["load1", "1m", "1"])?,
                    load5: l.f(&["load5", "5m", "5"])?,
                    load15: l.f(&["load15", "15m", "15"])?,
                };
            }
        }
        None => {}
    }
    snap.uptime_seconds = sys.u(&["uptime_seconds", "uptime"])?;
    for (v, path) in sys.arr(&["network", "net"])? {
        let Some(n) = Obj::new(v, &path)? else { continue };
        let iface = n.s(&["interface", "name"])?;
        let sent = n.u(&["bytes_sent", "tx_bytes"])?;
        let recv = n.u(&["bytes_recv", "rx_bytes"])?;
        let key = (node_id.to_string(), iface.clone());
        let (mut rx, mut tx) = (0.0, 0.0);
        if let Some((pts, psent, precv)) = counters.last.get(&key) {
            let dt = (ts - pts) as f64;
            // A reset counter (reboot) or a replayed report gives no rate.
            if dt > 0.0 && sent >= *psent && recv >= *precv {
                tx = (sent - psent) as f64 / dt;
                rx = (recv - precv) as f64 / dt;
            }
        }
        if counters.last.get(&key).is_none_or(|(pts, _, _)| ts > *pts) {
            // Bounded: names are client-chosen, so a misbehaving agent must
            // not grow this without limit (the cost of a reset is one
            // report without rates).
            if counters.last.len() >= 100_000 {
                counters.last.clear();
            }
            counters.last.insert(key, (ts, sent, recv));
        }
        snap.net.push(NetIf {
            interface: iface,
            rx_bytes_per_s: rx,
            tx_bytes_per_s: tx,
            rx_bytes_total: recv,
            tx_bytes_total: sent,
            rx_errors: n.u(&["errin", "rx_errors"])?,
            tx_errors: n.u(&["errout", "tx_errors"])?,
        });
    }
    for (v, path) in sys.arr(&["temperatures", "temperature"])? {
        let Some(t) = Obj::new(v, &path)? else { continue };
        let Some(c) = t.num(&["temperature_celsius", "celsius", "current"])? else {
            continue;
        };
        snap.temperatures.push(Temperature {
            sensor: t.s(&["sensor_key", "sensor", "label"])?,
            celsius: c,
            high_celsius: t.num(&["high_threshold_celsius", "high"])?,
            critical_celsius: t.num(&["critical_threshold_celsius", "critical"])?,
        });
    }
    for (v, path) in sys.arr(&["processes"])?.into_iter().take(50) {
        let Some(p) = Obj::new(v, &path)? else { continue };
        snap.processes.push(Process {
            pid: p.u(&["pid"])? as u32,
            name: p.s(&["name"])?,
            cpu_percent: p.f(&["cpu_percent"])?,
            memory_bytes: p.u(&["memory_bytes", "rss_bytes"])?,
        });
    }
    if let Some(os) = sys.obj(&["os", "platform"])? {
        snap.system.os = os.s(&["name", "pretty_name", "system"])?;
        snap.system.kernel = os.s(&["kernel", "release"])?;
        snap.system.arch = os.s(&["arch", "machine"])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_445_400;

    fn item(body: &str, counters: &mut CounterMemory) -> Result<Item, ApiError> {
        to_item(serde_json::from_str(body).unwrap(), "n1", counters, NOW)
    }

    #[test]
    fn documented_example_maps() {
        let body = r#"{ "lab_id": "lab_x", "collectors": { "system": { "data": { "cpu": {"total_percent": 23.5, "count": 8}, "memory": {"used_percent": 62.1, "total_bytes": 34359738368}, "disk": [{"mount": "/", "used_percent": 45.2}], "load_average": {"1m": 1.2, "5m": 0.8, "15m": 0.6}, "uptime_seconds": 864000 } }, "docker": { "data": { "containers": [ {"name": "caddy", "state": "running"} ] } } } }"#;
        let it = item(body, &mut CounterMemory::default()).unwrap();
        assert_eq!(it.ts, NOW);
        assert_eq!(it.sample.values[0], Some(23.5));
        assert_eq!(it.sample.values[1], Some(62.1));
        assert_eq!(it.sample.values[3], Some(1.2));
        assert_eq!(it.sample.values[6], Some(45.2));
        assert!(
            it.latest.as_deref().is_some_and(|l| l.contains("caddy")),
            "unknown collectors are kept"
        );
    }

    #[test]
    fn real_agent_variant_with_counters_gives_rates() {
        let mut c = CounterMemory::default();
        let first = r#"{"lab_id":"x","hostname":"","timestamp":"2026-11-23T14:49:00Z","collectors":{"system":{
            "cpu":{"usage_percent":[10,30]},
            "memory":{"used_percent":50,"total_bytes":100,"used_bytes":50,"available_bytes":50,"swap_total_bytes":10,"swap_used_bytes":1,"swap_percent":10},
            "disk":[{"mountpoint":"/","device":"/dev/sda1","fstype":"ext4","used_percent":40,"total_bytes":1000,"used_bytes":400,"free_bytes":600}],
            "load_average":{"load1":0.5,"load5":0.4,"load15":0.3},
            "network":[{"interface":"eth0","bytes_sent":1000,"bytes_recv":2000}],
            "temperatures":[{"sensor_key":"cpu_thermal","temperature_celsius":48.5,"high_threshold_celsius":80,"critical_threshold_celsius":90}],
            "uptime_seconds":100,"processes":[{"pid":1,"name":"init","cpu_percent":0.1}]},
            "docker":null,"gpu":{"error":"no gpu"},"smart":null,"zfs":{"pools":null}}}"#;
        let it = item(first, &mut c).unwrap();
        assert_eq!(it.sample.values[0], Some(20.0));
        assert_eq!(it.sample.values[7], Some(48.5));
        assert_eq!(it.sample.values[8], Some(0.0));
        let second = first
            .replace("14:49:00", "14:49:30")
            .replace("\"bytes_sent\":1000", "\"bytes_sent\":4000")
            .replace("\"bytes_recv\":2000", "\"bytes_recv\":5000");
        let it = item(&second, &mut c).unwrap();
        assert_eq!(it.sample.values[8], Some(100.0));
        assert_eq!(it.sample.values[9], Some(100.0));
    }

    #[test]
    fn absurd_numeric_timestamps_are_refused_before_rates_are_derived() {
        let mut c = CounterMemory::default();
        let body = |ts: &str| {
            format!(
                r#"{{"lab_id":"x","timestamp":{ts},"collectors":{{"system":{{"network":[{{"interface":"eth0","bytes_sent":1,"bytes_recv":1}}]}}}}}}"#
            )
        };
        item(&body("1795445000"), &mut c).unwrap();
        for ts in [
            "9223372036854775807",
            "-9223372036854775808",
            "-5",
            "253402300800",
        ] {
            let e = item(&body(ts), &mut c).unwrap_err();
            assert!(e.message.contains("timestamp"), "{ts}: {}", e.message);
        }
        // The refused reports did not become the node's newest counters.
        let it = item(
            &body("1795445100").replace("\"bytes_sent\":1", "\"bytes_sent\":201"),
            &mut c,
        )
        .unwrap();
        assert_eq!(it.sample.values[9], Some(2.0));
    }

    #[test]
    fn bad_types_name_the_field() {
        let e = item(
            r#"{"lab_id":"x","collectors":{"system":{"cpu":{"total_percent":"high"}}}}"#,
            &mut CounterMemory::default(),
        )
        .unwrap_err();
        assert!(e.message.contains("cpu.total_percent"), "{}", e.message);
        let e = item(r#"{"lab_id":"x"}"#, &mut CounterMemory::default()).unwrap_err();
        assert!(e.message.contains("collectors"));
    }
}
