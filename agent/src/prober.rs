//! The checks the server assigns to this agent (`probes` in the ingest
//! reply), run on a thread of their own so a slow target never delays a
//! snapshot. Each check runs on its own interval, first runs spread over
//! it; results are posted to `/api/v1/agent/check-results` right away,
//! and kept in memory (bounded) while the server cannot be reached.
//! They are not spooled to disk: a check result is only worth its
//! freshness, and the server reports a check with no recent results as
//! unknown rather than down.

use crate::client::Client;
use crate::probe::{self, Trust};
use cairn_wire::{CheckResults, ProbeReport, ProbeSpec, MAX_PROBE_REPORTS};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Probes running at once.
const PARALLEL: usize = 4;
/// Results held while the server is unreachable; the oldest go first.
const MAX_PENDING: usize = 1000;

struct Scheduled {
    spec: ProbeSpec,
    due: Instant,
}

/// Starts the prober thread; send it each probe list the server returns.
pub fn start(client: Client, token: String, stop: Arc<AtomicBool>) -> Result<Sender<Vec<ProbeSpec>>, String> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("cairn-probes".into())
        .spawn(move || run(client, token, rx, stop))
        .map_err(|e| format!("starting the probe thread: {e}"))?;
    Ok(tx)
}

/// The system CA bundle for https and tls checks (as for the server
/// connection, but never the server's private `ca_file`).
fn load_trust() -> Trust {
    let path = crate::trust::bundle_path(None, std::env::var_os("SSL_CERT_FILE").map(Into::into));
    match path.and_then(|p| crate::trust::load_certs(&p)) {
        Ok(certs) => Trust::new(certs),
        Err(e) => {
            log::warn!("checks: {e}; certificates will be reported as not verified");
            Trust::none(e)
        }
    }
}

/// Merges a new list: unchanged checks keep their turn, new or changed
/// ones start within their interval (spread by id), dropped ones go.
fn merge(old: Vec<Scheduled>, new: Vec<ProbeSpec>, now: Instant) -> Vec<Scheduled> {
    new.into_iter()
        .map(|spec| {
            let due = old
                .iter()
                .find(|s| s.spec == spec)
                .map(|s| s.due)
                .unwrap_or_else(|| {
                    let spread = (spec.id.unsigned_abs().wrapping_mul(2_654_435_761))
                        % u64::from(spec.interval_s.max(1));
                    now + Duration::from_secs(spread.min(5))
                });
            Scheduled { spec, due }
        })
        .collect()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn run(client: Client, token: String, rx: Receiver<Vec<ProbeSpec>>, stop: Arc<AtomicBool>) {
    let mut list: Vec<Scheduled> = Vec::new();
    let mut pending: VecDeque<ProbeReport> = VecDeque::new();
    let mut trust: Option<Trust> = None;
    let mut warned = false;
    loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let now = Instant::now();
        let next = list.iter().map(|s| s.due).min();
        let wait = next.map_or(Duration::from_secs(3600), |d| d.saturating_duration_since(now));
        match rx.recv_timeout(wait) {
            Ok(new) => {
                if new.len() != list.len() || new.iter().zip(&list).any(|(n, o)| *n != o.spec) {
                    log::info!("running {} check(s) assigned by the server", new.len());
                }
                list = merge(list, new, Instant::now());
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {}
        }
        let now = Instant::now();
        let due: Vec<&mut Scheduled> = list.iter_mut().filter(|s| s.due <= now).collect();
        if due.is_empty() {
            continue;
        }
        let trust = trust.get_or_insert_with(load_trust).clone();
        for chunk in due.into_iter().collect::<Vec<_>>().chunks_mut(PARALLEL) {
            let reports: Vec<ProbeReport> = std::thread::scope(|scope| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|s| {
                        let (spec, trust) = (&s.spec, &trust);
                        scope.spawn(move || ProbeReport {
                            check_id: spec.id,
                            at: unix_now(),
                            outcome: probe::run(spec, trust),
                        })
                    })
                    .collect();
                handles.into_iter().filter_map(|h| h.join().ok()).collect()
            });
            for s in chunk.iter_mut() {
                s.due += Duration::from_secs(s.spec.interval_s.max(1).into());
                if s.due <= Instant::now() {
                    s.due = Instant::now() + Duration::from_secs(s.spec.interval_s.max(1).into());
                }
            }
            pending.extend(reports);
        }
        while pending.len() > MAX_PENDING {
            pending.pop_front();
        }
        while !pending.is_empty() {
            let n = pending.len().min(MAX_PROBE_REPORTS);
            let batch = CheckResults {
                results: pending.iter().take(n).cloned().collect(),
            };
            match client.check_results(&token, &batch) {
                Ok(()) => {
                    pending.drain(..n);
                    if warned {
                        log::info!("check results delivered again");
                        warned = false;
                    }
                }
                Err(e) => {
                    if !warned {
                        log::warn!(
                            "sending check results failed: {e}; {} kept for the next try",
                            pending.len()
                        );
                        warned = true;
                    }
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: i64, target: &str) -> ProbeSpec {
        ProbeSpec {
            id,
            kind: "tcp".into(),
            target: target.into(),
            interval_s: 30,
            timeout_s: 5,
            ..Default::default()
        }
    }

    #[test]
    fn merge_keeps_turns_of_unchanged_checks() {
        let now = Instant::now();
        let later = now + Duration::from_secs(20);
        let old = vec![
            Scheduled {
                spec: spec(1, "a:1"),
                due: later,
            },
            Scheduled {
                spec: spec(2, "b:1"),
                due: later,
            },
        ];
        let merged = merge(old, vec![spec(1, "a:1"), spec(2, "b:2"), spec(3, "c:1")], now);
        assert_eq!(merged.len(), 3);
        assert_eq!(merged[0].due, later, "unchanged: same turn");
        assert!(merged[1].due <= now + Duration::from_secs(5), "changed: soon");
        assert!(merged[2].due <= now + Duration::from_secs(5), "new: soon");
    }
}
