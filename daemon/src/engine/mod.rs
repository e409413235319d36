//! Engines: work that is more than a store call. Ingest (validation,
//! labwatch mapping, group commit), the in-process collector, timers, the
//! alert engine, notification channels and their outbox, suppressions.

pub mod alerts;
pub mod checks;
pub mod heartbeats;
pub mod ingest;
pub mod labwatch;
pub mod local;
pub mod notify;
pub mod outbox;
pub mod suppress;
pub mod timers;
pub mod validate;
