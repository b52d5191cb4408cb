//! Push delivery, for transports that can write to the client at any time (WebSocket).
//!
//! Long-polling can only answer a held `/meta/connect`, so a delivery costs the client a round trip.
//! A WebSocket can carry a delivery the moment it is queued, as Faye's and CometD's servers do; the
//! client's connects then only keep it alive. [`Server::push_deliveries`] gives that flow as a
//! [`Push`], a stream the transport polls in the task that owns its socket: no task of its own, and
//! nothing is taken from the client's queue before the socket can take it.

use crate::{Outbound, Server};
use futures_util::Stream;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::sync::Notify;

/// The first and the longest pause before taking a client's queue again after the engine failed.
const RETRY_MIN: std::time::Duration = std::time::Duration::from_millis(50);
const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(2);

/// Clients this process pushes to, with the generation of the push that owns each.
#[derive(Default)]
pub(crate) struct Pushing {
    next: AtomicU64,
    clients: Mutex<HashMap<String, u64>>,
}

/// The deliveries queued for one client, each batch as soon as it is queued (after the outgoing hooks,
/// as for any delivery): a [`Stream`] that ends when the client is removed. Dropping it stops the flow
/// and gives the client's queue back to its `/meta/connect` requests.
#[must_use = "deliveries stop when the push is dropped"]
pub struct Push {
    server: Server,
    client_id: String,
    generation: u64,
    /// `None` once the client is gone.
    flow: Option<Pin<Box<dyn Stream<Item = Vec<Outbound>> + Send>>>,
}

impl Push {
    /// The client this pushes to.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }
}

impl Stream for Push {
    type Item = Vec<Outbound>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Vec<Outbound>>> {
        let Some(flow) = self.flow.as_mut() else {
            return Poll::Ready(None);
        };
        let next = std::task::ready!(flow.as_mut().poll_next(cx));
        if next.is_none() {
            self.flow = None;
        }
        Poll::Ready(next)
    }
}

impl Drop for Push {
    fn drop(&mut self) {
        let mut clients = self
            .server
            .inner
            .pushing
            .clients
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if clients.get(&self.client_id) == Some(&self.generation) {
            clients.remove(&self.client_id);
        }
    }
}

/// Where a [`Push`] stands between two batches.
struct Flow {
    server: Server,
    client_id: String,
    /// The client's queue signal, once asked for.
    signal: Option<Arc<Notify>>,
    /// Whether everything queued before the signal was last raised has been taken.
    taken: bool,
}

impl Flow {
    /// The next batch of deliveries; `None` once the client is gone.
    async fn next(&mut self) -> Option<Vec<Outbound>> {
        let engine = self.server.engine().clone();
        let id = self.client_id.as_str();
        let signal = match &self.signal {
            Some(signal) => signal.clone(),
            None => {
                let signal = engine.queue_signal(id).await.ok()??;
                self.signal.insert(signal).clone()
            }
        };
        // A failing engine (a Redis restart) pauses the flow, never ends it: the push still tells
        // this client's connects to leave the queue to it.
        let mut pause = RETRY_MIN;
        loop {
            if self.taken {
                // Everything queued before the last take was taken; anything queued since has raised
                // the signal (a permit is kept if we are not waiting yet), so no take is wasted on an
                // empty queue, which costs a round trip on a shared engine.
                signal.notified().await;
                // Let the publish that woke us finish fanning out (and others arrive), so one frame
                // carries several deliveries: far fewer wake-ups and writes under load.
                tokio::task::yield_now().await;
            }
            let queued = match engine.take_queue(id).await {
                Ok(queued) => queued,
                Err(error) => {
                    tracing::warn!(%error, client = %id, "push: cannot take the queue; retrying");
                    // Boxed, like every step but the wait: an idle push holds only what waiting takes.
                    Box::pin(tokio::time::sleep(pause)).await;
                    pause = (pause * 2).min(RETRY_MAX);
                    self.taken = false;
                    continue;
                }
            };
            self.taken = true;
            pause = RETRY_MIN;
            if queued.is_empty() {
                // Woken with nothing to send: the removal of the client wakes us too.
                if let Ok(false) = engine.client_exists(id).await {
                    // Answer its heartbeat connect now, with the 401 that sends it to handshake
                    // again, rather than at the timeout.
                    self.server.inner.held.release(id);
                    return None;
                }
                continue;
            }
            let out = Box::pin(self.server.outgoing_deliveries(Some(id), queued)).await;
            if !out.is_empty() {
                return Some(out);
            }
        }
    }
}

