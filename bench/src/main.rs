//! cairn-bench: Cairn's benchmarks, described with their results in
//! docs/BENCHMARKS.md. Usually run through bench/run.sh, which builds the
//! release binaries first.
//!
//! ```text
//! cairn-bench [all|machine|ingest|alerts|heartbeats|checks|rss|query|disk|agent]... --cairnd PATH [--agent PATH]
//!             [--dist DIR] [--work DIR] [--out DIR] [--<option> VALUE]...
//! ```
//!
//! Everything runs on 127.0.0.1 with temporary data directories under
//! `--work` (default target/bench/work, on the same disk as the build), and
//! every loop is bounded. Options (defaults in brackets): ingest-nodes [200],
//! ingest-seconds [15], ingest-pairs [5], ingest-paired-only [false], rss-nodes [500], rss-hours [24], rss-batch [500],
//! rss-workers [16], rss-live-seconds [65], query-days [30], query-nodes [100],
//! query-reps [200], query-rounds [20], disk-nodes [200], disk-history-hours [2],
//! disk-live-seconds [180], disk-fast-seconds [30], checks-count [1000],
//! checks-interval [30], checks-warmup [40], checks-minutes [5],
//! agent-seconds [60], node-exporter [/usr/bin/prometheus-node-exporter],
//! daemon-env [""] (extra environment for every cairnd, e.g. allocator tunables),
//! quiet-wait [180] (seconds to wait before each part for other jobs' CPU use
//! to drop under 15 %).

mod agent;
mod alerts;
mod checks;
mod disk;
mod harness;
mod heartbeats;
mod ingest;
mod query;
mod rss;

use harness::{Env, Res, Results};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const PARTS: [&str; 9] = [
    "machine",
    "ingest",
    "alerts",
    "heartbeats",
    "checks",
    "rss",
    "query",
    "disk",
    "agent",
];

fn main() -> ExitCode {
    match real_main() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("cairn-bench: {e}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> Res<bool> {
    let mut parts: Vec<String> = Vec::new();
    let mut opts: BTreeMap<String, String> = BTreeMap::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if let Some(key) = a.strip_prefix("--") {
            if key == "help" {
                println!("usage: cairn-bench [all|{}]... --cairnd PATH [--agent PATH] [--dist DIR] [--work DIR] [--out DIR] [--<option> VALUE]...", PARTS.join("|"));
                return Ok(true);
            }
            let v = args.next().ok_or_else(|| format!("--{key} needs a value"))?;
            opts.insert(key.to_string(), v);
        } else if a == "all" {
            parts.extend(PARTS.iter().map(|s| s.to_string()));
        } else if PARTS.contains(&a.as_str()) {
            parts.push(a);
        } else {
            return Err(format!("unknown part '{a}'; parts: all {}", PARTS.join(" ")));
        }
    }
    if parts.is_empty() {
        parts.extend(PARTS.iter().map(|s| s.to_string()));
    }
    let path = |k: &str, default: &str| PathBuf::from(opts.get(k).map(String::as_str).unwrap_or(default));
    let cairnd = path("cairnd", "target/release-daemon/cairnd");
    if !cairnd.is_file() {
        return Err(format!(
            "no cairnd at {} (build it with cargo build --profile release-daemon -p cairnd)",
            cairnd.display()
        ));
    }
    let (work, out) = (path("work", "target/bench/work"), path("out", "target/bench"));
    for d in [&work, &out] {
        std::fs::create_dir_all(d).map_err(|e| format!("creating {}: {e}", d.display()))?;
    }
    // Absolute paths: the agent insists on them, and the daemon runs elsewhere.
    let abs = |p: &PathBuf| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
    let env = Env {
        cairnd: abs(&cairnd),
        agent: opts.get("agent").map(|a| abs(&PathBuf::from(a))),
        dist: abs(&path("dist", "dist")),
        work: abs(&work),
        out: abs(&out),
        opts: opts.clone(),
    };

    let mut all_ok = true;
    let mut summary: Vec<(String, Results, Duration)> = Vec::new();
    for part in &parts {
        let others = wait_for_quiet(env.opt("quiet-wait", 180u64));
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let load = load.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
        println!("== {part} (load average before: {load}; CPU busy before: {others:.0}%)");
        let started = Instant::now();
        let mut r = Results::default();
        r.notes.push(format!(
            "before the run: load average {load}, CPU busy {others:.0}%"
        ));
        let outcome = match part.as_str() {
            "machine" => machine(&env, &mut r),
            "ingest" => ingest::run(&env, &mut r),
            "alerts" => alerts::run(&env, &mut r),
            "heartbeats" => heartbeats::run(&env, &mut r),
            "checks" => checks::run(&env, &mut r),
            "rss" => rss::run(&env, &mut r),
            "query" => query::run(&env, &mut r),
            "disk" => disk::run(&env, &mut r),
            "agent" => agent::run(&env, &mut r),
            _ => unreachable!("parts are checked above"),
        };
        let took = started.elapsed();
        if let Err(e) = outcome {
            println!("  ERROR: {e}");
            r.note(format!("ERROR: {e}"));
            all_ok = false;
        }
        println!("  ({part} took {:.0} s)", took.as_secs_f64());
        let mut json = r.to_json();
        json["seconds"] = serde_json::json!(took.as_secs_f64());
        let file = env.out.join(format!("{part}.json"));
        std::fs::write(&file, serde_json::to_string_pretty(&json).unwrap_or_default())
            .map_err(|e| format!("writing {}: {e}", file.display()))?;
        let _ = std::io::stdout().flush();
        summary.push((part.clone(), r, took));
    }

    println!("\n== summary (JSON per part in {})", env.out.display());
    for (part, r, took) in &summary {
        println!("{part} ({:.0} s)", took.as_secs_f64());
        for f in r.figures.iter().filter(|f| f.pass.is_some()) {
            println!(
                "  {:<48} {:>10} {:<6} target {:<10} {}",
                f.key,
                harness::fmt_num(f.value),
                f.unit,
                f.target,
                if f.pass == Some(true) { "PASS" } else { "FAIL" }
            );
        }
    }
    Ok(all_ok)
}

