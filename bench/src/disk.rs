//! Figure 4: Disk bytes written per ingested snapshot.
//!
//! The daemon's /proc/PID/io `write_bytes` (bytes it caused to be written to
//! the block layer: WAL appends, checkpoints into the database file; not the
//! filesystem's journal) divided by the snapshots it acknowledged. After 2 h
//! of history per node (backfilled and rolled up first, so tables have a
//! production shape):
//! - live: 200 nodes in real time, one snapshot each every 30 s, spread
//!   evenly, for three minutes, each request allowing the 20 s commit delay
//!   `cairn-agent` asks for at that interval (default configuration);
//! - fast: the same 200 nodes posting back to back (about one snapshot per
//!   node per commit window, i.e. a 1 s interval).
//!
//! The daemon also writes on timers: a rollup pass every 2 hours and the
//! write-behind of each node's latest snapshot into `nodes` every 30
//! minutes. Windows that long do not fit a bounded benchmark, so both are
//! run in-process on `cairnd::store::Store` (same code, schema and pragmas)
//! over exactly one rollup interval of the same live data, and their bytes
//! are amortised over the snapshots 200 nodes send in their intervals. The
//! same harness shows how the bytes per snapshot depend on the commit size.

use crate::harness::*;
use crate::ingest::drive;
use cairnd::engine::ingest::{insert_item, to_item, Detail, Item};
use cairnd::engine::timers::{FLUSH_EVERY, ROLLUP_EVERY};
use cairnd::store::nodes::NewNode;
use cairnd::store::Store;
use std::path::Path;
use std::time::Instant;

struct Io {
    write_bytes: u64,
    wchar: u64,
}

fn io(pid: u32) -> Io {
    Io {
        write_bytes: io_field(pid, "write_bytes").unwrap_or(0),
        wchar: io_field(pid, "wchar").unwrap_or(0),
    }
}

