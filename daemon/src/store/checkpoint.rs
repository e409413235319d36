//! WAL checkpoints on a thread of their own.
//!
//! SQLite's automatic checkpoint runs inside whichever commit takes the WAL
//! past 1,000 pages: it copies those ~4 MB into the database file and
//! fsyncs both, on the executor, so every request waits that long (a
//! fifth of the executor's time during a backfill here, far longer on an SD
//! card). The daemon instead hands checkpoints to this thread, with its own
//! connection, at the same threshold; in WAL mode a checkpoint and the
//! writer do not block each other.

use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

/// SQLite's default automatic checkpoint threshold, kept: fewer, larger
/// checkpoints write each hot page to the database file fewer times.
pub const CHECKPOINT_PAGES: i32 = 1000;

pub struct Checkpointer {
    poke: mpsc::SyncSender<()>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens a second connection to `db` and starts the thread; `main` no
    /// longer checkpoints by itself but pokes the thread instead.
    pub fn start(db: &Path, main: &mut Connection) -> Result<Checkpointer, String> {
        let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_WRITE)
            .map_err(|e| format!("opening {} for checkpoints: {e}", db.display()))?;
        // Waits out the writer's brief exclusive moments (a WAL restart).
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| format!("configuring the checkpoint connection: {e}"))?;
        // One read opens the connection's view of the WAL. This pragma, like
        // the checkpoint call below, never loads the schema: the connection
        // stays at a few KB of SQLite memory.
        conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
            .map_err(|e| format!("reading {} for checkpoints: {e}", db.display()))?;
        let (poke, pokes) = mpsc::sync_channel::<()>(1);
        let hook_poke = poke.clone();
        // Replaces SQLite's own automatic checkpoint (both are WAL hooks).
        main.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages: i32| {
            if pages >= CHECKPOINT_PAGES {
                let _ = hook_poke.try_send(());
            }
            Ok(())
        }))
        .map_err(|e| format!("installing the WAL hook: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("checkpointer".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                while pokes.recv().is_ok() && !stopping.load(Ordering::Relaxed) {
                    if let Err(e) = checkpoint(&conn) {
                        log::warn!("WAL checkpoint: {e}");
                    }
                }
            })
            .map_err(|e| format!("starting the checkpoint thread: {e}"))?;
        Ok(Checkpointer {
            poke,
            stop,
            thread: Some(thread),
        })
    }
}

/// Copies what it can of the WAL into the database; the writer starts the
/// WAL over on its next commit once all of it is copied.
fn checkpoint(conn: &Connection) -> rusqlite::Result<()> {
    let (log, done) = conn.wal_checkpoint_v2(None::<&str>, rusqlite::wal::CheckpointMode::PASSIVE)?;
    log::debug!("WAL checkpoint: {done} of {log} frames copied");
    Ok(())
}

impl Drop for Checkpointer {
    /// Waits for a checkpoint in progress, so that the caller's final
    /// checkpoint does not meet it.
    fn drop(&mut self) {
        // The WAL hook holds a sender too, so the channel stays open: wake
        // the thread (a poke already queued wakes it as well) to see `stop`.
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.poke.try_send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
