//! Ingest: parse and validate snapshots, then store them with group commit.
//! Requests queue their validated rows; one committer task writes everything
//! queued in a single transaction and only then answers each request, so an
//! acknowledged snapshot is always on disk and many agents share one fsync.

pub use super::native_body::parse_native;
pub use super::parse_pool::parse_off_executor;
use crate::app::{Ctx, Shared};
use crate::clock;
use crate::engine::validate;
use crate::http::ApiError;
use crate::store::history::{DiskSample, NetSample, Sample};
use crate::store::Store;
use cairn_wire::Snapshot;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Snapshots this far in the future are refused: a clock this wrong would
/// poison every chart.
pub const MAX_FUTURE_S: i64 = 300;

/// One validated snapshot, ready to store.
#[derive(Debug, Clone)]
pub struct Item {
    pub ts: i64,
    pub sample: Sample,
    /// Per-mount and per-interface figures; left empty for a batch's
    /// snapshot whose 5-minute bucket an earlier one of the request opened
    /// (`batch_item`), except the newest, whose mounts the alerts read.
    pub disks: Vec<DiskSample>,
    pub nets: Vec<NetSample>,
    /// The snapshot as the node's "latest" (JSON text). `None` for the
    /// older snapshots of a batch: only a request's newest one can become
    /// the latest, and 500 copies of the rest were most of a backfill's memory.
    pub latest: Option<String>,
    pub system: (String, String, String),
    /// CPU cores, for load per core (0: unknown).
    pub cores: u32,
}

/// (newly stored, already stored)
pub type Outcome = Result<(u32, u32), ApiError>;

struct Pending {
    node_id: String,
    items: Vec<Item>,
    /// When this request's rows must be committed at the latest.
    due: Instant,
    done: async_channel::Sender<Outcome>,
}

/// Once this many snapshots wait, they are committed without waiting for
/// their deadlines or the commit window. Past ~130 snapshots a commit saves
/// little more disk (docs/BENCHMARKS.md §4), while each waiting request
/// holds memory (~20 KB with its connection's thread): 500 agents allowing
/// 20 s would otherwise keep ~330 waiting.
pub const COMMIT_AT_WAITING: usize = 128;

/// `cairn_wire::COMMIT_WITHIN_HEADER` as `HttpRequest::header` looks it up.
pub const COMMIT_WITHIN_HEADER: &str = "cairn-commit-within";

pub struct IngestQueue {
    pending: Vec<Pending>,
    wake: async_channel::Sender<()>,
    /// Shutting down: everything queued, and queued from now on, is due at once.
    hurry: bool,
    /// The interval each node's row was last set to by this process, so
    /// that a request's reply costs no UPDATE while the interval stays put
    /// (a statement of its own, 3 % of the executor's time under a backfill).
    stored_interval: std::collections::HashMap<String, u32>,
}

impl IngestQueue {
    pub fn new() -> (IngestQueue, async_channel::Receiver<()>) {
        let (wake, rx) = async_channel::bounded(1);
        (
            IngestQueue {
                pending: Vec::new(),
                wake,
                hurry: false,
                stored_interval: Default::default(),
            },
            rx,
        )
    }

    /// Queues items for a group commit no later than `within` from now
    /// (zero: the next one); the receiver yields the outcome once they are
    /// committed (or failed).
    pub fn submit(
        &mut self,
        node_id: String,
        items: Vec<Item>,
        within: Duration,
    ) -> async_channel::Receiver<Outcome> {
        let (done, rx) = async_channel::bounded(1);
        let within = if self.hurry { Duration::ZERO } else { within };
        let now = Instant::now();
        self.pending.push(Pending {
            node_id,
            items,
            due: now + within,
            done,
        });
        if self.waiting().1 >= COMMIT_AT_WAITING {
            for p in &mut self.pending {
                p.due = p.due.min(now);
            }
        }
        let _ = self.wake.try_send(());
        rx
    }

    /// Sets the node row's interval to `interval_s` unless this process
    /// already did: offline detection uses what the agent was told.
    pub fn store_interval(&mut self, store: &Store, node_id: &str, interval_s: u32) -> rusqlite::Result<()> {
        if self.stored_interval.get(node_id) != Some(&interval_s) {
            store.set_node_interval(node_id, interval_s.into())?;
            self.stored_interval.insert(node_id.to_string(), interval_s);
        }
        Ok(())
    }

    /// How far apart commits must be now: the configured window, or none
    /// once `COMMIT_AT_WAITING` snapshots wait. The window exists to make
    /// commits big at homelab rates; one that already holds that many
    /// saves little more disk by waiting (docs/BENCHMARKS.md §4), and in a
    /// backfill storm the window only held every agent's batch back (with
    /// one batch in flight per agent, 200 agents got 9.7 k snapshots/s
    /// through a 1 s window, §1).
    pub fn window(&self, configured: Duration) -> Duration {
        if self.waiting().1 >= COMMIT_AT_WAITING {
            Duration::ZERO
        } else {
            configured
        }
    }

    /// Requests and snapshots waiting for their commit.
    pub fn waiting(&self) -> (usize, usize) {
        let snapshots = self.pending.iter().map(|p| p.items.len()).sum();
        (self.pending.len(), snapshots)
    }

    /// Makes everything queued due now (shutdown: commit before leaving).
    pub fn hurry(&mut self) {
        self.hurry = true;
        let now = Instant::now();
        for p in &mut self.pending {
            p.due = p.due.min(now);
        }
        let _ = self.wake.try_send(());
    }
}

/// How long an agent's snapshot may wait for its commit: what it asked for
/// in the `Cairn-Commit-Within` header (whole seconds), capped by the
/// server's `commit_delay_max_ms`. No header, or one that is not a number,
/// means the next commit. The header is a hint, never an error.
pub fn requested_delay(header: Option<&str>, max_ms: u64) -> Duration {
    let asked = header.and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0);
    capped_delay(asked, max_ms)
}

/// `asked_s` seconds, held to the server's cap.
pub fn capped_delay(asked_s: u64, max_ms: u64) -> Duration {
    Duration::from_millis(asked_s.saturating_mul(1000).min(max_ms))
}

