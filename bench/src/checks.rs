//! Figure: 1,000 HTTP checks at 30 s against a local server on one cairnd:
//! scheduler lag and the daemon's CPU. The bench serves `GET /ok/<n>` itself
//! (a small thread pool on 127.0.0.1, `200 OK`, connection closed after each
//! answer) and logs when each request arrives. The checks are created
//! through the API (8 clients), run for a warm-up (every check's first run
//! lands within one interval), then for a measured window. Lag is read three
//! ways: the daemon's `GET /api/v1/checks/scheduler` (milliseconds, or whole
//! seconds from older daemons, over its last 1,000 to 10,000 runs, warm-up
//! included, not exactly the window; read at both ends), the spacing of each
//! check's recorded results (whole seconds: a result's `at` is the second its
//! probe started, and the next run is due `interval_s` after it), and the
//! arrival of each request at the local server measured from the second it
//! was due (sub-second).

use crate::harness::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Worker threads of the local server.
const WORKERS: usize = 8;

fn unix_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// What the local server saw.
#[derive(Default)]
struct Seen {
    /// (check number from the path, arrival in Unix seconds) per `/ok/<n>` request.
    arrivals: Mutex<Vec<(usize, f64)>>,
    requests: AtomicU64,
    /// Requests for any other path.
    other: AtomicU64,
}

/// The HTTP server the checks probe: an acceptor thread stamps each
/// connection's arrival and hands it to a fixed pool of workers, which read
/// the request head and answer `200 OK` with `Connection: close`.
struct Server {
    port: u16,
    seen: Arc<Seen>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start() -> Res<Server> {
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(|e| format!("binding the check target: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let seen = Arc::new(Seen::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel::<(TcpStream, f64)>();
        let rx = Arc::new(Mutex::new(rx));
        let mut threads = Vec::new();
        for _ in 0..WORKERS {
            let (rx, seen) = (rx.clone(), seen.clone());
            threads.push(std::thread::spawn(move || loop {
                let next = rx.lock().expect("lock").recv();
                let Ok((stream, at)) = next else { return };
                serve(stream, at, &seen);
            }));
        }
        let stop2 = stop.clone();
        threads.push(std::thread::spawn(move || {
            for conn in listener.incoming() {
                let at = unix_f64();
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(s) = conn {
                    if tx.send((s, at)).is_err() {
                        return;
                    }
                }
            }
        }));
        Ok(Server {
            port,
            seen,
            stop,
            threads,
        })
    }

    fn requests(&self) -> u64 {
        self.seen.requests.load(Ordering::SeqCst)
    }

    /// Stops the acceptor (woken by one last connection), then the workers.
    fn shutdown(&mut self) {
        if self.threads.is_empty() {
            return;
        }
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn serve(mut s: TcpStream, at: f64, seen: &Seen) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(k) => head.extend_from_slice(&buf[..k]),
        }
    }
    let line = String::from_utf8_lossy(&head);
    let path = line.lines().next().and_then(|l| l.split_whitespace().nth(1));
    if path.is_none() {
        // The acceptor's wake-up connection at the end, or garbage.
        return;
    }
    seen.requests.fetch_add(1, Ordering::SeqCst);
    match path
        .and_then(|p| p.strip_prefix("/ok/"))
        .and_then(|n| n.parse::<usize>().ok())
    {
        Some(n) => seen.arrivals.lock().expect("lock").push((n, at)),
        None => {
            seen.other.fetch_add(1, Ordering::SeqCst);
        }
    }
    let _ = s.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
    );
    let _ = s.shutdown(std::net::Shutdown::Write);
}

/// Creates checks bench-0 … bench-(n-1) with 8 clients; returns their ids in order.
fn create_many(d: &Daemon, token: &str, n: usize, port: u16, interval: i64) -> Res<Vec<i64>> {
    parallel(d, n, 8, |http, i| {
        let body = serde_json::json!({
            "name": format!("bench-{i}"), "type": "http",
            "target": format!("http://127.0.0.1:{port}/ok/{i}"),
            "interval_s": interval, "timeout_s": 10,
        });
        let v = http.post_json("/api/v1/checks", Some(token), &body)?;
        v["id"].as_i64().ok_or_else(|| format!("no id in {v}"))
    })
}

