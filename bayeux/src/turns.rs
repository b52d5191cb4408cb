//! Turns: one client's batches are handled one at a time, in the order the client sent them.
//!
//! Faye's long-polling transport splits a burst of publishes into several HTTP requests sent back to
//! back. They travel on separate connections (a new one may need a handshake while the next goes on a
//! kept-alive one), so they can reach the server in another order, and would otherwise be handled
//! concurrently: with an engine that awaits Redis per publish, their messages interleave
//! (`[37, 19, 0, 38, 20, 1, ...]`) and every subscriber sees one publisher's messages out of order.
//!
//! Faye and CometD number a client's messages with a counter (Faye in base 36, CometD in decimal), and
//! so do most Bayeux clients. A batch waits for its turn: until no other batch of its client is being
//! handled, no batch with lower ids is waiting, and every lower id has arrived (in any batch, held
//! connects included) or [`GAP_WAIT`] has passed (a message may never come here: dropped by a client
//! extension, or sent to another process). Batches whose ids are not counters go in arrival order.
//! Connects are not handled in turn (they are held for long); their ids count as arrived.

use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How long a batch waits for lower-numbered messages of its client that have not arrived.
pub(crate) const GAP_WAIT: Duration = Duration::from_millis(100);

/// A client's turns are forgotten after this long without a batch (its removal forgets them at once).
const IDLE: Duration = Duration::from_secs(600);

/// Per client id, whose batch goes next.
#[derive(Default)]
pub(crate) struct Turns {
    lanes: Mutex<HashMap<String, Lane>>,
    /// Idle lanes are swept once there are more than this many (and [`PRUNE_FROM`]); then it doubles
    /// the count left, so the sweep costs O(1) per batch over time instead of a full scan each.
    prune_at: std::sync::atomic::AtomicUsize,
}

/// No sweep of idle lanes below this many.
const PRUNE_FROM: usize = 10_000;

struct Lane {
    /// Whether the client's ids have shown a letter: base 36 (Faye) rather than decimal (CometD).
    base36: bool,
    /// Every id below this has arrived (or been given up on); `None` until the first one.
    low: Option<u64>,
    /// Ids at or above `low` that have arrived.
    above: BTreeSet<u64>,
    /// Batches waiting, by (first id, arrival).
    waiting: BTreeSet<(u64, u64)>,
    /// A batch is being handled.
    busy: bool,
    /// The client is gone: the lane goes once its batches are done.
    gone: bool,
    /// Arrivals so far: the tie-breaker, and the order of batches without counter ids.
    arrivals: u64,
    /// Woken on every change; made when a batch has to wait, dropped when none waits any more, so an
    /// idle lane (every connected client has one) holds no allocation but its map entry.
    changed: Option<Arc<Notify>>,
    last_used: Instant,
}

impl Lane {
    fn new() -> Self {
        Lane {
            base36: false,
            low: None,
            above: BTreeSet::new(),
            waiting: BTreeSet::new(),
            busy: false,
            gone: false,
            arrivals: 0,
            changed: None,
            last_used: Instant::now(),
        }
    }

    /// A message id as a counter value, learning the client's base on the way.
    fn counter(&mut self, id: &Value) -> Option<u64> {
        let text = match id {
            Value::Number(n) => return n.as_u64(),
            Value::String(s) if !s.is_empty() && s.len() <= 12 => s,
            _ => return None,
        };
        if !text
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        {
            return None;
        }
        // Faye's ids are digits only up to 9, then letters: by its tenth message the base is known, and
        // single digits mean the same in both bases.
        if text.bytes().any(|b| b.is_ascii_lowercase()) {
            self.base36 = true;
        }
        u64::from_str_radix(text, if self.base36 { 36 } else { 10 }).ok()
    }

    /// Records that `id` arrived.
    fn arrived(&mut self, id: u64) {
        match self.low {
            None => self.low = Some(id + 1),
            Some(low) if id < low => {}
            // The next one, as usual: no need to note it above.
            Some(low) if id == low => self.low = Some(low + 1),
            Some(_) => {
                self.above.insert(id);
            }
        }
        self.advance();
    }

    /// Moves `low` past every id that has arrived.
    fn advance(&mut self) {
        let Some(mut low) = self.low else { return };
        while self.above.remove(&low) {
            low += 1;
        }
        self.low = Some(low);
        if self.above.is_empty() {
            // An emptied set keeps its node; a new one has none.
            self.above = BTreeSet::new();
        }
    }

    /// Wakes the batches waiting for a change.
    fn changed(&self) {
        if let Some(changed) = &self.changed {
            changed.notify_waiters();
        }
    }

    /// Gives up waiting for the ids below `id`.
    fn skip_to(&mut self, id: u64) {
        if self.low.is_some_and(|low| low < id) {
            self.low = Some(id);
            self.above = self.above.split_off(&id);
            self.advance();
        }
    }
}

