//! Checks as a prober runs them: one blocking call per run, bounded by the
//! check's timeout. cairnd's scheduler and `cairn-agent run` (for checks
//! assigned to its node) share this code, so a check behaves the same
//! wherever it runs.
//!
//! Certificates are returned undecoded (`PeerCert`): cairnd parses them,
//! and the agent carries no x509 parser.

mod crypto;
mod dns;
mod http;
mod icmp;
mod tcp;
mod tls;

pub use crypto::provider;
pub use tls::handshake;

use cairn_wire::{ProbeOutcome, ProbeSpec};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The CA certificates a prober trusts, in the two forms its clients take.
#[derive(Clone)]
pub struct Trust {
    pub(crate) certs: Arc<Vec<ureq::tls::Certificate<'static>>>,
    pub(crate) roots: Arc<rustls::RootCertStore>,
    /// Why `certs` is empty, when it is (no CA bundle found, unreadable…).
    pub(crate) missing: Option<String>,
}

impl Trust {
    pub fn new(certs: Vec<ureq::tls::Certificate<'static>>) -> Trust {
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(
            certs
                .iter()
                .map(|c| rustls::pki_types::CertificateDer::from(c.der().to_vec())),
        );
        Trust {
            certs: Arc::new(certs),
            roots: Arc::new(roots),
            missing: None,
        }
    }

    /// Trusts nothing; every chain is reported invalid with `why`.
    pub fn none(why: String) -> Trust {
        Trust {
            certs: Arc::new(Vec::new()),
            roots: Arc::new(rustls::RootCertStore::empty()),
            missing: Some(why),
        }
    }
}

/// Runs `spec` once.
pub fn run(spec: &ProbeSpec, trust: &Trust) -> ProbeOutcome {
    let timeout = Duration::from_secs(spec.timeout_s.max(1).into());
    let started = Instant::now();
    let mut out = match spec.kind.as_str() {
        "http" => http::run(&spec.target, &spec.http, timeout, trust),
        "tcp" => tcp::run(&spec.target, timeout),
        "icmp" => icmp::run(&spec.target, spec.icmp.count, timeout),
        "dns" => dns::run(&spec.target, &spec.dns, timeout),
        "tls" => tls::run(&spec.target, timeout, trust),
        other => failed(format!("'{other}' is not a check type this prober knows")),
    };
    if out.latency_ms.is_none() {
        out.latency_ms = Some(ms(started.elapsed()));
    }
    out
}

pub(crate) fn failed(error: String) -> ProbeOutcome {
    ProbeOutcome {
        ok: false,
        error: Some(error),
        ..Default::default()
    }
}

/// Milliseconds, to the microsecond.
pub(crate) fn ms(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

/// Splits "host:port" / "[v6]:port"; the host without brackets.
pub(crate) fn host_port(target: &str) -> Option<(&str, u16)> {
    let (host, port) = target.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = port.parse::<u16>().ok().filter(|p| *p > 0)?;
    (!host.is_empty()).then_some((host, port))
}

/// Resolves through the system resolver on a helper thread, so a resolver
/// that hangs costs at most `timeout` of the check's time.
pub(crate) fn resolve(host: &str, port: u16, timeout: Duration) -> Result<Vec<std::net::SocketAddr>, String> {
    use std::net::ToSocketAddrs;
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![std::net::SocketAddr::new(ip, port)]);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let name = host.to_string();
    std::thread::Builder::new()
        .name("probe-resolve".into())
        .spawn(move || {
            let _ = tx.send(
                (name.as_str(), port)
                    .to_socket_addrs()
                    .map(|a| a.collect::<Vec<_>>()),
            );
        })
        .map_err(|e| format!("starting the resolver thread: {e}"))?;
    match rx.recv_timeout(timeout) {
        Ok(Ok(a)) if !a.is_empty() => Ok(a),
        Ok(Ok(_)) => Err(format!("{host} resolves to no address")),
        Ok(Err(e)) => Err(format!("resolving {host}: {e}")),
        Err(_) => Err(format!(
            "resolving {host}: no answer within {} s",
            timeout.as_secs()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port() {
        assert_eq!(host_port("db.lan:5432"), Some(("db.lan", 5432)));
        assert_eq!(host_port("[::1]:22"), Some(("::1", 22)));
        assert_eq!(host_port("db.lan:0"), None);
        assert_eq!(host_port("db.lan"), None);
        assert_eq!(host_port(":80"), None);
    }

    #[test]
    fn unknown_type_is_a_failure_not_a_panic() {
        let spec = ProbeSpec {
            kind: "smtp".into(),
            ..Default::default()
        };
        let out = run(&spec, &Trust::none("test".into()));
        assert!(!out.ok);
        assert!(out.error.unwrap().contains("'smtp'"));
    }
}
