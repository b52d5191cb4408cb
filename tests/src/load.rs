//! [`CpuHogs`]: bounded busy loops that load the machine's cores while a test runs, to widen the
//! windows in which concurrent steps can interleave (a loaded machine schedules tasks late and in
//! unusual orders). Every loop stops when the guard is dropped, or by itself after its time bound.

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
