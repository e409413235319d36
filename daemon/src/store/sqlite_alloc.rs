//! SQLite's heap through Rust's global allocator.
//!
//! The bundled SQLite calls libc's `malloc`. In the static builds that is
//! Zig's SmpAllocator (see the dlmalloc note in daemon/Cargo.toml): it rounds
//! every block up to a power of two, so a 4.2 KB page-cache entry takes
//! 8 KiB, and it never gives blocks under 64 KiB back. Routed here, SQLite's
//! memory shares dlmalloc with the rest of cairnd: packed, coalesced and
//! returned after a big sort or a backfill.
//!
//! SQLite needs each block's size back (`xSize`), so every block carries it
//! in a 16-byte header (16 keeps SQLite's 8-byte alignment and more).

use rusqlite::ffi;
use std::alloc::{alloc, dealloc, realloc, Layout};
use std::os::raw::{c_int, c_void};

const HEADER: usize = 16;

fn layout(total: usize) -> Option<Layout> {
    Layout::from_size_align(total, HEADER).ok()
}

/// # Safety
/// `user` must come from `x_malloc`/`x_realloc` here.
unsafe fn base_of(user: *mut c_void) -> (*mut u8, usize) {
    let base = (user as *mut u8).sub(HEADER);
    (base, *(base as *const usize))
}

unsafe extern "C" fn x_malloc(n: c_int) -> *mut c_void {
    let Some(l) = usize::try_from(n).ok().and_then(|n| layout(n + HEADER)) else {
        return std::ptr::null_mut();
    };
    let base = alloc(l);
    if base.is_null() {
        return std::ptr::null_mut();
    }
    *(base as *mut usize) = l.size();
    base.add(HEADER) as *mut c_void
}

unsafe extern "C" fn x_free(user: *mut c_void) {
    if user.is_null() {
        return;
    }
    let (base, total) = base_of(user);
    if let Some(l) = layout(total) {
        dealloc(base, l);
    }
}

unsafe extern "C" fn x_realloc(user: *mut c_void, n: c_int) -> *mut c_void {
    if user.is_null() {
        return x_malloc(n);
    }
    let (base, total) = base_of(user);
    let (Some(old), Some(new)) = (
        layout(total),
        usize::try_from(n).ok().and_then(|n| layout(n + HEADER)),
    ) else {
        return std::ptr::null_mut();
    };
    let moved = realloc(base, old, new.size());
    if moved.is_null() {
        return std::ptr::null_mut();
    }
    *(moved as *mut usize) = new.size();
    moved.add(HEADER) as *mut c_void
}

unsafe extern "C" fn x_size(user: *mut c_void) -> c_int {
    if user.is_null() {
        return 0;
    }
    (base_of(user).1 - HEADER) as c_int
}

unsafe extern "C" fn x_roundup(n: c_int) -> c_int {
    (n + 7) & !7
}

unsafe extern "C" fn x_init(_: *mut c_void) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_shutdown(_: *mut c_void) {}

/// Installs the allocator. Must run before SQLite is first used (the first
/// connection initialises it); later, SQLite refuses and keeps libc's.
pub fn install() -> Result<(), String> {
    let methods = ffi::sqlite3_mem_methods {
        xMalloc: Some(x_malloc),
        xFree: Some(x_free),
        xRealloc: Some(x_realloc),
        xSize: Some(x_size),
        xRoundup: Some(x_roundup),
        xInit: Some(x_init),
        xShutdown: Some(x_shutdown),
        pAppData: std::ptr::null_mut(),
    };
    // SAFETY: SQLite copies the methods struct before returning; the
    // functions are sound for any pointer SQLite passes them (only pointers
    // they returned).
    let rc = unsafe {
        ffi::sqlite3_config(
            ffi::SQLITE_CONFIG_MALLOC,
            &methods as *const ffi::sqlite3_mem_methods,
        )
    };
    if rc == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(format!("sqlite3_config(SQLITE_CONFIG_MALLOC) returned {rc}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The methods as SQLite uses them, without installing them process-wide.
    #[test]
    fn blocks_keep_their_size_through_realloc() {
        unsafe {
            let p = x_malloc(100);
            assert!(!p.is_null());
            assert_eq!(x_size(p), 100);
            std::ptr::write_bytes(p as *mut u8, 0xab, 100);
            let q = x_realloc(p, 5000);
            assert_eq!(x_size(q), 5000);
            assert_eq!(*(q as *const u8).add(99), 0xab, "contents survive realloc");
            assert_eq!(q as usize % 8, 0);
            let r = x_realloc(q, 10);
            assert_eq!(x_size(r), 10);
            x_free(r);
            x_free(std::ptr::null_mut());
            assert!(x_malloc(-1).is_null());
            assert_eq!(x_roundup(13), 16);
        }
    }
}
