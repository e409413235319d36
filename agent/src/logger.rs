//! A minimal `log` backend writing one line per record to stderr.
//!
//! Under systemd (JOURNAL_STREAM is set) lines start with the syslog priority
//! prefix `<N>` so journald files them at the right level, and carry no
//! timestamp (the journal adds its own). Elsewhere (a terminal, OpenRC's log
//! file) lines start with an RFC 3339 UTC time.

use std::io::Write;
use std::time::SystemTime;

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Logger {
    journald: bool,
}

static JOURNALD: Logger = Logger { journald: true };
static PLAIN: Logger = Logger { journald: false };

/// Installs the logger (once; later calls only change the level).
pub fn init(level: LevelFilter) {
    let journald = std::env::var_os("JOURNAL_STREAM").is_some_and(|v| !v.is_empty());
    let _ = log::set_logger(if journald { &JOURNALD } else { &PLAIN });
    log::set_max_level(level);
}

impl Log for Logger {
    fn enabled(&self, meta: &Metadata) -> bool {
        if meta.level() > log::max_level() {
            return false;
        }
        // ureq and rustls narrate every connection at debug level; the
        // agent's own debug output is what `--log-level debug` is for.
        own(meta.target()) || meta.level() <= Level::Warn || log::max_level() >= LevelFilter::Trace
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format_line(self.journald, record, SystemTime::now());
        // Nowhere to report a failed write to stderr.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

fn own(target: &str) -> bool {
    target == "cairn_agent" || target.starts_with("cairn_agent::")
}

fn format_line(journald: bool, record: &Record, now: SystemTime) -> String {
    let target = record.target();
    let target = target
        .strip_prefix("cairn_agent::")
        .unwrap_or(if target == "cairn_agent" { "agent" } else { target });
    let level = record.level();
    if journald {
        // sd-daemon(3) priorities: err 3, warning 4, info 6, debug 7.
        let prio = match level {
            Level::Error => 3,
            Level::Warn => 4,
            Level::Info => 6,
            Level::Debug | Level::Trace => 7,
        };
        format!("<{prio}>{level} {target}: {}\n", record.args())
    } else {
        format!(
            "{} {level:<5} {target}: {}\n",
            humantime::format_rfc3339_seconds(now),
            record.args()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn journald_lines_carry_the_priority_and_no_time() {
        let line = format_line(
            true,
            &Record::builder()
                .level(Level::Warn)
                .target("cairn_agent::spool")
                .args(format_args!("spool is full"))
                .build(),
            UNIX_EPOCH,
        );
        assert_eq!(line, "<4>WARN spool: spool is full\n");
    }

    #[test]
    fn terminal_lines_carry_a_utc_time() {
        let line = format_line(
            false,
            &Record::builder()
                .level(Level::Info)
                .target("cairn_agent")
                .args(format_args!("starting"))
                .build(),
            UNIX_EPOCH + Duration::from_secs(86400),
        );
        assert_eq!(line, "1970-01-02T00:00:00Z INFO  agent: starting\n");
    }
}
