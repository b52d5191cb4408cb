//! The in-memory engine: one process, everything in a mutex-guarded map.

use super::Engine;
use crate::{channel, Error, Message, Outbound};
use async_trait::async_trait;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// An [`Engine`] that keeps clients, subscriptions and queues in this process's memory.
///
/// Uses `tokio::time::Instant`, so tests can drive inactivity with `tokio::time::pause`.
///
/// A client's queue holds at most [`MemoryEngine::DEFAULT_MAX_QUEUE`] messages (see
/// [`MemoryEngine::with_max_queue`]); past that the oldest are dropped, so one client that stops reading
/// while staying connected cannot make the server run out of memory.
#[derive(Debug)]
pub struct MemoryEngine {
    state: Mutex<State>,
    max_queue: usize,
}

impl Default for MemoryEngine {
    fn default() -> Self {
        MemoryEngine::with_max_queue(Self::DEFAULT_MAX_QUEUE)
    }
}

#[derive(Debug, Default)]
struct State {
    clients: HashMap<String, Client>,
    /// Channel name or pattern → subscribed client ids; the index `publish` looks up.
    channels: HashMap<String, HashSet<String>>,
}

#[derive(Debug)]
struct Client {
    channels: Channels,
    queue: VecDeque<Outbound>,
    signal: Arc<Notify>,
    last_seen: Instant,
    /// Set once the queue overflowed, so that it is logged once per episode, not per message.
    overflowing: bool,
}

impl Client {
    fn enqueue(&mut self, id: &str, message: Outbound, max: usize) {
        if self.queue.len() >= max {
            self.queue.pop_front();
            metrics::counter!("bayeux_queue_dropped_total").increment(1);
            if !self.overflowing {
                tracing::warn!(client = %id, max, "queue full, dropping the oldest messages");
                self.overflowing = true;
            }
        }
        self.queue.push_back(message);
        self.signal.notify_one();
    }
}

impl MemoryEngine {
    /// An empty engine.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many messages a client's queue holds before the oldest are dropped, by default.
    pub const DEFAULT_MAX_QUEUE: usize = 10_000;

