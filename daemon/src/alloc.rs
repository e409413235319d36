//! The static builds' global allocator: dlmalloc for small blocks, their own
//! mappings for big ones.
//!
//! dlmalloc gives memory back only from the top of a segment or when a
//! whole segment is free, so one long-lived block placed after a burst of
//! big ones (16 backfill bodies of ~700 KB, a 4 MB fleet-chart reply) pins
//! everything below it. Blocks of `BIG` bytes or more therefore get a
//! mapping of their own, unmapped on free, as glibc's malloc does above its
//! mmap threshold; growing one is an `mremap`, not a copy. Small blocks stay
//! in dlmalloc's heap, where they pack well.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::{Mutex, MutexGuard};

/// The heap of small blocks, behind std's futex mutex rather than the
/// `dlmalloc::GlobalDlmalloc` one, a `pthread_mutex_t`: in the static builds
/// that is zig libc's, and under an ingest backfill the parse threads spent
/// over half their time locking and unlocking it (docs/BENCHMARKS.md §1).
/// std's takes one atomic operation when free and spins briefly before it
/// sleeps. It never allocates, so the allocator may use it.
static HEAP: Mutex<dlmalloc::Dlmalloc> = Mutex::new(dlmalloc::Dlmalloc::new());

fn heap() -> MutexGuard<'static, dlmalloc::Dlmalloc> {
    // Nothing panics while holding it; if something did, the heap is as
    // consistent as dlmalloc left it.
    HEAP.lock().unwrap_or_else(|e| e.into_inner())
}

/// From this size a block gets its own mapping.
pub const BIG: usize = 128 * 1024;

pub struct CairnAlloc;

/// Whether a block of this layout lives in its own mapping. Decided from
/// the layout alone, which `dealloc` and `realloc` receive unchanged.
fn is_big(size: usize, align: usize) -> bool {
    size >= BIG && align <= 4096
}

unsafe fn map(size: usize) -> *mut u8 {
    let p = libc::mmap(
        std::ptr::null_mut(),
        size,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        -1,
        0,
    );
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

unsafe impl GlobalAlloc for CairnAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if is_big(l.size(), l.align()) {
            map(l.size())
        } else {
            heap().malloc(l.size(), l.align())
        }
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if is_big(l.size(), l.align()) {
            map(l.size()) // fresh anonymous pages are zero
        } else {
            heap().calloc(l.size(), l.align())
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if is_big(l.size(), l.align()) {
            libc::munmap(p.cast(), l.size());
        } else {
            heap().free(p, l.size(), l.align())
        }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        match (is_big(l.size(), l.align()), is_big(new_size, l.align())) {
            (false, false) => heap().realloc(p, l.size(), l.align(), new_size),
            (true, true) => {
                let q = libc::mremap(p.cast(), l.size(), new_size, libc::MREMAP_MAYMOVE);
                if q == libc::MAP_FAILED {
                    std::ptr::null_mut()
                } else {
                    q.cast()
                }
            }
            // Across the threshold: a new block, the bytes both hold, the old one freed.
            _ => {
                let Ok(new) = Layout::from_size_align(new_size, l.align()) else {
                    return std::ptr::null_mut();
                };
                let q = self.alloc(new);
                if !q.is_null() {
                    std::ptr::copy_nonoverlapping(p, q, l.size().min(new_size));
                    self.dealloc(p, l);
                }
                q
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Grows a block from small to big and back, checking its bytes at every step.
    #[test]
    fn blocks_keep_their_bytes_across_the_threshold() {
        let a = CairnAlloc;
        unsafe {
            let mut l = Layout::from_size_align(1000, 8).unwrap();
            let mut p = a.alloc(l);
            assert!(!p.is_null());
            for i in 0..1000 {
                *p.add(i) = (i % 251) as u8;
            }
            for size in [BIG - 1, BIG, 3 * BIG + 5, 40 * BIG, BIG + 1, BIG - 8, 1000] {
                p = a.realloc(p, l, size);
                assert!(!p.is_null(), "realloc to {size}");
                l = Layout::from_size_align(size, 8).unwrap();
                for i in 0..1000 {
                    assert_eq!(*p.add(i), (i % 251) as u8, "byte {i} after realloc to {size}");
                }
            }
            a.dealloc(p, l);
            let z = Layout::from_size_align(2 * BIG, 64).unwrap();
            let q = a.alloc_zeroed(z);
            assert!((0..z.size()).all(|i| *q.add(i) == 0));
            assert_eq!(q as usize % 64, 0);
            a.dealloc(q, z);
        }
    }

    #[test]
    fn big_blocks_are_given_back_at_once() {
        let resident = || -> u64 {
            let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
            statm.split_whitespace().nth(1).unwrap().parse().unwrap()
        };
        let a = CairnAlloc;
        let l = Layout::from_size_align(64 << 20, 8).unwrap();
        unsafe {
            let p = a.alloc(l);
            std::ptr::write_bytes(p, 1, l.size());
            let touched = resident();
            a.dealloc(p, l);
            // 64 MiB = 16384 pages of 4 KiB; other test threads may allocate meanwhile.
            assert!(touched - resident() > 8_000, "{touched} -> {}", resident());
        }
    }
}
