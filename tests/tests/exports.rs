//! What cairnd hands out: the Prometheus exposition and agent binaries.

use cairn_e2e::*;

#[test]
fn prometheus_exposition_has_latest_values_per_node() {
    let d = Daemon::start();
    let admin = d.admin();
    let (node, agent) = d.enroll(&admin, "pi-kitchen");
    assert_eq!(
        d.client
            .post("/api/v1/agent/ingest", Some(&agent), &snapshot(now() - 2, 37.5))
            .status,
        200
    );
    assert_eq!(d.client.get("/metrics", None).status, 401, "scrapes need a token");
    let r = d.client.get("/metrics", Some(&admin));
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let labels = format!("{{node=\"{node}\",name=\"pi-kitchen\"}}");
    assert!(r.text.contains(&format!("cairn_node_up{labels} 1")), "{}", r.text);
    assert!(
        r.text.contains(&format!("cairn_cpu_percent{labels} 37.5")),
        "{}",
        r.text
    );
    assert!(
        r.text
            .contains(&format!("cairn_disk_used_percent_max{labels} 42")),
        "{}",
        r.text
    );
    // cairnd's own memory: SQLite's share (its page cache is never empty
    // after a query) within the whole resident set.
    let gauge = |name: &str| -> f64 {
        let line = r.text.lines().find(|l| l.starts_with(&format!("{name} ")));
        line.and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {}", r.text))
    };
    let (sqlite, rss) = (
        gauge("cairnd_sqlite_memory_bytes"),
        gauge("process_resident_memory_bytes"),
    );
    assert!(sqlite > 0.0 && sqlite < rss, "sqlite {sqlite} rss {rss}");
    assert!(gauge("cairnd_sqlite_memory_highwater_bytes") >= sqlite);
    // Every sample line is `name{labels} number`.
    for line in r.text.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(
            value.parse::<f64>().is_ok_and(f64::is_finite),
            "bad sample line {line}"
        );
    }
}

#[test]
fn agent_binaries_are_served_with_checksums() {
    let agents = TempDir::new("agents");
    std::fs::create_dir_all(agents.path().join("arm64")).unwrap();
    std::fs::write(agents.path().join("arm64/cairn-agent"), b"not really an ELF").unwrap();
    let d = Daemon::start_with(DaemonOpts {
        env: vec![("CAIRN_AGENTS_DIR".into(), agents.path().display().to_string())],
        ..DaemonOpts::default()
    });
    let bin = d.client.get("/download/cairn-agent/arm64", None);
    assert_eq!(bin.status, 200);
    assert_eq!(bin.text, "not really an ELF");
    let sum = d.client.get("/download/cairn-agent/arm64.sha256", None);
    assert_eq!(sum.status, 200);
    // printf 'not really an ELF' | sha256sum
    assert_eq!(
        sum.text,
        "fb92de780796de46c688702b6a133c9b3825d2f25eb67113046f9e5205bf2fe2  cairn-agent\n"
    );
    let missing = d.client.get("/download/cairn-agent/armv7", None);
    assert_eq!(missing.status, 404);
    assert!(missing.error_message().contains("armv7"));
    let bad = d.client.get("/download/cairn-agent/sparc", None);
    assert_eq!(bad.status, 400);
    assert!(bad.error_message().contains("arch"));
}
