//! # Simple usage
//!
//! ## Creating the server
//!
//! The easiest way to create a server is to call `Server::http()`.
//!
//! The `http()` function returns an `IoResult<Server>` which will return an error
//! in the case where the server creation fails (for example if the listening port is already
//! occupied).
//!
//! ```no_run
//! let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! ```
//!
//! A newly-created `Server` will immediately start listening for incoming connections and HTTP
//! requests.
//!
//! ## Receiving requests
//!
//! Calling `server.recv()` will block until the next request is available.
//! This function returns an `IoResult<Request>`, so you need to handle the possible errors.
//!
//! ```no_run
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//!
//! loop {
//!     // blocks until the next request is received
//!     let request = match server.recv() {
//!         Ok(rq) => rq,
//!         Err(e) => { println!("error: {}", e); break }
//!     };
//!
//!     // do something with the request
//!     // ...
//! }
//! ```
//!
//! In a real-case scenario, you will probably want to spawn multiple worker tasks and call
//! `server.recv()` on all of them. Like this:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use std::thread;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! let server = Arc::new(server);
//! let mut guards = Vec::with_capacity(4);
//!
//! for _ in (0 .. 4) {
//!     let server = server.clone();
//!
//!     let guard = thread::spawn(move || {
//!         loop {
//!             let rq = server.recv().unwrap();
//!
//!             // ...
//!         }
//!     });
//!
//!     guards.push(guard);
//! }
//! ```
//!
//! If you don't want to block, you can call `server.try_recv()` instead.
//!
//! ## Handling requests
//!
//! The `Request` object returned by `server.recv()` contains informations about the client's request.
//! The most useful methods are probably `request.method()` and `request.url()` which return
//! the requested method (`GET`, `POST`, etc.) and url.
//!
//! To handle a request, you need to create a `Response` object. See the docs of this object for
//! more infos. Here is an example of creating a `Response` from a file:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! ```
//!
//! All that remains to do is call `request.respond()`:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! # let request = server.recv().unwrap();
//! # let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! let _ = request.respond(response);
//! ```
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![allow(clippy::match_like_matches_macro)]

#[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
use zeroize::Zeroizing;

use std::error::Error;
use std::io::Error as IoError;
use std::io::ErrorKind as IoErrorKind;
use std::io::Result as IoResult;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use client::ClientConnection;
use connection::Connection;
use util::refined_tcp_stream::ConnectionGuard; // cairn patch
use util::MessagesQueue;

pub use common::{HTTPVersion, Header, HeaderField, Method, StatusCode};
pub use connection::{ConfigListenAddr, ListenAddr, Listener};
pub use request::{ReadWrite, Request};
pub use response::{Response, ResponseBox};
pub use test::TestRequest;

mod client;
mod common;
mod connection;
mod request;
mod response;
mod ssl;
mod test;
mod util;

/// The main class of this library.
///
/// Destroying this object will immediately close the listening socket and the reading
///  part of all the client's connections. Requests that have already been returned by
///  the `recv()` function will not close and the responses will be transferred to the client.
pub struct Server {
    // should be false as long as the server exists
    // when set to true, all the subtasks will close within a few hundreds ms
    close: Arc<AtomicBool>,

    // queue for messages received by child threads
    messages: Arc<MessagesQueue<Message>>,

    // result of TcpListener::local_addr()
    listening_addr: ListenAddr,

    // cairn patch: number of live client connections (see `num_connections`)
    connections: Arc<AtomicUsize>,
}

enum Message {
    // cairn patch: no longer constructed: accept() errors are retried, not reported.
    #[allow(dead_code)]
    Error(IoError),
    NewRequest(Request),
}

impl From<IoError> for Message {
    fn from(e: IoError) -> Message {
        Message::Error(e)
    }
}

impl From<Request> for Message {
    fn from(rq: Request) -> Message {
        Message::NewRequest(rq)
    }
}

// this trait is to make sure that Server implements Share and Send
#[doc(hidden)]
#[allow(dead_code)] // cairn patch: silence the (pre-existing) dead-code warning
trait MustBeShareDummy: Sync + Send {}
#[doc(hidden)]
impl MustBeShareDummy for Server {}