/// When the next commit is due: the earliest deadline among the queued
/// requests, but never sooner than `window` after the previous commit.
/// `None` when nothing is queued.
pub fn commit_due(
    deadlines: impl Iterator<Item = Instant>,
    last_commit: Option<Instant>,
    window: Duration,
) -> Option<Instant> {
    let earliest = deadlines.min()?;
    Some(match last_commit {
        Some(t) => earliest.max(t + window),
        None => earliest,
    })
}

/// The group-commit loop. Runs forever on the executor.
///
/// Commits are spaced at least `commit_window_ms` apart: when idle, a
/// snapshot is committed at once; under load, everything that arrives within
/// the window shares one commit, until `COMMIT_AT_WAITING` snapshots wait
/// (a backfill storm), which go at the next turn. Each commit writes at
/// least one 4 KiB page per table it touches, so the commit size, not the
/// row size, sets the disk writes per snapshot (and SD-card wear) at
/// homelab rates.
///
/// An agent may let its snapshot wait longer (`Cairn-Commit-Within`): its
/// copy stays in its own spool until the reply, so nothing is at risk, and a
/// fleet of agents at 30 s that each allow 20 s shares one commit per ~20 s
/// instead of one per second (docs/BENCHMARKS.md §4). Any request without
/// the header (a labwatch agent, a backfill, curl) is due at once and takes
/// everything queued along with it. The acknowledgement still comes only
/// after the commit.
///
/// The commit's fsync runs on another thread: SQLite writes the WAL
/// (synchronous=NORMAL for these commits), the blocking pool fsyncs it at
/// once, and `acknowledge` answers nobody before that returns, so the
/// executor builds the next commit, and serves every other request, while
/// the disk works. On an SD card an fsync can take
/// tens of milliseconds; it used to stall the whole API that long, once a
/// commit. Up to `SYNCS_IN_FLIGHT` commits may wait for their fsyncs at
/// once (each commit takes a turn, given back when its answers are sent).
pub async fn committer(shared: Shared, wake: async_channel::Receiver<()>) {
    let wal = shared.borrow().store.wal_file().map(|p| p.to_path_buf());
    let (acks, unsynced) = async_channel::unbounded();
    let turn = std::sync::Arc::new(smol::lock::Semaphore::new(SYNCS_IN_FLIGHT));
    let sync = move || match &wal {
        Some(path) => sync_file(path),
        None => Ok(()),
    };
    smol::future::zip(commit_loop(shared, wake, acks, turn, sync), acknowledge(unsynced)).await;
}

/// Commits whose fsync may be running at once. With one, a backfill's
/// commits alternated with their fsyncs: the next commit began only once
/// the previous fsync had returned and the executor had answered its
/// requests (~6 ms a commit on this VM, for a ~1.5 ms fsync), so the
/// executor stored for less than half the time. With two, the next commit
/// is written while the previous one syncs (docs/BENCHMARKS.md §1, stop 23).
///
/// That is safe: a commit's answers still wait for its own fsync, which
/// starts after the commit has written its frames, and frames written
/// meanwhile by the next commit follow them in the WAL (a crash loses
/// only those, unanswered). SQLite starts the WAL over only once a
/// checkpoint has copied every frame, and the checkpoint connection
/// (synchronous=FULL) syncs the WAL before it copies and the database
/// after, so a commit still waiting for its fsync is on disk by then.
/// More would split a storm into yet smaller commits, each rewriting the
/// same index pages to the WAL.
const SYNCS_IN_FLIGHT: usize = 2;

/// Each request's outcome, and (request, item) for each item that became
/// its node's latest.
type Committed = (Vec<Outcome>, Vec<(usize, usize)>);

/// One commit's answers, sent once the WAL is on disk; the committer's
/// turn, given back then; and the fsync, already running on the blocking pool.
type Acks = (
    Vec<(async_channel::Sender<Outcome>, Outcome)>,
    smol::lock::SemaphoreGuardArc,
    smol::Task<std::io::Result<()>>,
);

fn sync_file(path: &std::path::Path) -> std::io::Result<()> {
    // Opened each time: the fsync must reach the file SQLite writes now.
    std::fs::File::open(path)?.sync_data()
}

/// Answers each commit's requests once its fsync has returned; a failed
/// fsync fails them (the agents keep their copies and send again, and
/// duplicates are recognised).
async fn acknowledge(unsynced: async_channel::Receiver<Acks>) {
    while let Ok((answers, _turn, synced)) = unsynced.recv().await {
        let started = Instant::now();
        let synced = synced.await;
        log::trace!(
            "ingest fsync done {} µs after the commit's answers were queued",
            started.elapsed().as_micros()
        );
        if let Err(e) = &synced {
            log::error!("syncing the database's WAL after an ingest commit: {e}");
        }
        for (done, outcome) in answers {
            let outcome = match (&synced, outcome) {
                (Err(e), Ok(_)) => Err(ApiError::internal(format!("syncing the database's WAL: {e}"))),
                (_, outcome) => outcome,
            };
            let _ = done.try_send(outcome);
        }
    }
}

