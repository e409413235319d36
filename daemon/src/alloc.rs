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
//!
//! The threads that allocate most (the executor and the body parsers) keep
//! a few small free blocks of their own ([`ThreadCache`]), so that they take
//! the heap's lock once per several blocks rather than once per block.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;
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
        } else if let Some(class) = class_of(l) {
            small_alloc(class)
        } else {
            heap().malloc(l.size(), l.align())
        }
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if is_big(l.size(), l.align()) {
            map(l.size()) // fresh anonymous pages are zero
        } else if let Some(class) = class_of(l) {
            let p = small_alloc(class);
            if !p.is_null() {
                std::ptr::write_bytes(p, 0, class_size(class));
            }
            p
        } else {
            heap().calloc(l.size(), l.align())
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if is_big(l.size(), l.align()) {
            libc::munmap(p.cast(), l.size());
        } else if let Some(class) = class_of(l) {
            small_free(p, class)
        } else {
            heap().free(p, l.size(), l.align())
        }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` with this alignment is a valid size.
        let new = Layout::from_size_align_unchecked(new_size, l.align());
        let (old_class, new_class) = (class_of(l), class_of(new));
        if old_class.is_some() && old_class == new_class {
            return p; // the block already has its class's size
        }
        match (is_big(l.size(), l.align()), is_big(new_size, l.align())) {
            (false, false) if old_class.is_none() && new_class.is_none() => {
                heap().realloc(p, l.size(), l.align(), new_size)
            }
            (true, true) => {
                let q = libc::mremap(p.cast(), l.size(), new_size, libc::MREMAP_MAYMOVE);
                if q == libc::MAP_FAILED {
                    std::ptr::null_mut()
                } else {
                    q.cast()
                }
            }
            // Across a threshold, or into or out of a class (whose blocks
            // must have exactly the class's size): a new block, the bytes
            // both hold, the old one freed.
            _ => {
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

/// Blocks of up to this many bytes have a size class and may be cached.
/// Past 256 bytes are the vectors of a parsed snapshot (its disks,
/// interfaces, cores), which take the heap's lock as often as its strings.
const CACHED_MAX: usize = 1024;

/// The step between the fine classes: dlmalloc's own alignment, two words.
const GRAIN: usize = 2 * std::mem::size_of::<usize>();

/// Fine classes go up to this size, coarse ones, `COARSE` apart, above it.
const FINE_MAX: usize = 256;
const COARSE: usize = 64;
const FINE: usize = FINE_MAX / GRAIN;
const CLASSES: usize = FINE + (CACHED_MAX - FINE_MAX) / COARSE;

/// Blocks of a class a thread keeps at most, and how many go to or come
/// from the heap under one lock. This bounds a thread's cache at
/// 32 × (16 + 32 + … + 256) + 8 × (320 + 384 + … + 1024) B = 131 KiB on
/// 64-bit targets.
fn keep(class: usize) -> usize {
    if class < FINE {
        32
    } else {
        8
    }
}

fn batch(class: usize) -> usize {
    keep(class) / 2
}

/// The class of a block of this layout, if it is small enough for one.
/// Every block of a class is allocated at the class's size, whichever thread
/// asks, so that any thread's cache may hand it out again for any request of
/// that class: dlmalloc would otherwise give a 20-byte request 24 usable bytes.
fn class_of(l: Layout) -> Option<usize> {
    let size = l.size().max(1);
    if l.align() > GRAIN || size > CACHED_MAX {
        None
    } else if size <= FINE_MAX {
        Some(size.div_ceil(GRAIN) - 1)
    } else {
        Some(FINE + (size - FINE_MAX).div_ceil(COARSE) - 1)
    }
}

fn class_size(class: usize) -> usize {
    if class < FINE {
        (class + 1) * GRAIN
    } else {
        FINE_MAX + (class - FINE + 1) * COARSE
    }
}

/// One thread's free small blocks: a list per class, linked through each
/// block's first word.
struct Cache {
    on: bool,
    heads: [*mut u8; CLASSES],
    counts: [u16; CLASSES],
}

impl Cache {
    unsafe fn push(&mut self, class: usize, p: *mut u8) {
        p.cast::<*mut u8>().write(self.heads[class]);
        self.heads[class] = p;
        self.counts[class] += 1;
    }

    /// Null when the class's list is empty.
    unsafe fn pop(&mut self, class: usize) -> *mut u8 {
        let p = self.heads[class];
        if !p.is_null() {
            self.heads[class] = p.cast::<*mut u8>().read();
            self.counts[class] -= 1;
        }
        p
    }
}

thread_local! {
    // `const` and without a destructor: using it never allocates, which an
    // allocator must not do.
    static CACHE: UnsafeCell<Cache> = const {
        UnsafeCell::new(Cache {
            on: false,
            heads: [std::ptr::null_mut(); CLASSES],
            counts: [0; CLASSES],
        })
    };
}

/// Runs `f` on this thread's cache if the thread has one turned on. The
/// allocator never re-enters itself on one thread, so `f` has it alone.
unsafe fn with_cache<R>(f: impl FnOnce(&mut Cache) -> R) -> Option<R> {
    CACHE
        .try_with(|c| {
            let c = &mut *c.get();
            c.on.then(|| f(c))
        })
        .ok()
        .flatten()
}

unsafe fn small_alloc(class: usize) -> *mut u8 {
    let size = class_size(class);
    let cached = with_cache(|c| {
        if c.counts[class] == 0 {
            let mut heap = heap();
            for _ in 0..batch(class) {
                let p = heap.malloc(size, GRAIN);
                if p.is_null() {
                    break;
                }
                c.push(class, p);
            }
        }
        c.pop(class)
    });
    cached.unwrap_or_else(|| heap().malloc(size, GRAIN))
}

unsafe fn small_free(p: *mut u8, class: usize) {
    let size = class_size(class);
    let kept = with_cache(|c| {
        if usize::from(c.counts[class]) >= keep(class) {
            let mut heap = heap();
            for _ in 0..batch(class) {
                heap.free(c.pop(class), size, GRAIN);
            }
        }
        c.push(class, p);
    });
    if kept.is_none() {
        heap().free(p, size, GRAIN)
    }
}

/// While it lives, this thread keeps small free blocks of its own (at most
/// 131 KiB) instead of locking the heap for each one. For the few long-lived
/// threads that allocate most: under a backfill the two body parsers and the
/// executor took the one heap lock for every block, and queued on it
/// (docs/BENCHMARKS.md §1). Dropping it gives the blocks back, and so does
/// [`flush_thread_cache`] whenever the thread is about to idle. One per
/// thread at a time.
pub struct ThreadCache {
    // Tied to the thread whose cache it turned on.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl ThreadCache {
    pub fn start() -> ThreadCache {
        // SAFETY: the cache is this thread's own, and no allocation is under way.
        unsafe {
            let _ = CACHE.try_with(|c| (*c.get()).on = true);
        }
        ThreadCache {
            _not_send: std::marker::PhantomData,
        }
    }
}

impl Drop for ThreadCache {
    fn drop(&mut self) {
        flush_thread_cache();
        // SAFETY: as in `start`.
        unsafe {
            let _ = CACHE.try_with(|c| (*c.get()).on = false);
        }
    }
}

/// Free space kept at the heap's top by [`release_idle_memory`], so that
/// the next burst does not begin by mapping a new segment.
const IDLE_TOP_PAD: usize = 128 * 1024;

/// How often at most [`release_idle_memory`] trims the heap: a trim that
/// finds something to give back is a system call, and an idle executor may
/// wait many times a second.
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// For a thread about to idle: gives back its cached blocks, and, once per
/// `TRIM_EVERY` at most, the free space at the heap's top beyond
/// `IDLE_TOP_PAD` to the system. dlmalloc trims its top by itself only past
/// 2 MiB, which in a daemon that idles at 15–19 MiB is resident memory
/// nobody uses (docs/BENCHMARKS.md §2).
pub fn release_idle_memory() {
    static LAST_TRIM: Mutex<Option<std::time::Instant>> = Mutex::new(None);
    flush_thread_cache();
    let mut last = LAST_TRIM.lock().unwrap_or_else(|e| e.into_inner());
    if last.is_some_and(|t| t.elapsed() < TRIM_EVERY) {
        return;
    }
    *last = Some(std::time::Instant::now());
    // SAFETY: trimming takes only free space from the heap.
    unsafe {
        heap().trim(IDLE_TOP_PAD);
    }
}

/// Gives this thread's cached blocks back to the heap, for a thread about
/// to wait: the blocks are of no use to anyone while it sleeps, and a heap
/// that has them back can reuse or release their pages.
pub fn flush_thread_cache() {
    // SAFETY: every cached block came from the heap at its class's size.
    unsafe {
        let _ = with_cache(|c| {
            if c.counts.iter().all(|&n| n == 0) {
                return;
            }
            let mut heap = heap();
            for class in 0..CLASSES {
                loop {
                    let p = c.pop(class);
                    if p.is_null() {
                        break;
                    }
                    heap.free(p, class_size(class), GRAIN);
                }
            }
        });
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

    /// Blocks allocated on threads with caches and freed on others, and the
    /// reverse, of every small size and across the class boundary by
    /// realloc: every block keeps its bytes while another thread uses
    /// blocks of the same class.
    #[test]
    fn cached_blocks_keep_their_bytes_across_threads() {
        struct Block(*mut u8, Layout);
        unsafe impl Send for Block {}
        let fill = |b: &Block, tag: u8| unsafe {
            std::ptr::write_bytes(b.0, tag, b.1.size());
        };
        let check = |b: &Block, tag: u8| unsafe {
            assert!((0..b.1.size()).all(|i| *b.0.add(i) == tag), "size {}", b.1.size());
        };
        let (to_freer, freer_gets) = std::sync::mpsc::channel::<(Block, u8)>();
        let freer = std::thread::spawn(move || {
            let _cache = ThreadCache::start();
            let mut mine = Vec::new();
            for (b, tag) in freer_gets {
                check(&b, tag);
                unsafe { CairnAlloc.dealloc(b.0, b.1) };
                // Its own blocks meanwhile, from the blocks just freed.
                let l = Layout::from_size_align(1 + mine.len() % CACHED_MAX, 8).unwrap();
                let own = Block(unsafe { CairnAlloc.alloc(l) }, l);
                fill(&own, 0xEE);
                mine.push(own);
            }
            for b in mine {
                check(&b, 0xEE);
                unsafe { CairnAlloc.dealloc(b.0, b.1) };
            }
        });
        let _cache = ThreadCache::start();
        let mut live = Vec::new();
        for i in 0..20_000usize {
            let size = 1 + (i * 7919) % (CACHED_MAX + 64);
            let l = Layout::from_size_align(size, 1 << (i % 5)).unwrap();
            let b = Block(unsafe { CairnAlloc.alloc(l) }, l);
            assert!(!b.0.is_null());
            assert_eq!(b.0 as usize % l.align(), 0);
            let tag = (i % 251) as u8;
            fill(&b, tag);
            live.push((b, tag));
            if i % 3 == 0 {
                // Grow or shrink one, into or out of its class.
                let (b, tag) = live.swap_remove(i % live.len());
                let new_size = 1 + (i * 104_729) % (2 * CACHED_MAX);
                let q = unsafe { CairnAlloc.realloc(b.0, b.1, new_size) };
                let nl = Layout::from_size_align(new_size, b.1.align()).unwrap();
                let kept = b.1.size().min(new_size);
                assert!((0..kept).all(|j| unsafe { *q.add(j) } == tag));
                let b = Block(q, nl);
                fill(&b, tag);
                live.push((b, tag));
            }
            if live.len() > 300 {
                let (b, tag) = live.swap_remove(i % live.len());
                if i % 2 == 0 {
                    to_freer.send((b, tag)).unwrap();
                } else {
                    check(&b, tag);
                    unsafe { CairnAlloc.dealloc(b.0, b.1) };
                }
            }
        }
        for (b, tag) in live {
            to_freer.send((b, tag)).unwrap();
        }
        drop(to_freer);
        freer.join().unwrap();
    }

    #[test]
    fn a_block_takes_the_whole_of_its_class() {
        assert_eq!(class_of(Layout::from_size_align(1, 1).unwrap()), Some(0));
        assert_eq!(class_of(Layout::from_size_align(GRAIN, 8).unwrap()), Some(0));
        assert_eq!(class_of(Layout::from_size_align(GRAIN + 1, 8).unwrap()), Some(1));
        assert_eq!(
            class_of(Layout::from_size_align(CACHED_MAX, 8).unwrap()),
            Some(CLASSES - 1)
        );
        assert_eq!(
            class_of(Layout::from_size_align(CACHED_MAX + 1, 8).unwrap()),
            None
        );
        assert_eq!(class_of(Layout::from_size_align(64, 2 * GRAIN).unwrap()), None);
        assert_eq!(class_size(CLASSES - 1), CACHED_MAX);
        // Every size gets the smallest class that holds it.
        for size in 1..=CACHED_MAX {
            let c = class_of(Layout::from_size_align(size, 1).unwrap()).unwrap();
            assert!(class_size(c) >= size, "size {size}");
            assert!(c == 0 || class_size(c - 1) < size, "size {size}");
        }
    }
}
