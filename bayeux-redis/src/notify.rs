//! Wake-ups between processes: which clients this process serves, and the task that reads this
//! process's notification channel.
//!
//! Queues live in Redis, so a notification carries no message, only "look at these queues". Losing one
//! (a dropped pub/sub connection) delays deliveries but loses none: when the subscription is back,
//! every waiting client is woken to look again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::{PushInfo, PushKind, Value};
use tokio::sync::{mpsc, oneshot, Notify};

use crate::backend::Connection;
use crate::keys::Keys;

/// The `gen` a removal notice carries: newer than any move, so it always applies.
pub(crate) const GONE: u64 = u64::MAX;

/// The clients whose connection this process serves, each with the signal its connect waits on.
#[derive(Default)]
pub(crate) struct Served {
    clients: Mutex<HashMap<String, ServedClient>>,
}

struct ServedClient {
    signal: Arc<Notify>,
    /// The client's `gen` when it came here; an older move notice does not apply.
    gen: u64,
}

impl Served {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, ServedClient>> {
        // Every change is one insert or remove: a poisoned map is still consistent.
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that the client's connection is now served here; returns its signal.
    pub(crate) fn serve(&self, id: &str, gen: u64) -> Arc<Notify> {
        let mut clients = self.lock();
        let entry = clients
            .entry(id.to_owned())
            .or_insert_with(|| ServedClient {
                signal: Arc::new(Notify::new()),
                gen,
            });
        entry.gen = entry.gen.max(gen);
        entry.signal.clone()
    }

    /// Whether the client is served here (the tests' view of a move).
    #[cfg(test)]
    pub(crate) fn is_served(&self, id: &str) -> bool {
        self.lock().contains_key(id)
    }

    /// Raises the client's signal, if it is served here.
    pub(crate) fn wake(&self, id: &str) {
        if let Some(client) = self.lock().get(id) {
            client.signal.notify_one();
        }
    }

    /// The client moved to another process (at `gen`) or was removed (`GONE`): stop serving it here,
    /// unless it came back after that move. A removal also wakes its connect so it answers now.
    pub(crate) fn forget(&self, id: &str, gen: u64) {
        let mut clients = self.lock();
        if clients.get(id).is_some_and(|c| c.gen < gen) {
            if let Some(client) = clients.remove(id) {
                if gen == GONE {
                    client.signal.notify_one();
                }
            }
        }
    }

    fn wake_all(&self) -> usize {
        let clients = self.lock();
        for client in clients.values() {
            client.signal.notify_one();
        }
        clients.len()
    }

    fn ids(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }
}

/// A notification, as published: `m <id>...` (messages queued) or `x <id> <gen>` (moved or removed).
pub(crate) fn messages_queued<'a>(ids: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::from("m");
    for id in ids {
        out.push(' ');
        out.push_str(id);
    }
    out
}

pub(crate) fn moved(id: &str, gen: u64) -> String {
    format!("x {id} {gen}")
}

fn apply(served: &Served, payload: &str) {
    let mut words = payload.split(' ');
    match words.next() {
        Some("m") => words.for_each(|id| served.wake(id)),
        Some("x") => {
            if let (Some(id), Some(Ok(gen))) = (words.next(), words.next().map(str::parse)) {
                served.forget(id, gen);
            }
        }
        _ => tracing::warn!(payload, "ignoring a malformed engine notification"),
    }
}

/// What the listener needs besides its pushes.
pub(crate) struct Listener {
    pub(crate) served: Arc<Served>,
    /// The RESP3 connection the pushes come from, to subscribe again after a loss.
    pub(crate) subscriber: Connection,
    /// The command connection, to check which clients are still ours after a loss.
    pub(crate) commands: Connection,
    pub(crate) keys: Keys,
    pub(crate) process: String,
}

impl Listener {
    /// Reads pushes until the engine is dropped (`engine_gone` then closes).
    pub(crate) async fn run(
        self,
        mut pushes: mpsc::UnboundedReceiver<PushInfo>,
        mut engine_gone: oneshot::Receiver<()>,
    ) {
        let channel = self.keys.notify(&self.process);
        let mut lost: Option<Instant> = None;
        loop {
            let next = async {
                if lost.is_some() {
                    // Disconnected: the client libraries reconnect when a command is sent, so
                    // subscribe again (a no-op if already done) until Redis confirms.
                    match tokio::time::timeout(Duration::from_millis(250), pushes.recv()).await {
                        Ok(push) => Some(push),
                        Err(_) => {
                            if let Err(error) = self.subscriber.listen(&channel).await {
                                tracing::debug!(%error, "engine notifications still down");
                            }
                            None
                        }
                    }
                } else {
                    Some(pushes.recv().await)
                }
            };
            let push = tokio::select! {
                biased;
                _ = &mut engine_gone => return,
                push = next => push,
            };
            let Some(push) = push else { continue };
            let Some(push) = push else { return };
            match push.kind {
                PushKind::Message | PushKind::SMessage => {
                    if let Some(Value::BulkString(payload)) = push.data.get(1) {
                        apply(&self.served, &String::from_utf8_lossy(payload));
                    }
                }
                PushKind::Disconnection if lost.is_none() => {
                    tracing::warn!(
                        "engine notifications lost; deliveries wait until they are back"
                    );
                    lost = Some(Instant::now());
                }
                PushKind::Subscribe | PushKind::SSubscribe => {
                    if let Some(since) = lost.take() {
                        self.recover(since).await;
                    }
                }
                _ => {}
            }
        }
    }

    /// After a loss: forget clients that moved meanwhile, and wake every waiting one, since the
    /// notifications for anything queued in the window are gone.
    async fn recover(&self, since: Instant) {
        let ids = self.served.ids();
        let reads = ids
            .iter()
            .map(|id| {
                let mut read = redis::cmd("HMGET");
                read.arg(self.keys.client(id)).arg("owner").arg("gen");
                read
            })
            .collect();
        match self.commands.batch(reads).await {
            Ok(records) => {
                for (id, record) in ids.iter().zip(records) {
                    let (owner, gen): (Option<String>, Option<u64>) =
                        redis::from_redis_value(record).unwrap_or_default();
                    if owner.as_deref() != Some(self.process.as_str()) {
                        // The move notice we missed (at its gen), or the client is gone.
                        self.served.forget(id, gen.unwrap_or(GONE));
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "could not check which clients are still ours"),
        }
        let woken = self.served.wake_all();
        tracing::warn!(
            window_ms = since.elapsed().as_millis() as u64,
            woken,
            "engine notifications back; waiting clients re-read their queues"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn notifications_wake_and_forget() {
        let served = Served::default();
        let signal = served.serve("a", 3);
        apply(&served, &messages_queued(["zz", "a"]));
        tokio::time::timeout(Duration::from_secs(1), signal.notified())
            .await
            .expect("a queued-messages notice wakes the client");
        apply(&served, &moved("a", 2));
        assert!(served.is_served("a"), "an older move does not apply");
        apply(&served, &moved("a", 4));
        assert!(!served.is_served("a"), "a newer move does");
        let signal = served.serve("b", 1);
        served.forget("b", GONE);
        tokio::time::timeout(Duration::from_secs(1), signal.notified())
            .await
            .expect("removal wakes the held connect");
        apply(&served, "garbage");
    }
}
