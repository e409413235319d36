//! Sends one rendered message: HTTP(S) with ureq, SMTP with lettre, both
//! blocking and bounded by the caller's timeout. Errors name `host:port`,
//! never the URL: Telegram, Discord, Slack and Teams keep the credential in
//! the path or query, and errors end up in the API and in logs.

use super::{Attempt, EmailOut, Outbound};
use lettre::Transport;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How much of an error response is kept (HTTP 4xx/5xx bodies).
const ERROR_SNIPPET_BYTES: usize = 200;

pub(super) fn deliver(out: &Outbound, timeout: Duration) -> Attempt {
    let started = Instant::now();
    let mut attempt = match out {
        Outbound::Http {
            method,
            url,
            headers,
            body,
        } => http(method, url, headers, body, timeout),
        Outbound::Email(e) => email(e, timeout),
    };
    attempt.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    attempt
}

fn failed(status_code: Option<u16>, error: String) -> Attempt {
    Attempt {
        ok: false,
        status_code,
        error: Some(error),
        duration_ms: 0,
    }
}

fn http(method: &str, url: &str, headers: &[(String, String)], body: &[u8], timeout: Duration) -> Attempt {
    let Ok(uri) = url.parse::<ureq::http::Uri>() else {
        return failed(None, "invalid URL".into());
    };
    let target = target(&uri);
    let mut config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .timeout_connect(Some(timeout))
        // Statuses are outcomes to record, with the service's message.
        .http_status_as_error(false)
        // A redirect would carry a signed body or a token to wherever the
        // Location points; a moved endpoint should be fixed in the config.
        .max_redirects(0)
        .user_agent(concat!("cairnd/", env!("CARGO_PKG_VERSION")));
    if uri.scheme_str() == Some("https") {
        match tls_config() {
            Ok(tls) => config = config.tls_config(tls),
            Err(e) => return failed(None, e),
        }
    }
    let agent: ureq::Agent = config.build().into();
    let result = if method == "GET" {
        let mut req = agent.get(url);
        for (k, v) in headers {
            req = req.header(k.as_str(), v.clone());
        }
        req.call()
    } else {
        let mut req = match method {
            "PUT" => agent.put(url),
            "PATCH" => agent.patch(url),
            _ => agent.post(url),
        };
        for (k, v) in headers {
            req = req.header(k.as_str(), v.clone());
        }
        req.send(body)
    };
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => return failed(None, redact(&transport_error(e, &target, timeout), &uri)),
    };
    let code = resp.status().as_u16();
    let mut head = Vec::new();
    // The status is the outcome; a body cut short by the deadline only
    // shortens the error text.
    let _ = resp.body_mut().as_reader().take(4096).read_to_end(&mut head);
    if (200..300).contains(&code) {
        if let Some(why) = refusal(&head) {
            return failed(
                Some(code),
                redact(&format!("HTTP {code} but not delivered: {why}"), &uri),
            );
        }
        return Attempt {
            ok: true,
            status_code: Some(code),
            error: None,
            duration_ms: 0,
        };
    }
    let mut msg = format!("HTTP {code}");
    if (300..400).contains(&code) {
        msg.push_str(" (redirects are not followed; use the final URL)");
    }
    let text = snippet(&head);
    if !text.is_empty() {
        msg.push_str(": ");
        msg.push_str(&text);
    }
    failed(Some(code), redact(&msg, &uri))
}

/// APIs in the Telegram family answer 200 with `{"ok": false, "description": ...}`
/// when they did not take the message; that is a failed delivery.
fn refusal(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    if v.get("ok")? != &serde_json::Value::Bool(false) {
        return None;
    }
    let why = v
        .get("description")
        .or_else(|| v.get("error"))
        .and_then(|d| d.as_str());
    Some(snippet(
        why.unwrap_or("the service answered ok: false").as_bytes(),
    ))
}

/// One line, printable, at most ERROR_SNIPPET_BYTES.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut end = line.len().min(ERROR_SNIPPET_BYTES);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line[..end].to_string()
}

