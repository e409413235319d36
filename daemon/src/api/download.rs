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
