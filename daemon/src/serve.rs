//! `cairnd serve`: config → data dir → store → first-run admin → HTTP front
//! → executor with its tasks (request handling, group commit, timers, local
//! collector) until SIGTERM/SIGINT.

use crate::app::{self, Ctx, Shared};
use crate::cli::Serve;
use crate::config::Config;
use crate::engine::{ingest::IngestQueue, local, timers};
use crate::http::{Front, FrontLimits};
use crate::store::auth::Role;
use crate::store::Store;
use crate::{clock, security};
use nix::sys::signal::{SigSet, Signal};
use smol::LocalExecutor;
use std::cell::{Cell, RefCell};
use std::io::Write;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Reads the config file and applies the command line over it.
fn effective_config(args: &Serve) -> Result<Config, String> {
    let mut cfg = Config::load(args.config.as_deref())?;
    if let Some(l) = &args.listen {
        cfg.listen = l.clone();
    }
    if let Some(d) = &args.data_dir {
        cfg.data_dir = d.clone();
    }
    if args.no_local_agent {
        cfg.local_agent = false;
    }
    Ok(cfg)
}

/// SIGHUP: re-read the configuration. Settings that need a new socket or a
/// new database (listen, data_dir, limits, the local collector) keep their
/// running values until a restart; everything else applies at once.
fn reload(shared: &Shared, args: &Serve) {
    let new = match effective_config(args) {
        Ok(c) => c,
        Err(e) => {
            log::error!("SIGHUP: configuration not reloaded: {e}");
            return;
        }
    };
    let mut ctx = shared.borrow_mut();
    let old = ctx.cfg.clone();
    if (
        new.listen.as_str(),
        &new.data_dir,
        new.max_body_bytes,
        new.max_connections,
        new.local_agent,
    ) != (
        old.listen.as_str(),
        &old.data_dir,
        old.max_body_bytes,
        old.max_connections,
        old.local_agent,
    ) {
        log::warn!("SIGHUP: listen, data_dir, limits and local_agent change only on restart");
    }
    if std::env::var("CAIRN_LOG_LEVEL").is_err() {
        match crate::logger::parse_level(&new.log_level) {
            Ok(level) => log::set_max_level(level),
            Err(e) => log::error!("SIGHUP: {e}"),
        }
    }
    if let Err(e) = ctx.store.set_retention(&new.retention()) {
        log::error!("SIGHUP: saving retention: {e}");
    }
    ctx.cfg = Config {
        listen: old.listen,
        data_dir: old.data_dir,
        max_body_bytes: old.max_body_bytes,
        max_connections: old.max_connections,
        local_agent: old.local_agent,
        ..new
    };
    log::info!("SIGHUP: configuration reloaded");
}

