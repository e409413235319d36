//! Checks run by an agent: assigned with `run_from` = its node id, handed
//! over in the ingest reply, results posted back with the node's id; when
//! the agent stops, the check becomes unknown (not down).

use cairn_e2e::fixtures::FakeReceiver;
use cairn_e2e::*;
use serde_json::{json, Value};
use std::time::Duration;

fn check(d: &Daemon, admin: &str, id: &Value) -> Value {
    d.client.get(&format!("/api/v1/checks/{id}"), Some(admin)).json()
}

#[test]
fn agent_run_checks_report_with_the_node_id_and_go_unknown_without_the_agent() {
    let d = Daemon::start_with(DaemonOpts {
        env: vec![("CAIRN_INTERVAL_S".into(), "1".into())],
        ..DaemonOpts::default()
    });
    let admin = d.admin();
    let hook = FakeReceiver::start();
    webhook_channel(&d, &admin, &format!("{}/hook", hook.url()), &["check"]);
    let enrolled = EnrolledAgent::enroll(&d, &admin);
    let node = enrolled.node.clone();

    let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = d.client.post(
        "/api/v1/checks",
        Some(&admin),
        &json!({"name": "from-agent", "type": "tcp", "target": format!("127.0.0.1:{}", open.local_addr().unwrap().port()),
                "interval_s": 10, "timeout_s": 2, "run_from": node}),
    );
    assert_eq!(up.status, 201, "{}", up.text);
    let up = up.json();
    assert_eq!(up["run_from"], node.as_str());
    let closed = d
        .client
        .post(
            "/api/v1/checks",
            Some(&admin),
            &json!({"name": "closed-from-agent", "type": "tcp", "target": format!("127.0.0.1:{}", free_port()),
                    "interval_s": 10, "timeout_s": 2, "failure_threshold": 1, "run_from": node}),
        )
        .json();
    // Run now is the agent's business: refused with a clear reason.
    let r = d.client.post(
        &format!("/api/v1/checks/{}/run", up["id"]),
        Some(&admin),
        &json!({}),
    );
    assert_eq!(r.status, 409, "{}", r.text);

    let agent = enrolled.run();
    let wait = Duration::from_secs(40);
    poll("the agent's check to be up", wait, || {
        (check(&d, &admin, &up["id"])["status"] == "up").then_some(())
    });
    poll("the agent's failing check to be down", wait, || {
        (check(&d, &admin, &closed["id"])["status"] == "down").then_some(())
    });
    let res = d
        .client
        .get(
            &format!("/api/v1/checks/{}/results?hours=1", up["id"]),
            Some(&admin),
        )
        .json();
    assert!(res["total"].as_i64().unwrap() >= 1, "{res}");
    assert!(
        res["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["node_id"] == node.as_str()),
        "every result carries the agent's node id: {res}"
    );
    let got = hook.wait_for(1, wait);
    let ev = got[0].json();
    assert_eq!(
        (ev["event"].as_str(), ev["kind"].as_str()),
        (Some("fired"), Some("check")),
        "{ev}"
    );
    let a = d
        .client
        .get("/api/v1/alerts?kind=check&status=open", Some(&admin))
        .json();
    assert_eq!(a["data"][0]["node_id"], node.as_str(), "{a}");

    // Another node may not report for this node's checks.
    let other = d.client.post(
        "/api/v1/agent/enroll",
        None,
        &json!({"code": d.enrollment_code(&admin), "hostname": "other", "os": "linux", "arch": "x86_64",
                "agent_version": "t"}),
    );
    let other_token = other.json()["token"].as_str().unwrap().to_string();
    let r = d.client.post(
        "/api/v1/agent/check-results",
        Some(&other_token),
        &json!({"results": [{"check_id": up["id"], "at": now(), "outcome": {"ok": false, "error": "forged"}}]}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["ignored"][0]["reason"], "not assigned to this node");
    assert_eq!(check(&d, &admin, &up["id"])["status"], "up");
    let r = d.client.post(
        "/api/v1/agent/check-results",
        Some(&other_token),
        &json!({"results": [{"check_id": up["id"], "at": now(), "outcome": {"ok": true, "packet_loss_percent": 140}}]}),
    );
    assert_eq!(r.status, 400);
    assert!(
        r.error_message()
            .contains("'results[0].outcome.packet_loss_percent'"),
        "{}",
        r.text
    );

    // The agent stops: after two intervals and slack its checks are
    // unknown, not down, and the down one's alert is closed.
    drop(agent);
    poll(
        "the stopped agent's checks to be unknown",
        Duration::from_secs(90),
        || {
            let a = check(&d, &admin, &up["id"])["status"] == "unknown";
            let b = check(&d, &admin, &closed["id"])["status"] == "unknown";
            (a && b).then_some(())
        },
    );
    let a = d
        .client
        .get("/api/v1/alerts?kind=check&status=open", Some(&admin))
        .json();
    assert_eq!(a["total"], 0, "{a}");
}
