//! [`CpuHogs`]: bounded busy loops that load the machine's cores while a test runs, to widen the
//! windows in which concurrent steps can interleave (a loaded machine schedules tasks late and in
//! unusual orders), and [`TaskFlood`]: ready tasks that keep a tokio runtime busy. Every loop stops when
//! its guard is dropped (or it is stopped), or by itself after its time bound.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Busy threads, stopped (and joined) on drop.
pub struct CpuHogs {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<u64>>,
}

impl CpuHogs {
    /// Starts `n` threads that spin until the guard is dropped or `bound` has passed.
    pub fn start(n: usize, bound: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let until = Instant::now() + bound;
                    let mut spins = 0u64;
                    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                        // Pure computation: no syscalls, so the thread competes for the core all the time.
                        for _ in 0..10_000 {
                            spins = std::hint::black_box(
                                spins.wrapping_mul(6364136223846793005).wrapping_add(1),
                            );
                        }
                    }
                    spins
                })
            })
            .collect();
        CpuHogs { stop, threads }
    }
}

impl Drop for CpuHogs {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Ready tasks that keep a tokio runtime's queues full, as a server delivering a flood of messages
/// does: each task computes for `work`, wakes the next task of the flood (so the worker's next-task
/// slot keeps changing hands, as a delivery waking a socket writer does) and yields. Every task stops
/// when told to, or by itself after its time bound.
pub struct TaskFlood {
    stop: Arc<AtomicBool>,
    polls: Arc<std::sync::atomic::AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl TaskFlood {
    /// Spawns `n` tasks on the current runtime.
    pub fn start(n: usize, work: Duration, bound: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let polls = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let bells: Vec<Arc<tokio::sync::Notify>> = (0..n)
            .map(|_| Arc::new(tokio::sync::Notify::new()))
            .collect();
        let tasks = (0..n)
            .map(|i| {
                let (stop, polls) = (stop.clone(), polls.clone());
                let (mine, next) = (bells[i].clone(), bells[(i + 1) % n].clone());
                tokio::spawn(async move {
                    let until = Instant::now() + bound;
                    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                        let busy = Instant::now() + work;
                        while Instant::now() < busy {
                            std::hint::spin_loop();
                        }
                        polls.fetch_add(1, Ordering::Relaxed);
                        next.notify_one();
                        // Woken by the previous task or by the yield, whichever comes first.
                        tokio::select! {
                            _ = mine.notified() => {}
                            _ = tokio::task::yield_now() => {}
                        }
                    }
                })
            })
            .collect();
        TaskFlood { stop, polls, tasks }
    }

    /// A multi-thread runtime of `workers` threads to flood: a test that runs its body with
    /// `block_on` waits from outside the queues, so only the code under test waits in them.
    pub fn runtime(workers: usize) -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
            .expect("a tokio runtime")
    }

    /// A flood of 1 ms tasks that takes about a second a pass over a runtime of `workers` threads
    /// (2,000 tasks on two), returned once every task has run twice. Runs for at most a minute.
    pub async fn running_a_second_a_pass(workers: usize) -> Self {
        let tasks = 1_000 * workers;
        let flood = TaskFlood::start(tasks, Duration::from_millis(1), Duration::from_secs(60));
        let started = Instant::now();
        while flood.polls() < 2 * tasks as u64 {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the flood never ran"
            );
            tokio::task::yield_now().await;
        }
        flood
    }

    /// How many times the flood's tasks have run.
    pub fn polls(&self) -> u64 {
        self.polls.load(Ordering::Relaxed)
    }

    /// Stops every task and waits until each has.
    pub async fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for TaskFlood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
