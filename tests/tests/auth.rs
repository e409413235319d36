//! Sign-in, sessions, cookies + CSRF, throttling, users and tokens, against a
//! real cairnd.

use cairn_e2e::*;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;

#[test]
fn first_run_prints_admin_password_once_and_keeps_it_0600() {
    let mut d = Daemon::start();
    let pw = d.admin_password.clone();
    poll("the first-run banner", std::time::Duration::from_secs(10), || {
        d.stdout().contains(&pw).then_some(())
    });
    let file = d.data_dir().join("initial-admin-password");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let db_mode = std::fs::metadata(d.data_dir().join("cairn.db"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(db_mode, 0o600);
    // The password is never logged.
    assert!(!d.stderr().contains(&d.admin_password));
    d.restart();
    d.admin();
    assert!(
        !d.stdout().contains("first run"),
        "second start printed a banner: {}",
        d.stdout()
    );
    d.admin();
}

#[test]
fn login_me_logout_and_wrong_password() {
    let d = Daemon::start();
    let c = &d.client;
    let bad = c.post(
        "/api/v1/auth/login",
        None,
        &json!({"username": "admin", "password": "nope"}),
    );
    assert_eq!(bad.status, 401);
    assert_eq!(bad.error_code(), "unauthorized");
    let unknown = c.post(
        "/api/v1/auth/login",
        None,
        &json!({"username": "ghost", "password": "nope"}),
    );
    assert_eq!(unknown.status, 401);
    assert_eq!(
        bad.error_message(),
        unknown.error_message(),
        "no user enumeration"
    );

    let token = d.admin();
    let me = c.get("/api/v1/auth/me", Some(&token));
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["username"], "admin");
    assert_eq!(me.json()["role"], "admin");
    assert_eq!(
        c.post("/api/v1/auth/logout", Some(&token), &json!({})).status,
        200
    );
    assert_eq!(c.get("/api/v1/auth/me", Some(&token)).status, 401);
    assert_eq!(c.get("/api/v1/auth/me", None).status, 401);
    assert_eq!(c.get("/api/v1/auth/me", Some("cairn_s_forged")).status, 401);
}

#[test]
fn cookie_sessions_need_csrf_header_for_writes() {
    let d = Daemon::start();
    let c = &d.client;
    let r = c.post(
        "/api/v1/auth/login",
        None,
        &json!({"username": "admin", "password": d.admin_password}),
    );
    let cookie = r.header("set-cookie").expect("login sets a cookie").to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    let csrf = r.json()["csrf_token"].as_str().unwrap().to_string();

    let read = c.send("GET", "/api/v1/auth/me", &[("Cookie", &session)], None);
    assert_eq!(read.status, 200, "cookie reads work without CSRF");
    let body = br#"{"ttl_s": 600}"#;
    let no_csrf = c.send(
        "POST",
        "/api/v1/enrollment-codes",
        &[("Cookie", &session)],
        Some(body),
    );
    assert_eq!(no_csrf.status, 403, "{}", no_csrf.text);
    let wrong = c.send(
        "POST",
        "/api/v1/enrollment-codes",
        &[("Cookie", &session), ("X-CSRF-Token", "wrong")],
        Some(body),
    );
    assert_eq!(wrong.status, 403);
    let ok = c.send(
        "POST",
        "/api/v1/enrollment-codes",
        &[("Cookie", &session), ("X-CSRF-Token", &csrf)],
        Some(body),
    );
    assert_eq!(ok.status, 201, "{}", ok.text);
}

#[test]
fn login_throttle_per_username_then_admin_unlock() {
    let d = Daemon::start();
    let c = &d.client;
    let admin = d.admin();
    d.user_token(&admin, "alice", "viewer");
    for _ in 0..5 {
        let r = c.post(
            "/api/v1/auth/login",
            None,
            &json!({"username": "alice", "password": "wrong-password"}),
        );
        assert_eq!(r.status, 401);
    }
    // Even the right password is refused while throttled, with a clear 429.
    let r = c.post(
        "/api/v1/auth/login",
        None,
        &json!({"username": "alice", "password": "alice-password-123"}),
    );
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(r.error_code(), "too_many_attempts");
    let retry: u64 = r.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!(retry > 0 && retry <= 900);
    // Another user is not affected by alice's failures.
    d.admin();
    let unlock = c.post("/api/v1/auth/unlock", Some(&admin), &json!({"username": "alice"}));
    assert_eq!(unlock.status, 200);
    d.login("alice", "alice-password-123");
}

#[test]
fn login_throttle_per_address() {
    let d = Daemon::start();
    let c = &d.client;
    for i in 0..20 {
        let r = c.post(
            "/api/v1/auth/login",
            None,
            &json!({"username": format!("u{i}"), "password": "x"}),
        );
        assert_eq!(r.status, 401);
    }
    let r = c.post(
        "/api/v1/auth/login",
        None,
        &json!({"username": "admin", "password": d.admin_password}),
    );
    assert_eq!(r.status, 429);
}

#[test]
fn users_crud_and_last_admin_protection() {
    let d = Daemon::start();
    let c = &d.client;
    let admin = d.admin();
    let viewer = d.user_token(&admin, "vera", "viewer");
    let dup = c.post(
        "/api/v1/users",
        Some(&admin),
        &json!({"username": "vera", "password": "another-password", "role": "viewer"}),
    );
    assert_eq!(dup.status, 409);
    let weak = c.post(
        "/api/v1/users",
        Some(&admin),
        &json!({"username": "w", "password": "short", "role": "viewer"}),
    );
    assert_eq!(weak.status, 400);
    assert!(weak.error_message().contains("password"));
    let badrole = c.post(
        "/api/v1/users",
        Some(&admin),
        &json!({"username": "w", "password": "long-enough-pw", "role": "root"}),
    );
    assert!(badrole.error_message().contains("role"));

    let list = c.get("/api/v1/users", Some(&admin)).json();
    assert_eq!(list["total"], 2);
    assert!(list["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|u| u.get("password_hash").is_none()));

    let promote = c.patch("/api/v1/users/vera", Some(&admin), &json!({"role": "operator"}));
    assert_eq!(promote.status, 200);
    assert_eq!(promote.json()["role"], "operator");
    // Changing a password ends the user's sessions.
    let pw = c.patch(
        "/api/v1/users/vera",
        Some(&admin),
        &json!({"password": "brand-new-password"}),
    );
    assert_eq!(pw.status, 200);
    assert_eq!(c.get("/api/v1/auth/me", Some(&viewer)).status, 401);
    d.login("vera", "brand-new-password");

    assert_eq!(
        c.patch("/api/v1/users/admin", Some(&admin), &json!({"role": "viewer"}))
            .status,
        409
    );
    assert_eq!(c.delete("/api/v1/users/admin", Some(&admin)).status, 409);
    assert_eq!(c.delete("/api/v1/users/vera", Some(&admin)).status, 204);
    assert_eq!(c.get("/api/v1/users/vera", Some(&admin)).status, 404);
}

#[test]
fn own_password_change_and_sessions() {
    let d = Daemon::start();
    let c = &d.client;
    let admin = d.admin();
    let t1 = d.user_token(&admin, "olga", "operator");
    let t2 = d.login("olga", "olga-password-123");
    let sessions = c.get("/api/v1/auth/sessions", Some(&t1)).json();
    assert_eq!(sessions["total"], 2);
    let id = sessions["data"][0]["id"].as_i64().unwrap();
    assert_eq!(
        c.delete(&format!("/api/v1/auth/sessions/{id}"), Some(&t2)).status,
        204
    );
    assert_eq!(c.get("/api/v1/auth/me", Some(&t1)).status, 401, "revoked session");

    let wrong = c.post(
        "/api/v1/auth/password",
        Some(&t2),
        &json!({"current_password": "nope", "new_password": "olga-new-password"}),
    );
    assert_eq!(wrong.status, 400);
    assert!(wrong.error_message().contains("current_password"));
    let ok = c.post(
        "/api/v1/auth/password",
        Some(&t2),
        &json!({"current_password": "olga-password-123", "new_password": "olga-new-password"}),
    );
    assert_eq!(ok.status, 200);
    d.login("olga", "olga-new-password");
}

#[test]
fn api_tokens_shown_once_hashed_and_tracked() {
    let d = Daemon::start();
    let c = &d.client;
    let admin = d.admin();
    let r = c.post(
        "/api/v1/tokens",
        Some(&admin),
        &json!({"name": "grafana", "role": "viewer"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let v = r.json();
    let token = v["token"].as_str().unwrap().to_string();
    assert!(token.starts_with(v["prefix"].as_str().unwrap()));
    assert!(token.ends_with(v["suffix"].as_str().unwrap()));
    assert!(v["last_used_at"].is_null());

    assert_eq!(c.get("/api/v1/nodes", Some(&token)).status, 200);
    assert_eq!(
        c.get("/api/v1/users", Some(&token)).status,
        403,
        "viewer token cannot list users"
    );
    let list = c.get("/api/v1/tokens", Some(&admin)).json();
    let t = &list["data"][0];
    assert!(t.get("token").is_none(), "the value is never shown again");
    assert!(t["last_used_at"].is_string(), "last_used_at set: {t}");
    // Not stored in clear anywhere in the database file.
    let db = std::fs::read(d.data_dir().join("cairn.db")).unwrap();
    let wal = std::fs::read(d.data_dir().join("cairn.db-wal")).unwrap_or_default();
    let needle = token.as_bytes();
    assert!(!db.windows(needle.len()).any(|w| w == needle));
    assert!(!wal.windows(needle.len()).any(|w| w == needle));

    let id = t["id"].as_i64().unwrap();
    assert_eq!(
        c.delete(&format!("/api/v1/tokens/{id}"), Some(&admin)).status,
        204
    );
    assert_eq!(c.get("/api/v1/nodes", Some(&token)).status, 401);
}

#[test]
fn cli_user_and_token_commands_work_on_the_database() {
    let d = Daemon::start();
    let dir = d.data_dir();
    let out = std::process::Command::new(bin("cairnd"))
        .args(["token", "create", "--name", "ci", "--role", "admin", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(d.client.get("/api/v1/users", Some(&token)).status, 200);

    let out = std::process::Command::new(bin("cairnd"))
        .args(["user", "passwd", "admin", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let pw = text
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .expect("new password printed");
    d.login("admin", pw);
    let out = std::process::Command::new(bin("cairnd"))
        .args(["user", "list", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("admin\tadmin"));
}
