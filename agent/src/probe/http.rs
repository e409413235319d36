//! `http`: one request; status, keyword and response time. For https the
//! certificate is fetched by a second, plain TLS handshake (ureq does not
//! hand out the peer's certificate), so it is recorded even when the
//! request itself failed on it.

use super::{failed, host_port, ms, Trust};
use cairn_wire::{status_range, HttpOptions, ProbeOutcome};
use std::io::Read;
use std::time::{Duration, Instant};

/// Body bytes read for the keyword search.
const BODY_SCAN: u64 = 1024 * 1024;

pub fn run(target: &str, o: &HttpOptions, timeout: Duration, trust: &Trust) -> ProbeOutcome {
    let started = Instant::now();
    let mut out = request(target, o, timeout, trust);
    out.latency_ms = Some(ms(started.elapsed()));
    if let Some(hp) = https_host_port(target) {
        let left = timeout
            .saturating_sub(started.elapsed())
            .max(Duration::from_secs(1));
        match super::tls::handshake(&hp, left, trust) {
            Ok(c) => out.peer_cert = Some(c),
            Err(e) if out.ok => {
                out.ok = false;
                out.error = Some(format!("fetching the certificate: {e}"));
            }
            Err(_) => {} // the request already failed with its own reason
        }
    }
    out
}

/// "host:port" of an https:// URL (port 443 when none is given).
fn https_host_port(target: &str) -> Option<String> {
    let uri: ureq::http::Uri = target.parse().ok()?;
    if uri.scheme_str() != Some("https") {
        return None;
    }
    let host = uri.host()?;
    let port = uri.port_u16().unwrap_or(443);
    let hp = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    host_port(&hp)?;
    Some(hp)
}

fn tls_config(verify: bool, trust: &Trust) -> ureq::tls::TlsConfig {
    let b = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(super::provider());
    if verify {
        b.root_certs(ureq::tls::RootCerts::Specific(trust.certs.clone()))
            .build()
    } else {
        b.disable_verification(true).build()
    }
}

fn request(target: &str, o: &HttpOptions, timeout: Duration, trust: &Trust) -> ProbeOutcome {
    let mut cfg = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(if o.follow_redirects { 10 } else { 0 })
        .user_agent(concat!("cairn/", env!("CARGO_PKG_VERSION"), " (check)"));
    if target.starts_with("https://") {
        cfg = cfg.tls_config(tls_config(o.verify_tls, trust));
    }
    let agent: ureq::Agent = cfg.build().into();
    let method = o.method.as_deref().unwrap_or("GET");
    let mut rq = ureq::http::Request::builder().method(method).uri(target);
    for (k, v) in &o.headers {
        rq = rq.header(k.as_str(), v.as_str());
    }
    let rq = match rq.body(o.body.clone().unwrap_or_default().into_bytes()) {
        Ok(r) => r,
        Err(e) => return failed(format!("building the request: {e}")),
    };
    let mut resp = match agent.run(rq) {
        Ok(r) => r,
        Err(ureq::Error::Timeout(_)) => return failed(format!("timed out after {} s", timeout.as_secs())),
        Err(e) => return failed(e.to_string()),
    };
    let code = resp.status().as_u16();
    let mut out = ProbeOutcome {
        ok: true,
        status_code: Some(code),
        ..Default::default()
    };
    let ranges: Vec<(u16, u16)> = if o.expected_status.is_empty() {
        vec![(200, 399)]
    } else {
        o.expected_status.iter().filter_map(|s| status_range(s)).collect()
    };
    if !ranges.iter().any(|(a, b)| (*a..=*b).contains(&code)) {
        out.ok = false;
        out.error = Some(format!("HTTP {code} is not an expected status"));
        return out;
    }
    if let Some(k) = o.keyword.as_deref().filter(|k| !k.is_empty()) {
        let mut body = Vec::new();
        if let Err(e) = resp.body_mut().as_reader().take(BODY_SCAN).read_to_end(&mut body) {
            out.ok = false;
            out.error = Some(format!("reading the body: {e}"));
            return out;
        }
        let found = String::from_utf8_lossy(&body).contains(k);
        if found == o.keyword_absent {
            out.ok = false;
            out.error = Some(if o.keyword_absent {
                format!("keyword '{k}' is present")
            } else {
                format!("keyword '{k}' is absent")
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_targets_name_their_tls_endpoint() {
        assert_eq!(
            https_host_port("https://example.lan/x").as_deref(),
            Some("example.lan:443")
        );
        assert_eq!(
            https_host_port("https://example.lan:8443").as_deref(),
            Some("example.lan:8443")
        );
        assert_eq!(
            https_host_port("https://[::1]:8443/").as_deref(),
            Some("[::1]:8443")
        );
        assert_eq!(https_host_port("http://example.lan/"), None);
    }
}
