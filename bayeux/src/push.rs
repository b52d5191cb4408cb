//! Push delivery, for transports that can write to the client at any time (WebSocket).
//!
//! Long-polling can only answer a held `/meta/connect`, so a delivery costs the client a round trip.
//! A WebSocket can carry a delivery the moment it is queued, as Faye's and CometD's servers do; the
//! client's connects then only keep it alive. [`Server::push_deliveries`] runs that loop.

use crate::{Outbound, Server};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Clients this process pushes to, with the generation of the push that owns each.
#[derive(Default)]
pub(crate) struct Pushing {
    next: AtomicU64,
    clients: Mutex<HashMap<String, u64>>,
}

/// Keeps deliveries flowing to a sink; dropping it stops the flow and gives the client's queue back to
/// its `/meta/connect` requests.
#[must_use = "deliveries stop when the guard is dropped"]
pub struct PushGuard {
    server: Server,
    client_id: String,
    generation: u64,
    task: JoinHandle<()>,
}

impl PushGuard {
    /// The client this guard pushes to.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }
}

impl Drop for PushGuard {
    fn drop(&mut self) {
        self.task.abort();
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

impl Server {
    /// Sends every message queued for `client_id` to `sink` as soon as it is queued (after the outgoing
    /// hooks, as for any delivery), until the guard is dropped or the client is removed. Meanwhile this
    /// client's `/meta/connect` requests in this process take no deliveries: they are only held until
    /// their timeout, as a heartbeat. A newer push for the same client takes over from an older one.
    pub fn push_deliveries(&self, client_id: &str, sink: mpsc::Sender<Vec<Outbound>>) -> PushGuard {
        let generation = self.inner.pushing.next.fetch_add(1, Ordering::Relaxed);
        self.inner
            .pushing
            .clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(client_id.to_owned(), generation);
        let server = self.clone();
        let id = client_id.to_owned();
        let task = tokio::spawn(async move {
            let engine = server.engine().clone();
            let Ok(Some(signal)) = engine.queue_signal(&id).await else {
                return;
            };
            loop {
                let Ok(queued) = engine.take_queue(&id).await else {
                    return;
                };
                if queued.is_empty() {
                    if !engine.client_exists(&id).await.unwrap_or(false) {
                        // The client was removed: answer its heartbeat connect now, with the
                        // 401 that sends it to handshake again, rather than at the timeout.
                        server.inner.held.release(&id);
                        return;
                    }
                    signal.notified().await;
                    // Let the publish that woke us finish fanning out (and others arrive), so one
                    // frame carries several deliveries: far fewer wake-ups and writes under load.
                    tokio::task::yield_now().await;
                    continue;
                }
                let out = server.outgoing_deliveries(Some(&id), queued).await;
                if !out.is_empty() && sink.send(out).await.is_err() {
                    return;
                }
            }
        });
        PushGuard {
            server: self.clone(),
            client_id: client_id.to_owned(),
            generation,
            task,
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
    use serde_json::json;
    use std::time::Duration;
    use tokio::sync::mpsc;

    #[tokio::test(start_paused = true)]
    async fn pushed_clients_get_deliveries_without_connect_and_connects_only_hold() {
        let s = Server::builder().build().unwrap();
        let a = handshake(&s).await;
        subscribe(&s, &a, json!("/p")).await;
        let (tx, mut rx) = mpsc::channel(8);
        let guard = s.push_deliveries(&a, tx);
        assert_eq!(guard.client_id(), a);
        s.publish(Message::publish("/p", json!(1))).await.unwrap();
        let got = rx.recv().await.unwrap();
        assert_eq!(got[0].message().data, Some(json!(1)));
        let connect =
            json!({"channel": "/meta/connect", "clientId": a, "connectionType": "websocket"});
        let (s2, c2) = (s.clone(), connect.clone());
        let held = tokio::spawn(async move { send(&s2, c2).await });
        tokio::time::sleep(Duration::from_secs(1)).await;
        s.publish(Message::publish("/p", json!(2))).await.unwrap();
        assert_eq!(rx.recv().await.unwrap()[0].message().data, Some(json!(2)));
        let r = held.await.unwrap();
        assert_eq!(
            r.len(),
            1,
            "the connect reply carries no deliveries while pushing"
        );
        drop(guard);
        s.publish(Message::publish("/p", json!(3))).await.unwrap();
        let r = send(&s, connect).await;
        assert_eq!(
            r[1]["data"], 3,
            "after the push stops, connects deliver again"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn removing_a_pushed_client_answers_its_connect_at_once() {
        let s = Server::builder().build().unwrap();
        let a = handshake(&s).await;
        let (tx, _rx) = mpsc::channel(8);
        let _guard = s.push_deliveries(&a, tx);
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
    }
}
