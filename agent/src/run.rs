//! `cairn-agent run`: every interval, collect → spool (durable) → flush the
//! spool to the server, until SIGTERM or SIGINT.
//!
//! Shutdown: the signals are blocked in every thread and taken by one thread
//! with sigwait, which sets `stop` and wakes the loop through a channel, so the
//! loop leaves its wait at once and a flush stops between requests. A request
//! already in flight may take up to the HTTP timeout; rather than wait for it,
//! the signal thread exits the process after a short grace. That is safe
//! because every snapshot is fsynced into the spool before any send starts,
//! and an acknowledged snapshot whose deletion is cut short is simply sent
//! again (the server ignores duplicates).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cairn_agent::client::Client;
use cairn_agent::collect::Collectors;
use cairn_agent::config;
use cairn_agent::identity::Identity;
use cairn_agent::ship::{Shipper, MAX_INTERVAL_S};
use cairn_agent::spool::Spool;
use nix::sys::signal::{SigSet, Signal};

/// From the signal to exit, at most this plus a little.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(800);

pub fn run(config_flag: Option<PathBuf>, explicit_level: bool) -> Result<(), String> {
    // Before any other thread exists (statvfs helpers, ureq's resolver), so
    // they all inherit the blocked mask and only the signal thread sees them.
    let stop = Arc::new(AtomicBool::new(false));
    let wake = watch_signals(stop.clone())?;

    let path = config::config_path(config_flag);
    let cfg = crate::load_config(&path, explicit_level)?;
    let identity = Identity::load(&cfg.state_dir)?;
    let server = match (&cfg.server, identity.server.as_str()) {
        (Some(s), enrolled) => {
            if !enrolled.is_empty() && enrolled != s {
                log::warn!(
                    "this node was enrolled with {enrolled} but {} (or CAIRN_SERVER) sets \
                     server = {s}; that server will probably reject the token",
                    path.display()
                );
            }
            s.clone()
        }
        (None, enrolled) if !enrolled.is_empty() => enrolled.to_string(),
        _ => {
            return Err(format!(
                "no server configured: set server in {} or CAIRN_SERVER",
                path.display()
            ))
        }
    };
    let spool_dir = cfg.state_dir.join("spool");
    let mut spool = Spool::open(&spool_dir, cfg.spool_max_bytes)?;
    let mut interval = initial_interval();
    log::info!(
        "cairn-agent {} starting: node {}, server {server}, every {interval} s, \
         spool {} ({} pending)",
        env!("CARGO_PKG_VERSION"),
        identity.node_id,
        spool_dir.display(),
        spool.len()
    );

    let mut collectors = Collectors::new();
    let client = Client::new(&server, cfg.ca_file.as_deref())?;
    let probes = cairn_agent::prober::start(client.clone(), identity.token.clone(), stop.clone())?;
    let mut probe_list: Option<Vec<cairn_wire::ProbeSpec>> = None;
    let mut shipper = Shipper::new(client, identity.token);
    let mut delivered_once = false;
    let mut last_second: Option<u64> = None;
    // The first snapshot comes a second after the baseline readings: rates
    // need a window, and the operator sees data without waiting an interval.
    let mut next = Instant::now() + Duration::from_secs(1);
    loop {
        if !wait_until(next, &wake, &stop) {
            break;
        }
        let tick = Instant::now();
        if !wait_for_new_second(last_second, &wake, &stop) {
            break;
        }
        let snap = collectors.collect();
        last_second = humantime::parse_rfc3339(&snap.timestamp)
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs());
        if let Err(e) = spool.append(&snap) {
            log::error!("spool: {e}; this snapshot is lost");
        }
        shipper.commit_within_s = cairn_wire::commit_within_s(interval);
        let out = shipper.flush(&mut spool, &stop);
        if out.sent > 0 && !delivered_once {
            log::info!("delivering to {server}: {} snapshot(s) accepted", out.sent);
            delivered_once = true;
        }
        if let Some(list) = out.probes.filter(|l| probe_list.as_ref() != Some(l)) {
            let _ = probes.send(list.clone());
            probe_list = Some(list);
        }
        if let Some(i) = out.interval_s.filter(|i| *i != interval) {
            log::info!("interval is now {i} s (set by the server)");
            interval = i;
        }
        log::debug!(
            "sent {}, dropped {}, {} pending ({} bytes)",
            out.sent,
            out.dropped,
            spool.len(),
            spool.bytes()
        );
        next = tick + Duration::from_secs(interval.into());
        // After a long backfill the next tick may already be past: go on, but
        // never faster than once a second.
        next = next.max(Instant::now() + Duration::from_secs(1));
    }
    log::info!("stopped; {} snapshot(s) wait in the spool", spool.len());
    Ok(())
}

