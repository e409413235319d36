//! Figure 2: Daemon memory with 500 nodes and 24 simulated hours of history.
//!
//! Enroll the nodes, backfill every node's 24 h at 30 s (batches of 500 from
//! 16 concurrent clients, batch-major so all nodes grow together: with the
//! default 1 s commit window, fewer clients would leave the daemon idle),
//! have the rollup pass covering the backfill run, then read VmRSS / VmHWM.
//! Then the steady state: restart on the same data and operate live (every
//! node every 30 s, a dashboard refresh every 10 s) for a minute, and read
//! again.

use crate::harness::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn mem(r: &mut Results, d: &Daemon, prefix: &str, target: bool) {
    let pid = d.pid();
    let rss = status_kb(pid, "VmRSS").unwrap_or(0);
    if target {
        r.target(&format!("{prefix}.vmrss"), mib(rss), "MiB", 20.0, true);
    } else {
        r.info(&format!("{prefix}.vmrss"), mib(rss), "MiB");
    }
    for key in ["VmHWM", "RssAnon", "RssFile"] {
        r.info(
            &format!("{prefix}.{}", key.to_lowercase()),
            mib(status_kb(pid, key).unwrap_or(0)),
            "MiB",
        );
    }
    let threads = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .unwrap_or(0.0);
    r.info(&format!("{prefix}.threads"), threads, "");
}

pub fn run(env: &Env, r: &mut Results) -> Res<()> {
    let nodes = env.opt("rss-nodes", 500usize);
    let hours = env.opt("rss-hours", 24.0f64);
    let batch = env.opt("rss-batch", 500usize);
    let workers = env.opt("rss-workers", 16usize);
    let dir = env.fresh_dir("rss")?;
    let mut d = env.start_daemon(&dir, &[])?;
    r.info(
        "rss.fresh.vmrss",
        mib(status_kb(d.pid(), "VmRSS").unwrap_or(0)),
        "MiB",
    );
    let admin = d.admin_token()?;
    let t = Instant::now();
    let agents = d.enroll_many(&admin, nodes, "rss")?;
    println!("  enrolled {nodes} nodes in {:.1} s", t.elapsed().as_secs_f64());

    let slots = (hours * 120.0).round() as usize;
    let end = unix_now() / 30 * 30 - 30;
    let list: Vec<(usize, String)> = agents
        .iter()
        .enumerate()
        .map(|(i, (_, tok))| (i, tok.clone()))
        .collect();
    println!(
        "  backfilling {nodes} nodes x {slots} snapshots ({hours} h at 30 s) in batches of {batch}, {workers} clients..."
    );
    let wb0 = io_field(d.pid(), "write_bytes").unwrap_or(0);
    let (acked, took) = backfill(&d.http(), &list, slots, end, batch, workers)?;
    let wb1 = io_field(d.pid(), "write_bytes").unwrap_or(0);
    r.info(
        "rss.backfill.write_bytes_per_snapshot",
        (wb1 - wb0) as f64 / acked.max(1) as f64,
        "B",
    );
    println!(
        "  backfill: {acked} snapshots in {:.1} s ({:.0}/s)",
        took.as_secs_f64(),
        acked as f64 / took.as_secs_f64()
    );
    r.info("rss.backfill.snapshots", acked as f64, "");
    r.info("rss.backfill.seconds", took.as_secs_f64(), "s");
    r.info(
        "rss.backfill.snapshots_per_s",
        acked as f64 / took.as_secs_f64(),
        "snapshots/s",
    );
    r.info(
        "rss.after_backfill.vmhwm",
        mib(status_kb(d.pid(), "VmHWM").unwrap_or(0)),
        "MiB",
    );
    let pass = settle_rollups(&d, &admin, &agents[0].0)?;
    println!(
        "  rollup pass over the backfill (run by the first history read): {:.1} s",
        pass.as_secs_f64()
    );
    r.info("rss.rollup_pass", pass.as_secs_f64(), "s");
    std::thread::sleep(Duration::from_secs(3));
    mem(r, &d, "rss.after_backfill_and_rollup", true);

    // Check the history really is there (24 h of the last node from the 1m rollup).
    let (id, _) = &agents[nodes - 1];
    let (status, text) = d.http().get(
        &format!("/api/v1/nodes/{id}/history?metrics=cpu&hours=24"),
        Some(&admin),
    )?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{status} {e}: {text}"))?;
    let filled = v["series"]["cpu"]["avg"]
        .as_array()
        .map(|a| a.iter().filter(|x| !x.is_null()).count())
        .unwrap_or(0);
    println!(
        "  check: 24 h history of the last node: source {}, {filled} points with data",
        v["source"]
    );
    let db = d.db_path();
    r.info("rss.db_bytes", mib(db_bytes(&db)), "MiB");

    // Steady state: a restart on the same data, then live operation: every
    // node reports every 30 s (spread evenly) and a dashboard polls the node
    // list and the fleet chart every 10 s, through at least one rollup pass.
    d.restart()?;
    let admin = d.admin_token()?;
    let live_s = env.opt("rss-live-seconds", 65u64);
    let dashboards = AtomicU64::new(0);
    let mut posted = 0;
    std::thread::scope(|s| {
        // The dashboard: the node list and the fleet chart every 10 s.
        s.spawn(|| {
            let http = d.http();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(live_s) {
                let _ = http.get("/api/v1/nodes?limit=1000", Some(&admin));
                let _ = http.get("/api/v1/charts?metric=cpu&hours=24", Some(&admin));
                dashboards.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_secs(10));
            }
        });
        posted = live(&d, &agents, live_s as f64, 30.0);
    });
    println!(
        "  restarted; {live_s} s of live operation: {posted} snapshots, {} dashboard refreshes",
        dashboards.into_inner()
    );
    mem(r, &d, "rss.restarted_live", false);
    r.note(format!(
        "{nodes} nodes x {hours} h at 30 s = {} snapshots; VmHWM after the backfill includes \
         {workers} concurrent {batch}-snapshot requests",
        nodes * slots
    ));
    d.stop()?;
    Ok(())
}