pub fn run(env: &Env, r: &mut Results) -> Res<()> {
    let n = env.opt("disk-nodes", 200usize);
    let fast_s = env.opt("disk-fast-seconds", 30.0f64);
    let live_s = env.opt("disk-live-seconds", 180u64);
    let history_h = env.opt("disk-history-hours", 2usize);
    let dir = env.fresh_dir("disk")?;
    if env.opt("disk-sweep-only", false) {
        sweep(&dir, r)?;
        return Ok(());
    }
    let mut d = env.start_daemon(&dir, &[])?;
    let admin = d.admin_token()?;
    let agents = d.enroll_many(&admin, n, "disk")?;
    let pid = d.pid();
    let db = d.db_path();

    // History first, so that every node's rows span many pages as in
    // production, then the rollup pass for it, outside the measured windows.
    let list: Vec<(usize, String)> = agents
        .iter()
        .enumerate()
        .map(|(i, (_, t))| (i, t.clone()))
        .collect();
    // History reaches the present: with a gap of 3 intervals before a node's
    // first live snapshot, the node goes offline and comes back, and those
    // alert commits (2 per node) landed in the measured window (~4 KB per
    // live snapshot, measured with the history ending 2 minutes back).
    let end = unix_now() / 30 * 30;
    let (hist, took) = backfill(&d.http(), &list, history_h * 120, end, 500, 16)?;
    let pass = settle_rollups(&d, &admin, &agents[0].0)?;
    println!(
        "  history: {hist} snapshots ({history_h} h x {n} nodes) in {:.1} s, rolled up in {:.1} s",
        took.as_secs_f64(),
        pass.as_secs_f64()
    );

    // Live: 200 nodes every 30 s, in real time. The WAL left by the history
    // is checkpointed first (by this process, so its writes are not the
    // live phase's); the live phase's own WAL is checkpointed after it, and
    // those bytes are counted, as the daemon would write them sooner or later.
    let checkpoint = || -> Res<u64> {
        let c = rusqlite::Connection::open(&db).map_err(|e| e.to_string())?;
        c.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(|e| e.to_string())?;
        let w0 = my_write_bytes();
        c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0))
            .map_err(|e| format!("checkpointing {}: {e}", db.display()))?;
        Ok(my_write_bytes() - w0)
    };
    // The daemon's own upkeep (write-behind, rollup pass) runs on a
    // wall-clock grid and is measured separately below: the live window must
    // not contain it, or its pages are counted twice.
    let prime_s = 30.0;
    let now = unix_now();
    let (upkeep, _) = cairnd::engine::timers::next_upkeep(now);
    if upkeep <= now + prime_s as i64 + live_s as i64 + 40 {
        let wait = (upkeep + 20 - now).max(0) as u64;
        println!("  waiting {wait} s for the daemon's upkeep at the grid point to pass...");
        std::thread::sleep(std::time::Duration::from_secs(wait));
    }
    // One unmeasured round of live traffic first: every node reports in (the
    // history ended up to a minute before, and a node silent for 3 intervals
    // raises an offline alert whose commits would land in the measured
    // window) and the commit schedule reaches its steady state.
    live(&d, &agents, prime_s, 30.0);
    checkpoint()?;
    println!("  live: {n} nodes, one snapshot every 30 s each, for {live_s} s...");
    let io0 = io(pid);
    let size0 = db_bytes(&db);
    let start = Instant::now();
    let acked = live(&d, &agents, live_s as f64, 30.0);
    let io1 = io(pid);
    wal_by_table(&db, r)?;
    let live_checkpoint = checkpoint()?;
    let acked = acked.max(1) as f64;
    let live_ingest = (io1.write_bytes - io0.write_bytes + live_checkpoint) as f64 / acked;
    r.info(
        "disk.live.checkpoint_per_snapshot",
        live_checkpoint as f64 / acked,
        "B",
    );
    println!(
        "  live: {acked} snapshots in {:.0} s; checkpointing them wrote {:.1} MiB",
        start.elapsed().as_secs_f64(),
        mib(live_checkpoint)
    );
    r.info("disk.live.ingest_write_bytes_per_snapshot", live_ingest, "B");
    r.info(
        "disk.live.wchar_per_snapshot",
        (io1.wchar - io0.wchar) as f64 / acked,
        "B",
    );
    r.info(
        "disk.live.db_growth_per_snapshot",
        (db_bytes(&db) as f64 - size0 as f64) / acked,
        "B",
    );

    // Fast: back to back, about one snapshot per node per commit window.
    let t0 = unix_now();
    let io0 = io(pid);
    let fast = drive(&d, &agents, fast_s, 1000, |node, k| {
        single_body(node, t0 + k as i64)
    })?;
    let io1 = io(pid);
    let acked = fast.acked.max(1) as f64;
    println!(
        "  fast: {} snapshots in {:.1} s ({:.0}/s, {:.1} per node per s)",
        fast.acked,
        fast.elapsed.as_secs_f64(),
        acked / fast.elapsed.as_secs_f64(),
        acked / fast.elapsed.as_secs_f64() / n as f64
    );
    let fast_checkpoint = checkpoint()?;
    r.info(
        "disk.fast.ingest_write_bytes_per_snapshot",
        (io1.write_bytes - io0.write_bytes + fast_checkpoint) as f64 / acked,
        "B",
    );
    table_sizes(&db, r)?;
    d.stop()?;

    let upkeep = sweep(&dir, r)?;
    r.target(
        "disk.live.write_bytes_per_snapshot_amortised",
        live_ingest + upkeep,
        "B",
        1024.0,
        true,
    );
    r.note(
        "write_bytes counts page-cache pages dirtied (each WAL append after an fsync, each \
         checkpoint write); ext4's own journal is not included. wchar counts write() bytes, HTTP \
         responses included. Amortised = live ingest (daemon) + one rollup pass (in-process) over \
         the snapshots 200 nodes send in one rollup interval (2 h) + one latest-snapshot \
         write-behind over those of its interval (2 h).",
    );
    Ok(())
}

