//! The threads that parse ingest bodies, fed by a queue.
//!
//! At most `threads()` bodies are parsed at once, across all ingest routes:
//! a 500-snapshot body that the checked parser reads becomes a JSON tree
//! ~10x its size, and sixteen backfilling agents at once once took the
//! daemon's RSS past 120 MiB.
//!
//! How many: one core is left to the executor, which stores what the
//! parsers produce and costs about as much per snapshot as parsing it. On
//! two cores, a second parser only took the executor's core from it: under
//! a backfill the executor waited for a core 38 % of the time, and one
//! parser stored 106–149 k snapshots/s where two stored 68–111 k
//! (docs/BENCHMARKS.md §1). More than two only add memory.
//!
//! Why threads of their own: parsing used to run on smol's blocking pool
//! behind a two-slot semaphore held by the request's task, so a slot came
//! back only when the executor next polled that task. While the executor
//! stored a group commit (milliseconds, under a backfill), finished parses
//! kept their slots and no new one started, so the parse stage idled
//! whenever the executor was busy. These threads take the next body as soon
//! as they finish one, whatever the executor is doing.

use crate::http::ApiError;
use std::sync::OnceLock;

/// Bodies parsed at once: the cores but one, one at least, two at most.
pub fn threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.saturating_sub(1).clamp(1, 2)
}

/// The name of the parse threads (as /proc shows it).
pub const THREAD_NAME: &str = "cairn-parse";

type Job = Box<dyn FnOnce() + Send>;

/// The queue, with its threads started on first use. If no thread could be
/// started, the queue is closed and every parse fails with a 500.
fn queue() -> &'static async_channel::Sender<Job> {
    static QUEUE: OnceLock<async_channel::Sender<Job>> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let (jobs, next) = async_channel::unbounded::<Job>();
        for _ in 0..threads() {
            let next = next.clone();
            let started = std::thread::Builder::new()
                .name(THREAD_NAME.into())
                .spawn(move || {
                    let _cache = crate::alloc::ThreadCache::start();
                    loop {
                        let job = match next.try_recv() {
                            Ok(job) => job,
                            Err(_) => {
                                // Nothing queued: the thread may sleep a long time.
                                crate::alloc::flush_thread_cache();
                                match next.recv_blocking() {
                                    Ok(job) => job,
                                    Err(_) => break,
                                }
                            }
                        };
                        job();
                    }
                });
            if let Err(e) = started {
                log::error!("cannot start a body parser thread: {e}");
            }
        }
        jobs
    })
}

/// Parses `body` on a parse thread; the caller's task waits without holding
/// anything the executor must give back. The body waits its turn in the
/// queue (its memory is already spent: the connection read it).
pub async fn parse_off_executor<T: Send + 'static>(
    body: Vec<u8>,
    parse: impl FnOnce(&[u8]) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let (done, outcome) = async_channel::bounded(1);
    let job: Job = Box::new(move || {
        // The request may be gone (its client hung up): nobody to tell.
        let _ = done.try_send(parse(&body));
    });
    if queue().try_send(job).is_err() {
        return Err(ApiError::internal("the body parser threads are not running"));
    }
    outcome
        .recv()
        .await
        .unwrap_or_else(|_| Err(ApiError::internal("a body parser thread stopped")))
}

/// Drops `garbage` on a parse thread. A committed batch is some ten blocks
/// per snapshot, allocated by the parse threads; freeing them was 8 % of
/// the executor's time under a backfill (docs/BENCHMARKS.md §1), and on the
/// thread that allocated them the blocks go straight back to its cache.
/// Without the threads, it is dropped here.
pub fn dispose<T: Send + 'static>(garbage: T) {
    if let Err(e) = queue().try_send(Box::new(move || drop(garbage))) {
        drop(e.into_inner());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    fn parse_threads() -> usize {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter(|t| {
                let comm = t.as_ref().unwrap().path().join("comm");
                std::fs::read_to_string(comm).is_ok_and(|c| c.trim() == THREAD_NAME)
            })
            .count()
    }

    #[test]
    fn as_many_bodies_as_threads_are_parsed_at_once_and_the_rest_wait_their_turn() {
        let active = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let wait = Arc::new(Mutex::new(wait));
        let tasks: Vec<_> = (0..threads() + 3)
            .map(|i| {
                let (active, most, wait) = (active.clone(), most.clone(), wait.clone());
                smol::spawn(parse_off_executor(vec![i as u8], move |b| {
                    let now = active.fetch_add(1, SeqCst) + 1;
                    most.fetch_max(now, SeqCst);
                    let _ = wait.lock().unwrap().recv();
                    active.fetch_sub(1, SeqCst);
                    Ok(b[0])
                }))
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        while active.load(SeqCst) < threads() {
            assert!(Instant::now() < deadline, "the parses never started");
            std::thread::yield_now();
        }
        // Only that many threads exist to run them.
        assert_eq!(parse_threads(), threads());
        for _ in 0..threads() + 3 {
            go.send(()).unwrap();
        }
        let got: Vec<u8> = tasks.into_iter().map(|t| smol::block_on(t).unwrap()).collect();
        assert_eq!(got, (0..threads() as u8 + 3).collect::<Vec<_>>());
        assert_eq!(most.load(SeqCst), threads());
    }

    #[test]
    fn disposed_values_are_dropped_on_a_parse_thread() {
        struct Tell(std::sync::mpsc::Sender<String>);
        impl Drop for Tell {
            fn drop(&mut self) {
                let name = std::thread::current().name().unwrap_or("").to_string();
                let _ = self.0.send(name);
            }
        }
        let (tx, rx) = std::sync::mpsc::channel();
        dispose(Tell(tx));
        let dropped_on = rx.recv_timeout(Duration::from_secs(10)).expect("dropped");
        assert_eq!(dropped_on, THREAD_NAME);
    }

    #[test]
    fn parses_go_on_while_the_executor_does_not_poll() {
        // Each request task is polled once (queuing its job) and then not
        // again, as while the executor stores a commit: finished parses must
        // not keep later ones from starting.
        let ran = Arc::new(AtomicUsize::new(0));
        let mut tasks: Vec<_> = (0..threads() + 3)
            .map(|i| {
                let ran = ran.clone();
                Box::pin(parse_off_executor(vec![i as u8], move |b| {
                    ran.fetch_add(1, SeqCst);
                    Ok(b[0])
                }))
            })
            .collect();
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        // A parse may even finish before its first poll returns.
        let early: Vec<Option<u8>> = tasks
            .iter_mut()
            .map(|t| match t.as_mut().poll(&mut cx) {
                std::task::Poll::Ready(got) => Some(got.unwrap()),
                std::task::Poll::Pending => None,
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        while ran.load(SeqCst) < threads() + 3 {
            assert!(Instant::now() < deadline, "parses waited for polls: {ran:?} ran");
            std::thread::yield_now();
        }
        let got: Vec<u8> = tasks
            .into_iter()
            .zip(early)
            .map(|(t, early)| early.unwrap_or_else(|| smol::block_on(t).unwrap()))
            .collect();
        assert_eq!(got, (0..threads() as u8 + 3).collect::<Vec<_>>());
    }
}
