//! cairn patch: tests for `ServerLimits` (socket timeouts, connection cap, live count).
//! std only; every wait polls against a deadline.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tiny_http::{Request, Response, Server, ServerLimits};

const DEADLINE: Duration = Duration::from_secs(10);

struct TestServer {
    server: Arc<Server>,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    responder: Option<thread::JoinHandle<()>>,
}

impl TestServer {
    fn start(limits: ServerLimits, handler: impl Fn(Request) + Send + 'static) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Arc::new(Server::from_listener_with_limits(listener, None, limits).unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let responder = {
            let (server, stop) = (server.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if let Ok(Some(rq)) = server.recv_timeout(Duration::from_millis(20)) {
                        handler(rq);
                    }
                }
            })
        };
        TestServer {
            server,
            addr,
            stop,
            responder: Some(responder),
        }
    }

    fn ok(limits: ServerLimits) -> TestServer {
        TestServer::start(limits, |rq| {
            let _ = rq.respond(Response::from_string("ok"));
        })
    }

    fn num_connections(&self) -> usize {
        self.server.num_connections()
    }

    fn wait_connections(&self, want: impl Fn(usize) -> bool, what: &str) {
        wait_until(|| want(self.num_connections()), what);
        assert!(want(self.num_connections()));
    }

    /// Stops the responder thread and returns the (now sole) server handle.
    fn into_server(mut self) -> Server {
        self.stop.store(true, Ordering::SeqCst);
        self.responder.take().unwrap().join().unwrap();
        let server = self.server.clone();
        drop(self);
        Arc::try_unwrap(server).ok().expect("server still shared")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(responder) = self.responder.take() {
            let _ = responder.join();
        }
    }
}

fn wait_until(mut cond: impl FnMut() -> bool, what: &str) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {}", what);
        thread::sleep(Duration::from_millis(5));
    }
}

fn limits(max_connections: usize, read_timeout: Duration) -> ServerLimits {
    ServerLimits {
        max_connections,
        read_timeout: Some(read_timeout),
        write_timeout: Some(Duration::from_secs(5)),
        ..ServerLimits::default()
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s
}

/// Reads until the server closes the connection (EOF or reset).
fn read_until_closed(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("reading from the server: {} (got {:?})", e, out),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = connect(addr);
    // One write: a refused connection may be closed by the server before the request
    // arrives, and a second write would then fail with EPIPE.
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        path
    );
    s.write_all(request.as_bytes()).unwrap();
    read_until_closed(&mut s)
}

#[test]
fn stalled_client_does_not_block_others_and_is_closed_after_read_timeout() {
    let server = TestServer::ok(limits(16, Duration::from_millis(300)));

    let mut stalled = connect(server.addr);
    stalled.write_all(b"GET / HT").unwrap();
    let stalled_at = Instant::now();
    server.wait_connections(|n| n == 1, "the stalled connection to be accepted");

    let response = get(server.addr, "/");
    assert!(response.starts_with("HTTP/1.1 200 "), "{:?}", response);

    // The server must close the stalled connection by itself, without answering it
    // with a request: the half request line is not a request.
    let leftover = read_until_closed(&mut stalled);
    let closed_after = stalled_at.elapsed();
    assert!(!leftover.contains(" 200 "), "{:?}", leftover);
    assert!(
        closed_after >= Duration::from_millis(200),
        "{:?}",
        closed_after
    );
    assert!(closed_after < DEADLINE, "{:?}", closed_after);
    server.wait_connections(|n| n == 0, "the stalled connection to be forgotten");
}

#[test]
fn connections_over_the_cap_get_the_busy_response() {
    let server = TestServer::ok(limits(2, Duration::from_secs(30)));

    let idle1 = connect(server.addr);
    let _idle2 = connect(server.addr);
    server.wait_connections(|n| n == 2, "two idle connections");

    let busy = get(server.addr, "/");
    let expected = String::from_utf8(ServerLimits::default().busy_response).unwrap();
    assert_eq!(busy, expected);
    assert!(busy.starts_with("HTTP/1.1 503 "), "{:?}", busy);
    let (head, body) = busy.split_once("\r\n\r\n").unwrap();
    let head = format!("{}\r\n", head);
    assert!(
        head.contains("\r\nContent-Type: application/json\r\n"),
        "{:?}",
        head
    );
    assert!(head.contains("\r\nConnection: close\r\n"), "{:?}", head);
    assert!(head.contains("\r\nRetry-After: 1\r\n"), "{:?}", head);
    assert!(
        head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())),
        "{:?}",
        head
    );
    assert_eq!(
        body,
        r#"{"error":{"code":"busy","message":"too many open connections; retry shortly"}}"#
    );
    assert_eq!(
        server.num_connections(),
        2,
        "a refused connection is not counted"
    );

    drop(idle1);
    server.wait_connections(|n| n <= 1, "the closed idle connection to be forgotten");
    let response = get(server.addr, "/");
    assert!(response.starts_with("HTTP/1.1 200 "), "{:?}", response);
}