/// `host:port` with the scheme's default port filled in.
fn target(uri: &ureq::http::Uri) -> String {
    let host = uri.host().unwrap_or("?");
    let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("https") {
        443
    } else {
        80
    });
    format!("{host}:{port}")
}

/// Removes anything of the URL's path and query from a message: a server
/// may echo it ("Cannot POST /bot123:AA.../sendMessage"), and the secret is
/// there. Short pieces ("api", "v1") stay so the message still reads.
fn redact(msg: &str, uri: &ureq::http::Uri) -> String {
    let Some(pq) = uri.path_and_query() else {
        return msg.to_string();
    };
    let mut out = msg.replace(&uri.to_string(), "<url>");
    if pq.as_str().len() > 1 {
        out = out.replace(pq.as_str(), "<path>");
    }
    for piece in pq.as_str().split(['/', '?', '&', '=']).filter(|p| p.len() >= 6) {
        out = out.replace(piece, "***");
    }
    out
}

fn transport_error(e: ureq::Error, target: &str, timeout: Duration) -> String {
    use std::io::ErrorKind;
    match e {
        ureq::Error::Timeout(_) => format!("{target}: timed out after {}", secs(timeout)),
        ureq::Error::HostNotFound => format!("{target}: host not found"),
        ureq::Error::ConnectionFailed => format!("connecting to {target}: connection failed"),
        ureq::Error::Io(io) => match io.kind() {
            ErrorKind::ConnectionRefused => format!("connecting to {target}: connection refused"),
            ErrorKind::TimedOut | ErrorKind::WouldBlock => {
                format!("{target}: timed out after {}", secs(timeout))
            }
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::UnexpectedEof => {
                format!("{target}: connection closed before a complete response")
            }
            // rustls reports a handshake with a non-TLS peer as invalid data.
            ErrorKind::InvalidData => format!("TLS with {target}: {io}"),
            _ => format!("{target}: {io}"),
        },
        ureq::Error::Tls(m) => format!("TLS with {target}: {m}"),
        ureq::Error::Rustls(r) => format!("TLS with {target}: {r}"),
        // Both could quote the URL or a header value back.
        ureq::Error::BadUri(_) => "invalid URL".into(),
        ureq::Error::Http(_) => "invalid request (a header name or value is not allowed)".into(),
        other => format!("{target}: {other}"),
    }
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0} s")
    } else {
        format!("{s:.1} s")
    }
}

/// The trusted roots (DER): the system's CA certificates as
/// rustls-native-certs finds them (`SSL_CERT_FILE` / `SSL_CERT_DIR`, else the
/// distribution's bundle), the same store the agent's trust.rs reads. Only a
/// successful load is cached, so installing ca-certificates later helps
/// without a restart.
pub(crate) fn roots() -> Result<Arc<Vec<Vec<u8>>>, String> {
    static ROOTS: Mutex<Option<Arc<Vec<Vec<u8>>>>> = Mutex::new(None);
    let mut cached = ROOTS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(r) = cached.as_ref() {
        return Ok(r.clone());
    }
    let loaded = Arc::new(load_roots()?);
    *cached = Some(loaded.clone());
    Ok(loaded)
}

fn load_roots() -> Result<Vec<Vec<u8>>, String> {
    let found = rustls_native_certs::load_native_certs();
    // Keep only certificates rustls accepts as trust anchors: lettre adds
    // roots one by one and fails on the first it cannot use.
    let mut store = rustls::RootCertStore::empty();
    let mut ders = Vec::new();
    for cert in found.certs {
        if store.add(cert.clone()).is_ok() {
            ders.push(cert.as_ref().to_vec());
        }
    }
    if ders.is_empty() {
        let why = found
            .errors
            .first()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        return Err(format!(
            "no CA certificates for TLS{why}; install the ca-certificates package or set SSL_CERT_FILE"
        ));
    }
    Ok(ders)
}

/// rustls with the ring provider (the workspace's one crypto stack) and the
/// roots above. Checks use it too (engine::checks).
pub(crate) fn tls_config() -> Result<ureq::tls::TlsConfig, String> {
    let roots = roots()?;
    let certs: Vec<ureq::tls::Certificate<'static>> = roots
        .iter()
        .map(|d| ureq::tls::Certificate::from_der(d).to_owned())
        .collect();
    Ok(ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(cairn_agent::probe::provider())
        .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
        .build())
}