/// `GET /api/v1/checks/scheduler`.
fn scheduler(d: &Daemon, token: &str) -> Res<Value> {
    let (status, text) = d.http().get("/api/v1/checks/scheduler", Some(token))?;
    if status != 200 {
        return Err(format!("GET /api/v1/checks/scheduler: {status} {text}"));
    }
    serde_json::from_str(&text).map_err(|e| format!("scheduler reply: {e}: {text}"))
}

/// Result timestamps (Unix seconds, ascending) and how many failed, per
/// check, from `from` to `to`; 4 clients.
fn results(d: &Daemon, token: &str, ids: &[i64], from: i64, to: i64) -> Res<Vec<(Vec<i64>, usize)>> {
    parallel(d, ids.len(), 4, |http, i| {
        let path = format!("/api/v1/checks/{}/results?from={from}&to={to}&limit=1000", ids[i]);
        let (status, text) = http.get(&path, Some(token))?;
        if status != 200 {
            return Err(format!("GET {path}: {status} {text}"));
        }
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("GET {path}: {e}"))?;
        let rows = v["data"].as_array().cloned().unwrap_or_default();
        let mut at = Vec::with_capacity(rows.len());
        let mut failed = 0;
        for r in &rows {
            let t = r["at"]
                .as_str()
                .ok_or_else(|| format!("GET {path}: no 'at' in {r}"))?;
            at.push(cairnd::clock::parse_rfc3339(t)?);
            if r["ok"] != Value::Bool(true) {
                failed += 1;
            }
        }
        at.sort_unstable();
        Ok((at, failed))
    })
}

fn threads(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(f64::NAN)
}

/// (p50, p99, max) of values.
fn pct(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (
        percentile(&v, 0.50),
        percentile(&v, 0.99),
        v.last().copied().unwrap_or(f64::NAN),
    )
}

/// A lag figure of the scheduler endpoint in milliseconds: `lag_<q>_ms`
/// where the daemon gives it, else `lag_<q>_s` (whole seconds) × 1000.
fn sched_ms(v: &Value, q: &str) -> f64 {
    v[format!("lag_{q}_ms")]
        .as_f64()
        .or_else(|| v[format!("lag_{q}_s")].as_f64().map(|s| s * 1000.0))
        .unwrap_or(f64::NAN)
}

fn sched_line(v: &Value) -> String {
    format!(
        "{} runs, lag p50 {} ms, p99 {} ms, max {} ms{}",
        v["runs"],
        sched_ms(v, "p50"),
        sched_ms(v, "p99"),
        sched_ms(v, "max"),
        if v["lag_p50_ms"].is_null() {
            " (whole seconds)"
        } else {
            ""
        }
    )
}

