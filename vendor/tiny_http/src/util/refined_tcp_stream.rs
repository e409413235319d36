use std::io::Result as IoResult;
use std::io::{Error as IoError, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::connection::Connection;
#[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
use crate::ssl::SslStream;

pub(crate) enum Stream {
    Http(Connection),
    #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
    Https(SslStream),
}

impl Clone for Stream {
    fn clone(&self) -> Self {
        match self {
            Stream::Http(tcp_stream) => Stream::Http(tcp_stream.try_clone().unwrap()),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => Stream::Https(ssl_stream.clone()),
        }
    }
}

impl From<Connection> for Stream {
    fn from(tcp_stream: Connection) -> Self {
        Stream::Http(tcp_stream)
    }
}

impl Stream {
    // cairn patch: fallible clone; `Clone` panics when dup() fails (EMFILE under a
    // connection flood), which used to kill the accept thread.
    fn try_clone(&self) -> IoResult<Self> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.try_clone().map(Stream::Http),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => Ok(Stream::Https(ssl_stream.clone())),
        }
    }

    // cairn patch: see `IdleRead`. A TLS stream keeps its one timeout.
    fn set_read_timeout(&self, read: Option<Duration>) -> IoResult<()> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.set_read_timeout(read),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(_) => Ok(()),
        }
    }

    fn secure(&self) -> bool {
        match self {
            Stream::Http(_) => false,
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(_) => true,
        }
    }

    fn peer_addr(&mut self) -> IoResult<Option<SocketAddr>> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.peer_addr(),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.peer_addr(),
        }
    }

    fn shutdown(&mut self, how: Shutdown) -> IoResult<()> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.shutdown(how),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.shutdown(how),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.read(buf),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.write(buf),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.write(buf),
        }
    }

    fn flush(&mut self) -> IoResult<()> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.flush(),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.flush(),
        }
    }
}

/// cairn patch: counts one client connection in `Server::num_connections` for as long as
/// either half of its socket is alive. The halves are owned by the connection's reading
/// task and by its requests still in flight, so a connection stays counted until its
/// socket is closed; the count is also given back when a panic drops them.
pub(crate) struct ConnectionGuard(Arc<AtomicUsize>);

impl ConnectionGuard {
    pub(crate) fn new(count: &Arc<AtomicUsize>) -> Arc<ConnectionGuard> {
        count.fetch_add(1, Ordering::Relaxed);
        Arc::new(ConnectionGuard(count.clone()))
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// cairn patch: the read timeout of a connection waiting for its next request, when it
/// differs from the one for reads within a request (`ServerLimits::idle_timeout`). The
/// client connection raises `waiting` before it reads a request's first line and lowers it
/// after; a socket read made while it is up uses `idle`, then `normal` is put back, and
/// the first byte read lowers it (the rest of a trickled request line gets `normal`).
pub(crate) struct IdleRead {
    pub(crate) waiting: AtomicBool,
    idle: Option<Duration>,
    normal: Option<Duration>,
}

impl IdleRead {
    /// Made only when `idle` differs from `normal` (the accept loop checks).
    pub(crate) fn new(idle: Option<Duration>, normal: Option<Duration>) -> Arc<IdleRead> {
        Arc::new(IdleRead {
            waiting: AtomicBool::new(false),
            idle,
            normal,
        })
    }
}

pub struct RefinedTcpStream {
    stream: Stream,
    close_read: bool,
    close_write: bool,
    // cairn patch: see `ConnectionGuard`
    _guard: Arc<ConnectionGuard>,
    // cairn patch: set after a failed read (e.g. the socket read timeout fired). The
    // stream position is then unknown (possibly mid-body), so every later read fails too
    // and the connection is dropped instead of parsing leftover body bytes as a request.
    read_failed: bool,
    // cairn patch: see `IdleRead`; only on the read half.
    idle: Option<Arc<IdleRead>>,
}

impl RefinedTcpStream {
    /// cairn patch: reads made while `idle.waiting` is up use its idle timeout.
    pub(crate) fn set_idle(&mut self, idle: Arc<IdleRead>) {
        self.idle = Some(idle);
    }

    // cairn patch: returns an error instead of panicking when the socket can't be cloned,
    // and takes the connection's `ConnectionGuard`.
    pub(crate) fn new<S>(
        stream: S,
        guard: Arc<ConnectionGuard>,
    ) -> IoResult<(RefinedTcpStream, RefinedTcpStream)>
    where
        S: Into<Stream>,
    {
        let stream: Stream = stream.into();

        let (read, write) = (stream.try_clone()?, stream);

        let read = RefinedTcpStream {
            stream: read,
            close_read: true,
            close_write: false,
            read_failed: false,
            idle: None,
            _guard: guard.clone(),
        };

        let write = RefinedTcpStream {
            stream: write,
            close_read: false,
            close_write: true,
            read_failed: false,
            idle: None,
            _guard: guard,
        };

        Ok((read, write))
    }

    /// Returns true if this struct wraps around a secure connection.
    #[inline]
    pub(crate) fn secure(&self) -> bool {
        self.stream.secure()
    }

    pub(crate) fn peer_addr(&mut self) -> IoResult<Option<SocketAddr>> {
        self.stream.peer_addr()
    }
}

impl Drop for RefinedTcpStream {
    fn drop(&mut self) {
        if self.close_read {
            self.stream.shutdown(Shutdown::Read).ok();
        }

        if self.close_write {
            self.stream.shutdown(Shutdown::Write).ok();
        }
    }
}

impl Read for RefinedTcpStream {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        // cairn patch: sticky read failure, see `read_failed`.
        if self.read_failed {
            return Err(IoError::new(
                ErrorKind::ConnectionAborted,
                "an earlier read on this connection failed",
            ));
        }
        // cairn patch: see `IdleRead`. A failed switch only leaves the other timeout.
        let idle = self
            .idle
            .as_ref()
            .filter(|i| i.waiting.load(Ordering::Relaxed));
        if let Some(i) = idle {
            let _ = self.stream.set_read_timeout(i.idle);
        }
        let result = self.stream.read(buf);
        if let Some(i) = idle {
            let _ = self.stream.set_read_timeout(i.normal);
            // Once a request has begun, its client is no longer idle.
            if matches!(result, Ok(n) if n > 0) {
                i.waiting.store(false, Ordering::Relaxed);
            }
        }
        if matches!(&result, Err(e) if e.kind() != ErrorKind::Interrupted) {
            self.read_failed = true;
        }
        result
    }
}

impl Write for RefinedTcpStream {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        // cairn patch: a failed (e.g. timed-out) write leaves a truncated response on the
        // wire; shut the socket down so the connection is not reused for the next response.
        let result = self.stream.write(buf);
        self.shutdown_on_error(&result);
        result
    }

    fn flush(&mut self) -> IoResult<()> {
        let result = self.stream.flush();
        self.shutdown_on_error(&result);
        result
    }
}

impl RefinedTcpStream {
    // cairn patch: see `Write for RefinedTcpStream`.
    fn shutdown_on_error<T>(&mut self, result: &IoResult<T>) {
        if matches!(result, Err(e) if e.kind() != ErrorKind::Interrupted) {
            self.stream.shutdown(Shutdown::Both).ok();
        }
    }
}
