//! [`RedisRuntime`]: the thread the shim's Redis connections live on, apart from the host's runtime.
//!
//! A server delivering a roster flood keeps its runtime's queues full of ready tasks. If the tasks that
//! read Redis' answers (redis-rs' connection drivers, the event streams) waited their turn there, a
//! command Redis answered in microseconds would time out behind the flood, and the touches that keep
//! members present would fail with it (`shim/tests/busy_runtime.rs` shows both). So every connection is
//! made, driven and reconnected on a runtime of its own, on one thread that does nothing else; the
//! host's tasks only wait for the outcome, which wakes them from outside their queues. Command timeouts
//! run there too, so they measure Redis, not the host's backlog.
//!
//! One thread is enough: it parses replies and relays events, which is little work next to the host's.

use std::future::Future;
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::error::ShimError;

/// A handle on the Redis thread; the thread ends (closing its connections) when the last handle is
/// dropped.
#[derive(Clone)]
pub struct RedisRuntime {
    handle: Handle,
    _alive: Arc<Alive>,
}

/// Tells the thread to end when dropped. Dropping only signals: it may happen on the thread itself
/// (a task there holding the last handle), where the runtime cannot be shut down.
struct Alive(Option<oneshot::Sender<()>>);

impl Drop for Alive {
    fn drop(&mut self) {
        if let Some(end) = self.0.take() {
            let _ = end.send(());
        }
    }
}

impl RedisRuntime {
    /// Starts the thread.
    pub fn start() -> Result<Self, ShimError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("presence-redis")
            .build()
            .map_err(|e| ShimError::Internal(format!("the Redis runtime did not start: {e}")))?;
        let handle = runtime.handle().clone();
        let (end, ended) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("presence-redis".into())
            .spawn(move || {
                // Until the last handle is gone; dropping the runtime then ends every connection task.
                let _ = runtime.block_on(ended);
            })
            .map_err(|e| ShimError::Internal(format!("the Redis thread did not start: {e}")))?;
        Ok(RedisRuntime {
            handle,
            _alive: Arc::new(Alive(Some(end))),
        })
    }

    /// Runs `work` on the Redis thread and waits for its outcome.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, ShimError> {
        self.handle.spawn(work).await.map_err(|e| {
            if e.is_panic() {
                ShimError::Internal("a Redis task panicked".into())
            } else {
                ShimError::Stream("the Redis runtime is shutting down".into())
            }
        })
    }

    /// Starts a task of its own on the Redis thread.
    pub fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        self.handle.spawn(work);
    }
}
