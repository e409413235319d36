//! Enrollment, ingest (single, batch, idempotent, validated), nodes API,
//! history, and labwatch compatibility against a real cairnd.

use cairn_e2e::*;
use serde_json::json;

#[test]
fn enroll_ingest_and_node_views() {
    let d = Daemon::start();
    let c = &d.client;
    let admin = d.admin();
    let code = c
        .post("/api/v1/enrollment-codes", Some(&admin), &json!({}))
        .json();
    assert!(code["install_command"].as_str().unwrap().contains("install.sh"));
    let code = code["code"].as_str().unwrap().to_string();
    let enroll = |code: &str| {
        c.post(
            "/api/v1/agent/enroll",
            None,
            &json!({"code": code, "hostname": "pi-attic", "os": "Linux", "arch": "aarch64", "agent_version": "0.1.0"}),
        )
    };
    let r = enroll(&code);
    assert_eq!(r.status, 201, "{}", r.text);
    let node = r.json()["node_id"].as_str().unwrap().to_string();
    let agent = r.json()["token"].as_str().unwrap().to_string();
    let again = enroll(&code);
    assert_eq!(again.status, 403, "codes work once");
    assert_eq!(again.error_code(), "invalid_code");

    let nodes = c.get("/api/v1/nodes", Some(&admin)).json();
    assert_eq!(nodes["data"][0]["status"], "pending");

    let t = now() - 60;
    let r = c.post("/api/v1/agent/ingest", Some(&agent), &snapshot(t, 12.5));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["accepted"], 1);
    assert_eq!(r.json()["config"]["interval_s"], 30);
    // Same (node, timestamp) again: idempotent.
    let r = c.post("/api/v1/agent/ingest", Some(&agent), &snapshot(t, 99.0));
    assert_eq!(r.json()["accepted"], 0);
    assert_eq!(r.json()["duplicates"], 1);
    // A batch, oldest first, overlapping the one already stored.
    let batch = json!({"snapshots": [snapshot(t - 60, 1.0), snapshot(t - 30, 2.0), snapshot(t, 3.0)]});
    let r = c.post("/api/v1/agent/ingest", Some(&agent), &batch);
    assert_eq!(r.json()["accepted"], 2);
    assert_eq!(r.json()["duplicates"], 1);

    let nodes = c.get("/api/v1/nodes", Some(&admin)).json();
    let n = &nodes["data"][0];
    assert_eq!(n["status"], "online");
    assert_eq!(
        n["summary"]["cpu"], 12.5,
        "latest is the newest, not the last written: {n}"
    );
    assert_eq!(n["arch"], "x86_64", "system info follows the snapshots");
    let detail = c.get(&format!("/api/v1/nodes/{node}"), Some(&admin)).json();
    assert_eq!(detail["latest"]["disks"][0]["mount"], "/");
    assert_eq!(detail["latest"]["temperatures"][0]["celsius"], 48.5);

    let h = c
        .get(
            &format!("/api/v1/nodes/{node}/history?metrics=cpu,memory,disk,net_rx&hours=1"),
            Some(&admin),
        )
        .json();
    let cpu: Vec<f64> = h["series"]["cpu"]["avg"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_f64())
        .collect();
    assert_eq!(cpu, vec![1.0, 2.0, 12.5]);
    assert_eq!(h["series"]["memory"]["avg"][0], 50.0);
    assert_eq!(h["series"]["disk"]["max"][0], 42.0);
    assert_eq!(h["series"]["net_rx"]["avg"][0], 1000.0);

    let csv = c.get(
        &format!("/api/v1/nodes/{node}/history.csv?metric=cpu&hours=1"),
        Some(&admin),
    );
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    assert_eq!(csv.text.lines().count(), 4, "{}", csv.text);
    assert!(csv.text.starts_with("timestamp,avg,min,max\n"));

    let chart = c.get("/api/v1/charts?metric=cpu&hours=1", Some(&admin)).json();
    assert_eq!(chart["nodes"][0]["id"], node.as_str());

    // Future timestamps are refused, and nothing is stored.
    let r = c.post("/api/v1/agent/ingest", Some(&agent), &snapshot(now() + 3600, 5.0));
    assert_eq!(r.status, 400);
    assert!(r.error_message().contains("timestamp"), "{}", r.text);
}

