//! `tls`: a TLS handshake with host:port that records the certificate the
//! server presents and whether its chain verifies against the trusted roots
//! for that name. The handshake completes either way (the verifier records
//! the verdict instead of aborting), so an expired or self-signed
//! certificate is still seen and reported.

use super::{failed, host_port, ms, provider, resolve, Trust};
use cairn_wire::{PeerCert, ProbeOutcome};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn run(target: &str, timeout: Duration, trust: &Trust) -> ProbeOutcome {
    let started = Instant::now();
    match handshake(target, timeout, trust) {
        Ok(cert) => ProbeOutcome {
            ok: cert.chain_valid,
            latency_ms: Some(ms(started.elapsed())),
            error: cert
                .chain_error
                .as_ref()
                .map(|e| format!("certificate not valid: {e}")),
            peer_cert: Some(cert),
            ..Default::default()
        },
        Err(e) => failed(e),
    }
}

/// Connects to `target` (host:port), completes a handshake and returns
/// the leaf certificate with the chain verdict.
pub fn handshake(target: &str, timeout: Duration, trust: &Trust) -> Result<PeerCert, String> {
    let deadline = Instant::now() + timeout;
    let (host, port) = host_port(target).ok_or_else(|| format!("'{target}' is not host:port"))?;
    let name =
        ServerName::try_from(host.to_string()).map_err(|_| format!("'{host}' is not a valid server name"))?;
    let addrs = resolve(host, port, timeout)?;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let mut sock =
        TcpStream::connect_timeout(&addrs[0], left()).map_err(|e| format!("connecting to {target}: {e}"))?;
    let verifier = Arc::new(Recording::new(trust));
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| format!("TLS setup: {e}"))?;
    while conn.is_handshaking() {
        sock.set_read_timeout(Some(left())).map_err(|e| e.to_string())?;
        sock.set_write_timeout(Some(left())).map_err(|e| e.to_string())?;
        if let Err(e) = conn.complete_io(&mut sock) {
            let why = if matches!(
                e.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ) {
                format!("no TLS handshake within {} s", timeout.as_secs())
            } else {
                e.to_string()
            };
            return Err(format!("TLS handshake with {target}: {why}"));
        }
    }
    let leaf = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or_else(|| format!("{target} presented no certificate"))?;
    let verdict = verifier.verdict.lock().map(|v| v.clone()).unwrap_or(None);
    let (chain_valid, chain_error) = match verdict {
        Some(Ok(())) => (true, None),
        Some(Err(e)) => (false, Some(e)),
        None => (false, Some("the certificate was not verified".into())),
    };
    Ok(PeerCert {
        der_hex: hex(leaf),
        chain_valid,
        chain_error,
    })
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Verifies the chain with rustls's WebPKI verifier, keeps the verdict and
/// lets the handshake go on. Handshake signatures are still checked for real.
#[derive(Debug)]
struct Recording {
    inner: Result<Arc<WebPkiServerVerifier>, String>,
    provider: Arc<CryptoProvider>,
    verdict: Mutex<Option<Result<(), String>>>,
}

impl Recording {
    fn new(trust: &Trust) -> Recording {
        let provider = provider();
        let inner = match &trust.missing {
            Some(why) => Err(why.clone()),
            None => WebPkiServerVerifier::builder_with_provider(trust.roots.clone(), provider.clone())
                .build()
                .map_err(|e| format!("no usable CA certificates: {e}")),
        };
        Recording {
            inner,
            provider,
            verdict: Mutex::new(None),
        }
    }
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = match &self.inner {
            Ok(v) => v
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(why) => Err(why.clone()),
        };
        if let Ok(mut v) = self.verdict.lock() {
            *v = Some(verdict);
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_encoding() {
        assert_eq!(hex(&[0x00, 0x7f, 0xff, 0x10]), "007fff10");
    }

    #[test]
    fn a_plain_tcp_server_fails_the_handshake_within_the_timeout() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        // Accepts and says nothing: the handshake must give up on time.
        let _hold = std::thread::spawn(move || {
            let s = l.accept();
            std::thread::sleep(Duration::from_secs(3));
            drop(s);
        });
        let err = handshake(&addr, Duration::from_secs(1), &Trust::none("test".into())).unwrap_err();
        assert!(err.contains("within 1 s"), "{err}");
    }
}
