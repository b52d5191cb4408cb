//! [`RedisRuntime`]: a thread of its own for a process's Redis connections, apart from the host's
//! tokio runtime.
//!
//! A server delivering a flood keeps its runtime's queues full of ready tasks. If the tasks that read
//! Redis' answers (redis-rs' connection drivers, pub/sub readers) waited their turn there, a command
//! Redis answered in microseconds would time out behind the flood, and background work on a timer (the
//! presence shim's touches, which keep members present) would run a TTL late. So connections are made,
//! driven and reconnected on a runtime of their own, on one thread that does nothing else, and a
//! command's timeout runs there too, measuring Redis, not the host's backlog. The host's tasks only
//! wait for the outcome, which wakes them from outside their queues. The presence shim and the Redis
//! engine each run their connections on one (`shim/tests/busy_runtime.rs`,
//! `bayeux-redis/tests/busy_runtime.rs` show what happens otherwise).
//!
//! One thread is enough: it parses replies and relays events, little work next to the host's.
//!
//! Why everything, not only the connections' creation: redis-rs spawns a reconnection on the runtime
//! of whoever notices the lost connection, so a command run from a host task would move the connection
//! back onto the host's runtime after a reconnect.

use std::future::Future;
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// What can go wrong running work on the Redis thread.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The thread or its runtime could not be started.
    #[error("the Redis thread did not start: {0}")]
    Start(std::io::Error),
    /// The work panicked (caught by tokio; the thread goes on).
    #[error("a task on the Redis thread panicked")]
    Panicked,
    /// The thread is ending: its last handle was dropped.
    #[error("the Redis thread is shutting down")]
    ShutDown,
}

/// A handle on the Redis thread; the thread ends (closing its connections) when the last handle is
/// dropped.
#[derive(Clone)]
pub struct RedisRuntime {
    handle: Handle,
    _alive: Arc<Alive>,
}

/// Tells the thread to end when dropped. Dropping only signals: it may happen on the thread itself (a
/// task there holding the last handle), where the runtime cannot be shut down.
struct Alive(Option<oneshot::Sender<()>>);

impl Drop for Alive {
    fn drop(&mut self) {
        if let Some(end) = self.0.take() {
            let _ = end.send(());
        }
    }
}

impl RedisRuntime {
    /// Starts the thread, named `name` (as `top` and `perf` show it).
    pub fn start(name: &str) -> Result<Self, RuntimeError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(RuntimeError::Start)?;
        let handle = runtime.handle().clone();
        let (end, ended) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                // Until the last handle is gone; dropping the runtime then ends every task on it.
                let _ = runtime.block_on(ended);
            })
            .map_err(RuntimeError::Start)?;
        Ok(RedisRuntime {
            handle,
            _alive: Arc::new(Alive(Some(end))),
        })
    }

    /// Runs `work` on the Redis thread and waits for its outcome.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, RuntimeError> {
        self.handle.spawn(work).await.map_err(|e| {
            if e.is_panic() {
                RuntimeError::Panicked
            } else {
                RuntimeError::ShutDown
            }
        })
    }

    /// Starts a task of its own on the Redis thread.
    pub fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        self.handle.spawn(work);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_on_the_named_thread_and_a_panic_is_an_error() {
        let runtime = RedisRuntime::start("redis-test").unwrap();
        let name = runtime
            .run(async { std::thread::current().name().map(str::to_owned) })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("redis-test"));
        let panicked = runtime.run(async { panic!("on purpose") }).await;
        assert!(matches!(panicked, Err(RuntimeError::Panicked)));
        // The thread goes on after a panic.
        assert_eq!(runtime.run(async { 7 }).await.unwrap(), 7);
    }

    #[tokio::test]
    async fn the_thread_ends_with_its_last_handle() {
        let runtime = RedisRuntime::start("redis-test-end").unwrap();
        let (dropped_tx, dropped_rx) = oneshot::channel::<()>();
        /// Sends when dropped: the task holding it is dropped when the runtime ends.
        struct Tell(Option<oneshot::Sender<()>>);
        impl Drop for Tell {
            fn drop(&mut self) {
                if let Some(tx) = self.0.take() {
                    let _ = tx.send(());
                }
            }
        }
        let tell = Tell(Some(dropped_tx));
        runtime.spawn(async move {
            let _tell = tell;
            std::future::pending::<()>().await;
        });
        drop(runtime);
        tokio::time::timeout(std::time::Duration::from_secs(10), dropped_rx)
            .await
            .expect("the thread ended and dropped its tasks")
            .ok();
    }
}
