//! The HTTP front. tiny-http owns sockets and parses request heads on its own
//! threads (with the vendored patch's connection cap and socket timeouts);
//! here a worker of a cached pool reads each request's body under a size
//! limit and a deadline and hands a plain `HttpRequest` to the executor over
//! a channel; the executor's reply is written back by a pool worker too. No
//! thread waits while the executor works (an agent's snapshot may wait up
//! to 20 s for its commit). Nothing in this module touches state, so a
//! client that stalls mid-body or never reads its reply only ever holds one
//! worker, and the pool grows instead of making others wait.

pub mod pool;
pub mod reply;
pub mod request;
pub mod router;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use reply::{ApiError, ApiResult, Reply};
pub use request::HttpRequest;

/// A request on its way to the executor, with the way back.
pub struct Incoming {
    pub req: HttpRequest,
    pub reply: ReplyTo,
}

/// Where a request's reply goes: its socket (written by a pool worker, never
/// on the executor), or a channel (in-process tests). A request dropped
/// unanswered (the executor shutting down) is answered 503.
pub struct ReplyTo(Option<Target>);

enum Target {
    Socket(tiny_http::Request, pool::Pool),
    Channel(async_channel::Sender<Reply>),
}

impl ReplyTo {
    pub fn channel(tx: async_channel::Sender<Reply>) -> ReplyTo {
        ReplyTo(Some(Target::Channel(tx)))
    }

    pub fn send(mut self, reply: Reply) {
        match self.0.take() {
            Some(Target::Socket(rq, pool)) => {
                if let Err(e) = pool.run(move || respond(rq, reply)) {
                    log::error!("{e}");
                }
            }
            Some(Target::Channel(tx)) => {
                let _ = tx.try_send(reply);
            }
            None => {}
        }
    }
}

impl Drop for ReplyTo {
    fn drop(&mut self) {
        if self.0.is_some() {
            let gone = ApiError::new(503, "shutting_down", "the server is shutting down");
            ReplyTo(self.0.take()).send(gone.into_reply());
        }
    }
}

#[derive(Clone, Debug)]
pub struct FrontLimits {
    pub max_body_bytes: usize,
    pub max_connections: usize,
    /// Socket read/write timeout: how long a peer may stay silent.
    pub io_timeout: Duration,
    /// How long a connection may wait for its next request (a new one, for
    /// its first). Each open connection holds a thread and counts against
    /// `max_connections`; an agent posts every 30 s, so a connection it
    /// keeps alive is never reused, and at the 10 s I/O timeout 500 agents
    /// would hold ~170 such connections open at any time.
    pub idle_timeout: Duration,
    /// Total time allowed to receive one request body.
    pub body_deadline: Duration,
}

impl Default for FrontLimits {
    fn default() -> Self {
        FrontLimits {
            max_body_bytes: 1024 * 1024,
            max_connections: 512,
            io_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(2),
            body_deadline: Duration::from_secs(30),
        }
    }
}

pub struct Front {
    server: Arc<tiny_http::Server>,
}

impl Front {
    pub fn start(
        listener: TcpListener,
        limits: FrontLimits,
        to_executor: async_channel::Sender<Incoming>,
    ) -> Result<Front, String> {
        let server_limits = tiny_http::ServerLimits {
            max_connections: limits.max_connections,
            read_timeout: Some(limits.io_timeout),
            idle_timeout: Some(limits.idle_timeout),
            write_timeout: Some(limits.io_timeout),
            ..tiny_http::ServerLimits::default()
        };
        let server = tiny_http::Server::from_listener_with_limits(listener, None, server_limits)
            .map_err(|e| format!("starting HTTP server: {e}"))?;
        let server = Arc::new(server);
        let accept = server.clone();
        let workers = pool::Pool::new("http-request");
        std::thread::Builder::new()
            .name("http-dispatch".into())
            .spawn(move || loop {
                match accept.recv() {
                    Ok(rq) => {
                        let tx = to_executor.clone();
                        let limits = limits.clone();
                        let pool = workers.clone();
                        if let Err(e) = workers.run(move || serve_one(rq, &limits, &tx, pool)) {
                            log::error!("{e}");
                        }
                    }
                    Err(e) => {
                        log::debug!("HTTP server stopped accepting: {e}");
                        return;
                    }
                }
            })
            .map_err(|e| format!("spawning HTTP dispatcher: {e}"))?;
        Ok(Front { server })
    }

