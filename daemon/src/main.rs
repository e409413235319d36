//! cairnd: Cairn's monitoring server. See the library crate for the parts.

/// Static musl builds: dlmalloc instead of the libc's malloc (why: the
/// comment on the dependency in daemon/Cargo.toml).
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOC: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

fn main() -> std::process::ExitCode {
    cairnd::run_cli()
}