/// A batch's place in its client's order; the next batch goes when this is dropped.
pub(crate) struct Turn<'a> {
    turns: &'a Turns,
    client_id: String,
}

impl Turns {
    fn lanes(&self) -> std::sync::MutexGuard<'_, HashMap<String, Lane>> {
        self.lanes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for the turn of `client_id`'s batch whose non-connect messages have `ids` (connects'
    /// ids in `held`, which only count as arrived).
    pub(crate) async fn take<'a>(
        &'a self,
        client_id: &str,
        ids: &[&Value],
        held: &[&Value],
    ) -> Turn<'a> {
        let now = Instant::now();
        let key = {
            let mut lanes = self.lanes();
            let prune_at = self.prune_at.load(std::sync::atomic::Ordering::Relaxed);
            if lanes.len() > prune_at.max(PRUNE_FROM) {
                lanes.retain(|_, lane| {
                    lane.busy
                        || !lane.waiting.is_empty()
                        || now.duration_since(lane.last_used) < IDLE
                });
                self.prune_at
                    .store(lanes.len() * 2, std::sync::atomic::Ordering::Relaxed);
            }
            let lane = lanes.entry(client_id.to_owned()).or_insert_with(Lane::new);
            lane.last_used = now;
            lane.arrivals += 1;
            let counters: Vec<u64> = ids.iter().filter_map(|id| lane.counter(id)).collect();
            let held: Vec<u64> = held.iter().filter_map(|id| lane.counter(id)).collect();
            for id in held {
                lane.arrived(id);
            }
            let first = match counters.iter().min() {
                Some(&first) if counters.len() == ids.len() => Some(first),
                _ => None,
            };
            for &id in &counters {
                lane.arrived(id);
            }
            // Without counters, a batch takes the place of the last id that has arrived: it goes after
            // what arrived before it, in arrival order, and waits for no gap.
            let place = first.unwrap_or_else(|| lane.low.map_or(0, |low| low.saturating_sub(1)));
            let key = (place, lane.arrivals);
            if !lane.busy && lane.waiting.is_empty() && lane.low.is_none_or(|low| key.0 < low) {
                // Nothing ahead of it (the usual case): it goes at once, and nobody waits to hear.
                lane.busy = true;
                return Turn {
                    turns: self,
                    client_id: client_id.to_owned(),
                };
            }
            lane.waiting.insert(key);
            lane.changed();
            key
        };
        let deadline = now + GAP_WAIT;
        let changed = match self.try_take(client_id, key, deadline) {
            Ok(turn) => return turn,
            Err(changed) => changed,
        };
        loop {
            let notified = changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Ok(turn) = self.try_take(client_id, key, deadline) {
                return turn;
            }
            // Past the deadline only a change can make this batch's turn come.
            if Instant::now() >= deadline {
                notified.await;
            } else {
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep_until(deadline) => {}
                }
            }
        }
    }

    /// The turn of the waiting batch `key` if it has come, or the signal of a change to wait for.
    fn try_take(
        &self,
        client_id: &str,
        key: (u64, u64),
        deadline: Instant,
    ) -> Result<Turn<'_>, Arc<Notify>> {
        let mut lanes = self.lanes();
        let lane = lanes
            .get_mut(client_id)
            .expect("a waiting batch keeps its lane");
        let next = lane.waiting.first() == Some(&key);
        let complete = lane.low.is_none_or(|low| key.0 < low);
        if !lane.busy && next && (complete || Instant::now() >= deadline) {
            lane.waiting.remove(&key);
            if lane.waiting.is_empty() {
                lane.waiting = BTreeSet::new();
            }
            lane.busy = true;
            lane.skip_to(key.0);
            return Ok(Turn {
                turns: self,
                client_id: client_id.to_owned(),
            });
        }
        Err(lane.changed.get_or_insert_with(Default::default).clone())
    }

    /// Forgets a client that is gone, now or (if its batches are being handled: its own
    /// `/meta/disconnect` is) when they are done.
    pub(crate) fn forget(&self, client_id: &str) {
        let mut lanes = self.lanes();
        let Some(lane) = lanes.get_mut(client_id) else {
            return;
        };
        if !lane.busy && lane.waiting.is_empty() {
            lanes.remove(client_id);
        } else {
            lane.gone = true;
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut lanes = self.turns.lanes();
        if let Some(lane) = lanes.get_mut(&self.client_id) {
            lane.busy = false;
            lane.last_used = Instant::now();
            lane.changed();
            if lane.gone && lane.waiting.is_empty() {
                lanes.remove(&self.client_id);
                return;
            }
            // Nobody holds the signal but the lane: nobody waits.
            if lane
                .changed
                .as_ref()
                .is_some_and(|c| Arc::strong_count(c) == 1)
            {
                lane.changed = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Ids of a Faye batch, base 36 from `from`.
    fn faye(from: u64, n: u64) -> Vec<Value> {
        (from..from + n)
            .map(|i| {
                let mut s = String::new();
                let mut v = i;
                loop {
                    s.insert(0, std::char::from_digit((v % 36) as u32, 36).unwrap());
                    v /= 36;
                    if v == 0 {
                        break;
                    }
                }
                json!(s)
            })
            .collect()
    }

    async fn run_in(turns: Arc<Turns>, batches: Vec<Vec<Value>>, delays_ms: Vec<u64>) -> Vec<u64> {
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (n, (ids, delay)) in batches.into_iter().zip(delays_ms).enumerate() {
            let (turns, order) = (turns.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                let refs: Vec<&Value> = ids.iter().collect();
                let _turn = turns.take("c", &refs, &[]).await;
                order.lock().unwrap().push(n as u64);
                // Handling takes a while: a later batch would finish first if it did not wait.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let order = order.lock().unwrap().clone();
        order
    }

    #[tokio::test(start_paused = true)]
    async fn batches_go_in_the_order_of_their_ids_whatever_the_arrival() {
        let turns = Arc::new(Turns::default());
        // The client's first messages, in order, as a session starts.
        assert_eq!(
            run_in(turns.clone(), vec![faye(1, 3)], vec![0]).await,
            vec![0]
        );
        // A burst split in three requests; the second arrives last.
        let order = run_in(
            turns.clone(),
            vec![faye(4, 16), faye(20, 40), faye(60, 20)],
            vec![0, 3, 1],
        )
        .await;
        assert_eq!(order, vec![0, 1, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_gap_that_never_fills_holds_a_batch_up_only_briefly() {
        let turns = Arc::new(Turns::default());
        run_in(turns.clone(), vec![faye(1, 3)], vec![0]).await;
        let started = Instant::now();
        // Ids 4 and 5 went elsewhere.
        assert_eq!(
            run_in(turns.clone(), vec![faye(6, 2)], vec![0]).await,
            vec![0]
        );
        let waited = started.elapsed();
        assert!(waited >= GAP_WAIT && waited < GAP_WAIT * 2, "{waited:?}");
        // Then the order goes on from there, with no more waiting.
        let started = Instant::now();
        run_in(turns.clone(), vec![faye(8, 2)], vec![0]).await;
        assert!(started.elapsed() < GAP_WAIT);
    }

    #[tokio::test(start_paused = true)]
    async fn held_connects_ids_count_as_arrived_and_cometd_ids_are_decimal() {
        let turns = Arc::new(Turns::default());
        let ids = |r: std::ops::Range<u64>| r.map(|i| json!(i.to_string())).collect::<Vec<_>>();
        run_in(turns.clone(), vec![ids(1..10)], vec![0]).await;
        let connect = json!("10");
        {
            let turn = turns.take("c", &[], &[&connect]).await;
            drop(turn);
        }
        let started = Instant::now();
        run_in(turns.clone(), vec![ids(11..13)], vec![0]).await;
        assert!(started.elapsed() < GAP_WAIT, "no gap: 10 was the connect");
    }

    #[tokio::test(start_paused = true)]
    async fn batches_without_counter_ids_go_in_arrival_order() {
        let turns = Arc::new(Turns::default());
        let batches = vec![vec![json!("x-1")], vec![], vec![json!("x-3")]];
        assert_eq!(
            run_in(turns.clone(), batches, vec![0, 1, 2]).await,
            vec![0, 1, 2]
        );
        turns.forget("c");
        assert!(turns.lanes().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_lane_keeps_no_signal_and_a_gone_client_none_at_all() {
        let turns = Arc::new(Turns::default());
        // Batches that wait for each other make the lane's signal...
        run_in(turns.clone(), vec![faye(1, 3)], vec![0]).await;
        let order = run_in(turns.clone(), vec![faye(4, 3), faye(7, 3)], vec![1, 0]).await;
        assert_eq!(order, vec![0, 1]);
        {
            let lanes = turns.lanes();
            let lane = &lanes["c"];
            // ...which goes with the last of them, as do the emptied sets' nodes.
            assert!(lane.changed.is_none());
            assert!(lane.waiting.is_empty() && lane.above.is_empty());
        }
        // A client removed during its own batch (its disconnect) loses its lane when the batch is done.
        let turn = turns.take("c", &[&json!("a")], &[]).await;
        turns.forget("c");
        assert_eq!(turns.lanes().len(), 1, "kept while its batch runs");
        drop(turn);
        assert!(turns.lanes().is_empty());
    }
}
