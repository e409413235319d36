//! Command line (argh). `cairnd serve` is the daemon; the rest are admin
//! tools that open the same database directly (for recovery when nobody can
//! sign in).

use argh::FromArgs;
use std::path::PathBuf;

/// cairnd — Cairn's monitoring server. Start with `cairnd serve`; on first
/// run it creates ./cairn-data, an `admin` user whose password it prints
/// once, and starts monitoring this host.
#[derive(FromArgs)]
pub struct Cli {
    /// log level: error, warn, info, debug, trace (default info; env CAIRN_LOG_LEVEL)
    #[argh(option)]
    pub log_level: Option<String>,
    #[argh(subcommand)]
    pub cmd: Cmd,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum Cmd {
    Serve(Serve),
    User(UserCmd),
    Token(TokenCmd),
    Version(Version),
    Routes(Routes),
}

/// Run the server (HTTP API, storage, local monitoring).
#[derive(FromArgs)]
#[argh(subcommand, name = "serve")]
pub struct Serve {
    /// address to listen on (default 127.0.0.1:8440; env CAIRN_LISTEN)
    #[argh(option)]
    pub listen: Option<String>,
    /// where the database and first-run files live (default ./cairn-data; env CAIRN_DATA_DIR)
    #[argh(option)]
    pub data_dir: Option<PathBuf>,
    /// TOML configuration file (see docs/OPERATIONS.md for keys)
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// do not monitor this host in-process
    #[argh(switch)]
    pub no_local_agent: bool,
}

/// Manage users directly in the database (recovery).
#[derive(FromArgs)]
#[argh(subcommand, name = "user")]
pub struct UserCmd {
    #[argh(subcommand)]
    pub cmd: UserSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum UserSub {
    Add(UserAdd),
    Passwd(UserPasswd),
    List(UserList),
}

/// Add a user; the password is read from stdin or generated and printed.
#[derive(FromArgs)]
#[argh(subcommand, name = "add")]
pub struct UserAdd {
    /// the new user's name
    #[argh(positional)]
    pub username: String,
    /// viewer, operator or admin (default viewer)
    #[argh(option, default = "String::from(\"viewer\")")]
    pub role: String,
    /// read the password from stdin instead of generating one
    #[argh(switch)]
    pub password_stdin: bool,
    #[argh(option, description = "data directory (default ./cairn-data)")]
    pub data_dir: Option<PathBuf>,
    #[argh(option, description = "TOML configuration file")]
    pub config: Option<PathBuf>,
}

/// Set a user's password (generated and printed, or read from stdin); ends their sessions.
#[derive(FromArgs)]
#[argh(subcommand, name = "passwd")]
pub struct UserPasswd {
    /// the user
    #[argh(positional)]
    pub username: String,
    /// read the password from stdin instead of generating one
    #[argh(switch)]
    pub password_stdin: bool,
    #[argh(option, description = "data directory (default ./cairn-data)")]
    pub data_dir: Option<PathBuf>,
    #[argh(option, description = "TOML configuration file")]
    pub config: Option<PathBuf>,
}

/// List users and their roles.
#[derive(FromArgs)]
#[argh(subcommand, name = "list")]
pub struct UserList {
    #[argh(option, description = "data directory (default ./cairn-data)")]
    pub data_dir: Option<PathBuf>,
    #[argh(option, description = "TOML configuration file")]
    pub config: Option<PathBuf>,
}

/// Manage API tokens.
#[derive(FromArgs)]
#[argh(subcommand, name = "token")]
pub struct TokenCmd {
    #[argh(subcommand)]
    pub cmd: TokenSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum TokenSub {
    Create(TokenCreate),
}

/// Create an API token and print it once.
#[derive(FromArgs)]
#[argh(subcommand, name = "create")]
pub struct TokenCreate {
    /// a name to recognise the token by
    #[argh(option)]
    pub name: String,
    /// viewer, operator or admin
    #[argh(option)]
    pub role: String,
    #[argh(option, description = "data directory (default ./cairn-data)")]
    pub data_dir: Option<PathBuf>,
    #[argh(option, description = "TOML configuration file")]
    pub config: Option<PathBuf>,
}

/// List every API route with its minimum role.
#[derive(FromArgs)]
#[argh(subcommand, name = "routes")]
pub struct Routes {}

/// Print the version.
#[derive(FromArgs)]
#[argh(subcommand, name = "version")]
pub struct Version {}
