//! Engines: work that is more than a store call. Ingest (validation,
//! labwatch mapping, group commit), the in-process collector and timers.

pub mod ingest;
pub mod labwatch;
pub mod local;
pub mod notify;
pub mod timers;
pub mod validate;
