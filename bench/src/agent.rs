//! Figure 5: The agent's footprint beside Debian's prometheus-node-exporter.
//!
//! Binary sizes (dist/<arch>/cairn-agent when cross/build.sh has run, and the
//! binary measured); `cairn-agent once` peak RSS and CPU (wait4 rusage); a
//! running agent (`cairn-agent run` every 1 s against a local cairnd):
//! RSS and CPU per collection (utime+stime over K collections / K, where a
//! collection includes spooling and shipping the snapshot); node-exporter
//! on 127.0.0.1: binary size, RSS after K scrapes, CPU per scrape.

use crate::harness::*;
use cairnd::store::history::RAW_OF_NODE;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn log_file(p: &Path) -> Res<(Stdio, Stdio)> {
    let f = std::fs::File::create(p).map_err(|e| format!("creating {}: {e}", p.display()))?;
    let g = f.try_clone().map_err(|e| e.to_string())?;
    Ok((Stdio::from(f), Stdio::from(g)))
}

pub fn run(env: &Env, r: &mut Results) -> Res<()> {
    let k = env.opt("agent-seconds", 60u64);
    for arch in ["amd64", "arm64", "armv7"] {
        for bin in ["cairn-agent", "cairnd"] {
            let p = env.dist.join(arch).join(bin);
            if p.is_file() {
                r.info(
                    &format!("agent.size.dist.{arch}.{bin}"),
                    mib(file_size(&p)),
                    "MiB",
                );
            }
        }
    }
    let agent = env
        .agent
        .clone()
        .ok_or("no agent binary: pass --agent PATH (bench/run.sh does)")?;
    let agent_size = file_size(&agent);
    r.info("agent.size.measured", mib(agent_size), "MiB");
    r.note(format!("agent measured: {}", agent.display()));

    // `once`: two readings a second apart, then the JSON on stdout. CPU from
    // wait4 on the agent itself. Its ru_maxrss would also count the image of
    // this (large) process between fork and exec, so the peak RSS comes from
    // GNU time, whose own small image is what the agent is forked from; or,
    // without it, from polling VmHWM until the process exits.
    let mut cpu = Vec::new();
    for _ in 0..5 {
        let child = Command::new(&agent)
            .arg("once")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", agent.display()))?;
        let (status, _, secs) = wait_rusage(child.id())?;
        if status != 0 {
            return Err(format!("cairn-agent once exited with status {status}"));
        }
        cpu.push(secs * 1000.0);
    }
    r.info("agent.once.cpu", median(cpu), "ms");
    let time = PathBuf::from("/usr/bin/time");
    let mut rss = Vec::new();
    for i in 0..5 {
        if time.is_file() {
            let report = env.work.join(format!("time-{i}.txt"));
            let st = Command::new(&time)
                .args(["-f", "%M", "-o"])
                .arg(&report)
                .arg(&agent)
                .arg("once")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map_err(|e| e.to_string())?;
            let kb: f64 = std::fs::read_to_string(&report)
                .ok()
                .and_then(|t| t.lines().last()?.trim().parse().ok())
                .ok_or_else(|| format!("no maxrss from /usr/bin/time ({st})"))?;
            rss.push(kb / 1024.0);
        } else {
            let mut child = Command::new(&agent)
                .arg("once")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| e.to_string())?;
            let mut peak = 0;
            while let Ok(None) = child.try_wait() {
                peak = peak.max(status_kb(child.id(), "VmHWM").unwrap_or(0));
                std::thread::sleep(Duration::from_millis(1));
            }
            rss.push(mib(peak));
        }
    }
    r.info("agent.once.max_rss", median(rss), "MiB");
    if !time.is_file() {
        r.note("agent once peak RSS polled from /proc (no /usr/bin/time): may miss the last milliseconds");
    }

    // `run` against a local cairnd that hands out a 1 s interval.
    let dir = env.fresh_dir("agent")?;
    let mut d = env.start_daemon(&dir, &[("CAIRN_INTERVAL_S", "1")])?;
    let admin = d.admin_token()?;
    let code = d
        .http()
        .post_json("/api/v1/enrollment-codes", Some(&admin), &serde_json::json!({}))?;
    let code = code["code"].as_str().ok_or("no code")?.to_string();
    let state = dir.join("agent-state");
    let config = dir.join("agent.toml");
    let out = Command::new(&agent)
        .args(["enroll", "--server", &d.url(), "--code", &code, "--config"])
        .arg(&config)
        .env("CAIRN_STATE_DIR", &state)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("enroll failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let identity: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(state.join("identity.json")).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let node = identity["node_id"].as_str().ok_or("no node_id")?.to_string();
    let (o, e) = log_file(&dir.join("agent.log"))?;
    let mut child = Command::new(&agent)
        .args(["run", "--config"])
        .arg(&config)
        .env("CAIRN_STATE_DIR", &state)
        .env("CAIRN_AGENT_INTERVAL_S", "1")
        .stdin(Stdio::null())
        .stdout(o)
        .stderr(e)
        .spawn()
        .map_err(|e| format!("starting the agent: {e}"))?;
    let pid = child.id();
    let db = open_ro(&d.db_path())?;
    let count = || -> i64 {
        db.query_row(
            &format!("SELECT count(*) FROM samples WHERE {RAW_OF_NODE}"),
            [&node],
            |x| x.get(0),
        )
        .unwrap_or(0)
    };
    poll(
        "the agent's first snapshots",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || (count() >= 3).then_some(()),
    )?;
    let (c0, cpu0) = (count(), cpu_seconds(pid).unwrap_or(0.0));
    std::thread::sleep(Duration::from_secs(k));
    let (c1, cpu1) = (count(), cpu_seconds(pid).unwrap_or(0.0));
    let collections = (c1 - c0).max(1) as f64;
    let agent_cpu = (cpu1 - cpu0) * 1000.0 / collections;
    let agent_rss = status_kb(pid, "VmRSS").unwrap_or(0);
    r.info("agent.run.collections", collections, "");
    r.info("agent.run.cpu_per_collection", agent_cpu, "ms");
    r.info("agent.run.vmrss", mib(agent_rss), "MiB");
    r.info(
        "agent.run.vmhwm",
        mib(status_kb(pid, "VmHWM").unwrap_or(0)),
        "MiB",
    );
    signal(pid, libc::SIGTERM);
    let _ = child.wait();
    d.stop()?;

    // prometheus-node-exporter, started here (never as a service).
    let Some(ne) = env
        .opts
        .get("node-exporter")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from("/usr/bin/prometheus-node-exporter")])
        .find(|p| p.is_file())
        .or_else(|| find_in_path("prometheus-node-exporter"))
        .or_else(|| find_in_path("node_exporter"))
    else {
        r.note("prometheus-node-exporter not found: comparison skipped (pass --node-exporter PATH)");
        return Ok(());
    };
    let ne_size = file_size(&ne);
    r.info("node_exporter.size", mib(ne_size), "MiB");
    r.note(format!("node-exporter measured: {}", ne.display()));
    let port = free_port()?;
    let (o, e) = log_file(&dir.join("node-exporter.log"))?;
    let mut child = Command::new(&ne)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(o)
        .stderr(e)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", ne.display()))?;
    let pid = child.id();
    let http = Http::new(&format!("http://127.0.0.1:{port}"));
    let first = poll(
        "node-exporter /metrics",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || http.get("/metrics", None).ok().filter(|(s, _)| *s == 200),
    )?;
    let series = first.1.lines().filter(|l| !l.starts_with('#')).count();
    r.info("node_exporter.scrape_bytes", first.1.len() as f64, "B");
    r.info("node_exporter.series", series as f64, "");
    let cpu0 = cpu_seconds(pid).unwrap_or(0.0);
    let start = Instant::now();
    for i in 0..k {
        let _ = http.get("/metrics", None)?;
        std::thread::sleep((start + Duration::from_secs(i + 1)).saturating_duration_since(Instant::now()));
    }
    let ne_cpu = (cpu_seconds(pid).unwrap_or(0.0) - cpu0) * 1000.0 / k as f64;
    let ne_rss = status_kb(pid, "VmRSS").unwrap_or(0);
    r.info("node_exporter.cpu_per_scrape", ne_cpu, "ms");
    r.info("node_exporter.vmrss", mib(ne_rss), "MiB");
    r.info(
        "node_exporter.vmhwm",
        mib(status_kb(pid, "VmHWM").unwrap_or(0)),
        "MiB",
    );
    signal(pid, libc::SIGTERM);
    let _ = child.wait();

    r.info(
        "ratio.binary_size.node_exporter_over_agent",
        ne_size as f64 / agent_size as f64,
        "x",
    );
    r.info(
        "ratio.rss.node_exporter_over_agent",
        ne_rss as f64 / agent_rss.max(1) as f64,
        "x",
    );
    r.info("ratio.cpu.node_exporter_over_agent", ne_cpu / agent_cpu, "x");
    r.note(format!(
        "one scrape or collection per second for {k} s; agent CPU includes spooling (fsync) and the POST to cairnd"
    ));
    Ok(())
}
