//! TLS fixtures for the tls and https checks: a test CA (rcgen) that signs
//! leaf certificates for localhost/127.0.0.1 with a chosen expiry, and a
//! rustls server on 127.0.0.1 that presents one and answers any HTTP
//! request with `200 ok`. cairnd trusts the CA through SSL_CERT_FILE
//! (rustls-native-certs reads it instead of the system store).

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate chain and its key, ready for a server.
pub struct Leaf {
    pub chain: Vec<CertificateDer<'static>>,
    key: Vec<u8>,
    /// not_after, Unix seconds.
    pub not_after: i64,
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, "Cairn Test CA");
        p.not_before = OffsetDateTime::now_utc() - time::Duration::days(365);
        p.not_after = OffsetDateTime::now_utc() + time::Duration::days(3650);
        let cert = p.self_signed(&key).expect("CA certificate");
        TestCa { cert, key }
    }

    /// Writes the CA certificate as PEM (for SSL_CERT_FILE).
    pub fn write_pem(&self, path: &Path) {
        std::fs::write(path, self.cert.pem()).expect("writing the CA PEM");
    }

    /// A leaf for localhost and 127.0.0.1 that expires `valid_for` seconds
    /// from now (negative: already expired), valid from 30 days ago.
    pub fn leaf(&self, common_name: &str, valid_for: i64) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let mut p = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("leaf params");
        p.distinguished_name.push(DnType::CommonName, common_name);
        let now = OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::days(30);
        p.not_after = now + time::Duration::seconds(valid_for);
        let not_after = p.not_after.unix_timestamp();
        let cert = p
            .signed_by(&key, &self.cert, &self.key)
            .expect("leaf certificate");
        Leaf {
            chain: vec![cert.der().clone(), self.cert.der().clone()],
            key: key.serialize_der(),
            not_after,
        }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}

/// A TLS server on 127.0.0.1 presenting `leaf`; one thread per connection.
pub struct TlsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl TlsServer {
    pub fn start(leaf: &Leaf) -> TlsServer {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(
                leaf.chain.clone(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key.clone())),
            )
            .expect("server certificate");
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the TLS fixture");
        let addr = listener.local_addr().expect("TLS fixture address");
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let config = config.clone();
                std::thread::spawn(move || serve(conn, config));
            }
        });
        TlsServer { addr, stop }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// Handshake, then answer whatever request comes with `200 ok`. A client
/// that only shakes hands and leaves (the certificate fetch) ends it early.
fn serve(mut sock: TcpStream, config: Arc<rustls::ServerConfig>) {
    let _ = sock.set_read_timeout(Some(Duration::from_secs(5)));
    let Ok(conn) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(conn, &mut sock);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match tls.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let _ = tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    let _ = tls.flush();
    tls.conn.send_close_notify();
    let _ = tls.flush();
}
