//! HTTP to cairnd: the enrollment exchange and ingest requests (ureq; rustls
//! with the system's CA bundle or `ca_file` for https, see `trust`).
//! Sending order, retries and spool bookkeeping live in `ship`.

use std::path::Path;
use std::time::Duration;

use cairn_wire::{CheckResults, EnrollReply, EnrollRequest, IngestReply, OutgoingBatch};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The whole request, DNS to last body byte.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// cairnd's replies are small; anything bigger is not cairnd.
const MAX_REPLY_BYTES: u64 = 1 << 20;

/// Why a request did not succeed.
#[derive(Clone, Debug, PartialEq)]
pub enum SendError {
    /// No HTTP answer: DNS, connect, TLS or timeout.
    Transport(String),
    /// The server answered with a non-2xx status.
    Status { code: u16, message: String },
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Transport(e) => write!(f, "{e}"),
            SendError::Status { code, message } => write!(f, "HTTP {code}: {message}"),
        }
    }
}

#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    server: String,
}

impl Client {
    /// `server` is a base URL as `config::normalize_server` returns it. For
    /// an https server the CA certificates are loaded here, so a missing or
    /// broken bundle is reported at start rather than on every request.
    pub fn new(server: &str, ca_file: Option<&Path>) -> Result<Client, String> {
        let mut config = ureq::Agent::config_builder();
        if server.starts_with("https://") {
            config = config.tls_config(crate::trust::tls_config(ca_file)?);
        }
        let agent: ureq::Agent = config
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(REQUEST_TIMEOUT))
            // Statuses are handled here, with the server's error message.
            .http_status_as_error(false)
            // A redirected POST turns into a GET and loses its body and token;
            // better to say where the server moved to (see `status_error`).
            .max_redirects(0)
            .user_agent(concat!("cairn-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Client {
            agent,
            server: server.to_string(),
        })
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    /// Exchanges a one-time enrollment code for this node's id and token.
    pub fn enroll(&self, req: &EnrollRequest) -> Result<EnrollReply, SendError> {
        let body =
            serde_json::to_vec(req).map_err(|e| SendError::Transport(format!("encoding request: {e}")))?;
        let text = self.post("/api/v1/agent/enroll", None, &body, None)?;
        serde_json::from_str(&text).map_err(|e| {
            SendError::Transport(format!("the server's enroll reply is not what cairnd sends: {e}"))
        })
    }

    /// Sends a batch of snapshots. `Ok` means the server has stored them
    /// (cairnd answers 200 only after its transaction commits). A non-zero
    /// `commit_within_s` lets the server hold the batch that long for a
    /// shared commit (the reply waits as long).
    pub fn ingest(
        &self,
        token: &str,
        batch: &OutgoingBatch,
        commit_within_s: u32,
    ) -> Result<IngestReply, SendError> {
        let body = serde_json::to_vec(batch)
            .map_err(|e| SendError::Transport(format!("encoding snapshots: {e}")))?;
        let within = commit_within_s.to_string();
        let extra = (commit_within_s > 0).then_some((cairn_wire::COMMIT_WITHIN_HEADER, within.as_str()));
        let text = self.post("/api/v1/agent/ingest", Some(token), &body, extra)?;
        // Stored even if the reply is odd: say so, keep the current settings.
        Ok(serde_json::from_str(&text).unwrap_or_else(|e| {
            log::warn!("ingest reply not understood ({e}); keeping current settings");
            IngestReply::default()
        }))
    }

    /// Sends results of the checks this agent runs.
    pub fn check_results(&self, token: &str, results: &CheckResults) -> Result<(), SendError> {
        let body = serde_json::to_vec(results)
            .map_err(|e| SendError::Transport(format!("encoding check results: {e}")))?;
        self.post("/api/v1/agent/check-results", Some(token), &body, None)
            .map(|_| ())
    }

