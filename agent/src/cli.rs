//! Command-line interface (argh). Help texts are written for someone meeting
//! the agent for the first time.

use std::path::PathBuf;

use argh::FromArgs;

#[derive(FromArgs, Debug)]
/// Cairn host agent: reads this machine's CPU, memory, disk, network and
/// temperature figures and sends them to a cairnd server. Enroll once, then
/// run it as a service. Global options go before the command, e.g.
/// `cairn-agent --log-level debug run`.
pub struct Cli {
    /// how much to log: error, warn, info, debug or trace (default: info, or
    /// the CAIRN_LOG_LEVEL environment variable, or log_level in the config)
    #[argh(option)]
    pub log_level: Option<String>,

    #[argh(subcommand)]
    pub command: Command,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Command {
    Enroll(Enroll),
    Run(Run),
    Once(Once),
    Version(Version),
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "enroll")]
/// register this machine with a cairnd server using a one-time enrollment
/// code (create one in cairnd: POST /api/v1/enrollment-codes). Saves the node
/// id and token in <state_dir>/identity.json and writes the config file if
/// there is none yet. Exit status 3: the server refused the code.
pub struct Enroll {
    /// the server's address, e.g. https://cairn.example.lan:8440
    #[argh(option)]
    pub server: String,

    /// the one-time enrollment code from the server
    #[argh(option)]
    pub code: String,

    /// config file to use or create (default: $CAIRN_AGENT_CONFIG or
    /// /etc/cairn/agent.toml)
    #[argh(option)]
    pub config: Option<PathBuf>,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "run")]
/// collect and send snapshots every interval until stopped (SIGTERM or
/// Ctrl-C). Snapshots the server cannot take right now are kept on disk and
/// sent later. This is what the service runs.
pub struct Run {
    /// config file (default: $CAIRN_AGENT_CONFIG or /etc/cairn/agent.toml)
    #[argh(option)]
    pub config: Option<PathBuf>,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "once")]
/// take one snapshot (two readings a second apart, so rates are real) and
/// print it as JSON; needs no server and no config. Handy to see what the
/// agent would send.
pub struct Once {}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "version")]
/// print the agent's version
pub struct Version {}
