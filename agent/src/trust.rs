//! Which certificate authorities the agent trusts for an `https://` server.
//!
//! The system's CA bundle, not a copy compiled into the binary: the bundled
//! Mozilla roots were ~200 KB of a ~2 MB agent, and the host's bundle is
//! what its administrator keeps up to date (and where a private CA goes).
//! `ca_file` (config) or `CAIRN_CA_FILE` names a PEM file to trust instead,
//! for a server with a self-signed or private-CA certificate.

use std::path::{Path, PathBuf};

/// Where distributions keep their PEM bundle, most common first.
pub const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu, Raspberry Pi OS, Alpine, Arch
    "/etc/pki/tls/certs/ca-bundle.crt",   // Fedora, RHEL, CentOS
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/ca-bundle.pem", // openSUSE
    "/etc/ssl/cert.pem",      // Alpine (ca-certificates-bundle), OpenWrt, macOS
];

/// The PEM file to trust: `explicit` if given, else `SSL_CERT_FILE` (the
/// variable OpenSSL-based tools honour), else the first system bundle found.
pub fn bundle_path(explicit: Option<&Path>, ssl_cert_file: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = ssl_cert_file.filter(|p| !p.as_os_str().is_empty()) {
        return Ok(p);
    }
    SYSTEM_BUNDLES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "no CA certificates found for an https server (looked for {}); install the \
                 ca-certificates package, or set ca_file in the config to the PEM file of the \
                 CA that signed the server's certificate",
                SYSTEM_BUNDLES.join(", ")
            )
        })
}