#[test]
fn num_connections_counts_live_connections() {
    let server = TestServer::ok(limits(64, Duration::from_secs(30)));
    assert_eq!(server.num_connections(), 0);

    let mut conns: Vec<TcpStream> = (0..3).map(|_| connect(server.addr)).collect();
    server.wait_connections(|n| n == 3, "three connections");

    // A keep-alive connection that has been answered is still live.
    let mut keep_alive = connect(server.addr);
    keep_alive
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\nok") {
        assert_eq!(keep_alive.read(&mut byte).unwrap(), 1, "{:?}", head);
        head.push(byte[0]);
    }
    server.wait_connections(|n| n == 4, "four connections");

    // A `Connection: close` request ends its connection once answered.
    assert!(get(server.addr, "/").starts_with("HTTP/1.1 200 "));
    server.wait_connections(|n| n == 4, "back to four connections");

    drop(keep_alive);
    conns.pop();
    server.wait_connections(|n| n == 2, "two connections");
    conns.clear();
    server.wait_connections(|n| n == 0, "no connection");
}

#[test]
fn a_request_being_handled_keeps_its_connection_counted() {
    let (got_tx, got_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let server = TestServer::start(limits(1, Duration::from_secs(30)), move |rq| {
        got_tx.send(()).unwrap();
        release_rx.recv().unwrap();
        let _ = rq.respond(Response::from_string("ok"));
    });

    // `Connection: close`: the connection's reading task ends as soon as the request is
    // handed over, but its socket stays open until the response is sent.
    let addr = server.addr;
    let client = thread::spawn(move || get(addr, "/"));
    got_rx.recv_timeout(DEADLINE).unwrap();
    assert_eq!(server.num_connections(), 1);
    let busy = get(server.addr, "/");
    assert!(busy.starts_with("HTTP/1.1 503 "), "{:?}", busy);

    release_tx.send(()).unwrap();
    let response = client.join().unwrap();
    assert!(response.starts_with("HTTP/1.1 200 "), "{:?}", response);
    server.wait_connections(|n| n == 0, "the answered connection to be forgotten");
}

#[test]
fn body_read_timeout_is_an_error_and_drops_the_connection() {
    let (tx, rx) = mpsc::channel();
    let server = TestServer::start(limits(16, Duration::from_millis(300)), move |mut rq| {
        let mut body = Vec::new();
        let read = rq.as_reader().read_to_end(&mut body);
        tx.send((rq.url().to_owned(), read.map_err(|e| e.kind())))
            .unwrap();
        let _ = rq.respond(Response::from_string("timeout").with_status_code(408));
    });

    // Large enough (> 1024 bytes) to be streamed to the handler rather than buffered.
    let mut client = connect(server.addr);
    client
        .write_all(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n")
        .unwrap();
    client.write_all(&[b'a'; 2000]).unwrap();

    let (url, read) = rx.recv_timeout(DEADLINE).unwrap();
    assert_eq!(url, "/upload");
    let kind = read.expect_err("a stalled body must be a read error");
    assert!(
        kind == ErrorKind::WouldBlock || kind == ErrorKind::TimedOut,
        "{:?}",
        kind
    );

    // The rest of the body followed by something that looks like a request: the server
    // must not parse it (the stream position is lost), just close the connection.
    let mut late = vec![b'a'; 3000];
    late.extend_from_slice(b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n");
    let _ = client.write_all(&late);
    let response = read_until_closed(&mut client);
    assert!(response.starts_with("HTTP/1.1 408 "), "{:?}", response);
    assert_eq!(response.matches("HTTP/1.1 ").count(), 1, "{:?}", response);
    assert!(rx.try_recv().is_err());
    server.wait_connections(|n| n == 0, "the connection to be dropped");
}

#[test]
fn unread_body_with_a_huge_content_length_does_not_abort() {
    // Answering without reading the body (e.g. 413) drains it on drop; the drain buffer
    // used to be allocated with the size of the Content-Length.
    let server = TestServer::start(limits(16, Duration::from_millis(300)), |rq| {
        let _ = rq.respond(Response::empty(413));
    });
    let mut client = connect(server.addr);
    client
        .write_all(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 50000000000000\r\n\r\nabc")
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(client.read(&mut byte).unwrap(), 1, "{:?}", head);
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 413 "), "{:?}", head);
    // The rest of the body never comes: the connection is dropped after the read timeout.
    assert_eq!(read_until_closed(&mut client), "");
    server.wait_connections(|n| n == 0, "the connection to be dropped");
}

#[test]
fn an_endless_request_head_is_refused() {
    let (tx, rx) = mpsc::channel();
    let server = TestServer::start(limits(16, Duration::from_secs(30)), move |rq| {
        tx.send(rq.url().to_owned()).unwrap();
    });
    let mut client = connect(server.addr);
    let mut head = b"GET / HTTP/1.1\r\nX-Long: ".to_vec();
    head.resize(256 * 1024, b'a');
    // The server stops reading (and closes) after 64 KiB: the write may fail.
    let _ = client.write_all(&head);
    let _ = read_until_closed(&mut client);
    server.wait_connections(|n| n == 0, "the connection to be dropped");
    assert!(rx.try_recv().is_err(), "no request must be produced");

    // A head just under the limit still works.
    let mut ok = connect(server.addr);
    let mut head = b"GET /fine HTTP/1.1\r\nConnection: close\r\nX-Long: ".to_vec();
    head.resize(60 * 1024, b'a');
    head.extend_from_slice(b"\r\n\r\n");
    ok.write_all(&head).unwrap();
    assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), "/fine");
}

#[test]
fn dropping_the_server_stops_accepting() {
    let server = TestServer::ok(limits(2, Duration::from_secs(30)));
    let addr = server.addr;
    // Also at the cap: the unblocking connection made by `Drop` is then refused as busy.
    let _idle1 = connect(addr);
    let _idle2 = connect(addr);
    server.wait_connections(|n| n == 2, "two idle connections");
    drop(server.into_server());
    wait_until(
        || TcpStream::connect(addr).is_err(),
        "the listening socket to be closed",
    );
}

#[test]
fn from_listener_keeps_the_old_behaviour() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::from_listener(listener, None).unwrap();
    let conns: Vec<TcpStream> = (0..3).map(|_| connect(addr)).collect();
    wait_until(|| server.num_connections() == 3, "three connections");
    drop(conns);
    wait_until(|| server.num_connections() == 0, "no connection");
}

#[cfg(unix)]
#[test]
fn unix_socket_clients_get_the_read_timeout_too() {
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::time::{SystemTime, UNIX_EPOCH};

    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let path = std::env::temp_dir().join(format!(
        "tiny-http-limits-{}-{}.sock",
        std::process::id(),
        nanos
    ));
    let listener = UnixListener::bind(&path).unwrap();
    let server =
        Server::from_listener_with_limits(listener, None, limits(4, Duration::from_millis(300)))
            .unwrap();

    let mut stalled = UnixStream::connect(&path).unwrap();
    stalled.set_read_timeout(Some(DEADLINE)).unwrap();
    stalled.write_all(b"GET / HT").unwrap();
    wait_until(|| server.num_connections() == 1, "the stalled connection");
    let mut leftover = Vec::new();
    stalled.read_to_end(&mut leftover).unwrap();
    assert!(
        leftover.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&leftover)
    );
    wait_until(
        || server.num_connections() == 0,
        "the stalled connection to be dropped",
    );
    drop(server); // removes the socket file
}

#[test]
fn idle_timeout_closes_a_waiting_connection_but_not_a_begun_request() {
    // The read timeout is longer than every wait here, so a close within the
    // deadline can only come from the idle timeout.
    let server = TestServer::ok(ServerLimits {
        idle_timeout: Some(Duration::from_millis(200)),
        ..limits(16, Duration::from_secs(30))
    });

    // Answered, then closed while waiting for a next request.
    let mut kept = connect(server.addr);
    kept.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let answer = read_until_closed(&mut kept);
    assert!(
        answer.starts_with("HTTP/1.1 200 ") && answer.ends_with("ok"),
        "{:?}",
        answer
    );

    // A new connection that never sends is closed too.
    let mut silent = connect(server.addr);
    assert_eq!(read_until_closed(&mut silent), "");

    // A request that pauses after its first bytes for longer than the idle
    // timeout gets the read timeout, and its answer.
    let mut slow = connect(server.addr);
    slow.write_all(b"GET / HT").unwrap();
    thread::sleep(Duration::from_millis(600));
    slow.write_all(b"TP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let answer = read_until_closed(&mut slow);
    assert!(answer.starts_with("HTTP/1.1 200 "), "{:?}", answer);
}
