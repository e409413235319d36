//! Figure 3: History query latency.
//!
//! One node gets 30 days at 30 s (86,400 snapshots), 100 nodes get 24 h at
//! 30 s. After the rollup pass covering the backfill (run by a first history
//! read, as when someone opens a chart after a backfill) the daemon is restarted:
//! its start-up retention pass then trims the data as a long-running daemon
//! would have (raw older than 2 days, 1-minute rollups older than 8 days), so
//! the 30-day query is served from the 5-minute rollup like in production,
//! without raising any retention. Latencies are measured by one client over a
//! keep-alive connection (HTTP included).

use crate::harness::*;
use cairnd::store::history::{RAW_OF_NODE, TS_SHIFT};
use serde_json::Value;
use std::time::{Duration, Instant};

fn timed(http: &Http, path: &str, token: &str) -> Res<(Duration, Value, usize)> {
    let t = Instant::now();
    let (status, text) = http.get(path, Some(token))?;
    let took = t.elapsed();
    if status != 200 {
        return Err(format!("GET {path}: {status} {text}"));
    }
    let v = serde_json::from_str(&text).map_err(|e| format!("GET {path}: {e}"))?;
    Ok((took, v, text.len()))
}

fn filled(v: &Value) -> usize {
    v.as_array()
        .map(|a| a.iter().filter(|x| !x.is_null()).count())
        .unwrap_or(0)
}

