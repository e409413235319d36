//! The agent's config file (TOML, parsed with nanoserde) and the environment
//! variables that override it.
//!
//! ```toml
//! server = "https://cairn.example.lan:8440"   # where cairnd listens
//! state_dir = "/var/lib/cairn-agent"          # identity.json and spool/
//! spool_max_bytes = 16777216                  # cap on unsent snapshots
//! log_level = "info"                          # error, warn, info, debug, trace
//! ca_file = "/etc/cairn/ca.pem"               # optional: trust this CA (PEM) for https
//! ```
//!
//! Without `ca_file`, an https server is checked against the system's CA
//! bundle (see `trust`).
//!
//! The node's identity (node id and token) is not here but in
//! `<state_dir>/identity.json` (mode 0600): the config file may be world
//! readable and managed by configuration tools; the token must not be.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nanoserde::{Toml, TomlParser};

pub const DEFAULT_CONFIG: &str = "/etc/cairn/agent.toml";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/cairn-agent";
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 16 * 1024 * 1024;
/// Below this the spool could not hold even a short outage.
const MIN_SPOOL_MAX_BYTES: u64 = 64 * 1024;

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The file this came from (which may not exist).
    pub path: PathBuf,
    pub exists: bool,
    /// cairnd's base URL, without a trailing slash.
    pub server: Option<String>,
    pub state_dir: PathBuf,
    pub spool_max_bytes: u64,
    pub log_level: Option<log::LevelFilter>,
    /// PEM file of the CA(s) to trust for an https server instead of the
    /// system bundle (a self-signed or private-CA server certificate).
    pub ca_file: Option<PathBuf>,
}

impl Config {
    fn defaults(path: &Path) -> Config {
        Config {
            path: path.to_path_buf(),
            exists: false,
            server: None,
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            spool_max_bytes: DEFAULT_SPOOL_MAX_BYTES,
            log_level: None,
            ca_file: None,
        }
    }

    /// Reads `path` (a missing file means all defaults) and applies the
    /// environment overrides CAIRN_SERVER and CAIRN_STATE_DIR.
    pub fn load(path: &Path) -> Result<Config, String> {
        let mut cfg = match std::fs::read_to_string(path) {
            Ok(text) => {
                let mut cfg = Config::parse(&text, path)?;
                cfg.exists = true;
                cfg
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Config::defaults(path),
            Err(e) => return Err(format!("reading config {}: {e}", path.display())),
        };
        cfg.apply_env(|k| std::env::var(k).ok())?;
        Ok(cfg)
    }

    /// Parses config text; errors name the file and the key.
    pub fn parse(text: &str, path: &Path) -> Result<Config, String> {
        let file = path.display();
        // Editors on other systems may leave a byte-order mark, which nanoserde
        // would take as part of the first key.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let table: BTreeMap<String, Toml> = TomlParser::parse(text).map_err(|e| {
            // nanoserde 0.2 reports every error at line 1, col 1: find the line.
            match error_line(text) {
                Some(line) => format!("config {file}, line {line}: {}", e.msg),
                None => format!("config {file}: {}", e.msg),
            }
        })?;
        let mut cfg = Config::defaults(path);
        for (key, value) in &table {
            let bad = |what: &str| format!("config {file}: key '{key}' {what}");
            match key.as_str() {
                "server" => {
                    let Toml::Str(s) = value else {
                        return Err(bad("must be a quoted URL"));
                    };
                    cfg.server = Some(normalize_server(s).map_err(|e| bad(&e))?);
                }
                "state_dir" => {
                    let Toml::Str(s) = value else {
                        return Err(bad("must be a quoted directory path"));
                    };
                    cfg.state_dir = state_dir(s).map_err(|e| bad(&e))?;
                }
                "spool_max_bytes" => {
                    let Toml::Num(n) = value else {
                        return Err(bad("must be a whole number of bytes"));
                    };
                    cfg.spool_max_bytes = spool_max_bytes(*n).map_err(|e| bad(&e))?;
                }
                "log_level" => {
                    let Toml::Str(s) = value else {
                        return Err(bad("must be a quoted level"));
                    };
                    cfg.log_level = Some(parse_level(s).map_err(|e| bad(&e))?);
                }
                "ca_file" => {
                    let Toml::Str(s) = value else {
                        return Err(bad("must be a quoted path to a PEM file"));
                    };
                    cfg.ca_file = Some(ca_file(s).map_err(|e| bad(&e))?);
                }
                // A typo must not pass silently, but an old agent must still
                // start with a config written for a newer one.
                _ => log::warn!("config {file}: unknown key '{key}' ignored"),
            }
        }
        Ok(cfg)
    }

    /// Environment overrides, for containers and tests.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), String> {
        if let Some(s) = var("CAIRN_SERVER").filter(|s| !s.is_empty()) {
            self.server = Some(normalize_server(&s).map_err(|e| format!("environment CAIRN_SERVER {e}"))?);
        }
        if let Some(s) = var("CAIRN_STATE_DIR").filter(|s| !s.is_empty()) {
            self.state_dir = state_dir(&s).map_err(|e| format!("environment CAIRN_STATE_DIR {e}"))?;
        }
        if let Some(s) = var("CAIRN_CA_FILE").filter(|s| !s.is_empty()) {
            self.ca_file = Some(ca_file(&s).map_err(|e| format!("environment CAIRN_CA_FILE {e}"))?);
        }
        Ok(())
    }
}

