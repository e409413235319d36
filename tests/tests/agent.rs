//! The real agent against the real daemon: enrollment, shipping, and an
//! outage of several intervals that the spool backfills without a gap.

use cairn_e2e::*;
use std::process::{Command, Stdio};
use std::time::Duration;

fn spool_len(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("spool"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .count()
        })
        .unwrap_or(0)
}

/// The second of every snapshot waiting in the agent's spool.
fn spooled_times(dir: &std::path::Path) -> Vec<u64> {
    let mut times: Vec<u64> = std::fs::read_dir(dir.join("spool"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .map(|e| {
            let snap: serde_json::Value = serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
            parse_rfc3339(snap["timestamp"].as_str().unwrap())
        })
        .collect();
    times.sort_unstable();
    times
}

fn raw_times(d: &Daemon, token: &str, node: &str, from: u64) -> Vec<u64> {
    let to = now() + 1;
    let h = d
        .client
        .get(
            &format!("/api/v1/nodes/{node}/history?metrics=cpu&from={from}&to={to}"),
            Some(token),
        )
        .json();
    assert_eq!(h["resolution_s"], 1, "a short window reads raw samples: {h}");
    let avg = h["series"]["cpu"]["avg"].as_array().unwrap().clone();
    h["timestamps"]
        .as_array()
        .unwrap()
        .iter()
        .zip(avg)
        .filter(|(_, v)| !v.is_null())
        .map(|(t, _)| parse_rfc3339(t.as_str().unwrap()))
        .collect()
}

/// Inverse of `rfc3339` for whole-second UTC times.
fn parse_rfc3339(s: &str) -> u64 {
    let n = |a: usize, b: usize| s[a..b].parse::<u64>().unwrap();
    let (y, m, d) = (n(0, 4), n(5, 7), n(8, 10));
    let (hh, mm, ss) = (n(11, 13), n(14, 16), n(17, 19));
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86400 + hh * 3600 + mm * 60 + ss
}

#[test]
fn agent_backfills_an_outage_without_missing_points() {
    let mut d = Daemon::start_with(DaemonOpts {
        env: vec![
            ("CAIRN_INTERVAL_S".into(), "1".into()),
            // The production commit spacing, end to end.
            ("CAIRN_COMMIT_WINDOW_MS".into(), "1000".into()),
        ],
        ..DaemonOpts::default()
    });
    let admin = d.admin();
    let enrolled = EnrolledAgent::enroll(&d, &admin);
    let (node, state) = (enrolled.node.clone(), enrolled.state());
    let started = now();
    let agent = enrolled.run();
    let before = poll(
        "three snapshots before the outage",
        Duration::from_secs(30),
        || Some(raw_times(&d, &admin, &node, started - 2)).filter(|t| t.len() >= 3),
    );

    // The server goes away for several intervals; the agent keeps collecting.
    d.stop();
    poll(
        "the agent to spool five snapshots",
        Duration::from_secs(60),
        || (spool_len(&state) >= 5).then_some(()),
    );
    // What the agent holds now must all arrive: the outage's points.
    let spooled = spooled_times(&state);
    d.restart();
    let admin = d.admin();
    poll("the spool to drain", Duration::from_secs(60), || {
        (spool_len(&state) == 0).then_some(())
    });
    let back = now();
    poll(
        "fresh snapshots after the restart",
        Duration::from_secs(30),
        || raw_times(&d, &admin, &node, back).len().ge(&2).then_some(()),
    );

    let times = raw_times(&d, &admin, &node, started - 2);
    let missing: Vec<u64> = spooled.iter().copied().filter(|t| !times.contains(t)).collect();
    assert!(
        spooled.len() >= 5 && missing.is_empty(),
        "spooled during the outage {spooled:?}, not stored {missing:?}, stored {times:?}"
    );
    // Around the outage too: one-second collections land every second or
    // two (a send waits for the 1 s commit window), and one may wait for
    // the daemon's shutdown or its first commit after the restart; a lost
    // stretch of the outage would leave five seconds or more.
    let gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let worst = gaps.iter().copied().max().unwrap_or(0);
    assert!(worst <= 4, "gap of {worst} s in {times:?}");
    // A snapshot stored as the daemon stopped may also be in the spool (its
    // answer never came) and is then stored once: the sets may overlap.
    let known: std::collections::BTreeSet<u64> = before.iter().chain(&spooled).copied().collect();
    assert!(
        known.iter().all(|t| times.contains(t)),
        "{known:?} not all in {times:?}"
    );
    assert!(times.len() >= known.len() + 2, "{times:?}");
    drop(agent);
}

#[test]
fn once_prints_a_snapshot_without_a_server() {
    let out = Command::new(bin("cairn-agent")).arg("once").output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("once prints JSON");
    assert!(v["memory"]["total_bytes"].as_u64().unwrap() > 0);
    assert!(v["cpu"]["count"].as_u64().unwrap() > 0);
    assert!(!v["timestamp"].as_str().unwrap().is_empty());
}

/// An enrollment that could not be saved must not use up the one-time code.
#[test]
fn enroll_checks_its_state_dir_before_spending_the_code() {
    let d = Daemon::start();
    let admin = d.admin();
    let code = d.enrollment_code(&admin);
    let dir = TempDir::new("agent-enroll");
    // A directory cannot be made under a regular file, even by root.
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"").unwrap();
    let enroll = |state: &std::path::Path| {
        Command::new(bin("cairn-agent"))
            .args(["enroll", "--server", &d.url(), "--code", &code, "--config"])
            .arg(dir.path().join("agent.toml"))
            .env("CAIRN_STATE_DIR", state)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = enroll(&blocker.join("state"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not-a-dir"), "the error names the state dir: {err}");
    let nodes = d.client.get("/api/v1/nodes", Some(&admin)).json();
    assert_eq!(
        nodes["data"].as_array().map(Vec::len),
        Some(0),
        "no node was created"
    );
    // The same code still works once the state dir is usable.
    let out = enroll(&dir.path().join("state"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // A spent code is refused with its own exit status (3), for units that
    // must stop retrying.
    let out = enroll(&dir.path().join("state2"));
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
