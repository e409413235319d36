//! Configuration: built-in defaults < TOML file < environment < flags.
//! The file is parsed with nanoserde's TOML reader; being a local file it is
//! trusted, but the parse still runs under a deadline on its own thread since
//! nanoserde is known to loop on some malformed input.

use nanoserde::{Toml, TomlParser};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// An agent gives a request 30 s; a commit delay must leave it time to hear
/// the answer.
pub const MAX_COMMIT_DELAY_MS: u64 = 25_000;

#[derive(Clone, Debug)]
pub struct Config {
    pub listen: String,
    pub data_dir: PathBuf,
    pub local_agent: bool,
    pub log_level: String,
    /// Collection interval handed to agents, seconds.
    pub interval_s: u32,
    /// How agents and people reach this server (install commands); defaults to http://<listen>.
    pub public_url: String,
    pub max_body_bytes: usize,
    pub max_connections: usize,
    /// Minimum spacing of ingest commits (see engine::ingest::committer).
    pub commit_window_ms: u64,
    /// The longest an agent may let its snapshot wait for a commit
    /// (`Cairn-Commit-Within`); 0 answers every agent at the next commit.
    pub commit_delay_max_ms: u64,
    pub session_ttl_s: i64,
    pub enrollment_ttl_s: i64,
    /// Where `/download/cairn-agent/{arch}` finds `<arch>/cairn-agent`.
    pub agents_dir: PathBuf,
    pub retention_raw_days: i64,
    pub retention_1m_days: i64,
    pub retention_5m_days: i64,
    pub retention_1h_days: i64,
    /// Resolved alerts and finished deliveries are kept this long.
    pub alert_retention_days: i64,
    /// How often node-offline and suppression changes are checked, seconds.
    pub alert_tick_s: u64,
    pub flap_max_transitions: usize,
    pub flap_window_s: i64,
    /// One delivery attempt gives up after this long.
    pub notify_timeout_s: u64,
    /// Retry n waits base·2^(n-1) (±20% jitter), capped at max.
    pub notify_retry_base_s: i64,
    pub notify_retry_max_s: i64,
    /// Attempts before a delivery is marked failed.
    pub notify_max_attempts: i64,
    /// Individual check results are kept this long; the daily rollup
    /// (uptime, latency) for 400 days.
    pub check_results_days: i64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8440".into(),
            data_dir: PathBuf::from("./cairn-data"),
            local_agent: true,
            log_level: "info".into(),
            interval_s: cairn_wire::DEFAULT_INTERVAL_S,
            public_url: String::new(),
            max_body_bytes: 1024 * 1024,
            max_connections: 512,
            commit_window_ms: 1000,
            commit_delay_max_ms: 20_000,
            session_ttl_s: 7 * 86400,
            enrollment_ttl_s: 3600,
            agents_dir: PathBuf::from("./dist"),
            retention_raw_days: 2,
            retention_1m_days: 8,
            retention_5m_days: 32,
            retention_1h_days: 400,
            alert_retention_days: 90,
            alert_tick_s: 10,
            flap_max_transitions: 4,
            flap_window_s: 600,
            notify_timeout_s: 10,
            notify_retry_base_s: 10,
            notify_retry_max_s: 3600,
            notify_max_attempts: 10,
            check_results_days: 30,
        }
    }
}

fn parse_with_deadline(text: String) -> Result<BTreeMap<String, Toml>, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(|| TomlParser::parse(&text).map_err(|e| e.to_string()));
        let _ = tx.send(r.unwrap_or_else(|_| Err("the TOML parser panicked".into())));
    });
    rx.recv_timeout(Duration::from_secs(2))
        .map_err(|_| "the TOML parser did not finish; check the file's syntax".to_string())?
}