/// The upkeep, and commit sizes, in-process; returns the upkeep's
/// bytes per snapshot.
fn sweep(dir: &Path, r: &mut Results) -> Res<f64> {
    println!(
        "  in-process: {SWEEP_NODES} nodes with 2 h of history, then {} minutes at 30 s",
        SWEEP_ROUNDS / 2
    );
    let mut upkeep = 0.0;
    for (i, v) in VARIANTS.iter().enumerate() {
        let w = sweep_one(&dir.join(format!("sweep-{i}.db")), v)?;
        let line = format!(
            "{:<46} {:>6.0} B/snapshot written ({:>5.0} WAL + {:>5.0} checkpoint), {:>5.1} pages/commit",
            v.name,
            w.total,
            w.wal,
            w.total - w.wal,
            w.pages_per_commit
        );
        println!("  {line}");
        r.notes.push(line);
        if let Some(u) = w.upkeep {
            upkeep = u.rollup + u.flush;
            r.info("disk.upkeep.rollup_pass_per_snapshot", u.rollup, "B");
            r.info("disk.upkeep.latest_flush_per_snapshot", u.flush, "B");
        }
    }
    Ok(upkeep)
}

/// Which tables the WAL's frames belong to (before the checkpoint): frame
/// headers name their page, dbstat names each page's table or index.
fn wal_by_table(db: &Path, r: &mut Results) -> Res<()> {
    let wal = std::fs::read(format!("{}-wal", db.display())).map_err(|e| format!("reading the WAL: {e}"))?;
    if wal.len() < 32 {
        return Ok(());
    }
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let page = be(&wal[8..12]) as usize;
    let salt = (be(&wal[16..20]), be(&wal[20..24]));
    let c = open_ro(db)?;
    let mut owner = std::collections::HashMap::new();
    {
        let mut st = c
            .prepare("SELECT pageno, name FROM dbstat")
            .map_err(|e| e.to_string())?;
        let rows = st
            .query_map([], |x| Ok((x.get::<_, i64>(0)?, x.get::<_, String>(1)?)))
            .map_err(|e| e.to_string())?;
        for row in rows {
            let (no, name) = row.map_err(|e| e.to_string())?;
            owner.insert(no as u32, name);
        }
    }
    let mut count: std::collections::BTreeMap<String, usize> = Default::default();
    let (mut frames, mut commits) = (0, 0);
    let mut at = 32;
    // Frames of this WAL generation carry its salts; later bytes are stale.
    while at + 24 + page <= wal.len() && (be(&wal[at + 8..]), be(&wal[at + 12..])) == salt {
        let no = be(&wal[at..]);
        let name = owner
            .get(&no)
            .cloned()
            .unwrap_or_else(|| format!("page {no} (free or new)"));
        *count.entry(name).or_default() += 1;
        frames += 1;
        commits += usize::from(be(&wal[at + 4..]) != 0);
        at += 24 + page;
    }
    let mut by: Vec<(String, usize)> = count.into_iter().collect();
    by.sort_by_key(|x| std::cmp::Reverse(x.1));
    let list: Vec<String> = by.iter().map(|(n, k)| format!("{n} {k}")).collect();
    let line = format!(
        "live WAL: {frames} frames in {commits} commits ({:.2} per commit): {}",
        frames as f64 / commits.max(1) as f64,
        list.join(", ")
    );
    println!("  {line}");
    r.notes.push(line);
    Ok(())
}

/// Stored bytes per row by table (SQLite's dbstat).
fn table_sizes(db: &Path, r: &mut Results) -> Res<()> {
    let c = open_ro(db)?;
    let page: i64 = c
        .query_row("PRAGMA page_size", [], |x| x.get(0))
        .map_err(|e| e.to_string())?;
    r.info("disk.page_size", page as f64, "B");
    for table in ["samples", "rollup_1m", "nodes"] {
        let (pages, payload): (i64, i64) = c
            .query_row(
                "SELECT count(*), coalesce(sum(payload), 0) FROM dbstat WHERE name = ?1",
                [table],
                |x| Ok((x.get(0)?, x.get(1)?)),
            )
            .map_err(|e| format!("dbstat: {e}"))?;
        let rows: i64 = c
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |x| x.get(0))
            .map_err(|e| e.to_string())?;
        let line = format!(
            "{table}: {rows} rows, {pages} pages, {:.0} B payload/row, {:.0} B on disk/row",
            payload as f64 / rows.max(1) as f64,
            (pages * page) as f64 / rows.max(1) as f64
        );
        println!("  {line}");
        r.notes.push(line);
    }
    Ok(())
}

/// One in-process run: commit size and whether it is live data or a backfill.
struct Variant {
    name: &'static str,
    /// Snapshots per commit (requests are whole: a backfill request is one commit).
    group: usize,
    /// Consecutive snapshots of one node per request (50: a backfill batch).
    per_request: usize,
    /// Also measure the upkeep pass after this run.
    upkeep: bool,
}