    /// POSTs JSON and returns the body of a 2xx reply.
    fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: &[u8],
        extra: Option<(&str, &str)>,
    ) -> Result<String, SendError> {
        let url = format!("{}{path}", self.server);
        let mut req = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json");
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        if let Some((name, value)) = extra {
            req = req.header(name, value);
        }
        let mut resp = req
            .send(body)
            .map_err(|e| SendError::Transport(format!("POST {url}: {e}")))?;
        let code = resp.status().as_u16();
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = resp
            .body_mut()
            .with_config()
            .limit(MAX_REPLY_BYTES)
            .read_to_string();
        if (200..300).contains(&code) {
            return text.map_err(|e| SendError::Transport(format!("POST {url}: reading reply: {e}")));
        }
        Err(status_error(
            code,
            text.as_deref().unwrap_or(""),
            location.as_deref(),
        ))
    }
}

/// A non-2xx reply as an error carrying the server's own message when it is
/// cairnd's `{"error": {"code", "message"}}` shape.
fn status_error(code: u16, body: &str, location: Option<&str>) -> SendError {
    let message = if (300..400).contains(&code) {
        format!(
            "the server redirects to {}; put that address in `server`",
            location.unwrap_or("another address")
        )
    } else {
        error_message(body)
    };
    SendError::Status { code, message }
}

fn error_message(body: &str) -> String {
    let from_json = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            let err = v.get("error")?;
            let msg = err.get("message")?.as_str()?.to_string();
            Some(match err.get("code").and_then(|c| c.as_str()) {
                Some(code) => format!("{msg} ({code})"),
                None => msg,
            })
        });
    from_json.unwrap_or_else(|| {
        // Not cairnd (a proxy's HTML page, say): show a little of it.
        let t = body.trim();
        if t.is_empty() {
            "no details in the reply".to_string()
        } else {
            let short: String = t.chars().take(200).collect();
            format!("unexpected reply: {short}")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::tests::{temp_file, ISRG_ROOT_X1};

    /// An https URL pointing at a plain-HTTP listener: the TLS handshake
    /// fails and is reported as a transport error (no panic for a missing
    /// crypto provider, no fallback to plain text).
    #[test]
    fn https_uses_rustls_and_reports_handshake_failures() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
        });
        let ca = temp_file("client", ISRG_ROOT_X1);
        let client = Client::new(&format!("https://127.0.0.1:{port}"), Some(&*ca)).unwrap();
        let req = EnrollRequest {
            code: "x".into(),
            hostname: "h".into(),
            os: String::new(),
            arch: String::new(),
            agent_version: String::new(),
        };
        match client.enroll(&req) {
            Err(SendError::Transport(e)) => assert!(e.contains("POST https://127.0.0.1"), "{e}"),
            other => panic!("expected a TLS transport error, got {other:?}"),
        }
        server.join().unwrap();
    }

    #[test]
    fn https_without_a_usable_ca_file_fails_at_start() {
        let e = Client::new("https://cairn.lan", Some(Path::new("/nonexistent/ca.pem")))
            .err()
            .unwrap();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        // Plain http needs no certificates at all.
        assert!(Client::new("http://cairn.lan", Some(Path::new("/nonexistent/ca.pem"))).is_ok());
    }

    #[test]
    fn cairnd_error_bodies_give_their_message() {
        let e = status_error(
            400,
            r#"{"error":{"code":"invalid_code","message":"enrollment code expired"}}"#,
            None,
        );
        assert_eq!(
            e,
            SendError::Status {
                code: 400,
                message: "enrollment code expired (invalid_code)".into()
            }
        );
        assert_eq!(e.to_string(), "HTTP 400: enrollment code expired (invalid_code)");
    }

    #[test]
    fn other_bodies_are_shown_briefly() {
        let html = format!("<html>{}</html>", "x".repeat(1000));
        let SendError::Status { message, .. } = status_error(502, &html, None) else {
            panic!()
        };
        assert!(message.starts_with("unexpected reply: <html>"));
        assert!(message.len() < 260);
        let SendError::Status { message, .. } = status_error(500, "", None) else {
            panic!()
        };
        assert_eq!(message, "no details in the reply");
    }

    #[test]
    fn redirects_say_where_to() {
        let SendError::Status { message, .. } =
            status_error(301, "", Some("https://cairn.lan/api/v1/agent/enroll"))
        else {
            panic!()
        };
        assert!(message.contains("https://cairn.lan"), "{message}");
    }
}
