//! Engines: work that is more than a store call. Ingest (validation,
//! labwatch mapping, group commit), the in-process collector, timers, the
//! alert engine, notification channels and their outbox, suppressions.

pub mod alerts;
pub mod checks;
pub mod heartbeats;
pub mod ingest;
pub mod labwatch;
pub mod local;
pub mod native_body;
pub mod notify;
pub mod outbox;
pub mod parse_pool;
pub mod suppress;
pub mod timers;
pub mod validate;

/// `part` of `whole` in percent with two decimals; `None` for an empty whole
/// (nothing measured is not 0 % up).
pub fn percent(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| (part as f64 * 10_000.0 / whole as f64).round() / 100.0)
}
