//! Figure: what the alert engine costs ingest. 200 nodes post single
//! snapshots as fast as the daemon acknowledges (commit window 0, so the
//! machinery is the limit and any extra work per snapshot shows), once
//! with no alert rules (built-in defaults only) and once with 100 rules
//! (global, label-scoped and node-scoped over every metric, thresholds
//! high enough that nothing fires: the steady state). Two fresh daemons,
//! the second runs the phases in the opposite order so neither phase
//! always gets the warmer cache or the bigger database.
//!
//! In-process, the same engine call the committer makes
//! (`Alerting::observe`) is timed per snapshot beside parse + validate.

use crate::harness::*;
use crate::ingest::drive;
use serde_json::json;
use std::time::Instant;

const METRICS: [&str; 8] = [
    "cpu",
    "memory",
    "swap",
    "disk",
    "load_per_core",
    "temperature",
    "net_rx",
    "net_tx",
];

/// Rule `i` of 100: 20 global, 40 on labels, 40 on single nodes.
fn rule(i: usize, nodes: &[String]) -> serde_json::Value {
    let metric = METRICS[i % METRICS.len()];
    let (w, c) = match metric {
        "net_rx" | "net_tx" => (1e12, 2e12),
        "load_per_core" => (50.0, 60.0),
        _ => (98.0, 99.5),
    };
    let scope = match i {
        0..=19 => json!({}),
        20..=59 => json!({"labels": {"room": format!("r{}", i % 10)}}),
        _ => json!({"node": nodes[(i * 7) % nodes.len()]}),
    };
    json!({"name": format!("bench {i}"), "metric": metric, "scope": scope,
           "warning": {"trigger": w, "clear": w * 0.9}, "critical": {"trigger": c, "clear": c * 0.9},
           "for_s": (i % 4) * 30})
}

fn add_rules(d: &Daemon, admin: &str, nodes: &[String]) -> Res<Vec<i64>> {
    let http = d.http();
    (0..100)
        .map(|i| {
            let v = http.post_json("/api/v1/alert-rules", Some(admin), &rule(i, nodes))?;
            v["id"].as_i64().ok_or_else(|| format!("no rule id in {v}"))
        })
        .collect()
}

fn remove_rules(d: &Daemon, admin: &str, ids: &[i64]) -> Res<()> {
    let http = d.http();
    for id in ids {
        let (status, text) = http.send("DELETE", &format!("/api/v1/alert-rules/{id}"), Some(admin), b"")?;
        if status != 204 {
            return Err(format!("deleting rule {id}: {status} {text}"));
        }
    }
    Ok(())
}

pub fn run(env: &Env, r: &mut Results) -> Res<()> {
    let n = env.opt("ingest-nodes", 200usize);
    let secs = env.opt("alerts-seconds", 10.0f64);
    let mut with = Vec::new();
    let mut without = Vec::new();
    for (round, rules_first) in [(1, false), (2, true)] {
        let dir = env.fresh_dir(&format!("alerts-{round}"))?;
        let mut d = env.start_daemon(&dir, &[("CAIRN_COMMIT_WINDOW_MS", "0")])?;
        let admin = d.admin_token()?;
        let agents = d.enroll_many(&admin, n, "alerts")?;
        let ids: Vec<String> = agents.iter().map(|(id, _)| id.clone()).collect();
        let http = d.http();
        for (k, id) in ids.iter().enumerate() {
            http.patch_json(
                &format!("/api/v1/nodes/{id}"),
                Some(&admin),
                &json!({"labels": {"room": format!("r{}", k % 10), "tier": "bench"}}),
            )?;
        }
        // Live timestamps, one second apart per node, just behind the clock.
        let t0 = unix_now() - 30;
        let per_phase = 140usize;
        for phase in 0..2 {
            let rules_on = (phase == 0) == rules_first;
            let rule_ids = if rules_on {
                add_rules(&d, &admin, &ids)?
            } else {
                Vec::new()
            };
            let offset = t0 + (phase * per_phase) as i64;
            let dr = drive(&d, &agents, secs, per_phase, |node, k| {
                single_body(node, offset + k as i64)
            })?;
            if dr.errors > 0 {
                return Err(format!("round {round}: {} ingest requests failed", dr.errors));
            }
            let rate = dr.acked as f64 / dr.elapsed.as_secs_f64();
            let name = if rules_on { "100_rules" } else { "no_rules" };
            println!("  round {round}, {name}: {rate:.0} snapshots/s");
            r.info(
                &format!("alerts.round{round}.{name}.snapshots_per_s"),
                rate,
                "snapshots/s",
            );
            if rules_on {
                with.push(rate);
                remove_rules(&d, &admin, &rule_ids)?;
            } else {
                without.push(rate);
            }
        }
        let (status, text) = d.http().get("/api/v1/alerts/count", Some(&admin))?;
        if status == 200 {
            println!("  round {round}: open alerts after the run: {text}");
        }
        d.stop()?;
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let drop = 100.0 * (1.0 - mean(&with) / mean(&without));
    r.target("alerts.ingest_drop_with_100_rules", drop, "%", 10.0, true);

    // In-process: the committer's engine call per snapshot, beside parsing.
    let (eval_us, parse_us) = in_process(n)?;
    r.info("alerts.evaluate_per_snapshot", eval_us, "µs");
    r.info("alerts.parse_validate_per_snapshot", parse_us, "µs");
    Ok(())
}

fn in_process(n: usize) -> Res<(f64, f64)> {
    use cairnd::engine::alerts::{Alerting, Settings};
    use cairnd::store::nodes::NewNode;
    let err = |e: rusqlite::Error| e.to_string();
    let dir = std::env::temp_dir().join(format!("cairn-bench-alerts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut store = cairnd::store::Store::open(&dir.join("cairn.db"))?;
    let now = unix_now();
    let ids: Vec<String> = (0..n).map(|k| format!("node-{k}")).collect();
    for id in &ids {
        store.insert_node(&NewNode::agent(id, 30), now).map_err(err)?;
    }
    for i in 0..100 {
        let v = rule(i, &ids);
        let input: cairnd::engine::alerts::rules::RuleInput =
            serde_json::from_value(v).map_err(|e| e.to_string())?;
        let f = input.apply(None, |_| true).map_err(|e| e.message)?;
        store.insert_rule(&f, now).map_err(err)?;
    }
    let items: Vec<_> = (0..n)
        .map(|k| cairnd::engine::ingest::parse_native(&single_body(k, now - 10), now).map_err(|e| e.message))
        .collect::<Res<Vec<_>>>()?;
    let settings = Settings {
        guard: Default::default(),
        base_url: "http://127.0.0.1:8440".into(),
    };
    let mut alerting = Alerting::default();
    let reps = 20;
    let t = Instant::now();
    for rep in 0..reps {
        for (k, id) in ids.iter().enumerate() {
            let mut item = items[k][0].clone();
            item.ts += rep;
            alerting
                .observe(&mut store, id, &item, &settings, now)
                .map_err(err)?;
        }
    }
    let eval_us = t.elapsed().as_secs_f64() * 1e6 / (reps as usize * n) as f64;
    let body = single_body(0, now - 10);
    let t = Instant::now();
    for _ in 0..2000 {
        cairnd::engine::ingest::parse_native(&body, now).map_err(|e| e.message)?;
    }
    let parse_us = t.elapsed().as_secs_f64() * 1e6 / 2000.0;
    let _ = std::fs::remove_dir_all(&dir);
    Ok((eval_us, parse_us))
}
