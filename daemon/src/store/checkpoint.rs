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
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

/// SQLite's default automatic checkpoint threshold, kept: fewer, larger
/// checkpoints write each hot page to the database file fewer times.
pub const CHECKPOINT_PAGES: i32 = 1000;

/// Past this many frames (64 MiB, the journal size limit), the next commit
/// waits for the checkpoint to catch up, so that the WAL starts over.
///
/// SQLite starts the WAL over only at a commit that finds every frame
/// already copied. With commits back to back (a backfill), the thread
/// never catches up before the next one, and the WAL grew for as long as
/// they came: 94 MB in a 7-second benchmark, without end on a real storm.
/// Every fsync of a growing file also commits the file system's journal,
/// where one of a file that is written over in place does not.
pub const RESTART_FRAMES: i32 = 16 * CHECKPOINT_PAGES;

/// Longest a commit waits for the WAL to be copied: a reader holding an old
/// snapshot (a backup, say) keeps a checkpoint from finishing.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(1);

/// Commits and checkpoints, counted: shared by the WAL hook (on the main
/// connection), the thread, and the committer that may wait for it.
#[derive(Default)]
struct Progress {
    /// Commits on the main connection.
    committed: AtomicU64,
    /// Commits whose frames a finished checkpoint copied, all of them.
    copied: AtomicU64,
    /// Frames in the WAL after the last commit.
    frames: AtomicI32,
}

pub struct Checkpointer {
    poke: mpsc::SyncSender<()>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    progress: Arc<Progress>,
    /// A message after each checkpoint that copied everything.
    caught_up: async_channel::Receiver<()>,
    restart_frames: i32,
}

/// What a commit waits for when the WAL has grown too long (`Checkpointer::backlog`).
pub struct Backlog {
    progress: Arc<Progress>,
    caught_up: async_channel::Receiver<()>,
    poke: mpsc::SyncSender<()>,
    upto: u64,
}

impl Backlog {
    /// Returns once a checkpoint has copied every commit made before this
    /// backlog was taken, or after `CATCH_UP_LIMIT`.
    pub async fn copied(self) {
        let _ = self.poke.try_send(());
        let caught_up = async {
            while self.progress.copied.load(Ordering::Acquire) < self.upto {
                if self.caught_up.recv().await.is_err() {
                    return;
                }
            }
        };
        smol::future::or(caught_up, async {
            async_io::Timer::after(CATCH_UP_LIMIT).await;
            log::debug!("the WAL checkpoint did not catch up within {CATCH_UP_LIMIT:?}");
        })
        .await;
    }
}

impl Checkpointer {
    /// Opens a second connection to `db` and starts the thread; `main` no
    /// longer checkpoints by itself but pokes the thread instead.
    pub fn start(db: &Path, main: &mut Connection) -> Result<Checkpointer, String> {
        Checkpointer::with_restart_at(db, main, RESTART_FRAMES)
    }

    /// `start`, letting the WAL start over past `restart_frames` frames.
    pub fn with_restart_at(
        db: &Path,
        main: &mut Connection,
        restart_frames: i32,
    ) -> Result<Checkpointer, String> {
        let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_WRITE)
            .map_err(|e| format!("opening {} for checkpoints: {e}", db.display()))?;
        // Waits out the writer's brief exclusive moments (a WAL restart).
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| format!("configuring the checkpoint connection: {e}"))?;
        // A checkpoint then syncs the WAL before it copies frames and the
        // database before the WAL may start over: the committer lets a
        // commit be written while the previous one still waits for its
        // fsync (engine::ingest::SYNCS_IN_FLIGHT), and relies on this.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(|e| format!("configuring the checkpoint connection: {e}"))?;
        // One read opens the connection's view of the WAL. This pragma, like
        // the checkpoint call below, never loads the schema: the connection
        // stays at a few KB of SQLite memory.
        conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
            .map_err(|e| format!("reading {} for checkpoints: {e}", db.display()))?;
        let (poke, pokes) = mpsc::sync_channel::<()>(1);
        let hook_poke = poke.clone();
        let progress = Arc::new(Progress::default());
        let hook_progress = progress.clone();
        // Replaces SQLite's own automatic checkpoint (both are WAL hooks).
        main.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages: i32| {
            hook_progress.frames.store(pages, Ordering::Relaxed);
            hook_progress.committed.fetch_add(1, Ordering::Release);
            if pages >= CHECKPOINT_PAGES {
                let _ = hook_poke.try_send(());
            }
            Ok(())
        }))
        .map_err(|e| format!("installing the WAL hook: {e}"))?;
        let (tell, caught_up) = async_channel::bounded(1);
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread_progress = progress.clone();
        let thread = std::thread::Builder::new()
            .name("checkpointer".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                while pokes.recv().is_ok() && !stopping.load(Ordering::Relaxed) {
                    // Every commit counted by now is in the WAL this checkpoint sees.
                    let upto = thread_progress.committed.load(Ordering::Acquire);
                    match checkpoint(&conn) {
                        Ok(true) => {
                            thread_progress.copied.fetch_max(upto, Ordering::Release);
                            let _ = tell.try_send(());
                        }
                        Ok(false) => {}
                        Err(e) => log::warn!("WAL checkpoint: {e}"),
                    }
                }
            })
            .map_err(|e| format!("starting the checkpoint thread: {e}"))?;
        Ok(Checkpointer {
            poke,
            stop,
            thread: Some(thread),
            progress,
            caught_up,
            restart_frames,
        })
    }

    /// When the WAL has grown past its limit and holds commits no
    /// checkpoint has copied yet: what the next commit should wait for.
    pub fn backlog(&self) -> Option<Backlog> {
        let p = &self.progress;
        let upto = p.committed.load(Ordering::Acquire);
        let behind = p.frames.load(Ordering::Relaxed) >= self.restart_frames
            && p.copied.load(Ordering::Acquire) < upto;
        behind.then(|| Backlog {
            progress: p.clone(),
            caught_up: self.caught_up.clone(),
            poke: self.poke.clone(),
            upto,
        })
    }
}

/// Copies what it can of the WAL into the database; the writer starts the
/// WAL over on its next commit once all of it is copied. True when all was.
fn checkpoint(conn: &Connection) -> rusqlite::Result<bool> {
    let (log, done) = conn.wal_checkpoint_v2(None::<&str>, rusqlite::wal::CheckpointMode::PASSIVE)?;
    log::debug!("WAL checkpoint: {done} of {log} frames copied");
    Ok(done == log)
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