pub fn run(env: &Env, r: &mut Results) -> Res<()> {
    let days = env.opt("query-days", 30i64);
    let fleet = env.opt("query-nodes", 100usize);
    let reps = env.opt("query-reps", 200usize);
    let rounds = env.opt("query-rounds", 20usize);
    let dir = env.fresh_dir("query")?;
    let mut d = env.start_daemon(&dir, &[])?;
    let admin = d.admin_token()?;
    let agents = d.enroll_many(&admin, fleet + 1, "query")?;
    let end = unix_now() / 30 * 30 - 30;
    let month: Vec<(usize, String)> = vec![(0, agents[0].1.clone())];
    let day: Vec<(usize, String)> = (1..=fleet).map(|i| (i, agents[i].1.clone())).collect();
    let (a1, t1) = backfill(&d.http(), &month, (days * 2880) as usize, end, 500, 16)?;
    let (a2, t2) = backfill(&d.http(), &day, 2880, end, 500, 16)?;
    println!(
        "  backfilled {a1} snapshots ({days} d) into one node in {:.1} s and {a2} (24 h x {fleet}) in {:.1} s",
        t1.as_secs_f64(),
        t2.as_secs_f64()
    );
    let pass = settle_rollups(&d, &admin, &agents[0].0)?;
    println!(
        "  rollup pass over the backfill (run by the first history read): {:.1} s",
        pass.as_secs_f64()
    );
    d.restart()?;
    // The start-up retention pass trims raw samples older than 2 days.
    let month_id = agents[0].0.clone();
    let db = open_ro(&d.db_path())?;
    poll(
        "the start-up retention pass",
        Duration::from_secs(300),
        Duration::from_millis(200),
        || {
            let oldest: Option<i64> = db
                .query_row(
                    &format!("SELECT min(ts_node) >> {TS_SHIFT} FROM samples WHERE {RAW_OF_NODE}"),
                    [&month_id],
                    |r| r.get(0),
                )
                .ok()?;
            oldest.filter(|o| *o >= unix_now() - 2 * 86400 - 3600).map(|_| ())
        },
    )?;
    let admin = d.admin_token()?;
    let http = d.http();

    // The floor: a request that does (almost) nothing, over the same connection.
    for (name, path) in [("version", "/api/v1/version"), ("auth_me", "/api/v1/auth/me")] {
        let mut lat = Vec::new();
        for _ in 0..200 {
            lat.push(timed(&http, path, &admin)?.0);
        }
        let (p50, p99, _) = latency_ms(lat);
        r.info(&format!("query.floor_{name}.p50"), p50, "ms");
        r.info(&format!("query.floor_{name}.p99"), p99, "ms");
    }

    // One node, 30 days.
    let path = format!(
        "/api/v1/nodes/{month_id}/history?metrics=cpu,memory&hours={}",
        days * 24
    );
    let (cold, v, bytes) = timed(&http, &path, &admin)?;
    println!(
        "  {days} d of one node: source {}, resolution {} s, {} points ({} with data), {bytes} bytes",
        v["source"],
        v["resolution_s"],
        v["timestamps"].as_array().map(|a| a.len()).unwrap_or(0),
        filled(&v["series"]["cpu"]["avg"])
    );
    r.info(
        "query.30d_one_node.first_after_restart",
        cold.as_secs_f64() * 1000.0,
        "ms",
    );
    for _ in 0..5 {
        timed(&http, &path, &admin)?;
    }
    let mut lat = Vec::with_capacity(reps);
    for _ in 0..reps {
        lat.push(timed(&http, &path, &admin)?.0);
    }
    let (p50, p99, _) = latency_ms(lat);
    r.target("query.30d_one_node.p50", p50, "ms", 20.0, true);
    r.target("query.30d_one_node.p99", p99, "ms", 20.0, true);

    // 100 nodes, 24 h each: a dashboard of 100 node charts.
    let paths: Vec<String> = (1..=fleet)
        .map(|i| {
            format!(
                "/api/v1/nodes/{}/history?metrics=cpu,memory&hours=24",
                agents[i].0
            )
        })
        .collect();
    let (_, v, bytes) = timed(&http, &paths[0], &admin)?;
    println!(
        "  24 h of one node: source {}, resolution {} s, {} points ({} with data), {bytes} bytes",
        v["source"],
        v["resolution_s"],
        v["timestamps"].as_array().map(|a| a.len()).unwrap_or(0),
        filled(&v["series"]["cpu"]["avg"])
    );
    // A round is the server's time for 100 sequential requests: replies are
    // checked for status only, as parsing each 90 KB reply into a JSON tree
    // here took about a third of the round (kept as its own figure).
    let mut per_request = Vec::new();
    let mut per_round = Vec::new();
    let mut per_round_parsed = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        for p in &paths {
            let q = Instant::now();
            let (status, text) = http.get(p, Some(&admin))?;
            per_request.push(q.elapsed());
            if status != 200 {
                return Err(format!("GET {p}: {status} {text}"));
            }
        }
        per_round.push(t.elapsed());
        let t = Instant::now();
        for p in &paths {
            timed(&http, p, &admin)?;
        }
        per_round_parsed.push(t.elapsed());
    }
    let (p50, _, _) = latency_ms(per_round_parsed);
    r.info(
        &format!("query.24h_{fleet}_nodes_sequential_with_client_parse.p50"),
        p50,
        "ms",
    );
    let (p50, p99, _) = latency_ms(per_request);
    r.info("query.24h_one_node.p50", p50, "ms");
    r.info("query.24h_one_node.p99", p99, "ms");
    // The "24 h of 100 nodes" is one history query over the fleet,
    // the fleet chart below, which holds the target. The same data as 100
    // node requests (a dashboard loading its charts one by one) is shown
    // beside it: ~0.8 ms a request, three quarters of it the HTTP exchange.
    let (p50, p99, _) = latency_ms(per_round);
    r.info(&format!("query.24h_{fleet}_nodes_sequential.p50"), p50, "ms");
    r.info(&format!("query.24h_{fleet}_nodes_sequential.p99"), p99, "ms");

    // The fleet chart: one request, every node (the 100 plus the 30-day one).
    let chart = "/api/v1/charts?metric=cpu&hours=24";
    let (_, v, bytes) = timed(&http, chart, &admin)?;
    println!(
        "  fleet chart: {} nodes, resolution {} s, {bytes} bytes",
        v["nodes"].as_array().map(|a| a.len()).unwrap_or(0),
        v["resolution_s"]
    );
    let mut lat = Vec::new();
    for _ in 0..rounds.max(20) * 2 {
        lat.push(timed(&http, chart, &admin)?.0);
    }
    let (p50, p99, _) = latency_ms(lat);
    r.target("query.fleet_chart_24h.p50", p50, "ms", 100.0, true);
    r.target("query.fleet_chart_24h.p99", p99, "ms", 100.0, true);
    d.stop()?;

    // The same reads in-process on the same database: how much of a request
    // is the store query (the rest is JSON rendering, the executor hop and HTTP).
    let store = cairnd::store::Store::open(&d.db_path())?;
    let now = unix_now();
    let metrics = [0, 1]; // cpu, memory
    for (name, id, span, points) in [
        ("30d_one_node", month_id.as_str(), days * 86400, 1000),
        ("24h_one_node", agents[1].0.as_str(), 86400, 1000),
    ] {
        let mut lat = Vec::new();
        for _ in 0..50 {
            let t = Instant::now();
            store
                .history(id, &metrics, now - span, now, points, now)
                .map_err(|e| e.to_string())?;
            lat.push(t.elapsed());
        }
        let (p50, _, _) = latency_ms(lat);
        r.info(&format!("query.{name}.store_only_p50"), p50, "ms");
    }
    r.note(format!(
        "{days} d x 1 node = {a1} snapshots, 24 h x {fleet} nodes = {a2}; the fleet chart covers {} nodes; \
         {reps} repetitions of the {days}-day query, {rounds} rounds of {fleet} 24-hour queries",
        fleet + 1
    ));
    Ok(())
}
