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

/// Migrations after the generated rollup tables (version 2): version 3 on.
const LATER: &[&str] = &[
    // 3: alert rules, alerts and their timeline, channels, the delivery
    // outbox, maintenance windows, silences.
    r#"
    CREATE TABLE alert_rules (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        metric TEXT NOT NULL,
        -- Scope: neither (global), a node id, or a label selector (JSON object).
        scope_node TEXT REFERENCES nodes(id) ON DELETE CASCADE,
        scope_labels TEXT,
        -- NULL: the level is not set here (inherited); trigger -1: disabled.
        warn_trigger REAL, warn_clear REAL,
        crit_trigger REAL, crit_clear REAL,
        for_s INTEGER,
        enabled INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY,
        -- What the alert is about (kind, metric or source, node, instance):
        -- at most one open alert per key.
        key TEXT NOT NULL,
        rule_id INTEGER,
        kind TEXT NOT NULL,
        source_id TEXT,
        node_id TEXT REFERENCES nodes(id) ON DELETE CASCADE,
        metric TEXT NOT NULL,
        instance TEXT NOT NULL DEFAULT '',
        severity TEXT NOT NULL CHECK (severity IN ('warning','critical')),
        status TEXT NOT NULL CHECK (status IN ('active','acknowledged','resolved')),
        value REAL,
        threshold REAL,
        message TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        acknowledged_at INTEGER,
        acknowledged_by TEXT,
        ack_note TEXT,
        resolved_at INTEGER,
        resolved_by TEXT,
        flapping INTEGER NOT NULL DEFAULT 0,
        -- Suppressed by a maintenance window or a silence when it fired;
        -- notified: a "fired" notification was queued (resolves follow only then).
        suppressed TEXT,
        notified INTEGER NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX alerts_open ON alerts(key) WHERE status != 'resolved';
    CREATE INDEX alerts_started ON alerts(started_at);
    CREATE INDEX alerts_node ON alerts(node_id, started_at);
    CREATE TABLE alert_events (
        id INTEGER PRIMARY KEY,
        alert_id INTEGER NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
        at INTEGER NOT NULL,
        type TEXT NOT NULL,
        severity TEXT,
        value REAL,
        actor TEXT,
        note TEXT
    );
    CREATE INDEX alert_events_alert ON alert_events(alert_id, id);
    CREATE TABLE channels (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        type TEXT NOT NULL,
        config TEXT NOT NULL,
        min_severity TEXT NOT NULL CHECK (min_severity IN ('warning','critical')),
        enabled INTEGER NOT NULL,
        filter TEXT NOT NULL DEFAULT '{}',
        notify_on TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    -- The outbox: a row is written in the same transaction as the alert
    -- change that caused it, before any attempt, so a restart resumes it.
    CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY,
        channel_id INTEGER NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
        alert_id INTEGER REFERENCES alerts(id) ON DELETE SET NULL,
        event TEXT NOT NULL,
        payload TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending','delivered','failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        last_status_code INTEGER,
        last_error TEXT,
        created_at INTEGER NOT NULL,
        delivered_at INTEGER
    );
    CREATE INDEX deliveries_due ON deliveries(status, next_attempt_at);
    CREATE INDEX deliveries_created ON deliveries(created_at);
    CREATE TABLE delivery_attempts (
        id INTEGER PRIMARY KEY,
        delivery_id INTEGER NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
        at INTEGER NOT NULL,
        ok INTEGER NOT NULL,
        status_code INTEGER,
        error TEXT,
        duration_ms INTEGER NOT NULL
    );
    CREATE INDEX delivery_attempts_delivery ON delivery_attempts(delivery_id, id);
    CREATE TABLE maintenance_windows (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        -- One-off: starts_at/ends_at; weekly: JSON {days, from, to, utc_offset}.
        starts_at INTEGER,
        ends_at INTEGER,
        weekly TEXT,
        nodes TEXT NOT NULL DEFAULT '[]',
        labels TEXT NOT NULL DEFAULT '{}',
        created_by TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE silences (
        id INTEGER PRIMARY KEY,
        -- JSON {node, labels, metric, severity}; absent matchers match anything.
        matchers TEXT NOT NULL,
        comment TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        starts_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    );
    CREATE INDEX silences_expiry ON silences(expires_at);
    "#,
    // 4: heartbeats (cron monitoring): the monitors, every ping, the
    // executions pings make (start → end), and status flips for uptime.
    r#"
    CREATE TABLE heartbeats (
        id INTEGER PRIMARY KEY,
        uuid TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        period_s INTEGER NOT NULL,
        grace_s INTEGER NOT NULL,
        paused INTEGER NOT NULL DEFAULT 0,
        labels TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL CHECK (status IN ('new','up','down')),
        last_ping_at INTEGER,
        last_success_at INTEGER,
        -- The open execution's start, until its end ping or its deadline.
        running_since INTEGER,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE heartbeat_pings (
        id INTEGER PRIMARY KEY,
        heartbeat_id INTEGER NOT NULL REFERENCES heartbeats(id) ON DELETE CASCADE,
        at INTEGER NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('success','start','fail','log')),
        exit_code INTEGER,
        method TEXT NOT NULL,
        remote_ip TEXT NOT NULL,
        user_agent TEXT NOT NULL,
        body TEXT NOT NULL,
        truncated INTEGER NOT NULL
    );
    CREATE INDEX heartbeat_pings_hb ON heartbeat_pings(heartbeat_id, id);
    CREATE TABLE heartbeat_executions (
        id INTEGER PRIMARY KEY,
        heartbeat_id INTEGER NOT NULL REFERENCES heartbeats(id) ON DELETE CASCADE,
        started_at INTEGER,
        ended_at INTEGER NOT NULL,
        outcome TEXT NOT NULL CHECK (outcome IN ('success','fail','timeout')),
        exit_code INTEGER,
        duration_ms INTEGER
    );
    CREATE INDEX heartbeat_executions_hb ON heartbeat_executions(heartbeat_id, id);
    CREATE TABLE heartbeat_flips (
        heartbeat_id INTEGER NOT NULL REFERENCES heartbeats(id) ON DELETE CASCADE,
        at INTEGER NOT NULL,
        status TEXT NOT NULL
    );
    CREATE INDEX heartbeat_flips_hb ON heartbeat_flips(heartbeat_id, at);
    "#,
    // 5: checks run from the server (http, tcp) and their results.
    r#"
    CREATE TABLE checks (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        type TEXT NOT NULL,
        target TEXT NOT NULL,
        interval_s INTEGER NOT NULL,
        timeout_s INTEGER NOT NULL,
        failure_threshold INTEGER NOT NULL,
        recovery_threshold INTEGER NOT NULL,
        enabled INTEGER NOT NULL,
        run_from TEXT NOT NULL DEFAULT 'server',
        labels TEXT NOT NULL DEFAULT '{}',
        http TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL CHECK (status IN ('unknown','up','down')),
        fails INTEGER NOT NULL DEFAULT 0,
        successes INTEGER NOT NULL DEFAULT 0,
        last_result TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE check_results (
        check_id INTEGER NOT NULL REFERENCES checks(id) ON DELETE CASCADE,
        at INTEGER NOT NULL,
        ok INTEGER NOT NULL,
        latency_ms INTEGER,
        status_code INTEGER,
        error TEXT
    );
    CREATE INDEX check_results_check ON check_results(check_id, at);
    "#,
    // 6: check types icmp/dns/tls and their options, certificates, agent-run
    // checks (the result's node), and a daily rollup for 90-day uptime.
    r#"
    ALTER TABLE checks ADD COLUMN options TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE checks ADD COLUMN cert TEXT;
    ALTER TABLE check_results ADD COLUMN node_id TEXT;
    ALTER TABLE check_results ADD COLUMN packet_loss REAL;
    ALTER TABLE check_results ADD COLUMN addresses TEXT;
    CREATE TABLE check_daily (
        check_id INTEGER NOT NULL REFERENCES checks(id) ON DELETE CASCADE,
        day INTEGER NOT NULL,
        runs INTEGER NOT NULL,
        ok INTEGER NOT NULL,
        latency_sum REAL NOT NULL DEFAULT 0,
        latency_n INTEGER NOT NULL DEFAULT 0,
        latency_max REAL,
        PRIMARY KEY (check_id, day)
    ) WITHOUT ROWID;
    INSERT INTO check_daily (check_id, day, runs, ok, latency_sum, latency_n, latency_max)
        SELECT check_id, at - at % 86400, COUNT(*), SUM(ok), COALESCE(SUM(latency_ms), 0), COUNT(latency_ms), MAX(latency_ms)
        FROM check_results GROUP BY check_id, at - at % 86400;
    "#,
    // 7: raw samples in a rowid table keyed by (ts << 24) | node number.
    // Appends at the right edge of a rowid b-tree fill whole pages; the
    // WITHOUT ROWID (ts, node_id) table split them half full, and a group
    // commit of 7 snapshots wrote 3.6 pages instead of 1.6 (BENCHMARKS §4).
    // Node numbers come from AUTOINCREMENT, so a deleted node's number is
    // never handed out again.
    r#"
    CREATE TABLE node_seq (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        node_id TEXT NOT NULL UNIQUE REFERENCES nodes(id) ON DELETE CASCADE
    );
    INSERT INTO node_seq (node_id) SELECT id FROM nodes ORDER BY created_at, id;
    CREATE TABLE samples_v7 (
        ts_node INTEGER PRIMARY KEY,
        cpu REAL, memory REAL, swap REAL,
        load1 REAL, load5 REAL, load15 REAL,
        disk REAL, temperature REAL,
        net_rx REAL, net_tx REAL, disk_read REAL, disk_write REAL
    );
    INSERT INTO samples_v7
        SELECT (s.ts << 24) | q.seq, s.cpu, s.memory, s.swap, s.load1, s.load5, s.load15,
               s.disk, s.temperature, s.net_rx, s.net_tx, s.disk_read, s.disk_write
        FROM samples s JOIN node_seq q ON q.node_id = s.node_id ORDER BY 1;
    DROP TABLE samples;
    ALTER TABLE samples_v7 RENAME TO samples;
    "#,
    // 8: per-mount and per-interface detail moves into the samples row it
    // was taken with (store::history::sample_detail has the format). Its own
    // time-major tables made every commit that carried detail append to two
    // more tables' last pages: a third of the live WAL frames for a tenth
    // of the rows (BENCHMARKS §4).
    r#"
    ALTER TABLE samples ADD COLUMN detail TEXT;
    -- Keyed, so the UPDATE below looks each row up (without the key it
    -- scanned the whole table per row: 9 s for 20,000 rows, measured).
    CREATE TEMP TABLE detail_v8 (k INTEGER PRIMARY KEY, detail TEXT);
    INSERT INTO detail_v8 (k, detail)
        SELECT k, json_object(
            'disks', json((SELECT json_group_array(json_array(d.mount, d.used_percent, d.used_bytes, d.total_bytes))
                           FROM disk_samples d WHERE d.ts = x.ts AND d.node_id = x.node_id)),
            'net', json((SELECT json_group_array(json_array(n.interface, n.rx, n.tx))
                         FROM net_samples n WHERE n.ts = x.ts AND n.node_id = x.node_id))) AS detail
        FROM (SELECT DISTINCT (t.ts << 24) | q.seq AS k, t.ts, t.node_id
              FROM (SELECT ts, node_id FROM disk_samples UNION SELECT ts, node_id FROM net_samples) t
              JOIN node_seq q ON q.node_id = t.node_id) x;
    UPDATE samples SET detail = (SELECT detail FROM detail_v8 WHERE k = samples.ts_node)
        WHERE ts_node IN (SELECT k FROM detail_v8);
    DROP TABLE detail_v8;
    DROP TABLE disk_samples;
    DROP TABLE net_samples;
    "#,
    // 9: rollups become blocks (store::blocks): one row per node and stretch
    // of buckets instead of one row per bucket. Reading a 24-hour chart was
    // 1,440 rows at ~0.7 µs each in SQLite (BENCHMARKS §3). The old rows
    // are packed by `pack_rollups_v9` right after this runs.
    r#"
    ALTER TABLE rollup_1m RENAME TO rollup_1m_v8;
    ALTER TABLE rollup_5m RENAME TO rollup_5m_v8;
    ALTER TABLE rollup_1h RENAME TO rollup_1h_v8;
    CREATE TABLE rollup_1m (k INTEGER PRIMARY KEY, data BLOB NOT NULL);
    CREATE TABLE rollup_5m (k INTEGER PRIMARY KEY, data BLOB NOT NULL);
    CREATE TABLE rollup_1h (k INTEGER PRIMARY KEY, data BLOB NOT NULL);
    "#,
];

/// Migration 9's second half: every bucket row of the old rollup tables
/// goes into its block, then the old tables go. Rows of nodes without a
/// number (deleted) are dropped, as the node's deletion would have.
fn pack_rollups_v9(tx: &rusqlite::Transaction) -> rusqlite::Result<()> {
    for t in super::rollup::TABLES.iter() {
        let mut cols = String::new();
        for m in super::history::METRICS {
            cols.push_str(&format!(", r.{m}_sum, r.{m}_n, r.{m}_min, r.{m}_max"));
        }
        // The old key order (node, time) keeps each block's rows together.
        let sql = format!(
            "SELECT q.seq, r.ts{cols} FROM {name}_v8 r JOIN node_seq q ON q.node_id = r.node_id",
            name = t.name
        );
        super::rollup::pack_rows(tx, t, &sql, [])?;
        tx.execute_batch(&format!("DROP TABLE {}_v8", t.name))?;
    }
    Ok(())
}

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

/// Applies every pending migration; true if any ran.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<bool> {
    migrate_up_to(conn, i64::MAX)
}

/// Applies the migrations after the database's version, up to `last`.
fn migrate_up_to(conn: &mut Connection, last: i64) -> rusqlite::Result<bool> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let mut ran = false;
    // Migration 2 is generated: the rollup tables.
    let generated = rollup_tables_sql();
    let all: Vec<&str> = MIGRATIONS
        .iter()
        .copied()
        .chain([generated.as_str()])
        .chain(LATER.iter().copied())
        .collect();
    for (i, sql) in all.iter().enumerate() {
        let version = i as i64 + 1;
        if version <= current || version > last {
            continue;
        }
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        if version == 9 {
            pack_rollups_v9(&tx)?;
        }
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        log::info!("database migrated to version {version}");
        ran = true;
    }
    Ok(ran)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert!(migrate(&mut conn).unwrap(), "an empty database is migrated");
        assert!(!migrate(&mut conn).unwrap(), "and then has nothing to do");
        let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, 9);
    }

    #[test]
    fn raw_samples_keep_their_rows_through_version_7() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA foreign_keys=ON").unwrap();
        migrate_up_to(&mut conn, 6).unwrap();
        for (i, id) in ["b", "a"].iter().enumerate() {
            conn.execute(
                "INSERT INTO nodes (id, name, hostname, kind, interval_s, created_at)
                 VALUES (?1, ?1, ?1, 'agent', 30, ?2)",
                rusqlite::params![id, i as i64],
            )
            .unwrap();
        }
        conn.execute_batch(
            "INSERT INTO samples (ts, node_id, cpu, disk_write) VALUES
                (1000, 'a', 1.5, 7), (1000, 'b', 2.5, NULL), (1030, 'a', 3.5, 8)",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let rows: Vec<(String, i64, f64, Option<f64>)> = conn
            .prepare(
                "SELECT q.node_id, s.ts_node >> 24, s.cpu, s.disk_write FROM samples s
                 JOIN node_seq q ON q.seq = (s.ts_node & 16777215) ORDER BY s.ts_node",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            rows,
            vec![
                ("b".to_string(), 1000, 2.5, None),
                ("a".to_string(), 1000, 1.5, Some(7.0)),
                ("a".to_string(), 1030, 3.5, Some(8.0)),
            ],
            "node numbers follow creation order (b first)"
        );
        // A new node gets a number never used before.
        conn.execute("DELETE FROM nodes WHERE id = 'a'", []).unwrap();
        conn.execute("INSERT INTO node_seq (node_id) VALUES ('b2')", [])
            .map(|_| ())
            .unwrap_err(); // no such node: the foreign key holds
        conn.execute(
            "INSERT INTO nodes (id, name, hostname, kind, interval_s, created_at)
             VALUES ('c', 'c', 'c', 'agent', 30, 5)",
            [],
        )
        .unwrap();
        conn.execute("INSERT INTO node_seq (node_id) VALUES ('c')", [])
            .unwrap();
        let seq: i64 = conn
            .query_row("SELECT seq FROM node_seq WHERE node_id = 'c'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(seq, 3, "AUTOINCREMENT never reuses a deleted node's number");
    }

    #[test]
    fn per_mount_and_interface_detail_moves_into_its_sample_row_in_version_8() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA foreign_keys=ON").unwrap();
        migrate_up_to(&mut conn, 7).unwrap();
        conn.execute_batch(
            "INSERT INTO nodes (id, name, hostname, kind, interval_s, created_at)
                 VALUES ('a', 'a', 'a', 'agent', 30, 0);
             INSERT INTO node_seq (node_id) VALUES ('a');
             INSERT INTO samples (ts_node, cpu) VALUES ((1000 << 24) | 1, 1.0), ((1030 << 24) | 1, 2.0),
                 ((1060 << 24) | 1, 3.0);
             INSERT INTO disk_samples VALUES (1000, 'a', '/', 12.5, 100, 800), (1000, 'a', '/srv', 50.0, 4, 8);
             INSERT INTO net_samples VALUES (1000, 'a', 'eth0', 1.5, 2.5), (1060, 'a', 'wlan0', 3.0, 4.0);",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let rows: Vec<(i64, Option<String>)> = conn
            .prepare("SELECT ts_node >> 24, detail FROM samples ORDER BY ts_node")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let json = |t: &Option<String>| {
            t.as_deref()
                .map(|t| serde_json::from_str::<serde_json::Value>(t).unwrap())
        };
        assert_eq!(
            json(&rows[0].1),
            Some(serde_json::json!({
                "disks": [["/", 12.5, 100, 800], ["/srv", 50.0, 4, 8]],
                "net": [["eth0", 1.5, 2.5]]
            }))
        );
        assert_eq!(rows[1], (1030, None));
        assert_eq!(
            json(&rows[2].1),
            Some(serde_json::json!({"disks": [], "net": [["wlan0", 3.0, 4.0]]}))
        );
        let left: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name IN ('disk_samples', 'net_samples')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(left, 0);
    }

    #[test]
    fn rollup_rows_are_packed_into_blocks_in_version_9() {
        use crate::store::blocks::Cell;
        use crate::store::rollup::{read_level, TABLES};
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA foreign_keys=ON").unwrap();
        migrate_up_to(&mut conn, 8).unwrap();
        conn.execute_batch(
            "INSERT INTO nodes (id, name, hostname, kind, interval_s, created_at)
                 VALUES ('a', 'a', 'a', 'agent', 30, 0), ('b', 'b', 'b', 'agent', 30, 1);
             INSERT INTO node_seq (node_id) VALUES ('a'), ('b');
             -- a: two minutes in one block, one in the next (blocks of 120 minutes)
             INSERT INTO rollup_1m (node_id, ts, cpu_sum, cpu_n, cpu_min, cpu_max, disk_sum, disk_n, disk_min, disk_max)
                 VALUES ('a', 7200, 3.0, 2, 1.0, 2.0, 40.0, 1, 40.0, 40.0),
                        ('a', 7260, 5.0, 1, 5.0, 5.0, NULL, 0, NULL, NULL),
                        ('a', 14400, 8.0, 2, 3.0, 5.0, NULL, 0, NULL, NULL),
                        ('b', 7200, 1.0, 1, 1.0, 1.0, NULL, 0, NULL, NULL);
             INSERT INTO rollup_1h (node_id, ts, memory_sum, memory_n, memory_min, memory_max)
                 VALUES ('b', 3600, 100.0, 120, 0.5, 0.9);",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let read = |t, seq, metric| {
            let mut out = Vec::new();
            read_level(&conn, t, seq, (0, 86400), &|m| m == metric, &mut |ts,
                                                                          c: Option<
                (usize, Cell),
            >| {
                out.push((ts, c.map(|(_, c)| (c.n, c.sum, c.min, c.max))))
            })
            .unwrap();
            out
        };
        assert_eq!(
            read(&TABLES[0], 1, 0),
            vec![
                (7200, None),
                (7260, None),
                (7200, Some((2, 3.0, 1.0, 2.0))),
                (7260, Some((1, 5.0, 5.0, 5.0))),
                (14400, None),
                (14400, Some((2, 8.0, 3.0, 5.0))),
            ]
        );
        assert_eq!(
            read(&TABLES[0], 1, 6),
            vec![
                (7200, None),
                (7260, None),
                (7200, Some((1, 40.0, 40.0, 40.0))),
                (14400, None)
            ]
        );
        assert_eq!(
            read(&TABLES[0], 2, 0),
            vec![(7200, None), (7200, Some((1, 1.0, 1.0, 1.0)))]
        );
        assert_eq!(
            read(&TABLES[2], 2, 1),
            vec![(3600, None), (3600, Some((120, 100.0, 0.5, f64::from(0.9f32))))]
        );
        for old in ["rollup_1m_v8", "rollup_5m_v8", "rollup_1h_v8"] {
            let n: i64 = conn
                .query_row("SELECT count(*) FROM sqlite_schema WHERE name = ?1", [old], |r| {
                    r.get(0)
                })
                .unwrap();
            assert_eq!(n, 0, "{old} is dropped");
        }
    }
}
