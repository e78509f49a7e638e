//! The worker threads of [`super::Engine::Threads`]: started only when no worker is idle, at
//! most `most` of them, kept for the next connection once theirs ends, and gone again after
//! [`IDLE_WORKER_TIMEOUT`] without work (the Rust Book's `ThreadPool`, grown on demand and
//! shrunk when idle).
//!
//! Why not a fresh thread per connection, which is simpler? On this lab's 2-core VM a client
//! connecting in a loop (`python3`, connect then close) took about 3.4 ms per connection
//! against a server that started a thread for each, and about 0.03 ms against this pool, with
//! the machine otherwise idle (Python's `ThreadingMixIn`, a new thread per connection, pays
//! the same cost). `tests/engines/faults.rs` makes 10,000 connections and relies on it.
//!
//! Why shrink? A burst of 2,048 connections leaves 2,048 parked threads behind. A parked
//! thread costs no CPU, but it keeps its touched stack pages and a kernel task; after a
//! minute without work a worker exits and gives them back.

use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::handle::{Shared, ThreadRole};

/// Each connection's thread gets this much stack instead of std's 2 MiB. Only the pages a
/// thread touches cost memory, but a small reservation keeps thousands of threads cheap in
/// address space too; a worker needs a few recv buffers' worth (`BENCHMARKS.md` measures
/// 1,064 connections at about 27 MiB RSS).
pub const WORKER_STACK_SIZE: usize = 256 * 1024;

/// A worker with no connection to serve for this long exits.
pub const IDLE_WORKER_TIMEOUT: Duration = Duration::from_secs(60);

/// One connection's work, handed to a worker thread.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

pub(crate) struct WorkerPool {
    jobs: Option<mpsc::Sender<Job>>,
    waiting: Arc<Mutex<mpsc::Receiver<Job>>>,
    /// Workers waiting for a job, less the jobs sent and not yet taken. A worker adds one each
    /// time it goes back to wait; each job takes one. At zero or below, every worker has (or
    /// is about to have) a job, so the next one needs a new worker.
    available: Arc<AtomicIsize>,
    /// Workers started and not yet exited.
    alive: Arc<AtomicUsize>,
    workers: Vec<JoinHandle<()>>,
    most: usize,
    idle_timeout: Duration,
    /// The server whose roll each worker puts itself on while it lives.
    roll: Option<Arc<Shared>>,
}

impl WorkerPool {
    pub(crate) fn new(most: usize) -> WorkerPool {
        WorkerPool::with_idle_timeout(most, IDLE_WORKER_TIMEOUT)
    }

    pub(crate) fn with_idle_timeout(most: usize, idle_timeout: Duration) -> WorkerPool {
        let (jobs, waiting) = mpsc::channel();
        WorkerPool {
            jobs: Some(jobs),
            waiting: Arc::new(Mutex::new(waiting)),
            available: Arc::new(AtomicIsize::new(0)),
            alive: Arc::new(AtomicUsize::new(0)),
            workers: Vec::new(),
            most,
            idle_timeout,
            roll: None,
        }
    }

    /// Each worker puts itself on this server's roll while it lives, so the server's thread
    /// count can be read ([`super::ServerHandle::threads`]).
    pub(crate) fn on_roll_of(mut self, shared: Arc<Shared>) -> WorkerPool {
        self.roll = Some(shared);
        self
    }

    /// Workers alive now: serving a connection or waiting for one.
    pub(crate) fn alive(&self) -> usize {
        self.alive.load(Ordering::SeqCst)
    }

