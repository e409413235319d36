//! The one SQLite database: schema, migrations and typed queries, one module
//! per resource. No HTTP types here; callers get plain structs and
//! `rusqlite::Error`s they wrap with context.

pub mod alerts;
pub mod auth;
pub mod blocks;
pub mod channels;
pub mod checkpoint;
pub mod checks;
pub mod heartbeats;
pub mod history;
pub mod latest;
pub mod maintenance;
pub mod nodes;
pub mod rollup;
pub mod schema;
pub mod sqlite_alloc;
pub mod tail;

use rusqlite::Connection;
use std::path::Path;

pub struct Store {
    /// First, so that it stops before the connection closes.
    checkpointer: Option<checkpoint::Checkpointer>,
    pub conn: Connection,
    latest: latest::LatestCache,
    /// Which seconds each node has raw samples for past the rollups.
    tail: std::cell::RefCell<Option<tail::RawTail>>,
    /// The WAL file, when the database runs in WAL mode (always, unless the
    /// file system cannot): ingest commits leave its fsync to another
    /// thread (`relaxed_commit`).
    wal: Option<std::path::PathBuf>,
}

/// A unit of work that nests: SAVEPOINT/RELEASE, so it is a transaction
/// of its own when none is open and a part of the caller's when one is (a
/// batch of check results commits once). Dropped without `commit`, it
/// rolls back its own part only.
pub struct Tx<'a> {
    conn: &'a Connection,
    done: bool,
}

impl Tx<'_> {
    pub fn commit(mut self) -> rusqlite::Result<()> {
        self.done = true;
        self.conn.execute_batch("RELEASE cairn_tx")
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.conn.execute_batch("ROLLBACK TO cairn_tx; RELEASE cairn_tx");
        }
    }
}

impl Store {
    /// Starts a nestable unit of work (see `Tx`).
    pub fn begin(&self) -> rusqlite::Result<Tx<'_>> {
        self.conn.execute_batch("SAVEPOINT cairn_tx")?;
        Ok(Tx {
            conn: &self.conn,
            done: false,
        })
    }

    pub fn open(path: &Path) -> Result<Store, String> {
        let conn = Connection::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
        // WAL + synchronous=FULL: a commit is on disk before we acknowledge
        // it, so a power cut loses only requests that were never answered.
        // Group commit (engine::ingest) keeps the fsync count low. Temporary
        // sorts (rollup GROUP BY over a large backfill) stay on SQLite's
        // default file-backed temp store so memory stays bounded. The page
        // cache is 3 MB: with rollups as blocks of 32-bit cells a 24-hour
        // chart of 100 nodes reads ~3 MB of pages and a 30-day chart of one
        // node a few hundred KB; with rows of f64 cells, 4 MB were needed
        // (docs/BENCHMARKS.md §2, §3). A burst (a large backfill) can grow
        // the WAL file far past the 4 MB auto-checkpoint; the size limit
        // truncates it back to 64 MB when the WAL next starts over.
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=FULL;
             PRAGMA foreign_keys=ON;
             PRAGMA busy_timeout=5000;
             PRAGMA cache_size=-3000;
             PRAGMA journal_size_limit=67108864;",
        )
        .map_err(|e| format!("configuring {}: {e}", path.display()))?;
        // Room for every statement the ingest and auth paths cache (the
        // default 16 would evict some of them on each request).
        conn.set_prepared_statement_cache_capacity(64);
        restrict_permissions(path);
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(|e| format!("reading the journal mode of {}: {e}", path.display()))?;
        let wal = mode.eq_ignore_ascii_case("wal").then(|| {
            let mut p = path.as_os_str().to_owned();
            p.push("-wal");
            std::path::PathBuf::from(p)
        });
        if wal.is_none() {
            log::warn!(
                "{} is not in WAL mode ({mode}): every commit syncs on the executor",
                path.display()
            );
        }
        let mut store = Store {
            checkpointer: None,
            conn,
            latest: Default::default(),
            tail: Default::default(),
            wal,
        };
        let migrated =
            schema::migrate(&mut store.conn).map_err(|e| format!("migrating {}: {e}", path.display()))?;
        if migrated {
            // A migration that rewrites tables leaves its pages in the WAL
            // (370 MB after packing a 500-node day of rollups, version 9):
            // hand them to the database file and shrink the WAL now rather
            // than at the next shutdown.
            store
                .conn
                .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
                .map_err(|e| format!("checkpointing {} after migrating: {e}", path.display()))?;
        }
        store
            .load_latest()
            .map_err(|e| format!("reading latest snapshots from {}: {e}", path.display()))?;
        Ok(store)
    }

    /// An in-memory store with one agent node, for unit tests.
    #[cfg(test)]
    pub fn memory_with_node(id: &str) -> Store {
        let s = Store::memory();
        s.insert_node(&nodes::NewNode::agent(id, 30), 0)
            .expect("inserting a test node");
        s
    }

    /// An in-memory store for unit tests.
    #[cfg(test)]
    pub fn memory() -> Store {
        let mut conn = Connection::open_in_memory().expect("in-memory sqlite");
        schema::migrate(&mut conn).expect("migrations apply to an empty database");
        Store {
            checkpointer: None,
            conn,
            latest: Default::default(),
            tail: Default::default(),
            wal: None,
        }
    }

    /// Moves WAL checkpoints to a thread of their own (`checkpoint`), for
    /// the daemon; one-shot commands and benchmarks keep SQLite's own.
    pub fn checkpoint_in_background(&mut self) -> Result<(), String> {
        if self.wal.is_none() || self.checkpointer.is_some() {
            return Ok(());
        }
        let db = match self.conn.path() {
            Some(p) if !p.is_empty() => std::path::PathBuf::from(p),
            _ => return Ok(()),
        };
        self.checkpointer = Some(checkpoint::Checkpointer::start(&db, &mut self.conn)?);
        Ok(())
    }

    /// When the WAL has grown too long: what the next commit waits for
    /// (see `checkpoint::RESTART_FRAMES`).
    pub fn wal_backlog(&self) -> Option<checkpoint::Backlog> {
        self.checkpointer.as_ref()?.backlog()
    }

    /// Waits for a checkpoint in progress and stops the thread (shutdown).
    pub fn stop_checkpointer(&mut self) {
        self.checkpointer = None;
    }

    /// The WAL file whose fsync makes a `relaxed` commit durable; `None`
    /// when commits sync themselves (not in WAL mode, or in memory).
    pub fn wal_file(&self) -> Option<&Path> {
        self.wal.as_deref()
    }

    /// Switches the connection between commits that fsync the WAL
    /// themselves (synchronous=FULL, the default) and commits that only
    /// write it (NORMAL), for a caller that fsyncs `wal_file` itself before
    /// acknowledging anything. A no-op without a WAL file.
    pub fn relaxed_commits(&self, relaxed: bool) -> rusqlite::Result<()> {
        if self.wal.is_none() {
            return Ok(());
        }
        self.conn.execute_batch(if relaxed {
            "PRAGMA synchronous=NORMAL"
        } else {
            "PRAGMA synchronous=FULL"
        })
    }
}