async fn commit_loop(
    shared: Shared,
    wake: async_channel::Receiver<()>,
    acks: async_channel::Sender<Acks>,
    turn: std::sync::Arc<smol::lock::Semaphore>,
    sync: impl Fn() -> std::io::Result<()> + Clone + Send + 'static,
) {
    let mut last_commit: Option<Instant> = None;
    loop {
        let due = {
            let ctx = shared.borrow();
            let window = ctx.ingest.window(Duration::from_millis(ctx.cfg.commit_window_ms));
            commit_due(ctx.ingest.pending.iter().map(|p| p.due), last_commit, window)
        };
        match due {
            None => {
                // While commits follow one another the executor keeps its
                // spare small blocks; every wait gives them back.
                crate::alloc::release_idle_memory();
                if wake.recv().await.is_err() {
                    return;
                }
                continue;
            }
            Some(at) if at > Instant::now() => {
                crate::alloc::release_idle_memory();
                // A request due sooner may arrive meanwhile.
                let woke = smol::future::or(async { wake.recv().await.is_ok() }, async {
                    async_io::Timer::at(at).await;
                    true
                })
                .await;
                if !woke {
                    return;
                }
                continue;
            }
            Some(_) => {}
        }
        // A WAL grown past its limit is copied to the database first, so
        // that this commit starts it over. Then a turn (no more than
        // `SYNCS_IN_FLIGHT` commits wait for their fsyncs); then every
        // request task that is already runnable queues its rows.
        let asked = Instant::now();
        let backlog = shared.borrow().store.wal_backlog();
        if let Some(backlog) = backlog {
            backlog.copied().await;
        }
        let my_turn = turn.acquire_arc().await;
        let waited = asked.elapsed();
        smol::future::yield_now().await;
        let mut ctx = shared.borrow_mut();
        let batch = std::mem::take(&mut ctx.ingest.pending);
        if batch.is_empty() {
            continue;
        }
        let started = Instant::now();
        let (results, newest) = commit(&mut ctx.store, &batch);
        // Started here and now, not when `acknowledge` is next polled: the
        // executor has every request task that woke during the commit to
        // run first, and meanwhile the disk would sit idle (7 of the 11 ms
        // the next commit waited, under a backfill; docs/BENCHMARKS.md §1).
        let synced = smol::unblock(sync.clone());
        last_commit = Some(Instant::now());
        log::trace!(
            "ingest commit: {} requests, {} snapshots, {} µs after {} µs waiting for an fsync or checkpoint",
            batch.len(),
            batch.iter().map(|p| p.items.len()).sum::<usize>(),
            started.elapsed().as_micros(),
            waited.as_micros()
        );
        // Alerts look at what was committed: an alert-side failure never
        // fails an ingest.
        let settings = crate::engine::alerts::Settings::of(&ctx.cfg);
        let now = crate::clock::now();
        let Ctx { store, alerting, .. } = &mut *ctx;
        for (i, j) in newest {
            let (p, item) = (&batch[i], &batch[i].items[j]);
            if let Err(e) = alerting.observe(store, &p.node_id, item, &settings, now) {
                log::error!("evaluating alerts for {}: {e}", p.node_id);
            }
        }
        ctx.wake_outbox();
        drop(ctx);
        let (answers, spent): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .zip(results)
            .map(|(p, outcome)| ((p.done, outcome), p.items))
            .unzip();
        crate::engine::parse_pool::dispose(spent);
        if let Err(e) = acks.try_send((answers, my_turn, synced)) {
            // Unreachable while `committer` runs `acknowledge`; if it ever
            // were, nothing may be acknowledged without its fsync.
            let (answers, _, _) = e.into_inner();
            for (done, _) in answers {
                let _ = done.try_send(Err(ApiError::internal("ingest acknowledger stopped")));
            }
        }
    }
}

/// Commits a batch; returns each request's outcome and, per request that
/// stored something, (request index, index of its newest item) when that
/// item became the node's latest.
///
/// The batch goes first into one plain transaction. Only if a request fails
/// inside it is everything rolled back and stored again with a savepoint per
/// request, so that one failing node (deleted meanwhile, say) does not cost
/// the others their commit. Savepoints are not free: SQLite copies every
/// page a savepoint touches to a statement journal first, a temporary file
/// beyond 64 KiB; that was a fifth of the executor's time under a backfill.
fn commit(store: &mut Store, batch: &[Pending]) -> Committed {
    // The WAL's fsync is left to the blocking pool, off the executor.
    let outcome = match store.relaxed_commits(true) {
        Ok(()) => commit_relaxed(store, batch),
        Err(e) => fail_all(batch, e),
    };
    if let Err(e) = store.relaxed_commits(false) {
        log::error!("restoring synchronous commits: {e}");
    }
    outcome
}

fn fail_all(batch: &[Pending], e: rusqlite::Error) -> Committed {
    let err = ApiError::internal(format!("committing ingest batch: {e}"));
    (batch.iter().map(|_| Err(err.clone())).collect(), Vec::new())
}

fn commit_relaxed(store: &mut Store, batch: &[Pending]) -> Committed {
    let stored = match store_batch(store, batch, false) {
        Ok(stored) => Ok(stored),
        Err(e) => {
            log::debug!(
                "ingest batch of {} requests failed as a whole ({e}); one by one",
                batch.len()
            );
            let _ = store.conn.execute_batch("ROLLBACK");
            // The attempt marked detail buckets it no longer stores: let the
            // retry store them (at worst a bucket gets a second detail row).
            store.forget_detail_marks(batch.iter().map(|p| p.node_id.as_str()));
            store_batch(store, batch, true)
        }
    };
    let committed = stored.and_then(|ok| store.conn.execute_batch("COMMIT").map(|()| ok));
    let (results, mut newest) = match committed {
        Ok(ok) => ok,
        Err(e) => {
            let _ = store.conn.execute_batch("ROLLBACK");
            return fail_all(batch, e);
        }
    };
    // Only committed data becomes a node's latest.
    // A backfilled item older than what the node already showed is history,
    // not news: it is neither the latest nor evaluated.
    newest.retain(|&(i, j)| {
        let (node_id, item) = (&batch[i].node_id, &batch[i].items[j]);
        // The parser gives its detail to the first of a request's newest
        // snapshots, which is the one stored here unless it was a duplicate;
        // then the node already showed it, and an older item is not news.
        let Some(json) = &item.latest else {
            return false;
        };
        store.note_latest(node_id, item.ts, json.clone(), item.sample.clone())
    });
    (results, newest)
}

/// Stores a batch inside a new transaction, left open for the caller to
/// commit. Without savepoints (`isolate` false), the first failing request
/// fails the whole attempt; with them, it fails alone.
fn store_batch(store: &mut Store, batch: &[Pending], isolate: bool) -> rusqlite::Result<Committed> {
    store.conn.execute_batch("BEGIN IMMEDIATE")?;
    let mut results = Vec::with_capacity(batch.len());
    let mut newest = Vec::with_capacity(batch.len());
    for (pi, p) in batch.iter().enumerate() {
        let r = if isolate {
            store
                .conn
                .execute_batch("SAVEPOINT one")
                .and_then(|()| store_items(store, &p.node_id, &p.items))
        } else {
            store_items(store, &p.node_id, &p.items)
        };
        match r {
            Ok((new, dup, item)) => {
                if isolate {
                    store.conn.execute_batch("RELEASE one")?;
                }
                results.push(Ok((new, dup)));
                if let Some(j) = item {
                    newest.push((pi, j));
                }
            }
            Err(e) if isolate => {
                store.conn.execute_batch("ROLLBACK TO one; RELEASE one")?;
                results.push(Err(ApiError::internal(format!(
                    "storing snapshots of {}: {e}",
                    p.node_id
                ))));
            }
            Err(e) => return Err(e),
        }
    }
    Ok((results, newest))
}