    /// Runs `job` on a waiting worker, or on a new one while there are fewer than `most`.
    /// With `most` already busy it waits in the queue for the first worker to finish.
    pub(crate) fn execute(&mut self, job: Job) -> io::Result<()> {
        // Forget the workers that exited when idle, so the list stays as long as the pool.
        self.workers.retain(|worker| !worker.is_finished());
        let was_available = self.available.fetch_sub(1, Ordering::SeqCst);
        if was_available <= 0 && self.alive() < self.most {
            match self.start_worker() {
                Ok(worker) => self.workers.push(worker),
                // With other workers alive the job can wait for one of them.
                Err(e) if self.alive() == 0 => {
                    self.available.fetch_add(1, Ordering::SeqCst);
                    return Err(e);
                }
                Err(_) => {}
            }
        }
        let jobs = self
            .jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("the pool is closed"))?;
        jobs.send(job)
            .map_err(|_| io::Error::other("every worker has exited"))
    }

    fn start_worker(&self) -> io::Result<JoinHandle<()>> {
        let waiting = Arc::clone(&self.waiting);
        let available = Arc::clone(&self.available);
        let alive = Arc::clone(&self.alive);
        let idle_timeout = self.idle_timeout;
        let roll = self.roll.clone();
        alive.fetch_add(1, Ordering::SeqCst);
        let started = thread::Builder::new()
            .stack_size(WORKER_STACK_SIZE)
            .spawn(move || {
                let _on_roll = roll.map(|shared| shared.enrol(ThreadRole::Worker));
                available.fetch_add(1, Ordering::SeqCst);
                loop {
                    // The lock is held only while waiting; a worker serving a client holds none.
                    let next = waiting
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .recv_timeout(idle_timeout);
                    match next {
                        Ok(job) => {
                            // A bug in one connection's code must not take the worker with it.
                            let _ = panic::catch_unwind(AssertUnwindSafe(job));
                            available.fetch_add(1, Ordering::SeqCst);
                        }
                        // Idle too long: leave, unless a job was already counted on this
                        // worker (sent, or about to be): then it stays for that job.
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            let left = available.fetch_update(
                                Ordering::SeqCst,
                                Ordering::SeqCst,
                                |waiting| (waiting > 0).then_some(waiting - 1),
                            );
                            if left.is_ok() {
                                break;
                            }
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                }
                alive.fetch_sub(1, Ordering::SeqCst);
            });
        if started.is_err() {
            self.alive.fetch_sub(1, Ordering::SeqCst);
        }
        started
    }

    /// Lets every worker finish its connection, then waits for all of them to exit.
    pub(crate) fn join(mut self) {
        drop(self.jobs.take());
        for worker in self.workers {
            let _ = worker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Waits until `condition` holds, for at most a minute.
    fn eventually(what: &str, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            thread::yield_now();
            thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn workers_start_on_demand_up_to_the_cap_and_exit_when_idle() {
        let mut pool = WorkerPool::with_idle_timeout(3, Duration::from_millis(20));
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = Arc::new(Mutex::new(release_rx));
        let (done_tx, done_rx) = mpsc::channel::<()>();
        for _ in 0..5 {
            let release_rx = Arc::clone(&release_rx);
            let done_tx = done_tx.clone();
            pool.execute(Box::new(move || {
                let _ = release_rx.lock().unwrap().recv();
                let _ = done_tx.send(());
            }))
            .unwrap();
        }
        // Three run at once (the cap); the other two wait in the queue, not on new threads.
        assert_eq!(pool.alive(), 3);
        for _ in 0..5 {
            release_tx.send(()).unwrap();
            done_rx.recv().unwrap();
        }
        eventually("every idle worker has exited", || pool.alive() == 0);
        // An emptied pool starts a worker again for the next job.
        let (tx, rx) = mpsc::channel();
        pool.execute(Box::new(move || tx.send(42).unwrap()))
            .unwrap();
        assert_eq!(rx.recv().unwrap(), 42);
        pool.join();
    }

    /// A stop waits for every connection to end: `join` returns only when every worker has
    /// exited, including those started before others exited.
    #[test]
    fn join_waits_for_every_worker_still_serving() {
        let mut pool = WorkerPool::new(2);
        let alive = Arc::clone(&pool.alive);
        let (started_tx, started_rx) = mpsc::channel();
        let mut releases = Vec::new();
        for job in ["first", "second"] {
            let (release, wait) = mpsc::channel::<()>();
            releases.push(release);
            let started_tx = started_tx.clone();
            pool.execute(Box::new(move || {
                started_tx.send(job).unwrap();
                let _ = wait.recv();
            }))
            .unwrap();
            // The first job holds its worker, so the second gets a worker of its own.
            assert_eq!(started_rx.recv().unwrap(), job);
        }
        assert_eq!(alive.load(Ordering::SeqCst), 2);
        let joining = thread::spawn(move || pool.join());
        // The second job ends, and its worker with it: the pool is closed.
        releases.pop().unwrap().send(()).unwrap();
        eventually("the second worker has exited", || {
            alive.load(Ordering::SeqCst) == 1
        });
        // The first is still serving, so join must not return, in this window or any other:
        // a loaded machine can only make it return later.
        let window = Instant::now() + Duration::from_millis(200);
        while Instant::now() < window {
            assert!(
                !joining.is_finished(),
                "join returned while a worker was still serving"
            );
            thread::sleep(Duration::from_millis(5));
        }
        releases.pop().unwrap().send(()).unwrap();
        joining.join().unwrap();
        assert_eq!(alive.load(Ordering::SeqCst), 0);
    }

    /// `execute` counts on a waiting worker (takes one from `available`) before it sends the
    /// job. A worker whose idle timeout ends in between must stay for that job: this test
    /// takes the count as `execute` would and holds the job back for many idle timeouts.
    #[test]
    fn an_idle_worker_counted_on_stays_for_the_job() {
        let idle = Duration::from_millis(5);
        let mut pool = WorkerPool::with_idle_timeout(1, idle);
        let (tx, rx) = mpsc::channel();
        let first = tx.clone();
        pool.execute(Box::new(move || first.send("first").unwrap()))
            .unwrap();
        assert_eq!(rx.recv().unwrap(), "first");
        eventually("the worker waits for work again", || {
            pool.available.load(Ordering::SeqCst) == 1
        });
        // What `execute` does before it sends: this worker is now counted on.
        pool.available.fetch_sub(1, Ordering::SeqCst);
        let window = Instant::now() + idle * 40;
        while Instant::now() < window {
            assert_eq!(
                pool.alive(),
                1,
                "the worker left though a job counted on it"
            );
            thread::sleep(idle);
        }
        let jobs = pool.jobs.as_ref().unwrap();
        jobs.send(Box::new(move || tx.send("second").unwrap()))
            .unwrap();
        assert_eq!(rx.recv().unwrap(), "second");
        pool.join();
    }

    #[test]
    fn a_panicking_job_does_not_take_its_worker_with_it() {
        let mut pool = WorkerPool::new(1);
        pool.execute(Box::new(|| panic!("a bug in one connection")))
            .unwrap();
        let (tx, rx) = mpsc::channel();
        pool.execute(Box::new(move || tx.send("served").unwrap()))
            .unwrap();
        assert_eq!(rx.recv().unwrap(), "served");
        assert_eq!(pool.alive(), 1);
        pool.join();
    }
}
