//! Types that cross the wire between `cairn-agent` and `cairnd`: the host
//! snapshot, the enrollment exchange and the ingest reply. Nothing else lives
//! here, so the agent pulls in no daemon code.
//!
//! Every numeric field is a plain finite number; rates are per second and
//! derived by the agent from deltas between two collections. Fields an agent
//! cannot read are left at their defaults (empty lists, `None`), never faked.

use serde::{Deserialize, Serialize};

/// One collection of a host's state.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct Snapshot {
    /// RFC 3339 UTC time of collection.
    pub timestamp: String,
    pub hostname: String,
    pub system: SystemInfo,
    pub cpu: Cpu,
    pub memory: Memory,
    pub load: Load,
    pub uptime_seconds: u64,
    pub disks: Vec<Disk>,
    pub disk_io: Vec<DiskIo>,
    pub net: Vec<NetIf>,
    pub temperatures: Vec<Temperature>,
    /// Raspberry Pi firmware throttling flags, where the firmware exposes them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pi: Option<PiThrottle>,
    /// Top processes by CPU, when the agent collects them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<Process>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct SystemInfo {
    pub os: String,
    pub kernel: String,
    pub arch: String,
    /// Hardware model (device-tree model on a Pi, DMI product name elsewhere).
    pub model: String,
    pub agent_version: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct Cpu {
    /// Busy share of all cores, 0–100.
    pub total_percent: f64,
    /// Busy share per core, 0–100 each.
    pub per_core: Vec<f64>,
    pub count: u32,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct Memory {
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub available_bytes: u64,
    pub used_percent: f64,
    pub swap_total_bytes: u64,
    pub swap_used_bytes: u64,
    pub swap_percent: f64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct Load {
    pub load1: f64,
    pub load5: f64,
    pub load15: f64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct Disk {
    pub mount: String,
    pub device: String,
    pub fstype: String,
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub free_bytes: u64,
    pub used_percent: f64,
    pub inodes_total: u64,
    pub inodes_used: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct DiskIo {
    pub device: String,
    pub read_bytes_per_s: f64,
    pub write_bytes_per_s: f64,
    pub reads_per_s: f64,
    pub writes_per_s: f64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct NetIf {
    pub interface: String,
    pub rx_bytes_per_s: f64,
    pub tx_bytes_per_s: f64,
    /// Cumulative counters since boot, as the kernel reports them.
    pub rx_bytes_total: u64,
    pub tx_bytes_total: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct Temperature {
    pub sensor: String,
    pub celsius: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub high_celsius: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub critical_celsius: Option<f64>,
}

/// Decoded `get_throttled` bits (vcgencmd / sysfs `throttled`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct PiThrottle {
    pub raw: u32,
    pub under_voltage: bool,
    pub freq_capped: bool,
    pub throttled: bool,
    pub soft_temp_limit: bool,
    pub under_voltage_occurred: bool,
    pub freq_capped_occurred: bool,
    pub throttled_occurred: bool,
    pub soft_temp_limit_occurred: bool,
}

impl PiThrottle {
    /// Decodes the firmware's bit field (bits 0–3 now, 16–19 since boot).
    pub fn from_raw(raw: u32) -> Self {
        let bit = |n: u32| raw & (1 << n) != 0;
        PiThrottle {
            raw,
            under_voltage: bit(0),
            freq_capped: bit(1),
            throttled: bit(2),
            soft_temp_limit: bit(3),
            under_voltage_occurred: bit(16),
            freq_capped_occurred: bit(17),
            throttled_occurred: bit(18),
            soft_temp_limit_occurred: bit(19),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct Process {
    pub pid: u32,
    pub name: String,
    pub cpu_percent: f64,
    pub memory_bytes: u64,
}

/// `POST /api/v1/agent/enroll` request.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
#[serde(default)]
pub struct EnrollRequest {
    pub code: String,
    pub hostname: String,
    pub os: String,
    pub arch: String,
    pub agent_version: String,
}

/// `POST /api/v1/agent/enroll` reply.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
#[serde(default)]
pub struct EnrollReply {
    pub node_id: String,
    pub token: String,
    pub interval_s: u32,
}

/// `POST /api/v1/agent/ingest` batch body; a single snapshot is also accepted.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
#[serde(default)]
pub struct IngestBatch {
    pub snapshots: Vec<Snapshot>,
}

/// `POST /api/v1/agent/ingest` reply: what was stored and the agent's config.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
#[serde(default)]
pub struct IngestReply {
    /// Snapshots newly stored by this request.
    pub accepted: u32,
    /// Snapshots already stored earlier (same node and timestamp).
    pub duplicates: u32,
    pub config: AgentConfig,
}

/// Settings the server pushes to its agents with every ingest reply.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct AgentConfig {
    pub interval_s: u32,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            interval_s: DEFAULT_INTERVAL_S,
        }
    }
}

/// Collection interval when the server has said nothing else.
pub const DEFAULT_INTERVAL_S: u32 = 30;
/// The most snapshots one ingest request may carry.
pub const MAX_BATCH: usize = 500;
