//! Figure: heartbeat ping latency with 10,000 heartbeats on one cairnd.
//! Heartbeats are created through the API (8 clients), then 16 clients
//! ping random ones (`GET /ping/<uuid>`, as `curl` in a crontab does) at a
//! paced aggregate rate for a fixed time; every ping is answered after its
//! commit. Latency is measured per request on the client side. A second
//! phase pings as fast as the daemon answers, to show the ceiling.

use crate::harness::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

fn create_many(d: &Daemon, admin: &str, n: usize) -> Res<Vec<String>> {
    parallel(d, n, 8, |http, i| {
        let body = serde_json::json!({"name": format!("job {i}"), "period_s": 86_400, "grace_s": 3600});
        let v = http.post_json("/api/v1/heartbeats", Some(admin), &body)?;
        v["uuid"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("no uuid in {v}"))
    })
}

/// Pings for `secs` at `rate` per second in total (0: as fast as answered).
fn ping_phase(d: &Daemon, uuids: &[String], rate: f64, secs: f64) -> Res<(usize, f64, Vec<Duration>)> {
    const CLIENTS: usize = 16;
    let lat = Mutex::new(Vec::new());
    let errors = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        for c in 0..CLIENTS {
            let (lat, errors) = (&lat, &errors);
            s.spawn(move || {
                let http = d.http();
                let mut mine = Vec::new();
                let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ (c as u64 + 1);
                let every = (rate > 0.0).then(|| Duration::from_secs_f64(CLIENTS as f64 / rate));
                let mut k = 0u32;
                while started.elapsed().as_secs_f64() < secs {
                    if let Some(e) = every {
                        let due = e * k;
                        if let Some(wait) = due.checked_sub(started.elapsed()) {
                            std::thread::sleep(wait);
                        }
                    }
                    k += 1;
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let u = &uuids[(seed % uuids.len() as u64) as usize];
                    let t = Instant::now();
                    match http.get(&format!("/ping/{u}"), None) {
                        Ok((200, _)) => {
                            let took = t.elapsed();
                            if took > Duration::from_secs(1) {
                                println!(
                                    "    slow ping: client {c}, sent at {:.2} s, took {:.2} s",
                                    (t - started).as_secs_f64(),
                                    took.as_secs_f64()
                                );
                            }
                            mine.push(took)
                        }
                        _ => {
                            errors.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
                lat.lock().expect("lock").extend(mine);
            });
        }
    });
    let lat = lat.into_inner().expect("lock");
    let n = lat.len();
    if errors.load(Ordering::SeqCst) > 0 {
        return Err(format!("{} pings failed", errors.load(Ordering::SeqCst)));
    }
    Ok((n, n as f64 / started.elapsed().as_secs_f64(), lat))
}

pub fn run(env: &Env, r: &mut Results) -> Res<()> {
    let n = env.opt("hb-count", 10_000usize);
    let rate = env.opt("hb-rate", 100.0f64);
    let secs = env.opt("hb-seconds", 15.0f64);
    let dir = env.fresh_dir("heartbeats")?;
    let mut d = env.start_daemon(&dir, &[])?;
    let admin = d.admin_token()?;
    let t = Instant::now();
    let uuids = create_many(&d, &admin, n)?;
    let create_s = t.elapsed().as_secs_f64();
    println!("  created {n} heartbeats in {create_s:.1} s");
    r.info("heartbeats.create_per_s", n as f64 / create_s, "heartbeats/s");
    for (name, phase_rate) in [("paced", rate), ("max", 0.0)] {
        let (count, achieved, lat) = ping_phase(&d, &uuids, phase_rate, secs)?;
        let (p50, p99, _) = latency_ms(lat);
        println!("  {name}: {count} pings, {achieved:.0}/s, p50 {p50:.2} ms, p99 {p99:.2} ms");
        r.info(&format!("heartbeats.{name}.pings_per_s"), achieved, "pings/s");
        r.info(&format!("heartbeats.{name}.p50"), p50, "ms");
        r.info(&format!("heartbeats.{name}.p99"), p99, "ms");
    }
    r.info(
        "heartbeats.daemon_vmhwm",
        mib(status_kb(d.pid(), "VmHWM").unwrap_or(0)),
        "MiB",
    );
    d.stop()?;
    Ok(())
}
