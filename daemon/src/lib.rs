//! cairnd as a library: everything the daemon is made of, so benchmarks and
//! tools can drive the real store and engines. `src/main.rs` only calls
//! [`run_cli`].

pub mod alloc;
pub mod api;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod engine;
pub mod http;
pub mod logger;
pub mod open_files;
pub mod security;
pub mod serve;
pub mod store;

use cli::{Cli, Cmd, TokenSub, UserSub};
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

/// The `cairnd` command line.
pub fn run_cli() -> ExitCode {
    let cli: Cli = argh::from_env();
    let level = cli
        .log_level
        .clone()
        .or_else(|| std::env::var("CAIRN_LOG_LEVEL").ok())
        .unwrap_or_else(|| "info".into());
    match logger::parse_level(&level) {
        Ok(l) => logger::init(l),
        Err(e) => {
            eprintln!("cairnd: {e}");
            return ExitCode::from(2);
        }
    }
    let result = match cli.cmd {
        Cmd::Serve(s) => serve::run(s),
        Cmd::Version(_) => {
            println!("cairnd {}", api::system::VERSION);
            Ok(())
        }
        Cmd::Routes(_) => {
            for r in api::ROUTES {
                println!(
                    "{:<7} {:<42} {:<13} {}",
                    r.method,
                    r.path,
                    r.access.as_str(),
                    r.summary
                );
            }
            Ok(())
        }
        Cmd::User(u) => match u.cmd {
            UserSub::Add(a) => user_add(a),
            UserSub::Passwd(p) => user_passwd(p),
            UserSub::List(l) => user_list(l),
        },
        Cmd::Token(t) => match t.cmd {
            TokenSub::Create(c) => token_create(c),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cairnd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn open_store(data_dir: Option<PathBuf>, config: Option<PathBuf>) -> Result<store::Store, String> {
    let mut cfg = config::Config::load(config.as_deref())?;
    if let Some(d) = data_dir {
        cfg.data_dir = d;
    }
    let db = cfg.data_dir.join("cairn.db");
    if !db.exists() {
        return Err(format!(
            "no database at {}; run `cairnd serve` once first or pass --data-dir",
            db.display()
        ));
    }
    store::Store::open(&db)
}

fn read_or_generate_password(stdin: bool) -> Result<(String, bool), String> {
    if stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| format!("reading password from stdin: {e}"))?;
        let p = s.trim_end_matches(['\r', '\n']).to_string();
        security::check_password_strength(&p).map_err(|e| format!("password {e}"))?;
        Ok((p, false))
    } else {
        Ok((security::random_string(20), true))
    }
}

fn user_add(a: cli::UserAdd) -> Result<(), String> {
    let store = open_store(a.data_dir, a.config)?;
    let role = store::auth::Role::parse(&a.role).ok_or("role must be viewer, operator or admin")?;
    let name = api::users::check_username(&a.username).map_err(|e| e.message)?;
    if store.user_by_name(&name).map_err(|e| e.to_string())?.is_some() {
        return Err(format!("user '{name}' already exists"));
    }
    let (password, generated) = read_or_generate_password(a.password_stdin)?;
    let hash = security::hash_password(&password)?;
    store
        .insert_user(&name, &hash, role, clock::now())
        .map_err(|e| format!("adding user: {e}"))?;
    println!("user '{name}' added with role {}", role.as_str());
    if generated {
        println!("password: {password}");
    }
    Ok(())
}

fn user_passwd(p: cli::UserPasswd) -> Result<(), String> {
    let store = open_store(p.data_dir, p.config)?;
    let user = store
        .user_by_name(&p.username)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no user '{}'", p.username))?;
    let (password, generated) = read_or_generate_password(p.password_stdin)?;
    let hash = security::hash_password(&password)?;
    store
        .set_user_password(user.id, &hash, clock::now())
        .map_err(|e| format!("setting password: {e}"))?;
    store
        .clear_login_failures(Some(&user.username), None)
        .map_err(|e| e.to_string())?;
    println!("password of '{}' changed; their sessions ended", user.username);
    if generated {
        println!("password: {password}");
    }
    Ok(())
}

fn user_list(l: cli::UserList) -> Result<(), String> {
    let store = open_store(l.data_dir, l.config)?;
    for u in store.users().map_err(|e| e.to_string())? {
        println!("{}\t{}", u.username, u.role.as_str());
    }
    Ok(())
}

fn token_create(c: cli::TokenCreate) -> Result<(), String> {
    let store = open_store(c.data_dir, c.config)?;
    let role = store::auth::Role::parse(&c.role).ok_or("role must be viewer, operator or admin")?;
    let name = api::check_name("name", &c.name, 100).map_err(|e| e.message)?;
    let (_, token) =
        api::tokens::issue(&store, &name, role, "cli").map_err(|e| format!("creating token: {e}"))?;
    println!("{token}");
    Ok(())
}