#[test]
fn rename_labels_rotate_and_delete_with_all_data() {
    let d = Daemon::start();
    let c = &d.client;
    let admin = d.admin();
    let operator = d.user_token(&admin, "op", "operator");
    let (node, agent) = d.enroll(&admin, "nas");
    assert_eq!(
        c.post("/api/v1/agent/ingest", Some(&agent), &snapshot(now() - 5, 1.0))
            .status,
        200
    );

    let r = c.patch(
        &format!("/api/v1/nodes/{node}"),
        Some(&operator),
        &json!({"name": "Big NAS", "labels": {"room": "attic"}, "location": "shelf 2"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["name"], "Big NAS");
    assert_eq!(r.json()["labels"]["room"], "attic");
    let bad = c.patch(
        &format!("/api/v1/nodes/{node}"),
        Some(&operator),
        &json!({"labels": {"bad key!": "x"}}),
    );
    assert_eq!(bad.status, 400);
    assert!(bad.error_message().contains("labels"));

    let rot = c.post(
        &format!("/api/v1/nodes/{node}/rotate-token"),
        Some(&admin),
        &json!({}),
    );
    assert_eq!(rot.status, 200);
    let new_token = rot.json()["token"].as_str().unwrap().to_string();
    assert_eq!(
        c.post("/api/v1/agent/ingest", Some(&agent), &snapshot(now() - 4, 1.0))
            .status,
        401
    );
    assert_eq!(
        c.post(
            "/api/v1/agent/ingest",
            Some(&new_token),
            &snapshot(now() - 4, 1.0)
        )
        .status,
        200
    );

    assert_eq!(
        c.delete(&format!("/api/v1/nodes/{node}"), Some(&operator)).status,
        403
    );
    assert_eq!(
        c.delete(&format!("/api/v1/nodes/{node}"), Some(&admin)).status,
        204
    );
    assert_eq!(c.get(&format!("/api/v1/nodes/{node}"), Some(&admin)).status, 404);
    assert_eq!(
        c.get(&format!("/api/v1/nodes/{node}/history?hours=1"), Some(&admin))
            .status,
        404
    );
    assert_eq!(
        c.post(
            "/api/v1/agent/ingest",
            Some(&new_token),
            &snapshot(now() - 3, 1.0)
        )
        .status,
        401
    );
}

#[test]
fn local_host_is_monitored_within_one_interval() {
    let d = Daemon::start_with(DaemonOpts {
        local_agent: true,
        env: vec![("CAIRN_INTERVAL_S".into(), "2".into())],
        ..DaemonOpts::default()
    });
    let admin = d.admin();
    let node = poll(
        "the local node to report",
        std::time::Duration::from_secs(20),
        || {
            let v = d.client.get("/api/v1/nodes", Some(&admin)).json();
            let n = v["data"][0].clone();
            (n["status"] == "online").then_some(n)
        },
    );
    assert_eq!(node["kind"], "local");
    let detail = d
        .client
        .get(
            &format!("/api/v1/nodes/{}", node["id"].as_str().unwrap()),
            Some(&admin),
        )
        .json();
    assert!(
        detail["latest"]["memory"]["total_bytes"].as_u64().unwrap_or(0) > 0,
        "{detail}"
    );
}

fn labwatch_register(d: &Daemon, admin: &str, hostname: &str) -> (String, String) {
    let tok = d.client.post(
        "/api/v1/tokens",
        Some(admin),
        &json!({"name": "labwatch", "role": "admin"}),
    );
    let secret = tok.json()["token"].as_str().unwrap().to_string();
    let r = d.client.send(
        "POST",
        "/api/v1/register",
        &[("X-Admin-Secret", &secret)],
        Some(
            json!({"hostname": hostname, "os": "linux", "arch": "amd64", "agent_version": "1.4.0"})
                .to_string()
                .as_bytes(),
        ),
    );
    assert!(r.status == 200 || r.status == 201, "{}", r.text);
    let v = r.json();
    (
        v["lab_id"].as_str().unwrap().to_string(),
        v["token"].as_str().unwrap().to_string(),
    )
}

#[test]
fn labwatch_agents_work_unchanged() {
    let d = Daemon::start();
    let c = &d.client;
    let admin = d.admin();
    // Registration needs an admin API token in X-Admin-Secret.
    let viewer = c
        .post(
            "/api/v1/tokens",
            Some(&admin),
            &json!({"name": "v", "role": "viewer"}),
        )
        .json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = c.send(
        "POST",
        "/api/v1/register",
        &[("X-Admin-Secret", &viewer)],
        Some(br#"{"hostname":"x"}"#),
    );
    assert_eq!(r.status, 403);
    let r = c.send("POST", "/api/v1/register", &[], Some(br#"{"hostname":"x"}"#));
    assert_eq!(r.status, 401);

    let (lab, token) = labwatch_register(&d, &admin, "proxmox-01");
    // The documented example shape: system wrapped in {"data": ...}.
    let documented = json!({"lab_id": lab, "collectors": {"system": {"data": {
        "cpu": {"total_percent": 23.5, "count": 8}, "memory": {"used_percent": 62.1, "total_bytes": 34359738368u64},
        "disk": [{"mount": "/", "used_percent": 45.2}], "load_average": {"1m": 1.2, "5m": 0.8, "15m": 0.6},
        "uptime_seconds": 864000}},
        "docker": {"data": {"containers": [{"name": "caddy", "state": "running", "health": "healthy"}]}}}});
    let r = c.post("/api/v1/ingest", Some(&token), &documented);
    assert_eq!(r.status, 200, "labwatch agents accept only 200/202: {}", r.text);
    // What real agents send: bare system, other field names, cumulative
    // counters, empty hostname, unknown collectors with nulls and errors.
    let t0 = now() - 120;
    let real = |t: u64, sent: u64, recv: u64| {
        json!({"lab_id": lab, "hostname": "", "timestamp": rfc3339(t).replace('Z', "+00:00"), "collectors": {
            "system": {"cpu": {"usage_percent": [20.0, 40.0]},
                "memory": {"used_percent": 40.0, "total_bytes": 1000, "used_bytes": 400, "available_bytes": 600,
                           "swap_total_bytes": 100, "swap_used_bytes": 5, "swap_percent": 5.0},
                "disk": [{"mountpoint": "/", "device": "/dev/sda1", "fstype": "ext4", "used_percent": 70.0,
                          "total_bytes": 100, "used_bytes": 70, "free_bytes": 30}],
                "load_average": {"load1": 0.7, "load5": 0.5, "load15": 0.2},
                "network": [{"interface": "eth0", "bytes_sent": sent, "bytes_recv": recv}],
                "temperatures": [{"sensor_key": "k10temp", "temperature_celsius": 55.0,
                                  "high_threshold_celsius": 80.0, "critical_threshold_celsius": 95.0}],
                "uptime_seconds": 5000,
                "processes": [{"pid": 1, "name": "systemd", "cpu_percent": 0.2}]},
            "docker": null, "services": {"error": "permission denied"}, "gpu": null,
            "smart": {"devices": null}, "zfs": {"error": "zpool not found"}}})
    };
    assert_eq!(
        c.post("/api/v1/ingest", Some(&token), &real(t0, 1000, 5000))
            .status,
        200
    );
    assert_eq!(
        c.post("/api/v1/ingest", Some(&token), &real(t0 + 60, 7000, 11000))
            .status,
        200
    );
    let h = c
        .get(
            &format!("/api/v1/nodes/{lab}/history?metrics=cpu,net_rx,net_tx,temperature&hours=1"),
            Some(&admin),
        )
        .json();
    let rx: Vec<f64> = h["series"]["net_rx"]["avg"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_f64())
        .collect();
    assert!(rx.contains(&100.0), "rate derived from counters: {h}");
    assert!(h["series"]["cpu"]["avg"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v == 30.0));

    // Someone else's lab_id is refused.
    let (other_lab, _) = labwatch_register(&d, &admin, "other");
    let mut wrong = real(t0 + 90, 1, 1);
    wrong["lab_id"] = json!(other_lab);
    assert_eq!(c.post("/api/v1/ingest", Some(&token), &wrong).status, 403);

    // Logs: 202, kept per node.
    let logs = json!({"entries": [{"ts": "2026-11-23T10:00:00Z", "source": "journald", "level": "err", "message": "disk full", "unit": "backup.service"}]});
    let r = c.post(&format!("/api/v1/lab/{lab}/logs"), Some(&token), &logs);
    assert_eq!(r.status, 202, "{}", r.text);
    let r = c.post(&format!("/api/v1/lab/{other_lab}/logs"), Some(&token), &logs);
    assert_eq!(r.status, 403);
    let kept = c.get(&format!("/api/v1/nodes/{lab}/logs"), Some(&admin)).json();
    assert_eq!(kept["data"][0]["message"], "disk full");
}

#[test]
fn sighup_reloads_the_interval_handed_to_agents() {
    let conf_dir = TempDir::new("conf");
    let conf = conf_dir.path().join("cairnd.toml");
    std::fs::write(&conf, "interval_s = 30\n").unwrap();
    let d = Daemon::start_with(DaemonOpts {
        args: vec!["--config".into(), conf.display().to_string()],
        ..DaemonOpts::default()
    });
    let admin = d.admin();
    let (_, agent) = d.enroll(&admin, "box");
    let t = now() - 100;
    let r = d
        .client
        .post("/api/v1/agent/ingest", Some(&agent), &snapshot(t, 1.0));
    assert_eq!(r.json()["config"]["interval_s"], 30);
    std::fs::write(&conf, "interval_s = 10\n").unwrap();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &d.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let mut ts = t;
    poll(
        "the new interval in ingest replies",
        std::time::Duration::from_secs(10),
        || {
            ts += 1;
            let r = d
                .client
                .post("/api/v1/agent/ingest", Some(&agent), &snapshot(ts, 1.0));
            (r.json()["config"]["interval_s"] == 10).then_some(())
        },
    );
    assert!(d.stderr().contains("configuration reloaded"));
}

#[test]
fn forecast_says_when_a_filling_disk_is_full() {
    let d = Daemon::start();
    let admin = d.admin();
    let (node, agent) = d.enroll(&admin, "filling");
    // Ten hours of history, disk rising 1 % per hour from 50 %: full in ~40 h.
    let start = now() - 10 * 3600;
    let snaps: Vec<_> = (0..=60)
        .map(|i| {
            let t = start + i * 600;
            let mut s = snapshot(t, 5.0);
            s["disks"][0]["used_percent"] = json!(50.0 + i as f64 / 6.0);
            s
        })
        .collect();
    let r = d
        .client
        .post("/api/v1/agent/ingest", Some(&agent), &json!({"snapshots": snaps}));
    assert_eq!(r.json()["accepted"], 61, "{}", r.text);
    let f = d
        .client
        .get(
            &format!("/api/v1/nodes/{node}/forecast?metric=disk&days=1"),
            Some(&admin),
        )
        .json();
    assert_eq!(f["trend"], "rising", "{f}");
    let per_day = f["slope_per_day"].as_f64().unwrap();
    assert!((per_day - 24.0).abs() < 0.5, "{f}");
    let days = f["days_until_threshold"].as_f64().unwrap();
    assert!((days - 40.0 / 24.0).abs() < 0.1, "{f}");
    let flat = d
        .client
        .get(
            &format!("/api/v1/nodes/{node}/forecast?metric=cpu&days=1"),
            Some(&admin),
        )
        .json();
    assert_eq!(flat["trend"], "flat");
    let bad = d.client.get(
        &format!("/api/v1/nodes/{node}/forecast?metric=nope"),
        Some(&admin),
    );
    assert_eq!(bad.status, 400);
    assert!(bad.error_message().contains("metric"));
}

#[test]
fn node_status_and_summary_survive_kill_9_before_the_latest_flush() {
    let mut d = Daemon::start();
    let admin = d.admin();
    let (node, agent) = d.enroll(&admin, "crashy");
    let t = now() - 5;
    assert_eq!(
        d.client
            .post("/api/v1/agent/ingest", Some(&agent), &snapshot(t - 30, 11.0))
            .status,
        200
    );
    assert_eq!(
        d.client
            .post("/api/v1/agent/ingest", Some(&agent), &snapshot(t, 22.0))
            .status,
        200
    );
    // The nodes row is written behind; a crash must not lose what was acknowledged.
    d.kill9();
    d.restart();
    let admin = d.admin();
    let n = d
        .client
        .get(&format!("/api/v1/nodes/{node}"), Some(&admin))
        .json();
    assert_eq!(n["last_seen"], rfc3339(t), "{n}");
    assert_eq!(n["summary"]["cpu"], 22.0, "{n}");
    assert_eq!(n["status"], "online");
}

#[test]
fn the_node_list_pages_and_shows_each_nodes_summary_but_not_its_snapshot() {
    let d = Daemon::start_with(DaemonOpts {
        local_agent: false,
        ..Default::default()
    });
    let c = &d.client;
    let admin = d.admin();
    let mut ids = Vec::new();
    for (i, host) in ["list-a", "list-b", "list-c"].iter().enumerate() {
        let (id, agent) = d.enroll(&admin, host);
        let r = c.post(
            "/api/v1/agent/ingest",
            Some(&agent),
            &snapshot(now() - 30, 10.0 + i as f64),
        );
        assert_eq!(r.status, 200, "{}", r.text);
        ids.push(id);
    }
    let page = |q: &str| c.get(&format!("/api/v1/nodes?{q}"), Some(&admin)).json();

    let all = page("limit=1000");
    assert_eq!(
        (
            all["total"].as_u64(),
            all["limit"].as_u64(),
            all["offset"].as_u64()
        ),
        (Some(3), Some(1000), Some(0))
    );
    let names: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["list-a", "list-b", "list-c"], "by name");
    let b = &all["data"][1];
    assert_eq!(b["id"], ids[1].as_str());
    assert_eq!(
        (b["status"].as_str(), b["online"].as_bool()),
        (Some("online"), Some(true))
    );
    assert_eq!(b["summary"]["cpu"], 11.0);
    assert_eq!(b["summary"]["memory"], 50.0);
    let keys: Vec<&String> = b["summary"].as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 12, "every metric, null or not: {b}");
    assert!(
        b.get("latest").is_none(),
        "the full snapshot is only in the detail: {b}"
    );
    let detail = c.get(&format!("/api/v1/nodes/{}", ids[1]), Some(&admin)).json();
    assert_eq!(detail["latest"]["disks"][0]["mount"], "/");
    assert_eq!(detail["summary"], b["summary"]);
    assert_eq!(detail["last_seen"], b["last_seen"]);

    let second = page("limit=2&offset=2");
    assert_eq!(second["total"], 3);
    assert_eq!(second["data"].as_array().unwrap().len(), 1);
    assert_eq!(second["data"][0]["name"], "list-c");
    let past = page("limit=2&offset=7");
    assert_eq!(
        (past["total"].as_u64(), past["data"].as_array().map(Vec::len)),
        (Some(3), Some(0))
    );
    let first = page("limit=1");
    assert_eq!(first["data"].as_array().unwrap().len(), 1);
    assert_eq!(first["data"][0]["name"], "list-a");
}
