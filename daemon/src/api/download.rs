//! Agent distribution: static agent binaries per architecture, served from
//! the configured agents directory (`<agents_dir>/<arch>/cairn-agent`), with
//! their SHA-256 so install scripts can verify what they fetched.

use crate::app::{Call, Ctx};
use crate::http::{ApiError, ApiResult, Reply};
use sha2::{Digest, Sha256};

/// The architectures we build, by the names install scripts use.
pub const ARCHES: [&str; 3] = ["amd64", "arm64", "armv7"];

pub fn agent(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let raw = call.params.get("arch");
    let (arch, want_sum) = match raw.strip_suffix(".sha256") {
        Some(a) => (a, true),
        None => (raw, false),
    };
    if !ARCHES.contains(&arch) {
        return Err(ApiError::field(
            "arch",
            format!("'{arch}' is not one of {}", ARCHES.join(", ")),
        ));
    }
    let path = ctx.cfg.agents_dir.join(arch).join("cairn-agent");
    let bytes = std::fs::read(&path).map_err(|e| {
        ApiError::not_found(format!(
            "no cairn-agent for {arch} on this server ({}: {e}); build it with cross/build.sh or install the cairnd package",
            path.display()
        ))
    })?;
    if want_sum {
        let digest = Sha256::digest(&bytes);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        return Ok(Reply::text(
            200,
            "text/plain; charset=utf-8",
            format!("{hex}  cairn-agent\n"),
        ));
    }
    Ok(Reply::text(200, "application/octet-stream", bytes)
        .with_header("Content-Disposition", "attachment; filename=\"cairn-agent\""))
}

const INSTALL_TEMPLATE: &str = include_str!("../../assets/install.sh");
const AGENT_UNIT: &str = include_str!("../../../systemd/cairn-agent.service");
const AGENT_OPENRC: &str = include_str!("../../../openrc/cairn-agent");
/// Where install.sh puts the agent (the packages use /usr/bin).
const SCRIPT_BIN: &str = "/usr/local/bin/cairn-agent";

/// `GET /install.sh`: the one-line agent installer, with this server's
/// address and the packaged service definitions filled in.
pub fn install_script(ctx: &mut Ctx, call: &Call) -> ApiResult {
    let server = server_url(
        &ctx.cfg.public_url,
        call.req.header("host"),
        &ctx.cfg.public_url(),
    );
    Ok(Reply::text(
        200,
        "text/x-shellscript; charset=utf-8",
        render_install_script(&server),
    ))
}

pub fn render_install_script(server: &str) -> String {
    let unit = AGENT_UNIT.replace("/usr/bin/cairn-agent", SCRIPT_BIN);
    let openrc = AGENT_OPENRC.replace("/usr/bin/cairn-agent", SCRIPT_BIN);
    INSTALL_TEMPLATE
        .replace("@SYSTEMD_UNIT@", unit.trim_end())
        .replace("@OPENRC_SCRIPT@", openrc.trim_end())
        .replace("@SERVER@", server)
}

/// The address agents should use: `public_url` when configured; else the
/// Host the client used to reach us (a server listening on 0.0.0.0 has no
/// better name for itself); else the listen address.
fn server_url(configured: &str, host: Option<&str>, fallback: &str) -> String {
    if !configured.is_empty() {
        return configured.trim_end_matches('/').to_string();
    }
    match host {
        Some(h) if is_plain_host(h) => format!("http://{h}"),
        _ => fallback.to_string(),
    }
}

/// A Host header that is safe to paste into a shell script: host name or
/// address and port, nothing a shell would interpret.
fn is_plain_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_url_prefers_config_then_a_clean_host_header() {
        assert_eq!(
            server_url("https://c.lan/", Some("x:1"), "http://0.0.0.0:8440"),
            "https://c.lan"
        );
        assert_eq!(
            server_url("", Some("192.168.1.5:8440"), "http://0.0.0.0:8440"),
            "http://192.168.1.5:8440"
        );
        assert_eq!(
            server_url("", Some("[fe80::1]:8440"), "f"),
            "http://[fe80::1]:8440"
        );
        for evil in ["a;reboot", "a$(id)", "a b", "a\"b", "a`b`", ""] {
            assert_eq!(
                server_url("", Some(evil), "http://127.0.0.1:8440"),
                "http://127.0.0.1:8440",
                "{evil}"
            );
        }
        assert_eq!(
            server_url("", None, "http://127.0.0.1:8440"),
            "http://127.0.0.1:8440"
        );
    }

    #[test]
    fn the_script_carries_server_and_services_for_the_script_path() {
        let s = render_install_script("http://10.0.0.2:8440");
        assert!(s.starts_with("#!/bin/sh\n"));
        assert!(s.contains("SERVER=\"http://10.0.0.2:8440\""));
        for placeholder in ["@SERVER@", "@SYSTEMD_UNIT@", "@OPENRC_SCRIPT@"] {
            assert!(!s.contains(placeholder), "{placeholder} left in the script");
        }
        assert!(s.contains("ExecStart=/usr/local/bin/cairn-agent run"));
        assert!(s.contains("command=\"/usr/local/bin/cairn-agent\""));
        assert!(!s.contains("/usr/bin/cairn-agent"));
    }
}