const VARIANTS: [Variant; 6] = [
    Variant {
        name: "live, 1 snapshot per commit",
        group: 1,
        per_request: 1,
        upkeep: false,
    },
    Variant {
        name: "live, 7 per commit (200 nodes, 1 s window)",
        group: 7,
        per_request: 1,
        upkeep: true,
    },
    Variant {
        name: "live, 33 per commit (200 nodes, 5 s window)",
        group: 33,
        per_request: 1,
        upkeep: false,
    },
    Variant {
        name: "live, 133 per commit (200 nodes, agents allow 20 s)",
        group: 133,
        per_request: 1,
        upkeep: false,
    },
    Variant {
        name: "live, 200 per commit",
        group: 200,
        per_request: 1,
        upkeep: false,
    },
    Variant {
        name: "backfill, one 50-snapshot request per commit",
        group: 50,
        per_request: 50,
        upkeep: false,
    },
];

const SWEEP_NODES: usize = 200;
/// One rollup interval (cairnd's timer) at 30 s.
const SWEEP_ROUNDS: usize = (ROLLUP_EVERY.as_secs() / 30) as usize;

struct Swept {
    /// All bytes written (WAL appends and checkpoints) per snapshot.
    total: f64,
    /// WAL frame bytes per snapshot.
    wal: f64,
    pages_per_commit: f64,
    upkeep: Option<Upkeep>,
}

/// Bytes per snapshot of one upkeep pass, over 200 nodes x SWEEP_ROUNDS snapshots.
struct Upkeep {
    rollup: f64,
    flush: f64,
}

/// Pages this connection has written to the WAL so far (SQLITE_DBSTATUS_CACHE_WRITE).
fn pages_written(store: &Store) -> i64 {
    let (mut cur, mut hi) = (0, 0);
    // SAFETY: a valid open connection handle; the out-pointers live for the call.
    unsafe {
        rusqlite::ffi::sqlite3_db_status(
            store.conn.handle(),
            rusqlite::ffi::SQLITE_DBSTATUS_CACHE_WRITE,
            &mut cur,
            &mut hi,
            0,
        );
    }
    cur as i64
}

fn my_write_bytes() -> u64 {
    io_field(std::process::id(), "write_bytes").unwrap_or(0)
}

/// Bytes written by `f` plus the checkpoint that moves them into the database file.
fn written(store: &mut Store, f: impl FnOnce(&mut Store) -> Res<()>) -> Res<f64> {
    let err = |e: rusqlite::Error| e.to_string();
    store
        .conn
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .map_err(err)?;
    let w0 = my_write_bytes();
    f(store)?;
    store
        .conn
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .map_err(err)?;
    Ok((my_write_bytes() - w0) as f64)
}

/// Stores one request the way engine::ingest does.
fn store_request(store: &mut Store, id: &str, items: &[Item]) -> Res<()> {
    let err = |e: rusqlite::Error| e.to_string();
    let seq = store.sample_node(id).map_err(err)?;
    for it in items {
        if insert_item(store, id, seq, it).map_err(err)?.is_some() {
            store.mark_rollup_dirty(id, it.ts).map_err(err)?;
        }
    }
    if let Some(last) = items.last() {
        let (os, arch, ver) = &last.system;
        store.update_node_system(id, os, arch, ver).map_err(err)?;
    }
    Ok(())
}

