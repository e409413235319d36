//! Types that cross the wire between `cairn-agent` and `cairnd`: the host
//! snapshot, the enrollment exchange, the ingest reply and the checks an agent
//! runs (probes) with their results. Nothing else lives
//! here, so the agent pulls in no daemon code.
//!
//! Every numeric field is a plain finite number; rates are per second and
//! derived by the agent from deltas between two collections. Fields an agent
//! cannot read are left at their defaults (empty lists, `None`), never faked.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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

/// A batch as an agent sends it: the newest snapshot whole, every other one
/// as [`Charted`], which is all cairnd keeps of it (docs/API.md, "What is
/// kept of a batch"). The server reads both as [`Snapshot`]s.
#[derive(Serialize)]
pub struct OutgoingBatch<'a> {
    pub snapshots: Vec<Outgoing<'a>>,
}

#[derive(Serialize)]
#[serde(untagged)]
pub enum Outgoing<'a> {
    Whole(&'a Snapshot),
    Charted(Charted<'a>),
}

impl<'a> OutgoingBatch<'a> {
    /// Every snapshot with the newest timestamp goes whole (an agent
    /// writes every timestamp in one RFC 3339 form, so the text orders
    /// them, and after a clock step several may share the newest second);
    /// the others go as `Charted`.
    pub fn of(snapshots: &'a [Snapshot]) -> OutgoingBatch<'a> {
        let newest = snapshots.iter().map(|s| s.timestamp.as_str()).max();
        let snapshots = snapshots
            .iter()
            .map(|s| {
                if Some(s.timestamp.as_str()) == newest {
                    Outgoing::Whole(s)
                } else {
                    Outgoing::Charted(Charted::of(s))
                }
            })
            .collect();
        OutgoingBatch { snapshots }
    }
}

/// The part of a snapshot that cairnd stores when it is not the newest of
/// its request: the figures its history charts (CPU, memory and swap, load,
/// the fullest mount, the hottest sensor, network and disk throughput) and
/// the per-mount and per-interface rows. Under the same field names, so it
/// reads as a `Snapshot` whose other fields are at their defaults. Half
/// the bytes of the whole snapshot for a backfill's link and parser.
#[derive(Serialize)]
pub struct Charted<'a> {
    pub timestamp: &'a str,
    pub cpu: ChartedCpu,
    pub memory: ChartedMemory,
    pub load: &'a Load,
    pub disks: Vec<ChartedDisk<'a>>,
    pub disk_io: Vec<ChartedDiskIo>,
    pub net: Vec<ChartedNet<'a>>,
    pub temperatures: Vec<ChartedTemperature>,
}

#[derive(Serialize)]
pub struct ChartedCpu {
    pub total_percent: f64,
    pub count: u32,
}

#[derive(Serialize)]
pub struct ChartedMemory {
    pub total_bytes: u64,
    pub used_percent: f64,
    pub swap_total_bytes: u64,
    pub swap_percent: f64,
}

#[derive(Serialize)]
pub struct ChartedDisk<'a> {
    pub mount: &'a str,
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub used_percent: f64,
}

#[derive(Serialize)]
pub struct ChartedDiskIo {
    pub read_bytes_per_s: f64,
    pub write_bytes_per_s: f64,
}

#[derive(Serialize)]
pub struct ChartedNet<'a> {
    pub interface: &'a str,
    pub rx_bytes_per_s: f64,
    pub tx_bytes_per_s: f64,
}

#[derive(Serialize)]
pub struct ChartedTemperature {
    pub celsius: f64,
}

impl<'a> Charted<'a> {
    pub fn of(s: &'a Snapshot) -> Charted<'a> {
        Charted {
            timestamp: &s.timestamp,
            cpu: ChartedCpu {
                total_percent: s.cpu.total_percent,
                count: s.cpu.count,
            },
            memory: ChartedMemory {
                total_bytes: s.memory.total_bytes,
                used_percent: s.memory.used_percent,
                swap_total_bytes: s.memory.swap_total_bytes,
                swap_percent: s.memory.swap_percent,
            },
            load: &s.load,
            disks: s
                .disks
                .iter()
                .map(|d| ChartedDisk {
                    mount: &d.mount,
                    total_bytes: d.total_bytes,
                    used_bytes: d.used_bytes,
                    used_percent: d.used_percent,
                })
                .collect(),
            disk_io: s
                .disk_io
                .iter()
                .map(|d| ChartedDiskIo {
                    read_bytes_per_s: d.read_bytes_per_s,
                    write_bytes_per_s: d.write_bytes_per_s,
                })
                .collect(),
            net: s
                .net
                .iter()
                .map(|n| ChartedNet {
                    interface: &n.interface,
                    rx_bytes_per_s: n.rx_bytes_per_s,
                    tx_bytes_per_s: n.tx_bytes_per_s,
                })
                .collect(),
            temperatures: s
                .temperatures
                .iter()
                .map(|t| ChartedTemperature { celsius: t.celsius })
                .collect(),
        }
    }
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
    /// The checks this agent runs (`run_from` = its node id), each on its own
    /// interval; results go to `POST /api/v1/agent/check-results`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub probes: Vec<ProbeSpec>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            interval_s: DEFAULT_INTERVAL_S,
            probes: Vec::new(),
        }
    }
}