pub struct IncomingRequests<'a> {
    server: &'a Server,
}

/// Represents the parameters required to create a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The addresses to try to listen to.
    pub addr: ConfigListenAddr,

    /// If `Some`, then the server will use SSL to encode the communications.
    pub ssl: Option<SslConfig>,
}

/// Configuration of the server for SSL.
#[derive(Debug, Clone)]
pub struct SslConfig {
    /// Contains the public certificate to send to clients.
    pub certificate: Vec<u8>,
    /// Contains the ultra-secret private key used to decode communications.
    pub private_key: Vec<u8>,
}

/// cairn patch: resource limits applied to every accepted connection.
///
/// See [`Server::from_listener_with_limits`]. `ServerLimits::default()` is meant for a
/// server exposed to untrusted clients.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Maximum number of simultaneously open client connections, counting those whose last
    /// request is still being handled (see [`Server::num_connections`]). A connection
    /// accepted while this many are open is sent `busy_response` and closed.
    pub max_connections: usize,
    /// Read timeout of each client socket (`None`: wait forever). It applies to each read:
    /// of a request's head, of a request body (the error then reaches the reader of
    /// `Request::as_reader()`), and of an idle keep-alive connection, which is then closed
    /// without a response. It is not a deadline for a whole request: a client trickling
    /// bytes faster than this keeps its connection (`max_connections` bounds the damage).
    pub read_timeout: Option<Duration>,
    /// Read timeout of a connection waiting for the first byte of a request: a new
    /// connection, or a keep-alive one between requests (`None` here: `read_timeout`). A
    /// server with a thread per connection keeps this short, so that idle connections do
    /// not hold one each. Once a request has begun, `read_timeout` applies.
    pub idle_timeout: Option<Duration>,
    /// Write timeout of each client socket (`None`: wait forever), per write. A response
    /// whose write fails is cut short and its connection shut down.
    pub write_timeout: Option<Duration>,
    /// Raw bytes (a complete HTTP response) sent to a connection refused because of
    /// `max_connections`. Nothing is sent when empty, or when the server uses SSL.
    pub busy_response: Vec<u8>,
}

impl Default for ServerLimits {
    /// 256 connections, 15 s read and write timeouts, and a JSON `503` busy response.
    fn default() -> Self {
        const BODY: &str =
            r#"{"error":{"code":"busy","message":"too many open connections; retry shortly"}}"#;
        let busy_response = format!(
            "HTTP/1.1 503 Service Unavailable\r\n\
             Content-Type: application/json\r\n\
             Content-Length: {}\r\n\
             Connection: close\r\n\
             Retry-After: 1\r\n\
             \r\n\
             {}",
            BODY.len(),
            BODY
        );
        ServerLimits {
            max_connections: 256,
            read_timeout: Some(Duration::from_secs(15)),
            idle_timeout: None,
            write_timeout: Some(Duration::from_secs(15)),
            busy_response: busy_response.into_bytes(),
        }
    }
}

impl ServerLimits {
    /// The behaviour of unpatched tiny_http: no connection cap, no socket timeouts.
    fn unlimited() -> Self {
        ServerLimits {
            max_connections: usize::MAX,
            read_timeout: None,
            idle_timeout: None,
            write_timeout: None,
            busy_response: Vec::new(),
        }
    }
}

/// cairn patch: refuses a connection over `ServerLimits::max_connections` without blocking
/// the accept thread.
fn reject_busy(mut sock: Connection, busy_response: &[u8]) {
    // Non-blocking: a fresh socket's send buffer always takes a short response, and a
    // client that does not read must not stall the accept thread.
    if sock.set_nonblocking(true).is_err() {
        return;
    }
    if !busy_response.is_empty() {
        let _ = sock.write_all(busy_response);
    }
    let _ = sock.shutdown(Shutdown::Write);
    // Discard what the client has already sent: closing a socket with unread data makes
    // the kernel send RST instead of FIN, and some clients then lose the response.
    let mut buf = [0u8; 4096];
    for _ in 0..16 {
        match sock.read(&mut buf) {
            Ok(n) if n > 0 => continue,
            _ => break,
        }
    }
}