pub fn run(args: Serve) -> Result<(), String> {
    // Signals are taken synchronously by one thread; block them before any
    // other thread exists so every thread inherits the mask.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGHUP);
    signals
        .thread_block()
        .map_err(|e| format!("blocking signals: {e}"))?;

    let cfg = effective_config(&args)?;
    if let Ok(level) = crate::logger::parse_level(&cfg.log_level) {
        if std::env::var("CAIRN_LOG_LEVEL").is_err() {
            log::set_max_level(level);
        }
    }
    if cfg!(panic = "abort") {
        log::warn!("built with panic=abort: a handler bug would stop the daemon (release builds use profile release-daemon)");
    }
    crate::open_files::prepare(cfg.max_connections);
    create_data_dir(&cfg.data_dir)?;
    let mut store = Store::open(&cfg.data_dir.join("cairn.db"))?;
    store.checkpoint_in_background()?;
    store
        .set_retention(&cfg.retention())
        .map_err(|e| format!("saving retention settings: {e}"))?;
    first_run_admin(&store, &cfg.data_dir)?;

    let listener =
        std::net::TcpListener::bind(&cfg.listen).map_err(|e| format!("listening on {}: {e}", cfg.listen))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("reading bound address: {e}"))?;
    let (to_executor, incoming) = async_channel::bounded(1024);
    let front = Front::start(
        listener,
        FrontLimits {
            max_body_bytes: cfg.max_body_bytes,
            max_connections: cfg.max_connections,
            ..FrontLimits::default()
        },
        to_executor,
    )?;

    let (stop_tx, stop_rx) = async_channel::bounded::<Signal>(4);
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            match signals.wait() {
                Ok(sig) => {
                    if stop_tx.send_blocking(sig).is_err() {
                        return;
                    }
                }
                Err(e) => log::error!("waiting for signals: {e}"),
            }
        })
        .map_err(|e| format!("spawning signal thread: {e}"))?;

    let local_agent = cfg.local_agent;
    let interval = cfg.interval_s;
    let (queue, wake) = IngestQueue::new();
    let (outbox_wake, outbox_rx) = async_channel::bounded(1);
    let (deadlines, deadlines_rx) = crate::engine::heartbeats::Deadlines::new();
    let (schedule, schedule_rx) = crate::engine::checks::Schedule::new();
    let shared: Shared = Rc::new(RefCell::new(Ctx {
        store,
        cfg,
        started: Instant::now(),
        ingest: queue,
        local_node: None,
        lab_counters: Default::default(),
        alerting: Default::default(),
        outbox_wake,
        deadlines,
        schedule,
    }));

    // The executor allocates for every stored row (docs/BENCHMARKS.md §1).
    let _cache = crate::alloc::ThreadCache::start();
    let ex = LocalExecutor::new();
    smol::block_on(ex.run(async {
        ex.spawn(crate::engine::ingest::committer(shared.clone(), wake))
            .detach();
        ex.spawn(timers::rollups(shared.clone())).detach();
        ex.spawn(timers::retention(shared.clone())).detach();
        ex.spawn(timers::alerts(shared.clone())).detach();
        ex.spawn(crate::engine::outbox::run(shared.clone(), outbox_rx))
            .detach();
        ex.spawn(crate::engine::heartbeats::run(shared.clone(), deadlines_rx))
            .detach();
        ex.spawn(crate::engine::checks::run(shared.clone(), schedule_rx))
            .detach();
        if local_agent {
            match local::ensure_node(&shared, interval as i64) {
                Ok(id) => {
                    shared.borrow_mut().local_node = Some(id.clone());
                    let rx = local::start(Duration::from_secs(interval as u64));
                    ex.spawn(local::feed(shared.clone(), id, rx)).detach();
                }
                Err(e) => log::error!("local monitoring disabled: {e}"),
            }
        }
        log::info!(
            "cairnd {} listening on http://{bound}",
            crate::api::system::VERSION
        );
        // Requests being handled, so that shutdown waits for them and no longer.
        let in_flight = Rc::new(Cell::new(0usize));
        let handle = |req| {
            let (guard, shared) = (InFlight::enter(&in_flight), shared.clone());
            ex.spawn(async move {
                let _guard = guard;
                app::handle(shared, req).await
            })
            .detach();
        };
        loop {
            let next = smol::future::or(async { incoming.recv().await.map(Some) }, async {
                match stop_rx.recv().await {
                    Ok(Signal::SIGHUP) => {
                        reload(&shared, &args);
                        Ok(None)
                    }
                    _ => Err(async_channel::RecvError),
                }
            })
            .await;
            match next {
                Ok(Some(req)) => handle(req),
                Ok(None) => {}
                Err(_) => break,
            }
        }
        log::info!("shutting down");
        front.stop();
        // Snapshots waiting for a later commit are committed now, and their
        // agents answered, rather than left for them to resend.
        shared.borrow_mut().ingest.hurry();
        // Let requests already inside finish (their group commit, say), for
        // at most 3 s.
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            smol::Timer::after(Duration::from_millis(20)).await;
            if let Ok(req) = incoming.try_recv() {
                handle(req);
                continue;
            }
            if incoming.is_empty() && in_flight.get() == 0 {
                break;
            }
        }
    }));
    let mut ctx = shared.borrow_mut();
    ctx.store.stop_checkpointer();
    if let Err(e) = ctx.store.flush_latest() {
        log::warn!("writing latest snapshots at shutdown failed: {e}");
    }
    if let Err(e) = ctx.store.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
        log::warn!("final checkpoint failed: {e}");
    }
    log::info!("stopped");
    Ok(())
}

/// Counts a request as being handled until dropped, with its task.
struct InFlight(Rc<Cell<usize>>);

impl InFlight {
    fn enter(count: &Rc<Cell<usize>>) -> InFlight {
        count.set(count.get() + 1);
        InFlight(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

fn create_data_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("creating data directory {}: {e}", dir.display()))?;
    }
    Ok(())
}

/// First run: an `admin` with a random password, printed once and kept in
/// `<data-dir>/initial-admin-password` (0600) for unattended installs.
fn first_run_admin(store: &Store, data_dir: &Path) -> Result<(), String> {
    if store.user_count().map_err(|e| format!("counting users: {e}"))? > 0 {
        return Ok(());
    }
    let password = security::random_string(20);
    let hash = security::hash_password(&password)?;
    store
        .insert_user("admin", &hash, Role::Admin, clock::now())
        .map_err(|e| format!("creating the admin user: {e}"))?;
    let path = data_dir.join("initial-admin-password");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        writeln!(f, "{password}").map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    // Printed to stdout on purpose, once, never through the logger.
    println!();
    println!("  Cairn first run: created user 'admin' with password  {password}");
    println!("  (also saved to {}; delete it after signing in)", path.display());
    println!();
    let _ = std::io::stdout().flush();
    Ok(())
}
