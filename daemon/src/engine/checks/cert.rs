//! Certificates seen by https and tls checks: decoding the DER a prober
//! sent (x509-cert), and the certificate monitor's verdict (expiry within
//! the check's warning/critical days, or an invalid chain).

use crate::engine::alerts::rules::Severity;
use cairn_wire::PeerCert;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use x509_cert::der::Decode;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;

/// What the API shows about a certificate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    #[serde(serialize_with = "crate::api::ser_time", deserialize_with = "de_time")]
    pub not_before: i64,
    #[serde(serialize_with = "crate::api::ser_time", deserialize_with = "de_time")]
    pub not_after: i64,
    /// Whole days until not_after (negative once expired), at the check's time.
    pub days_remaining: i64,
    /// The chain verified against the prober's trusted roots for the name.
    pub valid: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_names: Vec<String>,
    pub serial: String,
    pub sha256_fingerprint: String,
}

fn de_time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let s = String::deserialize(d)?;
    crate::clock::parse_time_param(&s).map_err(serde::de::Error::custom)
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

fn hex(bytes: &[u8], sep: &str) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(sep)
}

/// Decodes what a prober saw at time `at` (Unix seconds).
pub fn decode(peer: &PeerCert, at: i64) -> Result<CertInfo, String> {
    let der = unhex(&peer.der_hex).ok_or("the certificate is not hex-encoded DER")?;
    let cert = x509_cert::Certificate::from_der(&der)
        .map_err(|e| format!("the certificate does not decode: {e}"))?;
    let tbs = &cert.tbs_certificate;
    let secs = |t: x509_cert::time::Time| t.to_unix_duration().as_secs().min(i64::MAX as u64) as i64;
    let not_after = secs(tbs.validity.not_after);
    let mut dns_names = Vec::new();
    if let Ok(Some((_, SubjectAltName(names)))) = tbs.get::<SubjectAltName>() {
        for n in names {
            match n {
                GeneralName::DnsName(d) => dns_names.push(d.as_str().to_string()),
                GeneralName::IpAddress(ip) => match ip.as_bytes().len() {
                    4 | 16 => {
                        let b = ip.as_bytes();
                        let addr: std::net::IpAddr = if b.len() == 4 {
                            std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).into()
                        } else {
                            let mut a = [0u8; 16];
                            a.copy_from_slice(b);
                            std::net::Ipv6Addr::from(a).into()
                        };
                        dns_names.push(addr.to_string());
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    }
    Ok(CertInfo {
        subject: tbs.subject.to_string(),
        issuer: tbs.issuer.to_string(),
        not_before: secs(tbs.validity.not_before),
        not_after,
        days_remaining: (not_after - at).div_euclid(86_400),
        valid: peer.chain_valid,
        error: peer.chain_error.clone(),
        dns_names,
        serial: hex(tbs.serial_number.as_bytes(), ":"),
        sha256_fingerprint: hex(&Sha256::digest(&der), ":"),
    })
}

/// The `cert` block of a check: when its certificate should alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertOptions {
    /// Alert (warning) when this many days or fewer remain; default 14.
    #[serde(default = "fourteen")]
    pub warning_days: i64,
    /// Alert (critical) at this many days or fewer; default 7.
    #[serde(default = "seven")]
    pub critical_days: i64,
    /// false: record certificates but never alert on them.
    #[serde(default = "yes")]
    pub alerts: bool,
}

fn fourteen() -> i64 {
    14
}
fn seven() -> i64 {
    7
}
fn yes() -> bool {
    true
}

impl Default for CertOptions {
    fn default() -> Self {
        CertOptions {
            warning_days: 14,
            critical_days: 7,
            alerts: true,
        }
    }
}

/// The monitor's verdict: severity and why, or None when all is well.
/// `chain_matters` is false for an http check with verify_tls off (its
/// owner chose to accept any chain; expiry still counts).
pub fn verdict(c: &CertInfo, o: &CertOptions, chain_matters: bool) -> Option<(Severity, String)> {
    if !o.alerts {
        return None;
    }
    if chain_matters && !c.valid {
        let why = c.error.as_deref().unwrap_or("the chain does not verify");
        return Some((
            Severity::Critical,
            format!("certificate for {} is not valid: {why}", c.subject),
        ));
    }
    let left = match c.days_remaining {
        d if d < 0 => format!("expired {} day(s) ago", -d),
        d => format!("expires in {d} day(s)"),
    };
    if c.days_remaining <= o.critical_days {
        Some((
            Severity::Critical,
            format!("certificate for {} {left}", c.subject),
        ))
    } else if c.days_remaining <= o.warning_days {
        Some((Severity::Warning, format!("certificate for {} {left}", c.subject)))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(days: i64, valid: bool) -> CertInfo {
        CertInfo {
            subject: "CN=a".into(),
            issuer: "CN=ca".into(),
            not_before: 0,
            not_after: 0,
            days_remaining: days,
            valid,
            error: None,
            dns_names: vec![],
            serial: String::new(),
            sha256_fingerprint: String::new(),
        }
    }

    #[test]
    fn thresholds_and_chain() {
        let o = CertOptions::default();
        assert_eq!(verdict(&info(30, true), &o, true), None);
        assert_eq!(verdict(&info(14, true), &o, true).unwrap().0, Severity::Warning);
        assert_eq!(verdict(&info(7, true), &o, true).unwrap().0, Severity::Critical);
        assert!(verdict(&info(-2, true), &o, true)
            .unwrap()
            .1
            .contains("expired 2 day(s) ago"));
        assert_eq!(verdict(&info(30, false), &o, true).unwrap().0, Severity::Critical);
        assert_eq!(verdict(&info(30, false), &o, false), None);
        let off = CertOptions { alerts: false, ..o };
        assert_eq!(verdict(&info(1, false), &off, true), None);
    }

    #[test]
    fn bad_der_is_an_error() {
        let p = |h: &str| PeerCert {
            der_hex: h.into(),
            chain_valid: true,
            chain_error: None,
        };
        assert!(decode(&p("zz"), 0).is_err());
        assert!(decode(&p("300"), 0).is_err());
        assert!(decode(&p("3003020101"), 0).is_err());
    }
}