fn sweep_one(path: &Path, v: &Variant) -> Res<Swept> {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let err = |e: rusqlite::Error| e.to_string();
    let mut store = Store::open(path)?;
    let now = unix_now() / 600 * 600;
    let ids: Vec<String> = (0..SWEEP_NODES).map(|i| format!("n_bench{i:05}")).collect();
    for id in &ids {
        store.insert_node(&NewNode::agent(id, 30), now).map_err(err)?;
    }
    let item = |node: usize, ts: i64| -> Res<Item> {
        to_item(snapshot(node, ts), Detail::Modelled, "", now).map_err(|e| e.message)
    };
    // Two hours of history, rolled up, latest snapshots written: a daemon
    // that has been running. Live data then starts ahead of the watermarks.
    // Passes run just after multiples of ROLLUP_EVERY (engine::timers), so
    // the measured interval starts and ends on that grid as well.
    let every = ROLLUP_EVERY.as_secs() as i64;
    let t_live = (now - SWEEP_ROUNDS as i64 * 30 - 600).div_euclid(every) * every;
    let t_hist = t_live - 2 * 3600;
    // Spread evenly over the interval in node order, so requests arrive in
    // time order as they do from a live fleet.
    let offset = |n: usize| (n * 30 / SWEEP_NODES) as i64;
    for k in 0..240 {
        if k % 20 == 0 {
            store.conn.execute_batch("BEGIN").map_err(err)?;
        }
        for (n, id) in ids.iter().enumerate() {
            let it = item(n, t_hist + k * 30 + offset(n))?;
            store_request(&mut store, id, std::slice::from_ref(&it))?;
            store.note_latest(
                id,
                it.ts,
                it.latest.clone().unwrap_or_default(),
                it.sample.clone(),
            );
        }
        if k % 20 == 19 {
            store.conn.execute_batch("COMMIT").map_err(err)?;
        }
    }
    store.roll_up(t_live + 120).map_err(err)?;
    store.flush_latest().map_err(err)?;

    // The measured part: requests in arrival order, `group` snapshots per commit.
    let mut reqs: Vec<(usize, Vec<Item>)> = Vec::new();
    if v.per_request == 1 {
        for k in 0..SWEEP_ROUNDS {
            for n in 0..SWEEP_NODES {
                reqs.push((n, vec![item(n, t_live + k as i64 * 30 + offset(n))?]));
            }
        }
    } else {
        for n in 0..SWEEP_NODES {
            let items = (0..v.per_request)
                .map(|j| item(n, t_live + j as i64 * 30 + offset(n)))
                .collect::<Res<Vec<_>>>()?;
            reqs.push((n, items));
        }
    }
    let snapshots: usize = reqs.iter().map(|(_, items)| items.len()).sum();
    let mut commits = 0;
    let mut pages = 0;
    let total = written(&mut store, |store| {
        let pages0 = pages_written(store);
        let mut in_commit = 0;
        let mut pending: Vec<(usize, &Item)> = Vec::new();
        for (n, items) in &reqs {
            if in_commit == 0 {
                store.conn.execute_batch("BEGIN IMMEDIATE").map_err(err)?;
            }
            store_request(store, &ids[*n], items)?;
            pending.extend(items.last().map(|it| (*n, it)));
            in_commit += items.len();
            if in_commit >= v.group {
                store.conn.execute_batch("COMMIT").map_err(err)?;
                commits += 1;
                in_commit = 0;
                for (n, it) in pending.drain(..) {
                    store.note_latest(
                        &ids[n],
                        it.ts,
                        it.latest.clone().unwrap_or_default(),
                        it.sample.clone(),
                    );
                }
            }
        }
        if in_commit > 0 {
            store.conn.execute_batch("COMMIT").map_err(err)?;
            commits += 1;
        }
        pages = pages_written(store) - pages0;
        Ok(())
    })?;
    let page_size: i64 = store
        .conn
        .query_row("PRAGMA page_size", [], |x| x.get(0))
        .map_err(err)?;
    let upkeep = if v.upkeep {
        // The timer's pass: rollups up to the settled end, then the latest rows.
        let t_end = t_live + SWEEP_ROUNDS as i64 * 30;
        let rollup = written(&mut store, |s| s.roll_up(t_end + 120).map_err(err))?;
        let flush = written(&mut store, |s| s.flush_latest().map(|_| ()).map_err(err))?;
        // One write-behind covers FLUSH_EVERY's snapshots, a fraction of these.
        let flushes = ROLLUP_EVERY.as_secs_f64() / FLUSH_EVERY.as_secs_f64();
        Some(Upkeep {
            rollup: rollup / snapshots as f64,
            flush: flush * flushes / snapshots as f64,
        })
    } else {
        None
    };
    Ok(Swept {
        total: total / snapshots as f64,
        wal: (pages * (page_size + 24)) as f64 / snapshots as f64,
        pages_per_commit: pages as f64 / commits.max(1) as f64,
        upkeep,
    })
}
