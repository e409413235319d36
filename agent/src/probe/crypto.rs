//! The TLS crypto provider every Cairn client uses (ingest, checks, and in
//! cairnd the notification channels): rustls on *ring*, built here instead
//! of taking `rustls::crypto::ring::default_provider()` so that the linker
//! can drop what a client never needs. The agent's size target (≤ 1.5 MB
//! with TLS, docs/BENCHMARKS.md §5) is what this buys:
//!
//! - On x86_64 the cipher suites are AES-GCM only. Every TLS server offers
//!   AES-GCM, x86_64 CPUs have AES instructions, and ring's ChaCha20-Poly1305
//!   for x86_64 is ~50 KB of assembly. On ARM (Raspberry Pis without the
//!   crypto extensions, where ChaCha is the faster cipher) every suite stays.
//! - No private-key loading: Cairn never presents a client certificate, so
//!   the key provider refuses, and ring's signing code is not linked.
//!
//! Signature verification keeps rustls's full ring table (ECDSA P-256/P-384,
//! Ed25519, RSA PKCS#1 and PSS), as do the key exchange groups.

use rustls::crypto::ring::{cipher_suite as cs, kx_group};
use rustls::crypto::{CryptoProvider, GetRandomFailed, KeyProvider, SecureRandom, WebPkiSupportedAlgorithms};
use rustls::pki_types::PrivateKeyDer;
use rustls::sign::SigningKey;
use rustls::{SignatureScheme, SupportedCipherSuite};
use std::sync::Arc;
use webpki::ring as algs;

/// The provider, shared (cheap to clone).
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<CryptoProvider>> = std::sync::OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            Arc::new(CryptoProvider {
                cipher_suites: cipher_suites(),
                kx_groups: vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1],
                signature_verification_algorithms: SIGNATURE_ALGORITHMS,
                secure_random: &Ring,
                key_provider: &Ring,
            })
        })
        .clone()
}

/// rustls's ring suites in its order of preference, ChaCha20 kept off x86_64.
fn cipher_suites() -> Vec<SupportedCipherSuite> {
    let chacha = !cfg!(target_arch = "x86_64");
    let mut suites = vec![cs::TLS13_AES_256_GCM_SHA384, cs::TLS13_AES_128_GCM_SHA256];
    if chacha {
        suites.push(cs::TLS13_CHACHA20_POLY1305_SHA256);
    }
    suites.extend([
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ]);
    if chacha {
        suites.push(cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256);
    }
    suites.extend([
        cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ]);
    if chacha {
        suites.push(cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256);
    }
    suites
}

/// rustls's own ring table (private in rustls, so restated here).
static SIGNATURE_ALGORITHMS: WebPkiSupportedAlgorithms = WebPkiSupportedAlgorithms {
    all: &[
        algs::ECDSA_P256_SHA256,
        algs::ECDSA_P256_SHA384,
        algs::ECDSA_P384_SHA256,
        algs::ECDSA_P384_SHA384,
        algs::ED25519,
        algs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
        algs::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
        algs::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
        algs::RSA_PKCS1_2048_8192_SHA256,
        algs::RSA_PKCS1_2048_8192_SHA384,
        algs::RSA_PKCS1_2048_8192_SHA512,
        algs::RSA_PKCS1_2048_8192_SHA256_ABSENT_PARAMS,
        algs::RSA_PKCS1_2048_8192_SHA384_ABSENT_PARAMS,
        algs::RSA_PKCS1_2048_8192_SHA512_ABSENT_PARAMS,
    ],
    mapping: &[
        // TLS 1.2 does not fix the curve by the scheme; TLS 1.3 does.
        (
            SignatureScheme::ECDSA_NISTP384_SHA384,
            &[algs::ECDSA_P384_SHA384, algs::ECDSA_P256_SHA384],
        ),
        (
            SignatureScheme::ECDSA_NISTP256_SHA256,
            &[algs::ECDSA_P256_SHA256, algs::ECDSA_P384_SHA256],
        ),
        (SignatureScheme::ED25519, &[algs::ED25519]),
        (
            SignatureScheme::RSA_PSS_SHA512,
            &[algs::RSA_PSS_2048_8192_SHA512_LEGACY_KEY],
        ),
        (
            SignatureScheme::RSA_PSS_SHA384,
            &[algs::RSA_PSS_2048_8192_SHA384_LEGACY_KEY],
        ),
        (
            SignatureScheme::RSA_PSS_SHA256,
            &[algs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY],
        ),
        (
            SignatureScheme::RSA_PKCS1_SHA512,
            &[algs::RSA_PKCS1_2048_8192_SHA512],
        ),
        (
            SignatureScheme::RSA_PKCS1_SHA384,
            &[algs::RSA_PKCS1_2048_8192_SHA384],
        ),
        (
            SignatureScheme::RSA_PKCS1_SHA256,
            &[algs::RSA_PKCS1_2048_8192_SHA256],
        ),
    ],
};

#[derive(Debug)]
struct Ring;

impl SecureRandom for Ring {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        use ring::rand::SecureRandom as _;
        ring::rand::SystemRandom::new()
            .fill(buf)
            .map_err(|_| GetRandomFailed)
    }
}

impl KeyProvider for Ring {
    fn load_private_key(&self, _key: PrivateKeyDer<'static>) -> Result<Arc<dyn SigningKey>, rustls::Error> {
        Err(rustls::Error::General(
            "Cairn's TLS clients present no client certificate".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_is_consistent_and_has_aes_gcm() {
        let p = provider();
        assert!(p
            .cipher_suites
            .iter()
            .any(|s| s.suite() == rustls::CipherSuite::TLS13_AES_128_GCM_SHA256));
        // The same table rustls ships with ring, so no scheme is lost.
        let ring = rustls::crypto::ring::default_provider();
        assert_eq!(
            p.signature_verification_algorithms.supported_schemes(),
            ring.signature_verification_algorithms.supported_schemes()
        );
        assert_eq!(p.kx_groups.len(), ring.kx_groups.len());
        // A client config builds with every protocol version.
        rustls::ClientConfig::builder_with_provider(p)
            .with_safe_default_protocol_versions()
            .expect("TLS 1.2 and 1.3 suites present");
    }
}