/// The database holds secrets that must be replayed later (webhook secrets,
/// SMTP passwords), so it and its WAL are readable by the owner only.
fn restrict_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for suffix in ["", "-wal", "-shm"] {
        let p = format!("{}{suffix}", path.display());
        if let Err(e) = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)) {
            if e.kind() != std::io::ErrorKind::NotFound {
                log::warn!("cannot restrict permissions of {p}: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty directory of this test's own, and the database path in it.
    fn fresh_db(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("cairn-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("cairn.db");
        (dir, db)
    }

    #[test]
    fn only_a_relaxed_commit_skips_its_fsync_and_the_wal_is_known() {
        let (dir, db) = fresh_db("relaxed");
        let store = Store::open(&db).unwrap();
        let sync = |s: &Store| -> i64 { s.conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap() };
        assert_eq!(sync(&store), 2, "FULL by default");
        assert_eq!(store.wal_file(), Some(dir.join("cairn.db-wal").as_path()));
        assert!(store.wal_file().unwrap().exists());
        store.relaxed_commits(true).unwrap();
        assert_eq!(sync(&store), 1);
        store.relaxed_commits(false).unwrap();
        assert_eq!(sync(&store), 2);
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn back_to_back_commits_let_the_wal_start_over_past_its_limit() {
        let (dir, db) = fresh_db("restart");
        let mut store = Store::open(&db).unwrap();
        let limit = 2000;
        store.checkpointer =
            Some(checkpoint::Checkpointer::with_restart_at(&db, &mut store.conn, limit).unwrap());
        store.conn.execute_batch("CREATE TABLE scratch (b BLOB)").unwrap();
        let wal = store.wal_file().unwrap().to_path_buf();
        let mut largest = 0;
        // 40 commits of ~300 pages each, as the committer makes them: 12,000
        // frames if the WAL never started over.
        for _ in 0..40 {
            if let Some(backlog) = store.wal_backlog() {
                smol::block_on(backlog.copied());
            }
            store
                .conn
                .execute_batch(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
                     INSERT INTO scratch SELECT zeroblob(4000) FROM n;",
                )
                .unwrap();
            largest = largest.max(std::fs::metadata(&wal).unwrap().len());
        }
        let frames = largest / (4096 + 24);
        assert!(frames < (limit as u64) + 400, "the WAL grew to {frames} frames");
        store.stop_checkpointer();
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_full_wal_is_checkpointed_by_the_background_thread() {
        let (dir, db) = fresh_db("ckpt");
        let mut store = Store::open(&db).unwrap();
        let auto = |s: &Store| -> i64 {
            s.conn
                .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(auto(&store), 1000);
        store.checkpoint_in_background().unwrap();
        assert_eq!(
            auto(&store),
            0,
            "the main connection no longer checkpoints by itself"
        );
        let before = std::fs::metadata(&db).unwrap().len();
        // ~6 MB in one commit: past the 1,000-page threshold.
        store
            .conn
            .execute_batch(
                "CREATE TABLE scratch (b BLOB);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1500)
                 INSERT INTO scratch SELECT zeroblob(4000) FROM n;",
            )
            .unwrap();
        // Only the thread copies the WAL into the database file now.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::fs::metadata(&db).unwrap().len() < before + 5_000_000 {
            assert!(std::time::Instant::now() < deadline, "no checkpoint within 20 s");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        store.stop_checkpointer();
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