/// Every certificate in a PEM file. A file without one is an error: trusting
/// nothing would fail every connection later with a less helpful message.
pub fn load_certs(path: &Path) -> Result<Vec<ureq::tls::Certificate<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("reading CA file {}: {e}", path.display()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {} // keys and other blocks are not ours to use
            Err(e) => return Err(format!("CA file {}: {e}", path.display())),
        }
    }
    if certs.is_empty() {
        return Err(format!(
            "CA file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs)
}

/// ureq's TLS settings for an `https://` server: rustls with the ring
/// provider (set here because ureq's own default also pulls in the bundled
/// roots) and the roots above.
pub fn tls_config(ca_file: Option<&Path>) -> Result<ureq::tls::TlsConfig, String> {
    let path = bundle_path(ca_file, std::env::var_os("SSL_CERT_FILE").map(PathBuf::from))?;
    let certs = load_certs(&path)?;
    log::debug!(
        "trusting {} CA certificate(s) from {}",
        certs.len(),
        path.display()
    );
    Ok(ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(crate::probe::provider())
        .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
        .build())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// ISRG Root X1 (Let's Encrypt), a public root certificate.
    pub(crate) const ISRG_ROOT_X1: &str = "-----BEGIN CERTIFICATE-----
MIIFazCCA1OgAwIBAgIRAIIQz7DSQONZRGPgu2OCiwAwDQYJKoZIhvcNAQELBQAw
TzELMAkGA1UEBhMCVVMxKTAnBgNVBAoTIEludGVybmV0IFNlY3VyaXR5IFJlc2Vh
cmNoIEdyb3VwMRUwEwYDVQQDEwxJU1JHIFJvb3QgWDEwHhcNMTUwNjA0MTEwNDM4
WhcNMzUwNjA0MTEwNDM4WjBPMQswCQYDVQQGEwJVUzEpMCcGA1UEChMgSW50ZXJu
ZXQgU2VjdXJpdHkgUmVzZWFyY2ggR3JvdXAxFTATBgNVBAMTDElTUkcgUm9vdCBY
MTCCAiIwDQYJKoZIhvcNAQEBBQADggIPADCCAgoCggIBAK3oJHP0FDfzm54rVygc
h77ct984kIxuPOZXoHj3dcKi/vVqbvYATyjb3miGbESTtrFj/RQSa78f0uoxmyF+
0TM8ukj13Xnfs7j/EvEhmkvBioZxaUpmZmyPfjxwv60pIgbz5MDmgK7iS4+3mX6U
A5/TR5d8mUgjU+g4rk8Kb4Mu0UlXjIB0ttov0DiNewNwIRt18jA8+o+u3dpjq+sW
T8KOEUt+zwvo/7V3LvSye0rgTBIlDHCNAymg4VMk7BPZ7hm/ELNKjD+Jo2FR3qyH
B5T0Y3HsLuJvW5iB4YlcNHlsdu87kGJ55tukmi8mxdAQ4Q7e2RCOFvu396j3x+UC
B5iPNgiV5+I3lg02dZ77DnKxHZu8A/lJBdiB3QW0KtZB6awBdpUKD9jf1b0SHzUv
KBds0pjBqAlkd25HN7rOrFleaJ1/ctaJxQZBKT5ZPt0m9STJEadao0xAH0ahmbWn
OlFuhjuefXKnEgV4We0+UXgVCwOPjdAvBbI+e0ocS3MFEvzG6uBQE3xDk3SzynTn
jh8BCNAw1FtxNrQHusEwMFxIt4I7mKZ9YIqioymCzLq9gwQbooMDQaHWBfEbwrbw
qHyGO0aoSCqI3Haadr8faqU9GY/rOPNk3sgrDQoo//fb4hVC1CLQJ13hef4Y53CI
rU7m2Ys6xt0nUW7/vGT1M0NPAgMBAAGjQjBAMA4GA1UdDwEB/wQEAwIBBjAPBgNV
HRMBAf8EBTADAQH/MB0GA1UdDgQWBBR5tFnme7bl5AFzgAiIyBpY9umbbjANBgkq
hkiG9w0BAQsFAAOCAgEAVR9YqbyyqFDQDLHYGmkgJykIrGF1XIpu+ILlaS/V9lZL
ubhzEFnTIZd+50xx+7LSYK05qAvqFyFWhfFQDlnrzuBZ6brJFe+GnY+EgPbk6ZGQ
3BebYhtF8GaV0nxvwuo77x/Py9auJ/GpsMiu/X1+mvoiBOv/2X/qkSsisRcOj/KK
NFtY2PwByVS5uCbMiogziUwthDyC3+6WVwW6LLv3xLfHTjuCvjHIInNzktHCgKQ5
ORAzI4JMPJ+GslWYHb4phowim57iaztXOoJwTdwJx4nLCgdNbOhdjsnvzqvHu7Ur
TkXWStAmzOVyyghqpZXjFaH3pO3JLF+l+/+sKAIuvtd7u+Nxe5AW0wdeRlN8NwdC
jNPElpzVmbUq4JUagEiuTDkHzsxHpFKVK7q4+63SM1N95R1NbdWhscdCb+ZAJzVc
oyi3B43njTOQ5yOf+1CceWxG1bQVs5ZufpsMljq4Ui0/1lvh+wjChP4kqKOJ2qxq
4RgqsahDYVvTH9w7jXbyLeiNdd8XM2w9U/t7y0Ff/9yi0GE44Za4rF2LN9d11TPA
mRGunUHBcnWEvgJBQl9nJEiU0Zsnvgc/ubhPgXRR4Xq37Z0j4r7g1SgEEzwxA57d
emyPxgcYxn/eR44/KJ4EBs+lVDR3veyJm+kXQ99b21/+jh5Xos1AnX5iItreGCc=
-----END CERTIFICATE-----
";

    /// A CA file in a directory of its own, removed when the test is done.
    pub(crate) struct TempCa {
        dir: PathBuf,
        path: PathBuf,
    }

    impl std::ops::Deref for TempCa {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.path
        }
    }

    impl Drop for TempCa {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    pub(crate) fn temp_file(name: &str, text: &str) -> TempCa {
        let dir = std::env::temp_dir().join(format!("cairn-trust-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ca.pem");
        std::fs::write(&path, text).unwrap();
        TempCa { dir, path }
    }

    #[test]
    fn loads_every_certificate_of_a_bundle() {
        let p = temp_file("two", &format!("# comment\n{ISRG_ROOT_X1}\n{ISRG_ROOT_X1}"));
        assert_eq!(load_certs(&p).unwrap().len(), 2);
    }

    #[test]
    fn a_file_without_certificates_is_an_error_naming_it() {
        let p = temp_file("empty", "just text\n");
        let e = load_certs(&p).unwrap_err();
        assert!(
            e.contains("holds no PEM certificate") && e.contains("ca.pem"),
            "{e}"
        );
        let e = load_certs(Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert!(e.contains("reading CA file /nonexistent/ca.pem"), "{e}");
    }

    #[test]
    fn explicit_file_then_ssl_cert_file_then_system() {
        let explicit = Path::new("/x/mine.pem");
        assert_eq!(
            bundle_path(Some(explicit), Some("/y/env.pem".into())).unwrap(),
            explicit
        );
        assert_eq!(
            bundle_path(None, Some("/y/env.pem".into())).unwrap(),
            Path::new("/y/env.pem")
        );
        match bundle_path(None, Some(PathBuf::new())) {
            Ok(p) => assert!(SYSTEM_BUNDLES.iter().any(|s| Path::new(s) == p)),
            Err(e) => assert!(e.contains("install the ca-certificates package"), "{e}"),
        }
    }

    #[test]
    fn builds_a_config_from_a_ca_file() {
        let p = temp_file("cfg", ISRG_ROOT_X1);
        let cfg = tls_config(Some(&*p)).unwrap();
        assert!(matches!(cfg.root_certs(), ureq::tls::RootCerts::Specific(c) if c.len() == 1));
    }
}
