//! One server-side run of a check: the shared prober (cairn_agent::probe)
//! with the system's CA certificates, and its outcome as a stored result
//! (certificates decoded here, for agent results too).

use super::cert;
use crate::store::checks::{Check, CheckResult};
use cairn_agent::probe::Trust;
use cairn_wire::{ProbeOutcome, ProbeSpec};
use std::sync::OnceLock;

/// What a prober needs to know about a check.
pub fn spec(c: &Check) -> ProbeSpec {
    ProbeSpec {
        id: c.id,
        kind: c.kind.clone(),
        target: c.target.clone(),
        interval_s: c.interval_s.clamp(1, u32::MAX as i64) as u32,
        timeout_s: c.timeout_s.clamp(1, u32::MAX as i64) as u32,
        http: c.http.clone(),
        dns: c.dns.clone(),
        icmp: c.icmp.clone(),
    }
}

/// The system roots (rustls-native-certs, as the notification channels
/// use), loaded once.
fn trust() -> Trust {
    static TRUST: OnceLock<Trust> = OnceLock::new();
    TRUST
        .get_or_init(|| match crate::engine::notify::send::roots() {
            Ok(ders) => Trust::new(
                ders.iter()
                    .map(|d| ureq::tls::Certificate::from_der(d).to_owned())
                    .collect(),
            ),
            Err(e) => Trust::none(e),
        })
        .clone()
}

/// Runs the check once (blocking; call it on the blocking pool).
pub fn run(c: &Check) -> CheckResult {
    let at = crate::clock::now();
    result(at, cairn_agent::probe::run(&spec(c), &trust()), None)
}

/// A stored result from a prober's outcome. A certificate that does not
/// decode is reported in the error, and fails the run.
pub fn result(at: i64, o: ProbeOutcome, node_id: Option<String>) -> CheckResult {
    let mut r = CheckResult {
        at,
        ok: o.ok,
        latency_ms: o.latency_ms.map(|l| (l * 1000.0).round() / 1000.0),
        status_code: o.status_code,
        error: o.error,
        node_id,
        addresses: o.addresses,
        packet_loss_percent: o.packet_loss_percent,
        cert: None,
    };
    if let Some(peer) = o.peer_cert {
        match cert::decode(&peer, at) {
            Ok(info) => r.cert = Some(info),
            Err(e) => {
                r.ok = false;
                r.error.get_or_insert(e);
            }
        }
    }
    r
}