impl Server {
    /// The deliveries queued for `client_id`, as a [`Push`] stream: poll it whenever the transport can
    /// write (nothing is taken from the queue in between). While it lives, this client's
    /// `/meta/connect` requests in this process take no deliveries: they are only held until their
    /// timeout, as a heartbeat. A newer push for the same client takes over from an older one.
    pub fn push_deliveries(&self, client_id: &str) -> Push {
        let generation = self.inner.pushing.next.fetch_add(1, Ordering::Relaxed);
        self.inner
            .pushing
            .clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(client_id.to_owned(), generation);
        let flow = Flow {
            server: self.clone(),
            client_id: client_id.to_owned(),
            signal: None,
            taken: false,
        };
        let flow = futures_util::stream::unfold(flow, |mut flow| async move {
            let batch = flow.next().await?;
            Some((batch, flow))
        });
        Push {
            server: self.clone(),
            client_id: client_id.to_owned(),
            generation,
            flow: Some(Box::pin(flow)),
        }
    }

    /// Whether this process pushes deliveries to the client (so its connects must not take them).
    pub(crate) fn is_pushed(&self, client_id: &str) -> bool {
        self.inner
            .pushing
            .clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(client_id)
    }
}

#[cfg(test)]
mod tests {
    use crate::core_tests::{handshake, send, subscribe};
    use crate::{Message, Server};
    use futures_util::StreamExt;
    use serde_json::json;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn pushed_clients_get_deliveries_without_connect_and_connects_only_hold() {
        let s = Server::builder().build().unwrap();
        let a = handshake(&s).await;
        subscribe(&s, &a, json!("/p")).await;
        let mut push = s.push_deliveries(&a);
        assert_eq!(push.client_id(), a);
        s.publish(Message::publish("/p", json!(1))).await.unwrap();
        let got = push.next().await.unwrap();
        assert_eq!(got[0].message().data, Some(json!(1)));
        let connect =
            json!({"channel": "/meta/connect", "clientId": a, "connectionType": "websocket"});
        let (s2, c2) = (s.clone(), connect.clone());
        let held = tokio::spawn(async move { send(&s2, c2).await });
        tokio::time::sleep(Duration::from_secs(1)).await;
        s.publish(Message::publish("/p", json!(2))).await.unwrap();
        assert_eq!(push.next().await.unwrap()[0].message().data, Some(json!(2)));
        let r = held.await.unwrap();
        assert_eq!(
            r.len(),
            1,
            "the connect reply carries no deliveries while pushing"
        );
        drop(push);
        s.publish(Message::publish("/p", json!(3))).await.unwrap();
        let r = send(&s, connect).await;
        assert_eq!(
            r[1]["data"], 3,
            "after the push stops, connects deliver again"
        );
    }

    #[tokio::test]
    async fn an_idle_push_is_small() {
        let s = Server::builder().build().unwrap();
        let push = s.push_deliveries("c");
        let flow = std::mem::size_of_val(&**push.flow.as_ref().unwrap());
        eprintln!(
            "push: {} bytes, its flow {flow}",
            std::mem::size_of_val(&push)
        );
        // Room for compiler changes: what this catches is a big value held across an await.
        assert!(flow <= 512, "{flow}");
    }