/// Stores one snapshot's rows: the sample, plus the per-disk and
/// per-interface rows when the node's 5-minute detail bucket wants them.
/// `seq` is the node's number (`Store::sample_node`). Returns the rows
/// written, or `None` for a duplicate (same node and second).
pub fn insert_item(store: &mut Store, node_id: &str, seq: i64, item: &Item) -> rusqlite::Result<Option<u64>> {
    let (disks, nets) = if store.wants_detail(node_id, item.ts) {
        (&item.disks[..], &item.nets[..])
    } else {
        (&[][..], &[][..])
    };
    Ok(store
        .insert_sample(node_id, seq, &item.sample, disks, nets)?
        .then(|| 1 + (disks.len() + nets.len()) as u64))
}

/// Stores one request's items; returns (new, duplicates, index of the newest new item).
fn store_items(
    store: &mut Store,
    node_id: &str,
    items: &[Item],
) -> rusqlite::Result<(u32, u32, Option<usize>)> {
    let (mut new, mut dup) = (0, 0);
    let mut newest: Option<usize> = None;
    let mut oldest_new: Option<i64> = None;
    let seq = store.sample_node(node_id)?;
    for (j, item) in items.iter().enumerate() {
        if insert_item(store, node_id, seq, item)?.is_some() {
            new += 1;
            oldest_new = Some(oldest_new.map_or(item.ts, |t| t.min(item.ts)));
            // A re-sent duplicate never replaces what was stored first.
            if newest.is_none_or(|n| item.ts >= items[n].ts) {
                newest = Some(j);
            }
        } else {
            dup += 1;
        }
    }
    // One dirty mark per request: the rollup pass recomputes from the oldest.
    if let Some(ts) = oldest_new {
        store.mark_rollup_dirty(node_id, ts)?;
    }
    if let Some(item) = newest.map(|n| &items[n]) {
        let (os, arch, ver) = &item.system;
        if !os.is_empty() || !arch.is_empty() || !ver.is_empty() {
            store.update_node_system(node_id, os, arch, ver)?;
        }
    }
    Ok((new, dup, newest))
}