/// One check as a prober (cairnd's scheduler or an agent) runs it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct ProbeSpec {
    pub id: i64,
    /// http | tcp | icmp | dns | tls
    #[serde(rename = "type")]
    pub kind: String,
    pub target: String,
    pub interval_s: u32,
    pub timeout_s: u32,
    pub http: HttpOptions,
    pub dns: DnsOptions,
    pub icmp: IcmpOptions,
}

/// The `http` block of a check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// "200", "200-399"; default 200-399.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expected_status: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyword: Option<String>,
    /// true: the keyword must NOT appear.
    #[serde(default)]
    pub keyword_absent: bool,
    #[serde(default = "yes")]
    pub follow_redirects: bool,
    #[serde(default = "yes")]
    pub verify_tls: bool,
}

fn yes() -> bool {
    true
}

/// Without an `http` block: follow redirects and verify TLS, like the
/// serde defaults (a derived Default would turn verification off).
impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            method: None,
            headers: BTreeMap::new(),
            body: None,
            expected_status: Vec::new(),
            keyword: None,
            keyword_absent: false,
            follow_redirects: true,
            verify_tls: true,
        }
    }
}

/// Parses "200" or "200-399" into an inclusive range.
pub fn status_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let (a, b) = (a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?);
    ((100..=599).contains(&a) && (100..=599).contains(&b) && a <= b).then_some((a, b))
}

/// The `dns` block: which records must exist, and optionally which addresses.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsOptions {
    /// "A", "AAAA" or "any" (default): the kind of address that must resolve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_type: Option<String>,
    /// Addresses that must all be among the answers (none: any answer will do).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expected: Vec<String>,
}

/// The `icmp` block.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IcmpOptions {
    /// Echo requests per run (1-10, default 3); up if any is answered.
    #[serde(default = "three")]
    pub count: u32,
}

fn three() -> u32 {
    3
}

impl Default for IcmpOptions {
    fn default() -> Self {
        IcmpOptions { count: 3 }
    }
}

/// What one run of a probe found.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct ProbeOutcome {
    pub ok: bool,
    /// Request / connect / handshake / round-trip time, milliseconds.
    pub latency_ms: Option<f64>,
    /// HTTP status code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    pub error: Option<String>,
    /// dns: the addresses the name resolved to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// icmp: share of echo requests without a reply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packet_loss_percent: Option<f64>,
    /// https and tls: the server's certificate as seen in the handshake.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_cert: Option<PeerCert>,
}

/// The leaf certificate a TLS server presented, undecoded (cairnd parses
/// it; the agent carries no x509 parser), and whether its chain verified
/// against the prober's trusted roots for the name it was asked for.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct PeerCert {
    /// DER, hex-encoded.
    pub der_hex: String,
    pub chain_valid: bool,
    pub chain_error: Option<String>,
}

/// `POST /api/v1/agent/check-results` body.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct CheckResults {
    pub results: Vec<ProbeReport>,
}

/// One result of an agent-run check.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct ProbeReport {
    pub check_id: i64,
    /// When the run started, Unix seconds.
    pub at: i64,
    pub outcome: ProbeOutcome,
}

/// The most results one check-results request may carry.
pub const MAX_PROBE_REPORTS: usize = 500;

/// Collection interval when the server has said nothing else.
pub const DEFAULT_INTERVAL_S: u32 = 30;
/// The most snapshots one ingest request may carry.
pub const MAX_BATCH: usize = 500;

/// Request header of an ingest: "commit this within N seconds" (whole
/// seconds). An agent whose snapshot stays in its own spool until the reply
/// can let the server gather many agents' snapshots into one commit; the
/// reply still comes only after the commit. The server caps the delay.
pub const COMMIT_WITHIN_HEADER: &str = "Cairn-Commit-Within";

/// The delay an agent collecting every `interval_s` asks for on its live
/// snapshot: two thirds of the interval, so the reply comes before the next
/// collection, and at most 25 s, inside the agent's 30 s request timeout.
pub fn commit_within_s(interval_s: u32) -> u32 {
    (interval_s.saturating_mul(2) / 3).min(25)
}
