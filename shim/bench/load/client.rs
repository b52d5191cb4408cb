//! The Bayeux client: one WebSocket each, a reader task that answers `/meta/connect` with the next
//! connect, hands replies to whoever waits for their `id`, counts channel messages and marks the
//! members a probe's diff reached.

// The same minimal WebSocket client as the bayeux benchmark, so both benchmarks drive servers alike.
use bench_support::ws;

use serde_json::{json, Value};
use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Notify};

/// Bound on every wait for a reply, a fan-out or a quiet system.
pub const WAIT: Duration = Duration::from_secs(120);

/// What the members are waiting for during a probe: the first frame containing `needle`, per member.
pub struct Watch {
    pub needle: String,
    pub members: usize,
    pub seen: Vec<bool>,
    pub arrivals_us: Vec<u64>,
    pub done: Arc<Notify>,
}

/// State every client's reader shares.
pub struct Shared {
    pub base: Instant,
    /// `"channel":"<the channel>"`, counted in each frame: channel messages (roster diffs) received.
    pub pattern: String,
    pub channel_msgs: AtomicU64,
    pub last_msg_us: AtomicU64,
    pub watch: Mutex<Option<Watch>>,
}

impl Shared {
    pub fn now_us(&self) -> u64 {
        self.base.elapsed().as_micros() as u64
    }
}

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Value>>>>;

/// One Bayeux client over one WebSocket: a reader task answers `/meta/connect` with the next connect,
/// hands replies to whoever waits for their `id`, and counts channel messages.
pub struct Client {
    id: String,
    writer: Arc<tokio::sync::Mutex<ws::Writer>>,
    pending: Pending,
    next: AtomicU64,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Client {
    /// Opens the socket, handshakes, starts the reader and sends the first (held) `/meta/connect`.
    pub async fn open(addr: &str, index: usize, shared: Arc<Shared>) -> io::Result<Client> {
        let (mut rd, mut wr) = ws::connect(addr, "/faye").await?;
        let id = ws::handshake(&mut rd, &mut wr).await?;
        let connect =
            json!([{"channel": "/meta/connect", "clientId": id, "connectionType": "websocket"}])
                .to_string();
        let writer = Arc::new(tokio::sync::Mutex::new(wr));
        let pending: Pending = Arc::default();
        let reader = tokio::spawn(read_loop(
            rd,
            writer.clone(),
            pending.clone(),
            shared,
            connect.clone(),
            index,
        ));
        writer.lock().await.send(&connect).await?;
        Ok(Client {
            id,
            writer,
            pending,
            next: AtomicU64::new(0),
            reader,
        })
    }

    /// Publishes `data` on `channel` without waiting for the acknowledgement.
    pub async fn publish(&self, channel: &str, data: Value) -> io::Result<()> {
        let message = json!([{"channel": channel, "clientId": self.id, "data": data}]);
        self.writer.lock().await.send(&message.to_string()).await
    }

    /// Sends one message (its `id` and `clientId` filled in) and waits for the reply with that id.
    pub async fn request(&self, mut message: Value) -> io::Result<Value> {
        let id = self.next.fetch_add(1, Ordering::Relaxed).to_string();
        message["id"] = json!(id);
        message["clientId"] = json!(self.id);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        self.writer
            .lock()
            .await
            .send(&json!([message]).to_string())
            .await?;
        match tokio::time::timeout(WAIT, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            _ => Err(io::Error::other("no reply")),
        }
    }
}

async fn read_loop(
    mut rd: ws::Reader,
    writer: Arc<tokio::sync::Mutex<ws::Writer>>,
    pending: Pending,
    shared: Arc<Shared>,
    connect: String,
    index: usize,
) {
    while let Ok(Some(text)) = rd.recv().await {
        let now = shared.now_us();
        if index == 0 && std::env::var_os("PRESENCE_BENCH_TRACE").is_some() {
            eprintln!("client 0 <- {text}");
        }
        // Only frames with a reply are parsed; roster diffs are counted and searched as text.
        if text.contains("\"/meta/") {
            let Ok(Value::Array(messages)) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            for m in messages {
                let channel = m["channel"].as_str().unwrap_or_default();
                if channel == "/meta/connect" {
                    if m["successful"] == true && writer.lock().await.send(&connect).await.is_err()
                    {
                        return;
                    }
                } else if channel.starts_with("/meta/") {
                    let waiter = m["id"]
                        .as_str()
                        .and_then(|id| pending.lock().unwrap().remove(id));
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(m);
                    }
                }
            }
        }
        let n = text.matches(shared.pattern.as_str()).count() as u64;
        if n > 0 {
            shared.channel_msgs.fetch_add(n, Ordering::Relaxed);
            shared.last_msg_us.fetch_max(now, Ordering::Relaxed);
            let mut watch = shared.watch.lock().unwrap();
            if let Some(w) = watch.as_mut() {
                if index < w.members && !w.seen[index] && text.contains(&w.needle) {
                    w.seen[index] = true;
                    w.arrivals_us.push(now);
                    if w.arrivals_us.len() == w.members {
                        w.done.notify_one();
                    }
                }
            }
        }
    }
}

pub fn subscribe_message(channel: &str, presence_id: &str) -> Value {
    json!({"channel": "/meta/subscribe", "subscription": channel,
        "ext": {"presence": {"id": presence_id, "data": {"name": format!("User {presence_id}"), "status": "online"}}}})
}

pub fn unsubscribe_message(channel: &str) -> Value {
    json!({"channel": "/meta/unsubscribe", "subscription": channel})
}
