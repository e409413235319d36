//! A cached thread pool for the HTTP front: jobs run on an idle worker when
//! there is one, on a new worker otherwise, and workers idle for a minute
//! exit. So a burst of stalled clients (each job may block on its socket
//! for the I/O timeout) never waits for a free worker, and the steady state
//! pays no thread spawn per request (a spawn was most of the front's
//! 0.16 ms per request, docs/BENCHMARKS.md §3).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

type Job = Box<dyn FnOnce() + Send>;

/// How long a worker waits for a job before it exits: long enough to carry
/// a busy spell, short enough that a burst's workers (and their touched
/// stacks) are gone by the next one (tiny-http's own pool waits 5 s too).
const IDLE_EXIT: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Workers waiting for a job.
    idle: usize,
    /// Workers alive (idle or busy).
    workers: usize,
}

#[derive(Clone, Default)]
pub struct Pool {
    shared: Arc<(Mutex<Queue>, Condvar)>,
    name: &'static str,
}

impl Pool {
    pub fn new(name: &'static str) -> Pool {
        Pool {
            shared: Arc::default(),
            name,
        }
    }

    /// Runs `job` on a worker. Fails only if no thread can be started while
    /// every worker is busy; the job is then dropped (and with it, whatever
    /// it owned: a request is answered by its drop, see `front::ReplyTo`).
    pub fn run(&self, job: impl FnOnce() + Send + 'static) -> Result<(), String> {
        let (lock, wake) = &*self.shared;
        let mut q = lock.lock().unwrap_or_else(|e| e.into_inner());
        q.jobs.push_back(Box::new(job));
        // Every queued job needs its own idle worker; waking one that
        // another job will take first would leave this one waiting.
        if q.idle >= q.jobs.len() {
            wake.notify_one();
            return Ok(());
        }
        q.workers += 1;
        drop(q);
        let pool = self.clone();
        let spawned = std::thread::Builder::new()
            .name(self.name.into())
            .spawn(move || pool.work());
        if let Err(e) = spawned {
            let mut q = lock.lock().unwrap_or_else(|e| e.into_inner());
            q.workers -= 1;
            // A busy worker takes the job when it is done; with none alive,
            // nobody will, so drop it (outside the lock: dropping a job may
            // run code that queues another).
            let orphans = if q.workers == 0 {
                std::mem::take(&mut q.jobs)
            } else {
                VecDeque::new()
            };
            drop(q);
            drop(orphans);
            return Err(format!("cannot start an HTTP worker thread: {e}"));
        }
        Ok(())
    }

    fn work(&self) {
        let (lock, wake) = &*self.shared;
        let mut q = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(job) = q.jobs.pop_front() {
                drop(q);
                job();
                q = lock.lock().unwrap_or_else(|e| e.into_inner());
                continue;
            }
            q.idle += 1;
            let (guard, waited) = wake
                .wait_timeout_while(q, IDLE_EXIT, |q| q.jobs.is_empty())
                .unwrap_or_else(|e| e.into_inner());
            q = guard;
            q.idle -= 1;
            if waited.timed_out() && q.jobs.is_empty() {
                q.workers -= 1;
                return;
            }
        }
    }

    /// (workers alive, of which idle): for tests.
    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        let q = self.shared.0.lock().unwrap_or_else(|e| e.into_inner());
        (q.workers, q.idle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn wait_for(pool: &Pool, want: (usize, usize)) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while pool.counts() != want {
            assert!(
                std::time::Instant::now() < deadline,
                "{:?} != {want:?}",
                pool.counts()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn blocked_jobs_never_hold_up_new_ones_and_idle_workers_are_reused() {
        let pool = Pool::new("test-pool");
        // Ten jobs that block until released: ten workers.
        let (release, gate) = mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let (done_tx, done) = mpsc::channel::<u32>();
        for i in 0..10 {
            let (gate, done_tx) = (gate.clone(), done_tx.clone());
            pool.run(move || {
                let _ = gate.lock().unwrap().recv();
                done_tx.send(i).unwrap();
            })
            .unwrap();
        }
        wait_for(&pool, (10, 0));
        // One more job runs at once although every worker is blocked.
        let tx = done_tx.clone();
        pool.run(move || tx.send(99).unwrap()).unwrap();
        assert_eq!(done.recv_timeout(Duration::from_secs(10)), Ok(99));
        for _ in 0..10 {
            release.send(()).unwrap();
        }
        let mut finished: Vec<u32> = (0..10)
            .map(|_| done.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        finished.sort_unstable();
        assert_eq!(finished, (0..10).collect::<Vec<_>>());
        wait_for(&pool, (11, 11));
        // A hundred jobs one after another reuse those workers.
        for i in 0..100 {
            let tx = done_tx.clone();
            pool.run(move || tx.send(i).unwrap()).unwrap();
            assert_eq!(done.recv_timeout(Duration::from_secs(10)), Ok(i));
        }
        wait_for(&pool, (11, 11));
    }
}
