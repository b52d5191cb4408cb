//! Reply fences: an addressed delivery never overtakes the subscribe reply it follows.
//!
//! A client's subscribe reply and the deliveries addressed to it travel by different roads: the reply
//! is the answer to its request, a delivery waits in its queue for a WebSocket push or a held connect
//! (possibly on another process). An extension that answers a subscribe with a snapshot (the presence
//! shim's roster) addresses the changes after that snapshot to the client at once; if one of them
//! reaches the client before the reply, the client has nothing to apply it to (Faye drops it: the
//! subscription is not active yet) and its view is wrong for good.
//!
//! So, from the moment a `/meta/subscribe` arrives until its reply has been written to the transport,
//! deliveries addressed with [`Server::deliver_to_many`] to that client on that channel wait here,
//! in order; then they go to the engine, in order, ahead of any addressed later. Only addressed
//! deliveries wait: they are sent by the process that answered the subscribe, so the fence works on
//! every engine and transport, even when the client polls another process.

use crate::{Message, Server, WeakServer};
use std::collections::HashMap;
use std::sync::Mutex;

/// A (client id, channel) pair with a subscribe reply in flight.
type Key = (String, String);

/// The fences of one server, by channel then client, so a delivery looks its receivers up without
/// building a key for each, and fences on other channels cost it nothing.
#[derive(Default)]
pub(crate) struct Fences {
    fences: Mutex<HashMap<String, HashMap<String, Fence>>>,
}

type ByChannel = HashMap<String, HashMap<String, Fence>>;

fn fence_mut<'a>(fences: &'a mut ByChannel, (client, channel): &Key) -> Option<&'a mut Fence> {
    fences.get_mut(channel)?.get_mut(client)
}

fn remove(fences: &mut ByChannel, (client, channel): &Key) {
    if let Some(on_channel) = fences.get_mut(channel) {
        on_channel.remove(client);
        if on_channel.is_empty() {
            fences.remove(channel);
        }
    }
}

#[derive(Default)]
struct Fence {
    /// Requests in flight that raised this fence (a client may send the same subscribe twice).
    holders: usize,
    /// Deliveries waiting, oldest first.
    parked: Vec<Message>,
    /// A task is handing the parked deliveries to the engine: later ones queue up behind them.
    flushing: bool,
}

impl Fences {
    fn lock(&self) -> std::sync::MutexGuard<'_, ByChannel> {
        self.fences.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Raises the fence of `client_id` on each of `channels`.
    pub(crate) fn raise(&self, client_id: &str, channels: &[String], into: &mut ReplyFence) {
        let mut fences = self.lock();
        for channel in channels {
            fences
                .entry(channel.clone())
                .or_default()
                .entry(client_id.to_owned())
                .or_default()
                .holders += 1;
            into.raised.push((client_id.to_owned(), channel.clone()));
        }
    }

    /// Parks `message` for each of `clients` whose fence on its channel is up; returns the others,
    /// which may have it at once.
    pub(crate) fn park(&self, clients: &[String], message: &Message) -> Vec<String> {
        let mut fences = self.lock();
        let Some(on_channel) = fences.get_mut(&message.channel) else {
            return clients.to_vec();
        };
        let mut free = Vec::with_capacity(clients.len());
        for client in clients {
            match on_channel.get_mut(client.as_str()) {
                Some(fence) => fence.parked.push(message.clone()),
                None => free.push(client.clone()),
            }
        }
        free
    }

    /// Lowers one hold of each fence; returns the fences now down with deliveries to hand over (and
    /// marks them flushing), dropping those with none.
    fn lower(&self, raised: Vec<Key>) -> Vec<Key> {
        let mut fences = self.lock();
        let mut to_flush = Vec::new();
        for key in raised {
            let Some(fence) = fence_mut(&mut fences, &key) else {
                continue;
            };
            fence.holders -= 1;
            if fence.holders > 0 || fence.flushing {
                continue;
            }
            if fence.parked.is_empty() {
                remove(&mut fences, &key);
            } else {
                fence.flushing = true;
                to_flush.push(key);
            }
        }
        to_flush
    }

    /// The next deliveries to hand over for a flushing fence, or `None` when it is done (removed, or
    /// raised again meanwhile, whose own lowering then hands over the rest).
    fn next_batch(&self, key: &Key) -> Option<Vec<Message>> {
        let mut fences = self.lock();
        let fence = fence_mut(&mut fences, key)?;
        if fence.holders > 0 {
            fence.flushing = false;
            return None;
        }
        if fence.parked.is_empty() {
            remove(&mut fences, key);
            return None;
        }
        Some(std::mem::take(&mut fence.parked))
    }
}

