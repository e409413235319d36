//! `cairn-agent`: enroll with a cairnd server, then collect and ship snapshots
//! (`run`); `once` prints one snapshot for a look without any server.

mod cli;
mod run;

use std::process::ExitCode;
use std::time::Duration;

use cairn_agent::client::Client;
use cairn_agent::collect::{self, Collectors};
use cairn_agent::config::{self, Config};
use cairn_agent::identity::Identity;
use cairn_agent::logger;
use cairn_wire::EnrollRequest;
use log::LevelFilter;

use cli::{Cli, Command};

/// `enroll`'s exit status when the server refused the enrollment code
/// (unknown, expired or already used): retrying cannot help.
const EXIT_CODE_REFUSED: u8 = 3;

fn main() -> ExitCode {
    let cli: Cli = argh::from_env();
    let (level, explicit) = match initial_level(cli.log_level.as_deref()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cairn-agent: {e}");
            return ExitCode::from(2);
        }
    };
    logger::init(level);
    let result = match cli.command {
        Command::Version(_) => print_out(&format!("cairn-agent {}\n", env!("CARGO_PKG_VERSION"))),
        Command::Once(_) => once(),
        Command::Enroll(args) => {
            // A distinct status when the server refused the code, so a
            // first-boot unit can stop retrying (RestartPreventExitStatus=).
            let code_refused = std::cell::Cell::new(false);
            return match enroll(args, explicit, &code_refused) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("cairn-agent: {e}");
                    if code_refused.get() {
                        ExitCode::from(EXIT_CODE_REFUSED)
                    } else {
                        ExitCode::FAILURE
                    }
                }
            };
        }
        Command::Run(args) => {
            // Under a service manager the error belongs in the log, with its level.
            return match run::run(args.config, explicit) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    log::error!("{e}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cairn-agent: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--log-level`, else CAIRN_LOG_LEVEL, else info. The flag says whether the
/// level was chosen explicitly (the config file's log_level then yields).
fn initial_level(flag: Option<&str>) -> Result<(LevelFilter, bool), String> {
    if let Some(f) = flag {
        return config::parse_level(f)
            .map(|l| (l, true))
            .map_err(|e| format!("--log-level {e}"));
    }
    match std::env::var("CAIRN_LOG_LEVEL") {
        Ok(v) if !v.trim().is_empty() => config::parse_level(&v)
            .map(|l| (l, true))
            .map_err(|e| format!("CAIRN_LOG_LEVEL {e}")),
        _ => Ok((LevelFilter::Info, false)),
    }
}

/// Loads the config and lets its log_level apply unless one was given explicitly.
pub(crate) fn load_config(path: &std::path::Path, explicit_level: bool) -> Result<Config, String> {
    let cfg = Config::load(path)?;
    if let (Some(level), false) = (cfg.log_level, explicit_level) {
        log::set_max_level(level);
    }
    Ok(cfg)
}

fn once() -> Result<(), String> {
    let mut collectors = Collectors::new();
    // One second between readings: CPU shares and rates need a window, and a
    // second is enough to be meaningful without making the user wait.
    std::thread::sleep(Duration::from_secs(1));
    let snap = collectors.collect();
    let json = serde_json::to_string_pretty(&snap).map_err(|e| format!("encoding snapshot: {e}"))?;
    print_out(&format!("{json}\n"))
}

/// Writes to stdout; a closed pipe (`cairn-agent once | head`) is not an
/// error worth more than silence, unlike println!, which panics on it.
fn print_out(text: &str) -> Result<(), String> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(format!("writing to stdout: {e}")),
        _ => Ok(()),
    }
}

fn enroll(
    args: cli::Enroll,
    explicit_level: bool,
    code_refused: &std::cell::Cell<bool>,
) -> Result<(), String> {
    let path = config::config_path(args.config);
    let cfg = load_config(&path, explicit_level)?;
    let server = config::normalize_server(&args.server).map_err(|e| format!("--server {e}"))?;
    let code = args.code.trim();
    if code.is_empty() {
        return Err("--code is empty; create an enrollment code on the server".into());
    }
    // Everything that could fail after the server has used up the code is
    // checked first.
    Identity::check_writable(&cfg.state_dir)?;
    if !cfg.exists {
        config::check_creatable(&path)?;
    }
    let (hostname, system) = collect::host_info();
    let request = EnrollRequest {
        code: code.to_string(),
        hostname: hostname.clone(),
        os: system.os,
        arch: system.arch,
        agent_version: system.agent_version,
    };
    let reply = Client::new(&server, cfg.ca_file.as_deref())?
        .enroll(&request)
        .map_err(|e| {
            if let cairn_agent::client::SendError::Status { code, .. } = &e {
                // 4xx other than "too many requests" / "timeout": the code itself.
                code_refused.set((400..500).contains(code) && *code != 408 && *code != 429);
            }
            format!("enrolling with {server}: {e}")
        })?;
    if reply.node_id.is_empty() || reply.token.is_empty() {
        return Err(format!(
            "enrolling with {server}: the reply has no node_id or token; is this a cairnd server?"
        ));
    }
    let identity = Identity {
        node_id: reply.node_id,
        token: reply.token,
        server: server.clone(),
    };
    identity.save(&cfg.state_dir)?;
    println!(
        "Enrolled {hostname} with {server} as node {}.\nIdentity saved in {}.",
        identity.node_id,
        Identity::path(&cfg.state_dir).display()
    );
    if !cfg.exists {
        config::create(&path, &server, &cfg.state_dir)?;
        println!("Config written to {}.", path.display());
    } else if let Some(other) = cfg.server.as_deref().filter(|s| *s != server) {
        // The file is the user's (comments, config management): not rewritten.
        println!(
            "Note: {} (or CAIRN_SERVER) sets server = {other}; `run` uses that, where this \
             token is not valid. Set server = \"{server}\" there.",
            path.display(),
        );
    }
    println!(
        "Next: start the service (systemctl enable --now cairn-agent, or rc-service \
         cairn-agent start), or run `cairn-agent run` in a terminal."
    );
    Ok(())
}