/// cairn patch: how long the accept thread pauses after an accept() error. Errors caused
/// by load (descriptor or memory exhaustion, aborted handshakes) are retried quickly;
/// anything else with a growing pause, up to 1 s. The accept loop never gives up.
fn accept_error_pause(err: &IoError, consecutive: u32) -> Duration {
    match err.kind() {
        IoErrorKind::Interrupted => return Duration::from_millis(0),
        IoErrorKind::WouldBlock
        | IoErrorKind::TimedOut
        | IoErrorKind::ConnectionAborted
        | IoErrorKind::ConnectionReset
        | IoErrorKind::OutOfMemory => return Duration::from_millis(20),
        _ => {}
    }
    #[cfg(unix)]
    const EXHAUSTED: &[i32] = &[
        12, // ENOMEM
        23, // ENFILE
        24, // EMFILE
        #[cfg(any(target_os = "linux", target_os = "android"))]
        105, // ENOBUFS
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        55, // ENOBUFS
        #[cfg(any(target_os = "linux", target_os = "android"))]
        71, // EPROTO
    ];
    #[cfg(windows)]
    const EXHAUSTED: &[i32] = &[10024 /* WSAEMFILE */, 10055 /* WSAENOBUFS */];
    #[cfg(not(any(unix, windows)))]
    const EXHAUSTED: &[i32] = &[];
    if matches!(err.raw_os_error(), Some(code) if EXHAUSTED.contains(&code)) {
        return Duration::from_millis(20);
    }
    Duration::from_millis(50 << consecutive.saturating_sub(1).min(5)).min(Duration::from_secs(1))
}