    pub fn stop(&self) {
        self.server.unblock();
    }
}

/// Reads one request and hands it to the executor; the reply is written
/// when the executor sends it (`ReplyTo`), by whichever worker is free then.
fn serve_one(
    mut rq: tiny_http::Request,
    limits: &FrontLimits,
    tx: &async_channel::Sender<Incoming>,
    pool: pool::Pool,
) {
    match read_request(&mut rq, limits) {
        Ok(req) => {
            let reply = ReplyTo(Some(Target::Socket(rq, pool)));
            // Refused (shutting down): the request drops here and its
            // ReplyTo answers 503.
            let _ = tx.send_blocking(Incoming { req, reply });
        }
        Err(err) => respond(rq, err.into_reply()),
    }
}

fn read_request(rq: &mut tiny_http::Request, limits: &FrontLimits) -> Result<HttpRequest, ApiError> {
    let too_large = || {
        ApiError::new(
            413,
            "payload_too_large",
            format!(
                "request body exceeds the limit of {} bytes",
                limits.max_body_bytes
            ),
        )
    };
    // Chunked bodies are refused: tiny-http neither bounds a chunk-size line
    // nor drains an unread chunked body. Every client we serve (agents, curl,
    // browsers) sends Content-Length.
    let chunked = rq
        .headers()
        .iter()
        .any(|h| h.field.equiv("Transfer-Encoding") && !h.value.as_str().eq_ignore_ascii_case("identity"));
    if chunked {
        return Err(ApiError::new(
            411,
            "length_required",
            "send the body with a Content-Length header (chunked transfer encoding is not accepted)",
        ));
    }
    if rq.body_length().is_some_and(|n| n > limits.max_body_bytes) {
        return Err(too_large());
    }
    let deadline = Instant::now() + limits.body_deadline;
    // Read straight into the body (no buffer on the worker's stack: every
    // stack page a worker touches stays resident while it idles).
    // One byte more than announced: the read that finds the end needs room,
    // and growing a body of 128 KiB or more means a new mapping and a copy.
    // One byte over the limit is enough to know it is over. The buffer is
    // zeroed once as it grows, not before every read (6 % of the HTTP
    // workers' time under a backfill, docs/BENCHMARKS.md §1 stop 20).
    let most = limits.max_body_bytes + 1;
    let mut body = vec![0u8; rq.body_length().map_or(0, |n| n + 1).min(most)];
    let mut filled = 0;
    let reader = rq.as_reader();
    loop {
        // Each read is bounded by the socket timeout; the loop by the deadline.
        if Instant::now() > deadline {
            return Err(ApiError::new(
                408,
                "request_timeout",
                "request body took too long to arrive",
            ));
        }
        if filled == body.len() {
            body.resize((filled + 16 * 1024).min(most), 0);
        }
        match reader.read(&mut body[filled..]) {
            Ok(0) => break,
            Ok(n) => {
                filled += n;
                if filled > limits.max_body_bytes {
                    return Err(too_large());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(ApiError::new(
                    408,
                    "request_timeout",
                    format!("reading the request body failed: {e}"),
                ))
            }
        }
    }
    body.truncate(filled);
    Ok(HttpRequest::from_tiny(rq, body))
}

fn respond(rq: tiny_http::Request, reply: Reply) {
    // The body is complete, so its length is known: tiny-http would otherwise
    // switch to chunked encoding above 32 KiB (a 24-hour chart is ~40 KiB).
    let mut resp = tiny_http::Response::from_data(reply.body)
        .with_status_code(reply.status)
        .with_chunked_threshold(usize::MAX);
    let mut add = |name: &str, value: &str| {
        if let Ok(h) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            resp.add_header(h);
        }
    };
    add("Content-Type", reply.content_type);
    add("X-Content-Type-Options", "nosniff");
    add("Cache-Control", "no-store");
    for (name, value) in &reply.headers {
        add(name, value);
    }
    if let Err(e) = rq.respond(resp) {
        log::debug!("writing a response failed (client gone?): {e}");
    }
}