/// Parses a request body as JSON, mapping parser failures to a 400.
/// serde_json bounds nesting at 128 levels and rejects NaN/Infinity.
/// When one value is at fault (`1e999`, a bare `NaN`, bad UTF-8 in a
/// string) the message names its field, like every other bad-input error.
pub fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("the request body is empty; JSON expected"));
    }
    let malformed = |msg: String| ApiError::new(400, "malformed_json", msg);
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: Value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let e = e.into_inner();
        // A truncated body or runaway nesting is not one field's fault.
        if e.is_eof() || path == "." || path.contains('?') || path.len() > 200 {
            malformed(format!("malformed JSON: {e}"))
        } else {
            malformed(format!("field '{path}': malformed JSON: {e}"))
        }
    })?;
    de.end().map_err(|e| malformed(format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// What an item keeps as the node's latest detail.
pub enum Detail {
    /// This JSON (the client's, which may carry collectors we do not model yet).
    Json(Value),
    /// This text, already checked to be the JSON object the snapshot was read from.
    Text(String),
    /// The snapshot as modelled.
    Modelled,
    /// Nothing: an older snapshot of a batch.
    Skip,
}

/// Validates a snapshot and derives its stored rows.
pub fn to_item(snap: Snapshot, detail: Detail, prefix: &str, now: i64) -> Result<Item, ApiError> {
    batch_item(&snap, detail, prefix, now, None)
}

/// `to_item` for a snapshot of a batch; `previous` is the time of the one
/// before it in the request. A snapshot in the same 5-minute bucket as that
/// one never has its per-mount and per-interface detail stored (the store
/// takes the first of each bucket, and a request's items are stored in
/// order), so its item goes without them: under a backfill those copies
/// were four of the ten blocks the parse threads allocated per snapshot.
pub fn batch_item(
    snap: &Snapshot,
    detail: Detail,
    prefix: &str,
    now: i64,
    previous: Option<i64>,
) -> Result<Item, ApiError> {
    let tfield = |msg: String| ApiError::field(&format!("{prefix}timestamp"), msg);
    if snap.timestamp.is_empty() {
        return Err(tfield("is required (RFC 3339 UTC)".into()));
    }
    let ts = clock::parse_iso8601(&snap.timestamp).map_err(tfield)?;
    if ts > now + MAX_FUTURE_S {
        return Err(tfield(format!(
            "is {} s in the future; check the agent's clock",
            ts - now
        )));
    }
    if ts < 946_684_800 {
        return Err(tfield("is before the year 2000".into()));
    }
    validate::snapshot(snap, prefix)?;
    let sample = sample_of(ts, snap);
    let rows = previous.is_none_or(|p| crate::store::latest::new_detail_bucket(p, ts));
    let (disks, nets) = if rows {
        detail_rows(snap)
    } else {
        Default::default()
    };
    let latest = match detail {
        Detail::Json(v) => Some(v.to_string()),
        Detail::Text(t) => Some(t),
        Detail::Modelled => serde_json::to_string(snap).ok(),
        Detail::Skip => None,
    };
    Ok(Item {
        ts,
        sample,
        disks,
        nets,
        latest,
        system: (
            snap.system.os.clone(),
            snap.system.arch.clone(),
            snap.system.agent_version.clone(),
        ),
        cores: snap.cpu.count,
    })
}

/// A snapshot's per-mount and per-interface figures, as stored.
/// Copies, not the snapshot's own strings: moved, they stayed where the
/// parse had put them, among its short-lived blocks, and a backfill left
/// the static build's heap fragmented (RSS after 500 nodes' day of history
/// 20.2 MiB against 14.8 with copies; docs/BENCHMARKS.md §2).
pub fn detail_rows(snap: &Snapshot) -> (Vec<DiskSample>, Vec<NetSample>) {
    let disks = snap
        .disks
        .iter()
        .map(|d| DiskSample {
            mount: d.mount.clone(),
            used_percent: d.used_percent,
            used_bytes: d.used_bytes,
            total_bytes: d.total_bytes,
        })
        .collect();
    let nets = snap
        .net
        .iter()
        .map(|n| NetSample {
            interface: n.interface.clone(),
            rx: n.rx_bytes_per_s,
            tx: n.tx_bytes_per_s,
        })
        .collect();
    (disks, nets)
}

/// The wide row: fleet-level numbers of one snapshot.
pub fn sample_of(ts: i64, s: &Snapshot) -> Sample {
    let max = |it: &mut dyn Iterator<Item = f64>| {
        it.fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
    };
    let sum =
        |it: &mut dyn Iterator<Item = f64>| it.fold(None, |m: Option<f64>, v| Some(m.unwrap_or(0.0) + v));
    let has_mem = s.memory.total_bytes > 0 || s.memory.used_percent > 0.0;
    Sample {
        ts,
        values: [
            Some(s.cpu.total_percent),
            has_mem.then_some(s.memory.used_percent),
            (s.memory.swap_total_bytes > 0).then_some(s.memory.swap_percent),
            Some(s.load.load1),
            Some(s.load.load5),
            Some(s.load.load15),
            max(&mut s.disks.iter().map(|d| d.used_percent)),
            max(&mut s.temperatures.iter().map(|t| t.celsius)),
            sum(&mut s.net.iter().map(|n| n.rx_bytes_per_s)),
            sum(&mut s.net.iter().map(|n| n.tx_bytes_per_s)),
            sum(&mut s.disk_io.iter().map(|d| d.read_bytes_per_s)),
            sum(&mut s.disk_io.iter().map(|d| d.write_bytes_per_s)),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_wire::IngestBatch;

    const NOW: i64 = 1_795_445_400;

    fn pending(node: &str, stamps: &[i64]) -> Pending {
        let items = stamps
            .iter()
            .map(|&ts| to_item(with_rows(ts), Detail::Modelled, "", NOW).unwrap())
            .collect();
        Pending {
            node_id: node.into(),
            items,
            due: Instant::now(),
            done: async_channel::bounded(1).0,
        }
    }

    #[test]
    fn answers_wait_for_the_fsync() {
        use std::sync::{mpsc, Arc, Mutex};
        let (acks, unsynced) = async_channel::unbounded();
        let (started_tx, started) = mpsc::channel();
        let (release, gate) = mpsc::channel::<std::io::Result<()>>();
        let gate = Arc::new(Mutex::new(gate));
        let sync = move || {
            let _ = started_tx.send(());
            gate.lock().unwrap().recv().unwrap()
        };
        let turns = Arc::new(smol::lock::Semaphore::new(1));
        let turn = || turns.try_acquire_arc().unwrap();
        let (d1, r1) = async_channel::bounded(1);
        let (d2, r2) = async_channel::bounded(1);
        acks.try_send((
            vec![(d1, Ok((1, 0))), (d2, Ok((2, 1)))],
            turn(),
            smol::unblock(sync.clone()),
        ))
        .unwrap();
        let worker = std::thread::spawn(move || smol::block_on(acknowledge(unsynced)));
        started.recv().unwrap();
        assert!(
            r1.try_recv().is_err() && r2.try_recv().is_err(),
            "answered before the fsync"
        );
        assert!(
            turns.try_acquire_arc().is_none(),
            "the turn came back before the fsync"
        );
        release.send(Ok(())).unwrap();
        assert_eq!(r1.recv_blocking().unwrap().unwrap(), (1, 0));
        assert_eq!(r2.recv_blocking().unwrap().unwrap(), (2, 1));
        // Answered, and the committer's turn is back.
        let t = smol::block_on(turns.acquire_arc());
        // A failed fsync fails what it covered; a refusal stays a refusal.
        let (d3, r3) = async_channel::bounded(1);
        let (d4, r4) = async_channel::bounded(1);
        acks.try_send((
            vec![(d3, Ok((1, 0))), (d4, Err(ApiError::bad_request("no")))],
            t,
            smol::unblock(sync),
        ))
        .unwrap();
        started.recv().unwrap();
        release.send(Err(std::io::Error::other("disk gone"))).unwrap();
        assert_eq!(r3.recv_blocking().unwrap().unwrap_err().status, 500);
        assert_eq!(r4.recv_blocking().unwrap().unwrap_err().status, 400);
        drop(acks);
        worker.join().unwrap();
    }

    #[test]
    fn a_failing_request_fails_alone_and_the_others_keep_their_detail_rows() {
        let mut store = Store::memory_with_node("a");
        store
            .insert_node(&crate::store::nodes::NewNode::agent("b", 30), 0)
            .unwrap();
        let t = NOW - 600;
        let batch = [
            pending("a", &[t, t + 30]),
            pending("gone", &[t]),
            pending("b", &[t]),
        ];
        let (results, newest) = commit(&mut store, &batch);
        let counts: Vec<Option<(u32, u32)>> = results.iter().map(|r| r.as_ref().ok().copied()).collect();
        assert_eq!(counts, vec![Some((2, 0)), None, Some((1, 0))]);
        assert_eq!(results[1].as_ref().unwrap_err().status, 500);
        assert_eq!(newest, vec![(0, 1), (2, 0)]);
        let count = |sql: &str| -> i64 { store.conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(count("SELECT count(*) FROM samples"), 3);
        // The first attempt (one transaction) failed on "gone" after storing
        // a's rows; the retry must still store a's per-mount detail.
        assert_eq!(count("SELECT count(*) FROM samples WHERE detail IS NOT NULL"), 2);
        // A batch without failures commits in one go, duplicates counted.
        let (results, _) = commit(&mut store, &[pending("a", &[t + 30, t + 60])]);
        assert_eq!(results[0].as_ref().ok(), Some(&(1, 1)));
    }

    fn with_rows(ts: i64) -> Snapshot {
        Snapshot {
            timestamp: clock::rfc3339(ts),
            disks: vec![cairn_wire::Disk {
                mount: "/".into(),
                total_bytes: 100,
                used_bytes: 40,
                used_percent: 40.0,
                ..Default::default()
            }],
            net: vec![cairn_wire::NetIf {
                interface: "eth0".into(),
                rx_bytes_per_s: 10.0,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// The store's (ts_node, detail) rows after committing `items` as one request.
    fn stored_detail(items: Vec<Item>) -> Vec<(i64, Option<String>)> {
        let mut store = Store::memory_with_node("a");
        let p = Pending {
            node_id: "a".into(),
            items,
            due: Instant::now(),
            done: async_channel::bounded(1).0,
        };
        let (results, _) = commit(&mut store, &[p]);
        assert!(results[0].is_ok(), "{:?}", results[0]);
        let mut st = store
            .conn
            .prepare("SELECT ts_node, detail FROM samples ORDER BY ts_node")
            .unwrap();
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        rows.collect::<rusqlite::Result<_>>().unwrap()
    }

    #[test]
    fn batch_items_drop_only_detail_the_store_would_not_keep() {
        // 40 snapshots 30 s apart from mid-bucket, two swapped, one repeated.
        let t0 = NOW - 7200 + 150;
        let mut stamps: Vec<i64> = (0..40).map(|k| t0 + 30 * k).collect();
        stamps.swap(20, 25);
        stamps.insert(30, stamps[29]);
        let full: Vec<Item> = stamps
            .iter()
            .map(|&ts| to_item(with_rows(ts), Detail::Skip, "", NOW).unwrap())
            .collect();
        let mut previous = None;
        let trimmed: Vec<Item> = stamps
            .iter()
            .map(|&ts| {
                let item = batch_item(&with_rows(ts), Detail::Skip, "", NOW, previous).unwrap();
                previous = Some(ts);
                item
            })
            .collect();
        let without = trimmed.iter().filter(|i| i.disks.is_empty() && i.nets.is_empty());
        assert!(without.count() >= 30, "most snapshots go without their rows");
        let stored = stored_detail(full);
        assert_eq!(stored_detail(trimmed), stored, "the same detail is stored");
        assert!(stored.iter().filter(|(_, d)| d.is_some()).count() >= 5);
    }

    #[test]
    fn the_newest_snapshot_of_a_batch_keeps_its_mounts_for_the_alerts() {
        // Three snapshots in one 5-minute bucket, the newest in the middle.
        let t = (NOW - 3600).div_euclid(300) * 300;
        let batch = IngestBatch {
            snapshots: [t, t + 60, t + 30].into_iter().map(with_rows).collect(),
        };
        let body = serde_json::to_vec(&batch).unwrap();
        for items in [
            parse_native(&body, NOW).unwrap(),
            crate::engine::native_body::parse_checked(&body, NOW).unwrap(),
        ] {
            let rows: Vec<usize> = items.iter().map(|i| i.disks.len() + i.nets.len()).collect();
            assert_eq!(rows, vec![2, 2, 0], "the first and the newest keep theirs");
            assert!(items[1].latest.is_some());
        }
    }

    /// A snapshot with every field set, as an agent on a busy host sends it.
    fn rich(ts: i64, k: f64) -> Snapshot {
        use cairn_wire::*;
        Snapshot {
            timestamp: clock::rfc3339(ts),
            hostname: "pi".into(),
            system: SystemInfo {
                os: "Debian".into(),
                kernel: "6.1".into(),
                arch: "aarch64".into(),
                model: "Raspberry Pi 4".into(),
                agent_version: "0.1.0".into(),
            },
            cpu: Cpu {
                total_percent: 10.0 + k,
                per_core: vec![5.0, 15.0 + k],
                count: 2,
            },
            memory: Memory {
                total_bytes: 4 << 30,
                used_bytes: 1 << 30,
                available_bytes: 3 << 30,
                used_percent: 25.0 + k,
                swap_total_bytes: 1 << 20,
                swap_used_bytes: 1 << 10,
                swap_percent: 0.1,
            },
            load: Load {
                load1: 0.5 + k,
                load5: 0.4,
                load15: 0.3,
            },
            uptime_seconds: 1000,
            disks: ["/", "/srv"]
                .iter()
                .enumerate()
                .map(|(i, m)| Disk {
                    mount: m.to_string(),
                    device: "/dev/sda1".into(),
                    fstype: "ext4".into(),
                    total_bytes: 1 << 40,
                    used_bytes: 1 << 39,
                    free_bytes: 1 << 39,
                    used_percent: 50.0 + i as f64 + k,
                    inodes_total: 1000,
                    inodes_used: 10,
                })
                .collect(),
            disk_io: vec![DiskIo {
                device: "sda".into(),
                read_bytes_per_s: 100.0 + k,
                write_bytes_per_s: 200.0,
                reads_per_s: 1.0,
                writes_per_s: 2.0,
            }],
            net: vec![NetIf {
                interface: "eth0".into(),
                rx_bytes_per_s: 300.0 + k,
                tx_bytes_per_s: 400.0,
                rx_bytes_total: 5,
                tx_bytes_total: 6,
                rx_errors: 0,
                tx_errors: 1,
            }],
            temperatures: vec![Temperature {
                sensor: "cpu_thermal".into(),
                celsius: 50.0 + k,
                high_celsius: Some(80.0),
                critical_celsius: Some(90.0),
            }],
            pi: Some(PiThrottle::from_raw(0x50005)),
            processes: vec![Process {
                pid: 1,
                name: "init".into(),
                cpu_percent: 0.5,
                memory_bytes: 4096,
            }],
        }
    }

    #[test]
    fn a_batch_sent_charted_stores_what_the_whole_batch_stores() {
        // Across two 5-minute buckets, one timestamp repeated, the newest
        // in the middle.
        let t = (NOW - 3600).div_euclid(300) * 300 + 240;
        let stamps = [t, t + 30, t + 90, t + 60, t + 60];
        let snaps: Vec<Snapshot> = stamps
            .iter()
            .zip(0..)
            .map(|(&ts, k)| rich(ts, k as f64))
            .collect();
        let whole = serde_json::to_vec(&IngestBatch {
            snapshots: snaps.clone(),
        })
        .unwrap();
        let charted = serde_json::to_vec(&cairn_wire::OutgoingBatch::of(&snaps)).unwrap();
        assert!(
            charted.len() * 2 < whole.len() + snaps.len() * 200,
            "charted {} bytes, whole {}",
            charted.len(),
            whole.len()
        );
        // Everything an item carries but `system`, which only a request's
        // newest item gives to its node (`store_items`).
        let key = |i: &Item| {
            (
                i.ts,
                i.sample.clone(),
                i.disks.clone(),
                i.nets.clone(),
                i.latest.clone(),
                i.cores,
            )
        };
        for parse in [parse_native, crate::engine::native_body::parse_checked] {
            let a: Vec<_> = parse(&whole, NOW).unwrap().iter().map(key).collect();
            let b: Vec<_> = parse(&charted, NOW).unwrap().iter().map(key).collect();
            assert_eq!(format!("{a:?}"), format!("{b:?}"));
            assert!(b[2].4.is_some(), "the newest keeps its detail");
        }
        // And stored, row for row.
        let items = |body: &[u8]| parse_native(body, NOW).unwrap();
        assert_eq!(stored_detail(items(&whole)), stored_detail(items(&charted)));
    }

    #[test]
    fn a_commit_is_due_at_the_earliest_deadline_but_not_inside_the_window() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let window = s(1);
        assert_eq!(
            commit_due(std::iter::empty(), None, window),
            None,
            "nothing queued"
        );
        // Idle server: an urgent request is due when it arrives.
        assert_eq!(commit_due([t0].into_iter(), None, window), Some(t0));
        assert_eq!(
            commit_due([t0 + s(15), t0].into_iter(), Some(t0 - s(5)), window),
            Some(t0)
        );
        // Relaxed requests alone wait for the first of their deadlines.
        assert_eq!(
            commit_due([t0 + s(15), t0 + s(9)].into_iter(), Some(t0 - s(5)), window),
            Some(t0 + s(9))
        );
        // Right after a commit, even an urgent request waits out the window.
        assert_eq!(
            commit_due(
                [t0, t0 + s(15)].into_iter(),
                Some(t0 - Duration::from_millis(200)),
                window
            ),
            Some(t0 + Duration::from_millis(800))
        );
    }

    #[test]
    fn the_requested_delay_is_whole_seconds_capped_by_the_server() {
        let max = 20_000;
        assert_eq!(requested_delay(None, max), Duration::ZERO);
        assert_eq!(requested_delay(Some("10"), max), Duration::from_secs(10));
        assert_eq!(
            requested_delay(Some(" 60 "), max),
            Duration::from_secs(20),
            "capped"
        );
        assert_eq!(requested_delay(Some("60"), 0), Duration::ZERO, "turned off");
        for junk in ["", "-3", "1.5", "soon", "99999999999999999999999"] {
            assert_eq!(requested_delay(Some(junk), max), Duration::ZERO, "{junk:?}");
        }
        assert_eq!(
            requested_delay(Some("18446744073709551615"), max),
            Duration::from_secs(20)
        );
        assert_eq!(
            cairn_wire::commit_within_s(30),
            20,
            "what an agent at the default interval asks"
        );
        assert_eq!(
            cairn_wire::commit_within_s(1),
            0,
            "a test agent at 1 s asks for nothing"
        );
        assert_eq!(cairn_wire::commit_within_s(3600), 25);
    }

    #[test]
    fn the_header_name_is_the_wire_one_lower_cased() {
        assert_eq!(
            COMMIT_WITHIN_HEADER,
            cairn_wire::COMMIT_WITHIN_HEADER.to_ascii_lowercase()
        );
    }

    fn item(ts: i64) -> Item {
        let snap = Snapshot {
            timestamp: crate::clock::rfc3339(ts),
            ..Snapshot::default()
        };
        to_item(snap, Detail::Skip, "", ts).expect("an empty snapshot is valid")
    }

    #[test]
    fn the_next_commit_is_written_while_the_previous_one_syncs() {
        use std::sync::{mpsc, Arc, Mutex};
        let (shared, wake) = crate::app::Ctx::for_tests();
        let node = crate::store::nodes::NewNode::agent("a", 30);
        shared.borrow().store.insert_node(&node, 0).unwrap();
        // Each fsync says it started, then waits to be released (in order).
        let (started_tx, started) = mpsc::channel();
        let (release, gate) = mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let sync = move || {
            let _ = started_tx.send(());
            gate.lock().unwrap().recv().map_err(std::io::Error::other)
        };
        let (acks, unsynced) = async_channel::unbounded();
        let turns = Arc::new(smol::lock::Semaphore::new(SYNCS_IN_FLIGHT));
        let ex = smol::LocalExecutor::new();
        ex.spawn(commit_loop(shared.clone(), wake, acks, turns, sync))
            .detach();
        ex.spawn(acknowledge(unsynced)).detach();
        let stored = || -> i64 {
            let ctx = shared.borrow();
            ctx.store
                .conn
                .query_row("SELECT count(*) FROM samples", [], |r| r.get(0))
                .unwrap()
        };
        let submit = |ts: i64| {
            shared
                .borrow_mut()
                .ingest
                .submit("a".into(), vec![item(ts)], Duration::ZERO)
        };
        // Runs the executor until `done` holds (the fsyncs run on other threads).
        let until = |what: &str, done: &dyn Fn() -> bool| {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                while ex.try_tick() {}
                if done() {
                    return;
                }
                assert!(Instant::now() < deadline, "timed out waiting for {what}");
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        let r1 = submit(NOW);
        until("the first commit and its fsync", &|| {
            stored() == 1 && started.try_recv().is_ok()
        });
        let r2 = submit(NOW + 30);
        until("the second commit, its fsync running", &|| {
            stored() == 2 && started.try_recv().is_ok()
        });
        assert!(
            r1.try_recv().is_err() && r2.try_recv().is_err(),
            "answered before an fsync"
        );
        // Two commits wait for their fsyncs: a third waits for a turn.
        let r3 = submit(NOW + 60);
        let settle = Instant::now() + Duration::from_millis(100);
        until("a moment", &|| Instant::now() > settle);
        assert_eq!(stored(), 2, "a third commit while two fsyncs run");
        release.send(()).unwrap();
        until("the first answer", &|| !r1.is_empty());
        assert_eq!(r1.try_recv().unwrap().unwrap(), (1, 0));
        assert!(
            r2.try_recv().is_err(),
            "the second answered with its fsync still running"
        );
        until("the third commit", &|| {
            stored() == 3 && started.try_recv().is_ok()
        });
        release.send(()).unwrap();
        release.send(()).unwrap();
        until("the other answers", &|| !r2.is_empty() && !r3.is_empty());
        assert_eq!(r2.try_recv().unwrap().unwrap(), (1, 0));
        assert_eq!(r3.try_recv().unwrap().unwrap(), (1, 0));
    }

    #[test]
    fn enough_waiting_snapshots_are_due_at_once() {
        let (mut q, _wake) = IngestQueue::new();
        let far = Duration::from_secs(20);
        let _keep: Vec<_> = (0..COMMIT_AT_WAITING - 1)
            .map(|_| q.submit("n".into(), vec![item(NOW)], far))
            .collect();
        let later = Instant::now() + Duration::from_secs(10);
        assert!(q.pending.iter().all(|p| p.due > later), "not yet");
        let _last = q.submit("n".into(), vec![item(NOW)], far);
        let now = Instant::now();
        assert!(
            q.pending.iter().all(|p| p.due <= now),
            "the queue is full: commit now"
        );
    }

    #[test]
    fn enough_waiting_snapshots_skip_the_commit_window() {
        let (mut q, _wake) = IngestQueue::new();
        let window = Duration::from_secs(1);
        let _keep: Vec<_> = (0..COMMIT_AT_WAITING - 1)
            .map(|_| q.submit("n".into(), vec![item(NOW)], Duration::ZERO))
            .collect();
        assert_eq!(
            q.window(window),
            window,
            "homelab rates: commits stay a window apart"
        );
        let _last = q.submit("n".into(), vec![item(NOW)], Duration::ZERO);
        assert_eq!(q.window(window), Duration::ZERO, "a storm: no window");
        // Right after a commit, the full queue is due at once.
        let t0 = Instant::now();
        let due = commit_due(q.pending.iter().map(|p| p.due), Some(t0), q.window(window));
        assert!(due.is_some_and(|d| d <= t0), "{due:?}");
    }

    #[test]
    fn hurrying_makes_everything_due_now() {
        let (mut q, _wake) = IngestQueue::new();
        let _a = q.submit("n".into(), Vec::new(), Duration::from_secs(20));
        let before = Instant::now();
        q.hurry();
        let _b = q.submit("n".into(), Vec::new(), Duration::from_secs(20));
        assert!(q.pending.iter().all(|p| p.due <= Instant::now()));
        assert!(q.pending[0].due <= before + Duration::from_millis(1));
    }

    /// A body is one snapshot, or a batch of them.
    #[test]
    fn single_and_batch_bodies() {
        let one = br#"{"timestamp":"2026-11-23T14:49:00Z","cpu":{"total_percent":12.5}}"#;
        let items = parse_native(one, NOW).unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].sample.values[0], Some(12.5));
        let batch =
            br#"{"snapshots":[{"timestamp":"2026-11-23T14:48:00Z"},{"timestamp":"2026-11-23T14:49:00Z"}]}"#;
        assert_eq!(parse_native(batch, NOW).unwrap().len(), 2);
    }

    #[test]
    fn errors_name_the_field() {
        let cases: [(&[u8], &str); 7] = [
            (
                br#"{"timestamp":"2026-11-23T14:49:00Z","cpu":{"total_percent":"NaN"}}"#,
                "cpu.total_percent",
            ),
            (
                br#"{"timestamp":"2026-11-23T14:49:00Z","cpu":{"total_percent":150}}"#,
                "cpu.total_percent",
            ),
            (br#"{"timestamp":"2026-11-23T15:49:00Z"}"#, "timestamp"),
            (br#"{"cpu":{}}"#, "timestamp"),
            (
                br#"{"snapshots":[{"timestamp":"2026-11-23T14:49:00Z"},{"timestamp":"x"}]}"#,
                "snapshots[1].timestamp",
            ),
            (
                br#"{"timestamp":"2026-11-23T14:49:00Z","disks":[{"used_percent":-1}]}"#,
                "disks[0].used_percent",
            ),
            (
                br#"{"timestamp":"2026-11-23T14:49:00Z","memory":{"total_bytes":-5}}"#,
                "memory.total_bytes",
            ),
        ];
        for (body, field) in cases {
            let e = parse_native(body, NOW).unwrap_err();
            assert_eq!(e.status, 400);
            assert!(e.message.contains(field), "{} does not name {field}", e.message);
        }
    }

    #[test]
    fn hostile_bodies_are_rejected() {
        for body in [
            &b"{\"zzz\":["[..],
            b"{\"a\":1,\"name\":\"n\",\"extra\":}",
            b"",
            b"\xff\xfe",
            b"[1,2]",
            b"{\"timestamp\": 1e999}",
        ] {
            assert_eq!(parse_native(body, NOW).unwrap_err().status, 400);
        }
        let deep = "[".repeat(100_000);
        assert_eq!(parse_native(deep.as_bytes(), NOW).unwrap_err().status, 400);
    }
}

#[cfg(test)]
mod storable_tests {
    use super::*;

    #[test]
    fn byte_counts_past_i64_are_refused_not_wrapped() {
        let body = format!(
            r#"{{"timestamp":"2026-11-23T14:49:00Z","disks":[{{"mount":"/","total_bytes":{}}}]}}"#,
            u64::MAX
        );
        let e = parse_native(body.as_bytes(), 1_795_445_400).unwrap_err();
        assert!(e.message.contains("disks[0].total_bytes"), "{}", e.message);
    }
}
