//! cairnd: Cairn's monitoring server. See the library crate for the parts.

/// Static musl builds: dlmalloc (and own mappings for big blocks) instead of
/// the libc's malloc (why: daemon/Cargo.toml on dlmalloc, and alloc.rs).
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOC: cairnd::alloc::CairnAlloc = cairnd::alloc::CairnAlloc;

fn main() -> std::process::ExitCode {
    // SQLite's blocks through Rust's allocator, dlmalloc in the static
    // builds (why: store/sqlite_alloc.rs); glibc builds do the same so the
    // tests run this path.
    if let Err(e) = cairnd::store::sqlite_alloc::install() {
        eprintln!("cairnd: SQLite keeps libc's malloc: {e}");
    }
    cairnd::run_cli()
}