/// Share of all CPUs busy over one second (from /proc/stat).
fn cpu_busy() -> f64 {
    let read = || -> Option<(u64, u64)> {
        let text = std::fs::read_to_string("/proc/stat").ok()?;
        let v: Vec<u64> = text
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        let idle = v.get(3)? + v.get(4).unwrap_or(&0);
        Some((v.iter().sum(), idle))
    };
    let (Some((t0, i0)), _) = (read(), std::thread::sleep(Duration::from_secs(1))) else {
        return 0.0;
    };
    let Some((t1, i1)) = read() else { return 0.0 };
    100.0 * (1.0 - (i1 - i0) as f64 / (t1 - t0).max(1) as f64)
}

/// On a shared machine, waits (up to `limit` s) until others use under 15 %
/// of the CPUs, so one part's figures are not another job's noise. Returns
/// the last busy share seen.
fn wait_for_quiet(limit: u64) -> f64 {
    let started = Instant::now();
    let mut busy = cpu_busy();
    let mut said = false;
    while busy >= 15.0 && started.elapsed() < Duration::from_secs(limit) {
        if !said {
            println!("  (waiting up to {limit} s for the CPUs to quiet down: {busy:.0}% busy)");
            said = true;
        }
        std::thread::sleep(Duration::from_secs(4));
        busy = cpu_busy();
    }
    busy
}

/// The machine the figures come from, and what one durable commit costs on it.
fn machine(env: &Env, r: &mut Results) -> Res<()> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|v| v.split_once(':')))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!("  cpu: {cpus} x {model}");
    println!(
        "  memory: {:.1} GiB, kernel {}",
        mem as f64 / 1048576.0,
        kernel.trim()
    );
    r.note(format!("cpu: {cpus} x {model}"));
    r.note(format!(
        "memory {:.1} GiB, kernel {}",
        mem as f64 / 1048576.0,
        kernel.trim()
    ));
    r.info("machine.cpus", cpus as f64, "");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let commit = git(&["rev-parse", "--short", "HEAD"]);
    let dirty = !git(&["status", "--porcelain", "--", "daemon", "agent", "wire"]).is_empty();
    let line = format!(
        "source: commit {commit}{}",
        if dirty {
            " with uncommitted changes in daemon/agent/wire"
        } else {
            ""
        }
    );
    println!("  {line}");
    r.note(line);

    // A durable commit is at least one fdatasync: time 4 KiB appends + fdatasync.
    let p = env.work.join("fsync-probe");
    let mut f = std::fs::File::create(&p).map_err(|e| e.to_string())?;
    let block = vec![7u8; 4096];
    let mut lat = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        f.write_all(&block).map_err(|e| e.to_string())?;
        f.sync_data().map_err(|e| e.to_string())?;
        lat.push(t.elapsed());
    }
    drop(f);
    let _ = std::fs::remove_file(&p);
    let (p50, p99, _) = harness::latency_ms(lat);
    r.info("machine.append_4k_fdatasync.p50", p50, "ms");
    r.info("machine.append_4k_fdatasync.p99", p99, "ms");
    Ok(())
}