impl Config {
    /// Reads `file` (if given) over the defaults, then environment overrides.
    pub fn load(file: Option<&Path>) -> Result<Config, String> {
        let mut cfg = Config::default();
        if let Some(path) = file {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
            let map = parse_with_deadline(text).map_err(|e| format!("{}: {e}", path.display()))?;
            cfg.apply(&map).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        cfg.apply_env()?;
        Ok(cfg)
    }

    fn apply(&mut self, map: &BTreeMap<String, Toml>) -> Result<(), String> {
        for (key, value) in map {
            let s = || match value {
                Toml::Str(s) => Ok(s.clone()),
                _ => Err(format!("key '{key}' must be a string")),
            };
            let n = || match value {
                Toml::Num(n) if n.is_finite() && *n >= 0.0 && n.fract() == 0.0 => Ok(*n as i64),
                _ => Err(format!("key '{key}' must be a whole number ≥ 0")),
            };
            let b = || match value {
                Toml::Bool(b) => Ok(*b),
                _ => Err(format!("key '{key}' must be true or false")),
            };
            match key.as_str() {
                "listen" => self.listen = s()?,
                "data_dir" => self.data_dir = PathBuf::from(s()?),
                "local_agent" => self.local_agent = b()?,
                "log_level" => self.log_level = s()?,
                "interval_s" => self.interval_s = n()?.clamp(5, 3600) as u32,
                "public_url" => self.public_url = s()?,
                "agents_dir" => self.agents_dir = PathBuf::from(s()?),
                "max_body_bytes" => self.max_body_bytes = n()?.max(1024) as usize,
                "max_connections" => self.max_connections = n()?.max(8) as usize,
                "commit_window_ms" => self.commit_window_ms = n()?.min(10_000) as u64,
                "commit_delay_max_ms" => {
                    self.commit_delay_max_ms = n()?.min(MAX_COMMIT_DELAY_MS as i64) as u64
                }
                "session_ttl_hours" => self.session_ttl_s = n()?.max(1) * 3600,
                "enrollment_ttl_minutes" => self.enrollment_ttl_s = n()?.max(1) * 60,
                "retention.raw_days" => self.retention_raw_days = n()?.max(1),
                "retention.1m_days" => self.retention_1m_days = n()?.max(1),
                "retention.5m_days" => self.retention_5m_days = n()?.max(1),
                "retention.1h_days" => self.retention_1h_days = n()?.max(1),
                "alerts.retention_days" => self.alert_retention_days = n()?.max(1),
                "alerts.tick_s" => self.alert_tick_s = n()?.clamp(1, 300) as u64,
                "alerts.flap_transitions" => self.flap_max_transitions = n()?.clamp(2, 100) as usize,
                "alerts.flap_window_s" => self.flap_window_s = n()?.clamp(10, 86_400),
                "notify.timeout_s" => self.notify_timeout_s = n()?.clamp(1, 120) as u64,
                "notify.retry_base_s" => self.notify_retry_base_s = n()?.clamp(1, 3600),
                "notify.retry_max_s" => self.notify_retry_max_s = n()?.clamp(1, 86_400),
                "notify.max_attempts" => self.notify_max_attempts = n()?.clamp(1, 100),
                "checks.results_days" => self.check_results_days = n()?.clamp(1, 400),
                other => return Err(format!("unknown key '{other}'")),
            }
        }
        Ok(())
    }

    fn apply_env(&mut self) -> Result<(), String> {
        if let Ok(v) = std::env::var("CAIRN_LISTEN") {
            self.listen = v;
        }
        if let Ok(v) = std::env::var("CAIRN_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Ok(v) = std::env::var("CAIRN_LOG_LEVEL") {
            self.log_level = v;
        }
        if let Ok(v) = std::env::var("CAIRN_AGENTS_DIR") {
            self.agents_dir = PathBuf::from(v);
        }
        if let Ok(v) = std::env::var("CAIRN_PUBLIC_URL") {
            self.public_url = v;
        }
        if let Ok(v) = std::env::var("CAIRN_COMMIT_WINDOW_MS") {
            let n: u64 = v
                .parse()
                .map_err(|_| format!("CAIRN_COMMIT_WINDOW_MS '{v}' is not a number"))?;
            self.commit_window_ms = n.min(10_000);
        }
        if let Ok(v) = std::env::var("CAIRN_COMMIT_DELAY_MAX_MS") {
            let n: u64 = v
                .parse()
                .map_err(|_| format!("CAIRN_COMMIT_DELAY_MAX_MS '{v}' is not a number"))?;
            self.commit_delay_max_ms = n.min(MAX_COMMIT_DELAY_MS);
        }
        if let Ok(v) = std::env::var("CAIRN_INTERVAL_S") {
            let n: u32 = v
                .parse()
                .map_err(|_| format!("CAIRN_INTERVAL_S '{v}' is not a number"))?;
            self.interval_s = n.clamp(1, 3600);
        }
        Ok(())
    }

    pub fn public_url(&self) -> String {
        if self.public_url.is_empty() {
            format!("http://{}", self.listen)
        } else {
            self.public_url.trim_end_matches('/').to_string()
        }
    }

    pub fn retention(&self) -> crate::store::rollup::Retention {
        crate::store::rollup::Retention {
            raw_s: self.retention_raw_days * 86400,
            m1_s: self.retention_1m_days * 86400,
            m5_s: self.retention_5m_days * 86400,
            h1_s: self.retention_1h_days * 86400,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_values_and_errors_name_the_key() {
        let map =
            parse_with_deadline("listen = \"0.0.0.0:9000\"\n[retention]\nraw_days = 3\n".into()).unwrap();
        let mut c = Config::default();
        c.apply(&map).unwrap();
        assert_eq!(c.listen, "0.0.0.0:9000");
        assert_eq!(c.retention_raw_days, 3);
        let map = parse_with_deadline("lisen = \"x\"".into()).unwrap();
        assert!(Config::default().apply(&map).unwrap_err().contains("lisen"));
        let map = parse_with_deadline("interval_s = \"ten\"".into()).unwrap();
        assert!(Config::default().apply(&map).unwrap_err().contains("interval_s"));
    }

    #[test]
    fn malformed_files_fail_without_hanging() {
        for text in [
            "listen = ",
            "[",
            "a = [1, ",
            "= 3",
            "x = \"unterminated",
            "a = 1.2.3",
            "[[x]]\ny=",
        ] {
            let r = parse_with_deadline(text.to_string()).and_then(|m| Config::default().apply(&m));
            assert!(r.is_err(), "{text:?} was accepted");
        }
    }
}