fn email(e: &EmailOut, timeout: Duration) -> Attempt {
    let target = format!("{}:{}", e.host, e.port);
    let message = match message(e) {
        Ok(m) => m,
        Err(err) => return failed(None, err),
    };
    let transport = match smtp(e, timeout) {
        Ok(t) => t,
        Err(err) => return failed(None, format!("SMTP {target}: {err}")),
    };
    // lettre's timeout bounds each connect, read and write, not the whole
    // exchange: the thread bounds the total. An abandoned thread still ends
    // on its own I/O timeouts.
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("notify-smtp".into())
        .spawn(move || {
            let _ = tx.send(transport.send(&message).map_err(|err| err.to_string()));
        });
    if let Err(err) = spawned {
        return failed(None, format!("SMTP {target}: starting the sender: {err}"));
    }
    match rx.recv_timeout(timeout) {
        Ok(Ok(_)) => Attempt {
            ok: true,
            status_code: None,
            error: None,
            duration_ms: 0,
        },
        Ok(Err(err)) => failed(None, scrub(&format!("SMTP {target}: {err}"), e)),
        Err(_) => failed(None, format!("SMTP {target}: timed out after {}", secs(timeout))),
    }
}

/// lettre does not put credentials in its errors; this makes sure of it.
fn scrub(msg: &str, e: &EmailOut) -> String {
    let mut out = msg.to_string();
    for secret in [
        e.password.as_deref(),
        e.username.as_deref().filter(|u| u.len() >= 3),
    ]
    .into_iter()
    .flatten()
    .filter(|s| !s.is_empty())
    {
        out = out.replace(secret, super::MASK);
    }
    out
}

fn message(e: &EmailOut) -> Result<lettre::Message, String> {
    use lettre::message::{header::ContentType, Mailbox};
    let from: Mailbox = e
        .from
        .parse()
        .map_err(|err| format!("from address {:?}: {err}", e.from))?;
    let mut b = lettre::Message::builder()
        .from(from)
        .subject(e.subject.clone())
        .message_id(Some(message_id()))
        .header(ContentType::TEXT_PLAIN);
    for to in &e.to {
        b = b.to(to.parse().map_err(|err| format!("to address {to:?}: {err}"))?);
    }
    b.body(e.body.clone())
        .map_err(|err| format!("building the message: {err}"))
}

/// `<nanos.random@host>`: lettre's own default ends in "@localhost" without
/// its hostname feature, which some spam filters score.
fn message_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut rnd = [0u8; 8];
    let _ = getrandom::fill(&mut rnd);
    format!("<{nanos}.{:016x}.cairn@{}>", u64::from_le_bytes(rnd), hostname())
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        })
        .unwrap_or_else(|| "localhost".into())
}

fn smtp(e: &EmailOut, timeout: Duration) -> Result<lettre::SmtpTransport, String> {
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
    use lettre::transport::smtp::extension::ClientId;
    let mut b = lettre::SmtpTransport::builder_dangerous(e.host.as_str())
        .port(e.port)
        .timeout(Some(timeout))
        .hello_name(ClientId::Domain(hostname()));
    if e.tls != "none" {
        let mut params = TlsParameters::builder(e.host.clone()).certificate_store(CertificateStore::None);
        for der in roots()?.iter() {
            let cert = Certificate::from_der(der.clone()).map_err(|err| format!("CA certificate: {err}"))?;
            params = params.add_root_certificate(cert);
        }
        let params = params.build_rustls().map_err(|err| format!("TLS setup: {err}"))?;
        // "starttls" is Required, never Opportunistic: a server (or a
        // downgrade) without STARTTLS must not get the password in clear.
        b = b.tls(if e.tls == "tls" {
            Tls::Wrapper(params)
        } else {
            Tls::Required(params)
        });
    }
    if let (Some(u), Some(p)) = (&e.username, &e.password) {
        b = b.credentials(Credentials::new(u.clone(), p.clone()));
    }
    Ok(b.build())
}