pub fn run(env: &Env, r: &mut Results) -> Res<()> {
    let n = env.opt("checks-count", 1000usize);
    let interval = env.opt("checks-interval", 30i64);
    let warmup = env.opt("checks-warmup", 40.0f64);
    let window = env.opt("checks-minutes", 5.0f64) * 60.0;
    let mut server = Server::start()?;
    let dir = env.fresh_dir("checks")?;
    let mut d = env.start_daemon(&dir, &[])?;
    let pid = d.pid();
    let token = d.admin_token()?;

    let t = Instant::now();
    let ids = create_many(&d, &token, n, server.port, interval)?;
    let create_s = t.elapsed().as_secs_f64();
    println!("  created {n} http checks (every {interval} s) in {create_s:.1} s; warming up {warmup:.0} s");
    r.info("checks.create_per_s", n as f64 / create_s, "checks/s");
    std::thread::sleep(Duration::from_secs_f64(warmup));

    let s0 = scheduler(&d, &token)?;
    let (req0, w0) = (server.requests(), unix_f64());
    let (cpu0, exec0, self0) = (
        cpu_seconds(pid).unwrap_or(0.0),
        thread_cpu_seconds(pid, pid).unwrap_or(0.0),
        self_cpu_seconds(),
    );
    let wb0 = io_field(pid, "write_bytes").unwrap_or(0);
    let started = Instant::now();
    println!(
        "  window starts ({:.0} s); scheduler: {}",
        window,
        sched_line(&s0)
    );
    let mut rss_max = 0u64;
    while started.elapsed().as_secs_f64() < window {
        let left = window - started.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_secs_f64(left.clamp(0.0, 5.0)));
        rss_max = rss_max.max(status_kb(pid, "VmRSS").unwrap_or(0));
        let el = started.elapsed().as_secs_f64();
        if (el as u64) % 60 < 5 && el >= 5.0 && el < window {
            println!(
                "    {el:.0} s: {} requests served in the window, cairnd {:.1}% CPU so far",
                server.requests() - req0,
                (cpu_seconds(pid).unwrap_or(0.0) - cpu0) * 100.0 / el
            );
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let w1 = unix_f64();
    let (cpu1, exec1, self1) = (
        cpu_seconds(pid).unwrap_or(0.0),
        thread_cpu_seconds(pid, pid).unwrap_or(0.0),
        self_cpu_seconds(),
    );
    let wb1 = io_field(pid, "write_bytes").unwrap_or(0);
    let req1 = server.requests();
    let rss = status_kb(pid, "VmRSS").unwrap_or(0);
    let hwm = status_kb(pid, "VmHWM").unwrap_or(0);
    let nthreads = threads(pid);
    let s1 = scheduler(&d, &token)?;
    println!("  window ends; scheduler: {}", sched_line(&s1));

    // Runs that started in the window's last second are recorded a moment
    // later: wait for them, then read results from two intervals before the
    // window (for the spacing of the first ones in it).
    std::thread::sleep(Duration::from_secs(3));
    let (from, to) = (w0.floor() as i64 - 2 * interval, w1.ceil() as i64 + 1);
    let per_check = results(&d, &token, &ids, from, to)?;
    d.stop()?;
    server.shutdown();
    let seen = &server.seen;
    let other = seen.other.load(Ordering::SeqCst);
    let mut arrivals: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for (k, at) in seen.arrivals.lock().expect("lock").iter() {
        arrivals.entry(*k).or_default().push(*at);
    }
    for v in arrivals.values_mut() {
        v.sort_by(|a, b| a.total_cmp(b));
    }

    // A result is in the window when its probe started in [w0, w1).
    let in_window = |at: i64| at as f64 >= w0.ceil() && (at as f64) < w1.ceil();
    let expected = secs / interval as f64;
    let mut counts = Vec::with_capacity(n);
    let (mut failed, mut spacing_lag, mut arrival_lag, mut unmatched) =
        (0usize, Vec::new(), Vec::new(), 0usize);
    for (i, (at, fails)) in per_check.iter().enumerate() {
        failed += fails;
        counts.push(at.iter().filter(|&&a| in_window(a)).count() as f64);
        let mine = arrivals.get(&i).map(Vec::as_slice).unwrap_or(&[]);
        for w in at.windows(2) {
            let (prev, cur) = (w[0], w[1]);
            if !in_window(cur) {
                continue;
            }
            // The scheduler queues the next run at the previous run's `at` + interval.
            let due = prev + interval;
            spacing_lag.push((cur - due) as f64);
            // This run's request: the first arrival at or after the second its probe started.
            match mine
                .iter()
                .find(|&&a| a >= cur as f64 && a < (cur + interval) as f64)
            {
                Some(a) => arrival_lag.push(a - due as f64),
                None => unmatched += 1,
            }
        }
    }
    let recorded: f64 = counts.iter().sum();
    counts.sort_by(|a, b| a.total_cmp(b));
    let short = counts.iter().filter(|&&c| c < expected.floor()).count();
    let window_requests = req1 - req0;

    r.note(format!(
        "{n} http checks every {interval} s against a local server (bench-run, {WORKERS} workers, \
         Connection: close); window {secs:.0} s after {warmup:.0} s of warm-up"
    ));
    r.info("checks.window_s", secs, "s");
    r.info("checks.results_in_window", recorded, "results");
    r.info("checks.results_expected", n as f64 * expected, "results");
    r.info("checks.results_per_check.mean", recorded / n as f64, "results");
    r.info("checks.results_per_check.expected", expected, "results");
    r.info(
        "checks.results_per_check.min",
        counts.first().copied().unwrap_or(0.0),
        "results",
    );
    r.info(
        "checks.results_per_check.max",
        counts.last().copied().unwrap_or(0.0),
        "results",
    );
    r.info("checks.checks_below_expected", short as f64, "checks");
    r.info("checks.failed_results", failed as f64, "results");
    r.info(
        "checks.server_requests_in_window",
        window_requests as f64,
        "requests",
    );
    r.info(
        "checks.server_requests_per_s",
        window_requests as f64 / secs,
        "requests/s",
    );
    r.info(
        "checks.server_requests_total",
        seen.requests.load(Ordering::SeqCst) as f64,
        "requests",
    );
    if other > 0 {
        r.note(format!("the local server saw {other} requests for other paths"));
    }

    let (p50, p99, max) = pct(spacing_lag.clone());
    println!(
        "  lag from result spacing ({} runs): p50 {p50} s, p99 {p99} s, max {max} s",
        spacing_lag.len()
    );
    r.info("checks.lag_spacing.runs", spacing_lag.len() as f64, "runs");
    r.info("checks.lag_spacing.p50", p50, "s");
    r.info("checks.lag_spacing.p99", p99, "s");
    r.info("checks.lag_spacing.max", max, "s");
    let late = spacing_lag.iter().filter(|&&l| l >= 1.0).count();
    r.info("checks.lag_spacing.runs_late_1s_or_more", late as f64, "runs");
    let (p50, p99, max) = pct(arrival_lag.iter().map(|s| s * 1000.0).collect());
    println!(
        "  request arrival after the due second ({} runs): p50 {p50:.0} ms, p99 {p99:.0} ms, max {max:.0} ms",
        arrival_lag.len()
    );
    r.info("checks.lag_arrival.runs", arrival_lag.len() as f64, "runs");
    r.info("checks.lag_arrival.p50", p50, "ms");
    r.info("checks.lag_arrival.p99", p99, "ms");
    r.info("checks.lag_arrival.max", max, "ms");
    if unmatched > 0 {
        r.note(format!(
            "{unmatched} recorded runs had no matching request at the local server"
        ));
    }
    for (tag, v) in [("start", &s0), ("end", &s1)] {
        let runs = v["runs"].as_f64().unwrap_or(f64::NAN);
        r.info(&format!("checks.scheduler_endpoint.{tag}.runs"), runs, "runs");
        for q in ["p50", "p99", "max"] {
            r.info(
                &format!("checks.scheduler_endpoint.{tag}.lag_{q}"),
                sched_ms(v, q),
                "ms",
            );
        }
    }

    let cpu = (cpu1 - cpu0) * 100.0 / secs;
    r.info("checks.daemon_cpu", cpu, "% of a core");
    r.info(
        "checks.daemon_executor_cpu",
        (exec1 - exec0) * 100.0 / secs,
        "% of a core",
    );
    r.info(
        "checks.daemon_cpu_per_run",
        (cpu1 - cpu0) * 1e6 / recorded.max(1.0),
        "µs",
    );
    r.info("checks.bench_cpu", (self1 - self0) * 100.0 / secs, "% of a core");
    r.info(
        "checks.daemon_write_bytes_per_result",
        wb1.saturating_sub(wb0) as f64 / recorded.max(1.0),
        "B",
    );
    r.info("checks.daemon_vmrss_end", mib(rss), "MiB");
    r.info("checks.daemon_vmrss_max_sampled", mib(rss_max.max(rss)), "MiB");
    r.info("checks.daemon_vmhwm", mib(hwm), "MiB");
    r.info("checks.daemon_threads_end", nthreads, "");
    Ok(())
}
