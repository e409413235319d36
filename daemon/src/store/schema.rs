//! Versioned migrations, applied in order inside one transaction each and
//! recorded in `PRAGMA user_version`. Never edit a shipped migration: add one.

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: users, sessions, tokens, login throttling, nodes, samples, rollups.
    r#"
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('viewer','operator','admin')),
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE sessions (
        id INTEGER PRIMARY KEY,
        token_hash TEXT NOT NULL UNIQUE,
        csrf_hash TEXT NOT NULL,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        last_used_at INTEGER NOT NULL,
        ip TEXT NOT NULL DEFAULT '',
        user_agent TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE api_tokens (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        suffix TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('viewer','operator','admin')),
        created_by TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        last_used_at INTEGER
    );
    CREATE TABLE login_failures (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL,
        ip TEXT NOT NULL,
        at INTEGER NOT NULL
    );
    CREATE INDEX login_failures_user ON login_failures(username, at);
    CREATE INDEX login_failures_ip ON login_failures(ip, at);
    CREATE TABLE enrollment_codes (
        id INTEGER PRIMARY KEY,
        code_hash TEXT NOT NULL UNIQUE,
        created_by TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        used_at INTEGER,
        node_id TEXT
    );
    CREATE TABLE nodes (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        hostname TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('agent','local','labwatch')),
        os TEXT NOT NULL DEFAULT '',
        arch TEXT NOT NULL DEFAULT '',
        agent_version TEXT NOT NULL DEFAULT '',
        labels TEXT NOT NULL DEFAULT '{}',
        location TEXT NOT NULL DEFAULT '',
        token_hash TEXT UNIQUE,
        interval_s INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        last_seen INTEGER,
        latest TEXT
    );
    -- Core host metrics: one wide row per (second, node). Time-major keys
    -- make a group commit append to the same few pages; keyed by node, every
    -- commit dirtied one 4 KiB page per node per table (42 KB written per
    -- snapshot, measured). Per-node raw reads are limited to short windows
    -- (store::rollup::RAW_MAX_SPAN_S); longer ones read node-major rollups.
    CREATE TABLE samples (
        ts INTEGER NOT NULL,
        node_id TEXT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
        cpu REAL, memory REAL, swap REAL,
        load1 REAL, load5 REAL, load15 REAL,
        disk REAL, temperature REAL,
        net_rx REAL, net_tx REAL, disk_read REAL, disk_write REAL,
        PRIMARY KEY (ts, node_id)
    ) WITHOUT ROWID;
    CREATE TABLE disk_samples (
        ts INTEGER NOT NULL,
        node_id TEXT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
        mount TEXT NOT NULL,
        used_percent REAL NOT NULL,
        used_bytes INTEGER NOT NULL,
        total_bytes INTEGER NOT NULL,
        PRIMARY KEY (ts, node_id, mount)
    ) WITHOUT ROWID;
    CREATE TABLE net_samples (
        ts INTEGER NOT NULL,
        node_id TEXT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
        interface TEXT NOT NULL,
        rx REAL NOT NULL,
        tx REAL NOT NULL,
        PRIMARY KEY (ts, node_id, interface)
    ) WITHOUT ROWID;
    -- Labwatch logs, bounded per node by the store.
    CREATE TABLE node_logs (
        id INTEGER PRIMARY KEY,
        node_id TEXT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
        ts TEXT NOT NULL,
        source TEXT NOT NULL,
        level TEXT NOT NULL,
        message TEXT NOT NULL,
        unit TEXT NOT NULL
    );
    CREATE INDEX node_logs_node ON node_logs(node_id, id);
    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    "#,
];

/// Rollup tables share one shape; created in code so the column list has a
/// single source (store::history::METRICS).
fn rollup_tables_sql() -> String {
    let mut sql = String::new();
    for table in super::rollup::TABLES {
        let mut cols = String::new();
        for m in super::history::METRICS {
            cols.push_str(&format!(
                "{m}_sum REAL, {m}_min REAL, {m}_max REAL, {m}_n INTEGER NOT NULL DEFAULT 0,\n"
            ));
        }
        sql.push_str(&format!(
            "CREATE TABLE {} (
                node_id TEXT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
                ts INTEGER NOT NULL,
                {cols}
                PRIMARY KEY (node_id, ts)
            ) WITHOUT ROWID;\n",
            table.name
        ));
    }
    sql
}

pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    // Migration 2 is generated: the rollup tables.
    let generated = rollup_tables_sql();
    let all: Vec<&str> = MIGRATIONS.iter().copied().chain([generated.as_str()]).collect();
    for (i, sql) in all.iter().enumerate() {
        let version = i as i64 + 1;
        if version <= current {
            continue;
        }
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        log::info!("database migrated to version {version}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, 2);
    }
}