/// The first line at which the text up to and including it stops parsing.
fn error_line(text: &str) -> Option<usize> {
    let mut end = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        end += line.len();
        if TomlParser::parse(&text[..end]).is_err() {
            return Some(i + 1);
        }
    }
    None
}

/// `--config` if given, else CAIRN_AGENT_CONFIG, else /etc/cairn/agent.toml.
pub fn config_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| {
        std::env::var_os("CAIRN_AGENT_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
    .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG))
}

/// Checks a server URL and drops trailing slashes so paths can be appended.
pub fn normalize_server(url: &str) -> Result<String, String> {
    let url = url.trim();
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("must start with http:// or https:// (got {url:?})"))?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || rest.contains(char::is_whitespace) {
        return Err(format!("must be a URL like https://cairn.lan:8440 (got {url:?})"));
    }
    Ok(url.trim_end_matches('/').to_string())
}

fn state_dir(s: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(s);
    if !p.is_absolute() {
        return Err(format!("must be an absolute path (got {s:?})"));
    }
    Ok(p)
}

fn ca_file(s: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(s);
    if !p.is_absolute() {
        // Relative to what? The service's working directory is not the config's.
        return Err(format!("must be an absolute path (got {s:?})"));
    }
    Ok(p)
}

fn spool_max_bytes(n: f64) -> Result<u64, String> {
    // TOML integers arrive as f64 from nanoserde; exact up to 2^53, far past any disk.
    if !n.is_finite() || n.fract() != 0.0 || n < MIN_SPOOL_MAX_BYTES as f64 || n > 9.0e15 {
        return Err(format!(
            "must be a whole number of bytes, at least {MIN_SPOOL_MAX_BYTES} (got {n})"
        ));
    }
    Ok(n as u64)
}

/// error, warn, info, debug, trace or off (any case).
pub fn parse_level(s: &str) -> Result<log::LevelFilter, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("must be one of error, warn, info, debug, trace, off (got {s:?})"))
}

/// Writes a new config file (mode 0644: it holds no secret), creating its
/// directory.
/// Fails unless `create` could write `path` (its directory exists or can be
/// made, and is writable).
pub fn check_creatable(path: &Path) -> Result<(), String> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let probe = dir.join(format!(".{}.write-test", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| {
        format!(
            "cannot write the config file {} ({e}); run as root or pass --config",
            path.display()
        )
    })?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

pub fn create(path: &Path, server: &str, state_dir: &Path) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::durable::create_dir(dir, 0o755)?;
    }
    crate::durable::write_atomic(path, render(server, state_dir).as_bytes(), 0o644)
}