    /// An empty engine whose client queues hold at most `max_queue` messages (at least 1).
    pub fn with_max_queue(max_queue: usize) -> Self {
        MemoryEngine {
            state: Mutex::default(),
            max_queue: max_queue.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the maps consistent (every change is one insert or
        // remove), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn route(&self, message: &Message) {
        let mut state = self.lock();
        let mut targets = HashSet::new();
        for key in channel::expand(&message.channel) {
            if let Some(ids) = state.channels.get(&key) {
                targets.extend(ids.iter().cloned());
            }
        }
        // One shared copy for every receiver: fan-out is a pointer copy per subscriber.
        let shared = Outbound::new(message.clone());
        for id in targets {
            if let Some(client) = state.clients.get_mut(&id) {
                client.enqueue(&id, shared.clone(), self.max_queue);
            }
        }
    }
}

/// A client's channels, sorted: most clients have a few, and a set's first node has room for eleven
/// (280 bytes, against 24 for one channel here).
#[derive(Debug, Default)]
struct Channels(Vec<String>);

impl Channels {
    /// Adds `channel`; `false` if it was there.
    fn insert(&mut self, channel: &str) -> bool {
        let Err(at) = self.0.binary_search_by(|c| c.as_str().cmp(channel)) else {
            return false;
        };
        self.0.reserve_exact(1);
        self.0.insert(at, channel.to_owned());
        true
    }

    /// Removes `channel`; `false` if it was not there.
    fn remove(&mut self, channel: &str) -> bool {
        let Ok(at) = self.0.binary_search_by(|c| c.as_str().cmp(channel)) else {
            return false;
        };
        self.0.remove(at);
        self.0.shrink_to_fit();
        true
    }

    fn iter(&self) -> impl Iterator<Item = &String> {
        self.0.iter()
    }
}

/// A fresh client id: 128 random bits in base 36, like Faye's ids. Public for other engines.
pub fn new_client_id() -> String {
    let mut n: u128 = rand::random();
    let mut out = Vec::with_capacity(25);
    while n > 0 {
        let d = (n % 36) as u32;
        out.push(char::from_digit(d, 36).unwrap_or('0'));
        n /= 36;
    }
    if out.is_empty() {
        out.push('0');
    }
    out.into_iter().collect()
}

#[async_trait]
impl Engine for MemoryEngine {
    async fn create_client(&self) -> Result<String, Error> {
        let mut state = self.lock();
        loop {
            let id = new_client_id();
            if state.clients.contains_key(&id) {
                continue;
            }
            state.clients.insert(
                id.clone(),
                Client {
                    channels: Channels::default(),
                    queue: VecDeque::new(),
                    signal: Arc::new(Notify::new()),
                    last_seen: Instant::now(),
                    overflowing: false,
                },
            );
            return Ok(id);
        }
    }

    async fn client_exists(&self, client_id: &str) -> Result<bool, Error> {
        Ok(self.lock().clients.contains_key(client_id))
    }

    async fn destroy_client(&self, client_id: &str) -> Result<Option<Vec<String>>, Error> {
        let mut state = self.lock();
        let Some(client) = state.clients.remove(client_id) else {
            return Ok(None);
        };
        for ch in client.channels.iter() {
            if let Some(ids) = state.channels.get_mut(ch) {
                ids.remove(client_id);
                if ids.is_empty() {
                    state.channels.remove(ch);
                }
            }
        }
        // Wake a held connect so it answers now instead of at its timeout.
        client.signal.notify_one();
        Ok(Some(client.channels.0))
    }

    async fn ping(&self, client_id: &str) -> Result<(), Error> {
        if let Some(client) = self.lock().clients.get_mut(client_id) {
            client.last_seen = Instant::now();
        }
        Ok(())
    }

    async fn inactive_clients(&self, inactivity: Duration) -> Result<Vec<String>, Error> {
        let now = Instant::now();
        Ok(self
            .lock()
            .clients
            .iter()
            .filter(|(_, c)| now.duration_since(c.last_seen) > inactivity)
            .map(|(id, _)| id.clone())
            .collect())
    }

    async fn subscribe(&self, client_id: &str, channel: &str) -> Result<bool, Error> {
        let mut state = self.lock();
        let client = state
            .clients
            .get_mut(client_id)
            .ok_or_else(|| Error::ClientUnknown(client_id.to_owned()))?;
        if !client.channels.insert(channel) {
            return Ok(false);
        }
        state
            .channels
            .entry(channel.to_owned())
            .or_default()
            .insert(client_id.to_owned());
        Ok(true)
    }

    async fn unsubscribe(&self, client_id: &str, channel: &str) -> Result<bool, Error> {
        let mut state = self.lock();
        let Some(client) = state.clients.get_mut(client_id) else {
            return Ok(false);
        };
        if !client.channels.remove(channel) {
            return Ok(false);
        }
        if let Some(ids) = state.channels.get_mut(channel) {
            ids.remove(client_id);
            if ids.is_empty() {
                state.channels.remove(channel);
            }
        }
        Ok(true)
    }

    async fn subscriptions(&self, client_id: &str) -> Result<Vec<String>, Error> {
        Ok(self
            .lock()
            .clients
            .get(client_id)
            .map(|c| c.channels.0.clone())
            .unwrap_or_default())
    }

    async fn publish(&self, message: &Message) -> Result<(), Error> {
        self.route(message);
        Ok(())
    }

    async fn queue_for(&self, client_id: &str, message: &Message) -> Result<bool, Error> {
        let mut state = self.lock();
        let Some(client) = state.clients.get_mut(client_id) else {
            return Ok(false);
        };
        client.enqueue(client_id, Outbound::new(message.clone()), self.max_queue);
        Ok(true)
    }

    async fn queue_for_many(&self, client_ids: &[String], message: &Message) -> Result<(), Error> {
        let mut state = self.lock();
        let shared = Outbound::new(message.clone());
        for id in client_ids {
            if let Some(client) = state.clients.get_mut(id) {
                client.enqueue(id, shared.clone(), self.max_queue);
            }
        }
        Ok(())
    }

    async fn take_queue(&self, client_id: &str) -> Result<Vec<Outbound>, Error> {
        Ok(self
            .lock()
            .clients
            .get_mut(client_id)
            .map(|c| {
                c.overflowing = false;
                Vec::from(std::mem::take(&mut c.queue))
            })
            .unwrap_or_default())
    }

    async fn queue_signal(&self, client_id: &str) -> Result<Option<Arc<Notify>>, Error> {
        Ok(self.lock().clients.get(client_id).map(|c| c.signal.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_engine_passes_the_conformance_suite() {
        super::super::conformance::run(|| async { MemoryEngine::new() }).await;
    }

    #[tokio::test]
    async fn full_queues_drop_the_oldest() {
        let e = MemoryEngine::with_max_queue(3);
        let a = e.create_client().await.unwrap();
        e.subscribe(&a, "/q").await.unwrap();
        for n in 0..5 {
            e.publish(&Message::publish("/q", serde_json::json!(n)))
                .await
                .unwrap();
        }
        let data = super::super::conformance::taken_data(&e, &a).await;
        assert_eq!(data, [2, 3, 4]);
        assert_eq!(
            MemoryEngine::new().max_queue,
            MemoryEngine::DEFAULT_MAX_QUEUE
        );
    }

    #[test]
    fn ids_are_distinct_base36() {
        let a = new_client_id();
        let b = new_client_id();
        assert_ne!(a, b);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()));
    }
}
