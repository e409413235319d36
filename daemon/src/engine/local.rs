//! The daemon's own host, monitored in-process with the agent's collectors.
//! Collection runs on its own thread (it reads /proc and sleeps); snapshots
//! enter the executor over a channel and take the same ingest path as an
//! agent's, so the local node is stored exactly like any other.

use crate::app::Shared;
use crate::engine::ingest;
use crate::security;
use crate::store::nodes::NewNode;
use cairn_agent::collect::Collectors;
use cairn_wire::Snapshot;
use std::time::Duration;

/// Finds or creates the local node; returns its id.
pub fn ensure_node(shared: &Shared, interval_s: i64) -> Result<String, String> {
    let ctx = shared.borrow();
    if let Some(n) = ctx
        .store
        .node_by_kind("local")
        .map_err(|e| format!("reading local node: {e}"))?
    {
        return Ok(n.id);
    }
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    let id = format!("n_{}", security::random_string(10));
    ctx.store
        .insert_node(
            &NewNode {
                id: &id,
                name: &host,
                hostname: &host,
                kind: "local",
                os: "",
                arch: std::env::consts::ARCH,
                agent_version: env!("CARGO_PKG_VERSION"),
                token_hash: None,
                interval_s,
            },
            crate::clock::now(),
        )
        .map_err(|e| format!("creating local node: {e}"))?;
    log::info!("monitoring this host as node {id} ({host})");
    Ok(id)
}

/// Starts the collector thread; snapshots arrive on the returned channel.
pub fn start(interval: Duration) -> async_channel::Receiver<Snapshot> {
    let (tx, rx) = async_channel::bounded(4);
    let spawned = std::thread::Builder::new()
        .name("local-collector".into())
        .spawn(move || {
            let mut collectors = Collectors::new();
            // A first snapshot soon after start (the collectors need a short
            // delta for rates), then one per interval.
            std::thread::sleep(Duration::from_secs(1));
            let mut last_second = 0;
            loop {
                let snap = collectors.collect();
                let second = crate::clock::now();
                if second != last_second && tx.send_blocking(snap).is_err() {
                    return;
                }
                last_second = second;
                std::thread::sleep(interval);
            }
        });
    if let Err(e) = spawned {
        log::error!("cannot start the local collector: {e}");
    }
    rx
}

/// Feeds local snapshots into the ingest queue.
pub async fn feed(shared: Shared, node_id: String, rx: async_channel::Receiver<Snapshot>) {
    // The first snapshot is committed at once, so that a fresh start shows
    // this host online within a second or two, as a new agent does.
    let mut first = true;
    while let Ok(snap) = rx.recv().await {
        let now = crate::clock::now();
        let item = match ingest::to_item(snap, ingest::Detail::Modelled, "", now) {
            Ok(item) => item,
            Err(e) => {
                log::warn!("local snapshot rejected: {}", e.message);
                continue;
            }
        };
        // This host's own snapshots wait like an agent's would (a crash loses
        // at most that much of them; they were never acknowledged to anyone).
        let done = {
            let mut ctx = shared.borrow_mut();
            // What an agent with the same interval would ask for.
            let asked = cairn_wire::commit_within_s(ctx.cfg.interval_s).into();
            let within = if first {
                Duration::ZERO
            } else {
                ingest::capped_delay(asked, ctx.cfg.commit_delay_max_ms)
            };
            first = false;
            ctx.ingest.submit(node_id.clone(), vec![item], within)
        };
        if let Ok(Err(e)) = done.recv().await {
            log::warn!("storing local snapshot failed: {}", e.message);
        }
    }
}