impl Server {
    /// Shortcut for a simple server on a specific address.
    #[inline]
    pub fn http<A>(addr: A) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::from_socket_addrs(addr)?,
            ssl: None,
        })
    }

    /// Shortcut for an HTTPS server on a specific address.
    #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
    #[inline]
    pub fn https<A>(
        addr: A,
        config: SslConfig,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::from_socket_addrs(addr)?,
            ssl: Some(config),
        })
    }

    #[cfg(unix)]
    #[inline]
    /// Shortcut for a UNIX socket server at a specific path
    pub fn http_unix(
        path: &std::path::Path,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::unix_from_path(path),
            ssl: None,
        })
    }

    /// Builds a new server that listens on the specified address.
    pub fn new(config: ServerConfig) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let listener = config.addr.bind()?;
        Self::from_listener(listener, config.ssl)
    }

    /// Builds a new server using the specified TCP listener.
    ///
    /// This is useful if you've constructed TcpListener using some less usual method
    /// such as from systemd. For other cases, you probably want the `new()` function.
    pub fn from_listener<L: Into<Listener>>(
        listener: L,
        ssl_config: Option<SslConfig>,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        // cairn patch: unchanged behaviour (no connection cap, no socket timeouts).
        Self::from_listener_with_limits(listener, ssl_config, ServerLimits::unlimited())
    }

    /// cairn patch: like [`Server::from_listener`], with a cap on simultaneous connections
    /// and read/write timeouts on every client socket (see [`ServerLimits`]).
    pub fn from_listener_with_limits<L: Into<Listener>>(
        listener: L,
        ssl_config: Option<SslConfig>,
        limits: ServerLimits,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let listener = listener.into();
        // building the "close" variable
        let close_trigger = Arc::new(AtomicBool::new(false));

        // building the TcpListener
        let (server, local_addr) = {
            let local_addr = listener.local_addr()?;
            log::debug!("Server listening on {}", local_addr);
            (listener, local_addr)
        };

        // building the SSL capabilities
        #[cfg(all(feature = "ssl-openssl", feature = "ssl-rustls"))]
        compile_error!(
            "Features 'ssl-openssl' and 'ssl-rustls' must not be enabled at the same time"
        );
        #[cfg(not(any(feature = "ssl-openssl", feature = "ssl-rustls")))]
        type SslContext = ();
        #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
        type SslContext = crate::ssl::SslContextImpl;
        let ssl: Option<SslContext> = {
            match ssl_config {
                #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
                Some(config) => Some(SslContext::from_pem(
                    config.certificate,
                    Zeroizing::new(config.private_key),
                )?),
                #[cfg(not(any(feature = "ssl-openssl", feature = "ssl-rustls")))]
                Some(_) => return Err(
                    "Building a server with SSL requires enabling the `ssl` feature in tiny-http"
                        .into(),
                ),
                None => None,
            }
        };

        // creating a task where server.accept() is continuously called
        // and ClientConnection objects are pushed in the messages queue
        let messages = MessagesQueue::with_capacity(8);

        let inside_close_trigger = close_trigger.clone();
        let inside_messages = messages.clone();
        let connections = Arc::new(AtomicUsize::new(0));
        let inside_connections = connections.clone();
        thread::spawn(move || {
            // a tasks pool is used to dispatch the connections into threads
            let tasks_pool = util::TaskPool::new();
            // cairn patch: consecutive accept() errors, and whether we are refusing clients
            let mut accept_errors: u32 = 0;
            let mut refusing = false;

            log::debug!("Running accept thread");
            while !inside_close_trigger.load(Relaxed) {
                // cairn patch: accept() errors no longer end the accept loop (and are no
                // longer pushed to `recv()`): under a connection flood accept() fails with
                // EMFILE until descriptors are freed, and giving up then stopped the server
                // for good. Only the close trigger (set by `Drop`) ends the loop.
                let sock = match server.accept() {
                    Ok((sock, _)) => {
                        accept_errors = 0;
                        sock
                    }
                    Err(e) => {
                        if inside_close_trigger.load(Relaxed) {
                            break;
                        }
                        accept_errors = accept_errors.saturating_add(1);
                        // logged at the 1st, 2nd, 4th, 8th... error in a row
                        if accept_errors.is_power_of_two() {
                            log::error!(
                                "Error accepting new client ({} in a row): {}",
                                accept_errors,
                                e
                            );
                        }
                        thread::sleep(accept_error_pause(&e, accept_errors));
                        continue;
                    }
                };

                // cairn patch: the connection `Drop for Server` makes to unblock accept()
                if inside_close_trigger.load(Relaxed) {
                    break;
                }

                // cairn patch: socket timeouts, so a stalled client can't hold a thread forever
                if let Err(e) = sock.set_timeouts(limits.read_timeout, limits.write_timeout) {
                    log::warn!("Cannot set timeouts on a new client socket: {}", e);
                    continue;
                }

                // cairn patch: connection cap
                if inside_connections.load(Relaxed) >= limits.max_connections {
                    if !refusing {
                        log::warn!(
                            "{} connections open: refusing new clients",
                            limits.max_connections
                        );
                        refusing = true;
                    }
                    let busy_response: &[u8] = match ssl {
                        None => &limits.busy_response,
                        // a plaintext response is meaningless to a TLS client
                        Some(_) => &[],
                    };
                    reject_busy(sock, busy_response);
                    continue;
                }
                refusing = false;
                // cairn patch: counted from here until the socket is closed
                let guard = ConnectionGuard::new(&inside_connections);

                use util::RefinedTcpStream;
                let streams = match ssl {
                    None => RefinedTcpStream::new(sock, guard),
                    #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
                    Some(ref ssl) => {
                        // trying to apply SSL over the connection
                        // if an error occurs, we just close the socket and resume listening
                        let sock = match ssl.accept(sock) {
                            Ok(s) => s,
                            Err(_) => continue,
                        };

                        RefinedTcpStream::new(sock, guard)
                    }
                    #[cfg(not(any(feature = "ssl-openssl", feature = "ssl-rustls")))]
                    Some(ref _ssl) => unreachable!(),
                };
                let (read_closable, write_closable) = match streams {
                    Ok(streams) => streams,
                    Err(e) => {
                        // cairn patch: dup() failed (typically EMFILE): drop this client
                        log::error!("Cannot set up a new client connection: {}", e);
                        thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                };
                // cairn patch: see `ServerLimits::idle_timeout`
                let idle = limits
                    .idle_timeout
                    .filter(|&t| Some(t) != limits.read_timeout)
                    .map(|t| util::IdleRead::new(Some(t), limits.read_timeout));
                let client = ClientConnection::new(write_closable, read_closable, idle);

                let messages = inside_messages.clone();
                let mut client = Some(client);
                let spawned = tasks_pool.spawn(Box::new(move || {
                    if let Some(client) = client.take() {
                        // Synchronization is needed for HTTPS requests to avoid a deadlock
                        if client.secure() {
                            let (sender, receiver) = mpsc::channel();
                            for rq in client {
                                messages.push(rq.with_notify_sender(sender.clone()).into());
                                receiver.recv().unwrap();
                            }
                        } else {
                            for rq in client {
                                messages.push(rq.into());
                            }
                        }
                    }
                }));
                if let Err(e) = spawned {
                    // cairn patch: used to panic (and kill the accept thread)
                    log::error!("Cannot spawn a thread for a new client: {}", e);
                    thread::sleep(Duration::from_millis(20));
                }
            }
            log::debug!("Terminating accept thread");
        });

        // result
        Ok(Server {
            messages,
            close: close_trigger,
            listening_addr: local_addr,
            connections,
        })
    }

    /// Returns an iterator for all the incoming requests.
    ///
    /// The iterator will return `None` if the server socket is shutdown.
    #[inline]
    pub fn incoming_requests(&self) -> IncomingRequests<'_> {
        IncomingRequests { server: self }
    }

    /// Returns the address the server is listening to.
    #[inline]
    pub fn server_addr(&self) -> ListenAddr {
        self.listening_addr.clone()
    }

    /// Returns the number of clients currently connected to the server.
    ///
    /// cairn patch: implemented (was `unimplemented!()`). Counts client sockets from accept
    /// until they are closed: the connection ended (client closed, timeout, error, last
    /// request) and none of its requests is still alive. Refused ("busy") connections are
    /// not counted.
    pub fn num_connections(&self) -> usize {
        self.connections.load(Relaxed)
    }

    /// Blocks until an HTTP request has been submitted and returns it.
    pub fn recv(&self) -> IoResult<Request> {
        match self.messages.pop() {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(rq),
            None => Err(IoError::new(IoErrorKind::Other, "thread unblocked")),
        }
    }

    /// Same as `recv()` but doesn't block longer than timeout
    pub fn recv_timeout(&self, timeout: Duration) -> IoResult<Option<Request>> {
        match self.messages.pop_timeout(timeout) {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(Some(rq)),
            None => Ok(None),
        }
    }

    /// Same as `recv()` but doesn't block.
    pub fn try_recv(&self) -> IoResult<Option<Request>> {
        match self.messages.try_pop() {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(Some(rq)),
            None => Ok(None),
        }
    }

    /// Unblock thread stuck in recv() or incoming_requests().
    /// If there are several such threads, only one is unblocked.
    /// This method allows graceful shutdown of server.
    pub fn unblock(&self) {
        self.messages.unblock();
    }
}

impl Iterator for IncomingRequests<'_> {
    type Item = Request;
    fn next(&mut self) -> Option<Request> {
        self.server.recv().ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.close.store(true, Relaxed);
        // Connect briefly to ourselves to unblock the accept thread
        let maybe_stream = match &self.listening_addr {
            ListenAddr::IP(addr) => TcpStream::connect(addr).map(Connection::from),
            #[cfg(unix)]
            ListenAddr::Unix(addr) => {
                // TODO: use connect_addr when its stabilized.
                let path = addr.as_pathname().unwrap();
                std::os::unix::net::UnixStream::connect(path).map(Connection::from)
            }
        };
        if let Ok(stream) = maybe_stream {
            let _ = stream.shutdown(Shutdown::Both);
        }

        #[cfg(unix)]
        if let ListenAddr::Unix(addr) = &self.listening_addr {
            if let Some(path) = addr.as_pathname() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
