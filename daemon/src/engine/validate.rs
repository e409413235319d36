//! Range checks on snapshots, naming the field that is wrong. Field paths
//! are built only for a value at fault: formatting ~100 of them per
//! snapshot cost more than parsing it.

use crate::http::ApiError;
use cairn_wire::Snapshot;

fn percent(path: impl FnOnce() -> String, v: f64) -> Result<(), ApiError> {
    if !(0.0..=100.0).contains(&v) {
        return Err(ApiError::field(
            &path(),
            format!("{v} is not a percentage between 0 and 100"),
        ));
    }
    Ok(())
}

/// The largest rate or load accepted (1 PB/s). Stored metrics are sums over
/// interfaces and disks and rollups sum those again: without a bound, two
/// interfaces at 1e308 B/s stored `inf`, which charts cannot show.
pub const MAX_RATE: f64 = 1e15;

fn non_negative(path: impl FnOnce() -> String, v: f64) -> Result<(), ApiError> {
    if !(0.0..=MAX_RATE).contains(&v) {
        return Err(ApiError::field(
            &path(),
            format!("{v} must be a finite number from 0 to {MAX_RATE:e}"),
        ));
    }
    Ok(())
}

fn celsius(path: impl FnOnce() -> String, v: f64) -> Result<(), ApiError> {
    if !(-100.0..=250.0).contains(&v) {
        return Err(ApiError::field(
            &path(),
            format!("{v} °C is not a plausible temperature"),
        ));
    }
    Ok(())
}

fn short(path: impl FnOnce() -> String, s: &str, max: usize) -> Result<(), ApiError> {
    if s.len() > max {
        return Err(ApiError::field(&path(), format!("longer than {max} bytes")));
    }
    if s.chars().any(|c| c.is_control()) {
        return Err(ApiError::field(&path(), "contains control characters"));
    }
    Ok(())
}

fn at_most<T>(path: impl FnOnce() -> String, v: &[T], max: usize) -> Result<(), ApiError> {
    if v.len() > max {
        return Err(ApiError::field(
            &path(),
            format!("has {} entries; at most {max} allowed", v.len()),
        ));
    }
    Ok(())
}

/// Checks every value of a snapshot; `p` prefixes field paths (e.g. `snapshots[3].`).
/// SQLite integers are signed 64-bit: a larger count cannot be stored as sent.
fn storable(path: impl FnOnce() -> String, v: u64) -> Result<(), ApiError> {
    if v > i64::MAX as u64 {
        return Err(ApiError::field(&path(), format!("{v} is larger than 2^63-1")));
    }
    Ok(())
}

pub fn snapshot(s: &Snapshot, p: &str) -> Result<(), ApiError> {
    let f = |name: &str| format!("{p}{name}");
    short(|| f("hostname"), &s.hostname, 253)?;
    for (name, v) in [
        ("system.os", &s.system.os),
        ("system.kernel", &s.system.kernel),
        ("system.arch", &s.system.arch),
        ("system.model", &s.system.model),
        ("system.agent_version", &s.system.agent_version),
    ] {
        short(|| f(name), v, 256)?;
    }
    percent(|| f("cpu.total_percent"), s.cpu.total_percent)?;
    at_most(|| f("cpu.per_core"), &s.cpu.per_core, 4096)?;
    for (i, v) in s.cpu.per_core.iter().enumerate() {
        percent(|| f(&format!("cpu.per_core[{i}]")), *v)?;
    }
    percent(|| f("memory.used_percent"), s.memory.used_percent)?;
    percent(|| f("memory.swap_percent"), s.memory.swap_percent)?;
    non_negative(|| f("load.load1"), s.load.load1)?;
    non_negative(|| f("load.load5"), s.load.load5)?;
    non_negative(|| f("load.load15"), s.load.load15)?;
    at_most(|| f("disks"), &s.disks, 512)?;
    for (i, d) in s.disks.iter().enumerate() {
        short(|| f(&format!("disks[{i}].mount")), &d.mount, 4096)?;
        short(|| f(&format!("disks[{i}].device")), &d.device, 4096)?;
        short(|| f(&format!("disks[{i}].fstype")), &d.fstype, 64)?;
        percent(|| f(&format!("disks[{i}].used_percent")), d.used_percent)?;
        storable(|| f(&format!("disks[{i}].total_bytes")), d.total_bytes)?;
        storable(|| f(&format!("disks[{i}].used_bytes")), d.used_bytes)?;
    }
    at_most(|| f("disk_io"), &s.disk_io, 512)?;
    for (i, d) in s.disk_io.iter().enumerate() {
        short(|| f(&format!("disk_io[{i}].device")), &d.device, 256)?;
        non_negative(
            || f(&format!("disk_io[{i}].read_bytes_per_s")),
            d.read_bytes_per_s,
        )?;
        non_negative(
            || f(&format!("disk_io[{i}].write_bytes_per_s")),
            d.write_bytes_per_s,
        )?;
        non_negative(|| f(&format!("disk_io[{i}].reads_per_s")), d.reads_per_s)?;
        non_negative(|| f(&format!("disk_io[{i}].writes_per_s")), d.writes_per_s)?;
    }
    at_most(|| f("net"), &s.net, 512)?;
    for (i, n) in s.net.iter().enumerate() {
        short(|| f(&format!("net[{i}].interface")), &n.interface, 64)?;
        non_negative(|| f(&format!("net[{i}].rx_bytes_per_s")), n.rx_bytes_per_s)?;
        non_negative(|| f(&format!("net[{i}].tx_bytes_per_s")), n.tx_bytes_per_s)?;
    }
    at_most(|| f("temperatures"), &s.temperatures, 512)?;
    for (i, t) in s.temperatures.iter().enumerate() {
        short(|| f(&format!("temperatures[{i}].sensor")), &t.sensor, 256)?;
        celsius(|| f(&format!("temperatures[{i}].celsius")), t.celsius)?;
        if let Some(h) = t.high_celsius {
            celsius(|| f(&format!("temperatures[{i}].high_celsius")), h)?;
        }
        if let Some(c) = t.critical_celsius {
            celsius(|| f(&format!("temperatures[{i}].critical_celsius")), c)?;
        }
    }
    at_most(|| f("processes"), &s.processes, 100)?;
    for (i, pr) in s.processes.iter().enumerate() {
        short(|| f(&format!("processes[{i}].name")), &pr.name, 256)?;
        non_negative(|| f(&format!("processes[{i}].cpu_percent")), pr.cpu_percent)?;
    }
    Ok(())
}