/// The config file `enroll` writes when there is none yet.
pub fn render(server: &str, state_dir: &Path) -> String {
    format!(
        "# cairn-agent configuration, written by `cairn-agent enroll`.\n\
         # The node's identity (node id and token) is kept in <state_dir>/identity.json.\n\
         server = {}\n\
         state_dir = {}\n\
         # Unsent snapshots are kept up to this many bytes; past it the oldest are dropped.\n\
         # spool_max_bytes = {DEFAULT_SPOOL_MAX_BYTES}\n\
         # error, warn, info, debug or trace\n\
         # log_level = \"info\"\n",
        toml_string(server),
        toml_string(&state_dir.to_string_lossy()),
    )
}

fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("/etc/cairn/agent.toml"))
    }

    #[test]
    fn all_keys_parse() {
        let c = parse(
            "# comment\nserver = \"https://cairn.lan:8440/\"\nstate_dir = \"/srv/cairn\"\n\
             spool_max_bytes = 1048576\nlog_level = \"DEBUG\"\n",
        )
        .unwrap();
        assert_eq!(c.server.as_deref(), Some("https://cairn.lan:8440"));
        assert_eq!(c.state_dir, PathBuf::from("/srv/cairn"));
        assert_eq!(c.spool_max_bytes, 1048576);
        assert_eq!(c.log_level, Some(log::LevelFilter::Debug));
    }

    #[test]
    fn empty_file_means_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.server, None);
        assert_eq!(c.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        assert_eq!(c.spool_max_bytes, DEFAULT_SPOOL_MAX_BYTES);
    }

    #[test]
    fn bad_values_name_the_key_and_the_file() {
        for (text, key) in [
            ("server = \"cairn.lan\"", "server"),
            ("server = 8440", "server"),
            ("state_dir = \"relative/dir\"", "state_dir"),
            ("spool_max_bytes = \"16M\"", "spool_max_bytes"),
            ("spool_max_bytes = 10", "spool_max_bytes"),
            ("spool_max_bytes = 1500000.5", "spool_max_bytes"),
            ("log_level = \"loud\"", "log_level"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(
                e.contains(&format!("'{key}'")) && e.contains("/etc/cairn/agent.toml"),
                "{text}: {e}"
            );
        }
    }

    #[test]
    fn environment_overrides_the_file() {
        let mut c = parse("server = \"http://a:1\"\nstate_dir = \"/a\"").unwrap();
        c.apply_env(|k| match k {
            "CAIRN_SERVER" => Some("https://b:2/".into()),
            "CAIRN_STATE_DIR" => Some("/b".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.server.as_deref(), Some("https://b:2"));
        assert_eq!(c.state_dir, PathBuf::from("/b"));
        let e = c
            .apply_env(|k| (k == "CAIRN_SERVER").then(|| "ftp://x".to_string()))
            .unwrap_err();
        assert!(e.contains("CAIRN_SERVER"), "{e}");
    }

    #[test]
    fn ca_file_from_config_and_environment() {
        let mut c = parse("ca_file = \"/etc/cairn/ca.pem\"").unwrap();
        assert_eq!(c.ca_file.as_deref(), Some(Path::new("/etc/cairn/ca.pem")));
        c.apply_env(|k| (k == "CAIRN_CA_FILE").then(|| "/srv/ca.pem".to_string()))
            .unwrap();
        assert_eq!(c.ca_file.as_deref(), Some(Path::new("/srv/ca.pem")));
        let e = parse("ca_file = \"ca.pem\"").unwrap_err();
        assert!(e.contains("ca_file") && e.contains("absolute"), "{e}");
        assert!(parse("ca_file = 1").unwrap_err().contains("PEM file"));
    }

    #[test]
    fn server_urls() {
        assert_eq!(
            normalize_server("http://127.0.0.1:8440").unwrap(),
            "http://127.0.0.1:8440"
        );
        assert_eq!(normalize_server(" https://x/base// ").unwrap(), "https://x/base");
        assert!(normalize_server("https://").is_err());
        assert!(normalize_server("https:///path").is_err());
        assert!(normalize_server("http://a b").is_err());
    }

    #[test]
    fn rendered_config_parses_back() {
        let text = render("https://cairn.lan:8440", Path::new("/var/lib/cairn-agent"));
        let c = parse(&text).unwrap();
        assert_eq!(c.server.as_deref(), Some("https://cairn.lan:8440"));
        assert_eq!(c.state_dir, PathBuf::from("/var/lib/cairn-agent"));
        assert_eq!(toml_string("a\"b\\c"), r#""a\"b\\c""#);
    }

    /// nanoserde 0.2 is not hardened against bad input. The config is a
    /// trusted local file, but a typo must give an error, not a hang or a
    /// panic: each case runs on its own thread with a deadline.
    #[test]
    fn malformed_configs_error_without_hanging_or_panicking() {
        let cases = [
            "server = ",
            "server = \"unterminated",
            "= \"x\"",
            "[",
            "[[",
            "[section",
            "server \"x\"",
            "server = [1, 2",
            "server = {",
            "spool_max_bytes = 1e999999",
            "log_level = 'single'",
            "\u{0}\u{1}\u{2}",
            "server = \"\\u12\"",
            "server = \"\\",
            "server = 1 2 3",
            "server = \"a\" = \"b\"",
            "[[x]]\n[[x]]\nserver = 1",
            "x = [[[[[[[[[[[[[[[[",
            "x = 2024-13-45T99:99:99",
            "é = \"ü\"",
            "x = 99999999999999999999999999999",
            "x = -",
            "x = +",
            "x = 0x",
            "x = 1_000",
            "x = -9223372036854775809",
            "a.b = 1",
            "[a]\n[a]",
            "x = \"\"\"multi",
            "x = '''",
            "x = true false",
            "\u{feff}server = \"http://a\"",
            "x = [\"a\", [1, [2, [3]]]]",
            "x = inf\ny = nan\nz = -inf",
            "x = 1979-05-27",
            "x = 07:32:00",
            "x = {a = 1}",
            "\\",
            "\"",
            "#",
            "x = #",
            "x\n= 1",
        ];
        let mut hung = Vec::new();
        let mut panicked = Vec::new();
        for case in cases {
            let (tx, rx) = std::sync::mpsc::channel();
            let text = case.to_string();
            let handle = std::thread::spawn(move || {
                let r = std::panic::catch_unwind(|| parse(&text));
                let _ = tx.send(r.is_err());
            });
            match rx.recv_timeout(Duration::from_secs(5)) {
                Ok(true) => panicked.push(case),
                Ok(false) => {
                    let _ = handle.join();
                }
                Err(_) => hung.push(case), // the thread is left spinning; the test fails below
            }
        }
        assert!(hung.is_empty(), "nanoserde hung on: {hung:?}");
        assert!(panicked.is_empty(), "nanoserde panicked on: {panicked:?}");
        for clearly_broken in ["server = \"unterminated", "[", "= \"x\"", "server = {"] {
            assert!(parse(clearly_broken).is_err(), "{clearly_broken}");
        }
    }

    #[test]
    fn syntax_errors_point_at_their_line() {
        let e = parse("# ok\nserver = \"http://a\"\nstate_dir = \"/x\n").unwrap_err();
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn a_byte_order_mark_is_ignored() {
        let c = parse("\u{feff}server = \"http://a:1\"\n").unwrap();
        assert_eq!(c.server.as_deref(), Some("http://a:1"));
    }
}