/// The fences a request raised, lowered when this is dropped. Transports drop it once the request's
/// replies are written to the client (see [`Server::answer`]); until then, deliveries addressed to the
/// client on the channels it is subscribing to wait.
#[must_use = "addressed deliveries wait until the fence is dropped"]
#[derive(Default)]
pub struct ReplyFence {
    server: Option<WeakServer>,
    raised: Vec<Key>,
}

impl ReplyFence {
    pub(crate) fn new(server: &Server) -> Self {
        ReplyFence {
            server: Some(server.downgrade()),
            raised: Vec::new(),
        }
    }

    /// Whether this fence holds anything back.
    pub fn is_up(&self) -> bool {
        !self.raised.is_empty()
    }
}

impl Drop for ReplyFence {
    fn drop(&mut self) {
        if self.raised.is_empty() {
            return;
        }
        let Some(server) = self.server.as_ref().and_then(WeakServer::upgrade) else {
            return;
        };
        let to_flush = server.inner.fences.lower(std::mem::take(&mut self.raised));
        if to_flush.is_empty() {
            return;
        }
        // Handing over takes engine calls, and a drop cannot wait for them. The fences stay up (as
        // flushing) meanwhile, so anything addressed later parks behind and keeps its order.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            for key in to_flush {
                while let Some(batch) = server.inner.fences.next_batch(&key) {
                    for message in batch {
                        let client = std::slice::from_ref(&key.0);
                        if let Err(error) = server.inner.engine.queue_for_many(client, &message).await
                        {
                            tracing::warn!(%error, client = %key.0, "a delivery held for a subscribe reply was lost");
                        }
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(channel: &str, n: u64) -> Message {
        let mut m = Message::new(channel.to_owned());
        m.data = Some(serde_json::json!(n));
        m
    }

    #[test]
    fn only_fenced_receivers_on_the_fenced_channel_wait() {
        let fences = Fences::default();
        let mut fence = ReplyFence::default();
        fences.raise("a", &["/p".into()], &mut fence);
        let all = vec!["a".to_owned(), "b".to_owned()];
        assert_eq!(fences.park(&all, &message("/p", 1)), vec!["b".to_owned()]);
        assert_eq!(fences.park(&all, &message("/q", 2)), all);
        let to_flush = fences.lower(std::mem::take(&mut fence.raised));
        assert_eq!(to_flush, vec![("a".to_owned(), "/p".to_owned())]);
        // Flushing: later deliveries still park, behind the first.
        assert_eq!(fences.park(&all, &message("/p", 3)), vec!["b".to_owned()]);
        let batch = fences.next_batch(&to_flush[0]).unwrap();
        let data: Vec<_> = batch.iter().map(|m| m.data.clone().unwrap()).collect();
        assert_eq!(data, vec![serde_json::json!(1), serde_json::json!(3)]);
        assert!(
            fences.next_batch(&to_flush[0]).is_none(),
            "done, and removed"
        );
        assert_eq!(fences.park(&all, &message("/p", 4)), all);
    }

    #[test]
    fn a_fence_raised_twice_waits_for_both_requests() {
        let fences = Fences::default();
        let (mut first, mut second) = (ReplyFence::default(), ReplyFence::default());
        fences.raise("a", &["/p".into()], &mut first);
        fences.raise("a", &["/p".into()], &mut second);
        assert!(fences.park(&["a".into()], &message("/p", 1)).is_empty());
        assert!(fences.lower(std::mem::take(&mut first.raised)).is_empty());
        assert!(fences.park(&["a".into()], &message("/p", 2)).is_empty());
        let to_flush = fences.lower(std::mem::take(&mut second.raised));
        assert_eq!(fences.next_batch(&to_flush[0]).map(|b| b.len()), Some(2));
    }

    #[test]
    fn raised_again_while_flushing_leaves_the_rest_to_the_new_request() {
        let fences = Fences::default();
        let mut first = ReplyFence::default();
        fences.raise("a", &["/p".into()], &mut first);
        let _ = fences.park(&["a".into()], &message("/p", 1));
        let to_flush = fences.lower(std::mem::take(&mut first.raised));
        let mut second = ReplyFence::default();
        fences.raise("a", &["/p".into()], &mut second);
        assert!(
            fences.next_batch(&to_flush[0]).is_none(),
            "the new request holds it"
        );
        let again = fences.lower(std::mem::take(&mut second.raised));
        assert_eq!(fences.next_batch(&again[0]).map(|b| b.len()), Some(1));
    }
}
