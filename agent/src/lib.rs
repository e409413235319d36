//! cairn-agent as a library: the collectors (shared with cairnd, which monitors
//! its own host in-process) and, behind the `client` feature, the spool and the
//! server client the `cairn-agent` binary runs.

pub mod collect;
#[cfg(feature = "probe")]
pub mod probe;

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "client")]
pub mod config;
#[cfg(feature = "client")]
mod durable;
#[cfg(feature = "client")]
pub mod identity;
#[cfg(feature = "client")]
pub mod logger;
#[cfg(feature = "client")]
pub mod prober;
#[cfg(feature = "client")]
pub mod ship;
#[cfg(feature = "client")]
pub mod spool;
#[cfg(feature = "client")]
pub mod trust;
