//! One run of a check, blocking (called on the blocking pool), bounded by
//! the check's timeout.

use super::{status_range, HttpOptions};
use crate::store::checks::{Check, CheckResult};
use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Body bytes read for the keyword search.
const BODY_SCAN: u64 = 1024 * 1024;

pub fn run(c: &Check) -> CheckResult {
    let at = crate::clock::now();
    let started = Instant::now();
    let timeout = Duration::from_secs(c.timeout_s.max(1) as u64);
    let (ok, status_code, error) = match c.kind.as_str() {
        "http" => http(&c.target, &c.http, timeout),
        "tcp" => tcp(&c.target, timeout),
        other => (
            false,
            None,
            Some(format!("'{other}' checks are not available yet")),
        ),
    };
    CheckResult {
        at,
        ok,
        latency_ms: Some(started.elapsed().as_millis().min(i64::MAX as u128) as i64),
        status_code,
        error,
    }
}

fn tcp(target: &str, timeout: Duration) -> (bool, Option<u16>, Option<String>) {
    let addrs = match target.to_socket_addrs() {
        Ok(a) => a.collect::<Vec<_>>(),
        Err(e) => return (false, None, Some(format!("resolving {target}: {e}"))),
    };
    let Some(addr) = addrs.first() else {
        return (false, None, Some(format!("{target} resolves to no address")));
    };
    match TcpStream::connect_timeout(addr, timeout) {
        Ok(_) => (true, None, None),
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut || e.kind() == std::io::ErrorKind::WouldBlock => (
            false,
            None,
            Some(format!(
                "connecting to {target}: timed out after {} s",
                timeout.as_secs()
            )),
        ),
        Err(e) => (false, None, Some(format!("connecting to {target}: {e}"))),
    }
}

fn tls(verify: bool) -> Result<ureq::tls::TlsConfig, String> {
    if verify {
        return crate::engine::notify::send::tls_config();
    }
    Ok(ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .disable_verification(true)
        .build())
}

fn http(target: &str, o: &HttpOptions, timeout: Duration) -> (bool, Option<u16>, Option<String>) {
    let mut cfg = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(if o.follow_redirects { 10 } else { 0 })
        .user_agent(concat!("cairnd/", env!("CARGO_PKG_VERSION"), " (check)"));
    if target.starts_with("https://") {
        match tls(o.verify_tls) {
            Ok(t) => cfg = cfg.tls_config(t),
            Err(e) => return (false, None, Some(e)),
        }
    }
    let agent: ureq::Agent = cfg.build().into();
    let method = o.method.as_deref().unwrap_or("GET");
    let mut rq = ureq::http::Request::builder().method(method).uri(target);
    for (k, v) in &o.headers {
        rq = rq.header(k.as_str(), v.as_str());
    }
    let rq = match rq.body(o.body.clone().unwrap_or_default().into_bytes()) {
        Ok(r) => r,
        Err(e) => return (false, None, Some(format!("building the request: {e}"))),
    };
    let mut resp = match agent.run(rq) {
        Ok(r) => r,
        Err(ureq::Error::Timeout(_)) => {
            return (
                false,
                None,
                Some(format!("timed out after {} s", timeout.as_secs())),
            )
        }
        Err(e) => return (false, None, Some(e.to_string())),
    };
    let code = resp.status().as_u16();
    let ranges: Vec<(u16, u16)> = if o.expected_status.is_empty() {
        vec![(200, 399)]
    } else {
        o.expected_status.iter().filter_map(|s| status_range(s)).collect()
    };
    if !ranges.iter().any(|(a, b)| (*a..=*b).contains(&code)) {
        return (
            false,
            Some(code),
            Some(format!("HTTP {code} is not an expected status")),
        );
    }
    if let Some(k) = o.keyword.as_deref().filter(|k| !k.is_empty()) {
        let mut body = Vec::new();
        if let Err(e) = resp.body_mut().as_reader().take(BODY_SCAN).read_to_end(&mut body) {
            return (false, Some(code), Some(format!("reading the body: {e}")));
        }
        let found = String::from_utf8_lossy(&body).contains(k);
        if found == o.keyword_absent {
            let why = if o.keyword_absent {
                format!("keyword '{k}' is present")
            } else {
                format!("keyword '{k}' is absent")
            };
            return (false, Some(code), Some(why));
        }
    }
    (true, Some(code), None)
}
