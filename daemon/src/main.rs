//! cairnd: Cairn's monitoring server. See the library crate for the parts.

fn main() -> std::process::ExitCode {
    cairnd::run_cli()
}
