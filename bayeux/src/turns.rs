//! Turns: one client's batches are handled one at a time, in the order they reach the server.
//!
//! Faye's long-polling transport splits a burst of publishes into several HTTP requests sent back to
//! back, which arrive on separate connections and would otherwise be handled concurrently: with an engine
//! that awaits Redis per publish, their messages interleave (`[37, 19, 0, 38, 20, 1, ...]`) and every
//! subscriber sees one publisher's messages out of order. Waiting for the client's turn keeps the order
//! in which the requests reached the server. (Connects are not taken in turn: they are held for long.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// Per client id, the lock whose holder's batch is being handled. Entries exist only while some batch of
/// that client is handled or waiting.
#[derive(Default)]
pub(crate) struct Turns {
    lanes: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
}

/// The client's turn; the next batch of the client goes when this is dropped.
pub(crate) struct Turn<'a> {
    turns: &'a Turns,
    client_id: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Turns {
    /// Waits for `client_id`'s turn. tokio's mutex is fair: waiters get it in the order they asked.
    pub(crate) async fn take(&self, client_id: &str) -> Turn<'_> {
        let lane = self
            .lanes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(client_id.to_owned())
            .or_default()
            .clone();
        Turn {
            turns: self,
            client_id: client_id.to_owned(),
            guard: Some(lane.lock_owned().await),
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut lanes = self.turns.lanes.lock().unwrap_or_else(|p| p.into_inner());
        // Only the map holds it: nobody is in or waiting for this client's turn (new arrivals clone the
        // lane under this same lock, so none can slip in between).
        if lanes
            .get(&self.client_id)
            .is_some_and(|lane| Arc::strong_count(lane) == 1)
        {
            lanes.remove(&self.client_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn one_batch_at_a_time_in_arrival_order_and_nothing_left_behind() {
        let turns = Arc::new(Turns::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for n in 0..5u64 {
            let (turns, order) = (turns.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _turn = turns.take("a").await;
                order.lock().unwrap().push(n);
                // Later arrivals would finish first if they did not wait their turn.
                tokio::time::sleep(Duration::from_millis(50 - n * 10)).await;
                order.lock().unwrap().push(n);
            }));
            tokio::task::yield_now().await;
        }
        let other = turns.take("b").await;
        drop(other);
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 0, 1, 1, 2, 2, 3, 3, 4, 4]);
        assert!(turns.lanes.lock().unwrap().is_empty());
    }
}