    #[tokio::test(start_paused = true)]
    async fn removing_a_pushed_client_answers_its_connect_at_once() {
        let s = Server::builder().build().unwrap();
        let a = handshake(&s).await;
        let mut push = s.push_deliveries(&a);
        // The transport polls its push whenever it can write: here, always.
        let pushing = tokio::spawn(async move { while push.next().await.is_some() {} });
        let connect =
            json!({"channel": "/meta/connect", "clientId": a, "connectionType": "websocket"});
        let s2 = s.clone();
        let held = tokio::spawn(async move { send(&s2, connect).await });
        tokio::time::sleep(Duration::from_secs(1)).await;
        let start = tokio::time::Instant::now();
        s.engine().destroy_client(&a).await.unwrap();
        let r = held.await.unwrap();
        assert_eq!(r[0]["error"], format!("401:{a}:Unknown client"));
        assert_eq!(r[0]["advice"]["reconnect"], "handshake");
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "answered at once, not at the timeout"
        );
        pushing.await.expect("the push ends with its client");
    }

    /// A memory engine whose next `take_queue` calls fail, as a restarting Redis would make them.
    struct Flaky {
        inner: crate::MemoryEngine,
        failing_takes: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl crate::Engine for Flaky {
        async fn create_client(&self) -> Result<String, crate::Error> {
            self.inner.create_client().await
        }
        async fn client_exists(&self, id: &str) -> Result<bool, crate::Error> {
            self.inner.client_exists(id).await
        }
        async fn destroy_client(&self, id: &str) -> Result<Option<Vec<String>>, crate::Error> {
            self.inner.destroy_client(id).await
        }
        async fn ping(&self, id: &str) -> Result<(), crate::Error> {
            self.inner.ping(id).await
        }
        async fn inactive_clients(&self, idle: Duration) -> Result<Vec<String>, crate::Error> {
            self.inner.inactive_clients(idle).await
        }
        async fn subscribe(&self, id: &str, channel: &str) -> Result<bool, crate::Error> {
            self.inner.subscribe(id, channel).await
        }
        async fn unsubscribe(&self, id: &str, channel: &str) -> Result<bool, crate::Error> {
            self.inner.unsubscribe(id, channel).await
        }
        async fn subscriptions(&self, id: &str) -> Result<Vec<String>, crate::Error> {
            self.inner.subscriptions(id).await
        }
        async fn publish(&self, message: &Message) -> Result<(), crate::Error> {
            self.inner.publish(message).await
        }
        async fn queue_for(&self, id: &str, message: &Message) -> Result<bool, crate::Error> {
            self.inner.queue_for(id, message).await
        }
        async fn take_queue(&self, id: &str) -> Result<Vec<crate::Outbound>, crate::Error> {
            use std::sync::atomic::Ordering;
            let failing = self.failing_takes.load(Ordering::SeqCst);
            if failing > 0 {
                self.failing_takes.store(failing - 1, Ordering::SeqCst);
                return Err(crate::Error::Engine("redis restarting".into()));
            }
            self.inner.take_queue(id).await
        }
        async fn queue_signal(
            &self,
            id: &str,
        ) -> Result<Option<std::sync::Arc<tokio::sync::Notify>>, crate::Error> {
            self.inner.queue_signal(id).await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_engine_pauses_pushes_and_never_ends_them() {
        let engine = std::sync::Arc::new(Flaky {
            inner: crate::MemoryEngine::new(),
            failing_takes: 5.into(),
        });
        let s = Server::builder().engine(engine).build().unwrap();
        let a = handshake(&s).await;
        subscribe(&s, &a, json!("/f")).await;
        let mut push = s.push_deliveries(&a);
        s.publish(Message::publish("/f", json!("after the failures")))
            .await
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(30), push.next())
            .await
            .expect("delivered once the engine answers again")
            .unwrap();
        assert_eq!(got[0].message().data, Some(json!("after the failures")));
    }
}