/// CAIRN_AGENT_INTERVAL_S (1..=3600, for tests and impatient people), else
/// the default; the server's value replaces it after the first delivery.
fn initial_interval() -> u32 {
    let default = cairn_wire::DEFAULT_INTERVAL_S;
    match std::env::var("CAIRN_AGENT_INTERVAL_S") {
        Ok(v) if !v.trim().is_empty() => match v.trim().parse::<u32>() {
            Ok(n) if (1..=MAX_INTERVAL_S).contains(&n) => n,
            _ => {
                log::warn!(
                    "CAIRN_AGENT_INTERVAL_S={v:?} is not a number of seconds in 1..={MAX_INTERVAL_S}; \
                     using {default}"
                );
                default
            }
        },
        _ => default,
    }
}

fn watch_signals(stop: Arc<AtomicBool>) -> Result<Receiver<()>, String> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.thread_block()
        .map_err(|e| format!("blocking SIGTERM/SIGINT: {e}"))?;
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("cairn-signals".into())
        .spawn(move || {
            let sig = loop {
                if let Ok(sig) = set.wait() {
                    break sig;
                }
            };
            log::info!("{} received: stopping", sig.as_str());
            stop.store(true, Ordering::SeqCst);
            let _ = tx.send(());
            std::thread::sleep(SHUTDOWN_GRACE);
            log::warn!(
                "still busy {} ms after {} (a send in flight?); exiting now, \
                 unsent snapshots stay in the spool",
                SHUTDOWN_GRACE.as_millis(),
                sig.as_str()
            );
            std::process::exit(0);
        })
        .map_err(|e| format!("starting the signal thread: {e}"))?;
    Ok(rx)
}

/// Sleeps until `deadline`; false if asked to stop first.
fn wait_until(deadline: Instant, wake: &Receiver<()>, stop: &AtomicBool) -> bool {
    loop {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        match wake.recv_timeout(left) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            // The signal thread is gone (cannot normally happen): fall back
            // to sleeping in slices so the stop flag is still honoured.
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(left.min(Duration::from_millis(200))),
        }
    }
}

/// The server keeps one snapshot per node and second: if the clock still
/// shows the second of the previous snapshot, wait for the next one.
fn wait_for_new_second(last: Option<u64>, wake: &Receiver<()>, stop: &AtomicBool) -> bool {
    let Some(last) = last else { return true };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    if now.as_secs() != last {
        return true;
    }
    let to_next = Duration::from_secs(1).saturating_sub(Duration::from_nanos(now.subsec_nanos().into()));
    wait_until(Instant::now() + to_next + Duration::from_millis(5), wake, stop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_wakes_the_wait_at_once() {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let flag = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            flag.store(true, Ordering::SeqCst);
            let _ = tx.send(());
        });
        let started = Instant::now();
        assert!(!wait_until(started + Duration::from_secs(30), &rx, &stop));
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn never_two_snapshots_in_the_same_second() {
        let stop = AtomicBool::new(false);
        let (_tx, rx) = mpsc::channel();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert!(wait_for_new_second(Some(now), &rx, &stop));
        let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert!(after > now);
        // A different second: no wait at all.
        let started = Instant::now();
        assert!(wait_for_new_second(Some(after - 1), &rx, &stop));
        assert!(started.elapsed() < Duration::from_millis(100));
    }
}
