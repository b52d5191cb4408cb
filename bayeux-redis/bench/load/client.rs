//! The load generator's clients: subscribers that handshake, subscribe, hold a `/meta/connect` and
//! count every delivery by sequence number, and the publisher sending with a window of
//! unacknowledged messages.

// The same WebSocket client as the bayeux and presence benchmarks.
use bench_support::ws;

use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

const CHANNEL: &str = "/bench/fanout";
/// Bound on any one reply during a subscriber's setup, and on each wait for a publish acknowledgement.
const REPLY_WAIT: Duration = Duration::from_secs(30);

/// One subscriber's record: how many times it got each sequence number, and each first delivery's
/// latency.
pub struct Sub {
    /// Set once its subscribe succeeded; a subscriber whose setup failed is not counted as losing.
    pub subscribed: bool,
    pub counts: Vec<u8>,
    pub latencies_us: Vec<u32>,
}

/// State the subscribers share with the measurement.
pub struct Shared {
    pub base: Instant,
    pub subs: Vec<Mutex<Sub>>,
    pub subscribed: AtomicU64,
    /// Setup failures (handshake or subscribe refused, socket closed, no reply).
    pub failed: AtomicU64,
    /// Distinct (subscriber, sequence) deliveries so far, and when the last one arrived.
    pub distinct: AtomicU64,
    pub last_distinct_us: AtomicU64,
    /// Unsuccessful `/meta/connect` replies and sockets closed after setup.
    pub errors: AtomicU64,
    pub first_error: Mutex<Option<String>>,
}

impl Shared {
    pub fn now_us(&self) -> u64 {
        self.base.elapsed().as_micros() as u64
    }

    fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.first_error.lock().unwrap().get_or_insert(what);
    }
}

async fn handshake(rd: &mut ws::Reader, wr: &mut ws::Writer) -> Result<String, String> {
    tokio::time::timeout(REPLY_WAIT, ws::handshake(rd, wr))
        .await
        .map_err(|_| "no handshake reply".to_owned())?
        .map_err(|e| e.to_string())
}

/// Handshake and subscribe; returns the socket and the client id.
async fn setup(addr: &str) -> Result<(ws::Reader, ws::Writer, String), String> {
    let (mut rd, mut wr) = ws::connect(addr, "/faye")
        .await
        .map_err(|e| e.to_string())?;
    let id = handshake(&mut rd, &mut wr).await?;
    let sub =
        json!([{"channel": "/meta/subscribe", "clientId": id, "subscription": CHANNEL, "id": "s"}]);
    wr.send(&sub.to_string()).await.map_err(|e| e.to_string())?;
    loop {
        let text = tokio::time::timeout(REPLY_WAIT, rd.recv())
            .await
            .map_err(|_| "no subscribe reply".to_owned())?
            .map_err(|e| e.to_string())?
            .ok_or("closed during subscribe")?;
        let Ok(Value::Array(messages)) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if let Some(reply) = messages.iter().find(|m| m["channel"] == "/meta/subscribe") {
            if reply["successful"] == true {
                return Ok((rd, wr, id));
            }
            return Err(format!("subscribe refused: {reply}"));
        }
    }
}

/// One subscriber: set up (within the gate), then hold connects and record deliveries until aborted.
pub async fn subscriber(addr: String, index: usize, shared: Arc<Shared>, gate: Arc<Semaphore>) {
    let permit = gate.acquire_owned().await.unwrap();
    let (mut rd, mut wr, id) = match setup(&addr).await {
        Ok(ok) => ok,
        Err(e) => {
            shared.failed.fetch_add(1, Ordering::Relaxed);
            shared
                .first_error
                .lock()
                .unwrap()
                .get_or_insert(format!("subscriber {index} on {addr}: {e}"));
            return;
        }
    };
    shared.subs[index].lock().unwrap().subscribed = true;
    shared.subscribed.fetch_add(1, Ordering::Relaxed);
    drop(permit);
    let connect =
        json!([{"channel": "/meta/connect", "clientId": id, "connectionType": "websocket"}])
            .to_string();
    if wr.send(&connect).await.is_err() {
        shared.error(format!("subscriber {index}: socket closed before connect"));
        return;
    }
    loop {
        let text = match rd.recv().await {
            Ok(Some(text)) => text,
            _ => {
                shared.error(format!("subscriber {index}: socket closed by {addr}"));
                return;
            }
        };
        let now = shared.now_us();
        let Ok(Value::Array(messages)) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let mut new = 0;
        {
            let mut sub = shared.subs[index].lock().unwrap();
            for m in &messages {
                if m["channel"] != CHANNEL {
                    continue;
                }
                let Some(seq) = m["data"]["i"].as_u64() else {
                    continue;
                };
                let Some(count) = sub.counts.get_mut(seq as usize) else {
                    continue;
                };
                *count = count.saturating_add(1);
                if *count == 1 {
                    new += 1;
                    let sent = m["data"]["t"].as_u64().unwrap_or(now);
                    sub.latencies_us
                        .push(u32::try_from(now.saturating_sub(sent)).unwrap_or(u32::MAX));
                }
            }
        }
        if new > 0 {
            shared.last_distinct_us.fetch_max(now, Ordering::Relaxed);
            shared.distinct.fetch_add(new, Ordering::Relaxed);
        }
        for m in &messages {
            if m["channel"] == "/meta/connect" {
                if m["successful"] != true {
                    shared.error(format!("subscriber {index}: connect refused: {m}"));
                }
                if wr.send(&connect).await.is_err() {
                    shared.error(format!("subscriber {index}: socket closed by {addr}"));
                    return;
                }
            }
        }
    }
}

/// What the publisher did.
pub struct Published {
    pub sent: usize,
    pub acked: u64,
    pub refused: u64,
    pub last_send_us: u64,
    pub error: Option<String>,
}

/// Publishes `messages` messages with at most `window` unacknowledged. Stops early if no
/// acknowledgement comes for `REPLY_WAIT`.
pub async fn publisher(addr: &str, shared: &Shared, messages: usize, window: usize) -> Published {
    let mut out = Published {
        sent: 0,
        acked: 0,
        refused: 0,
        last_send_us: shared.now_us(),
        error: None,
    };
    let (mut rd, mut wr) = match ws::connect(addr, "/faye").await {
        Ok(socket) => socket,
        Err(e) => {
            out.error = Some(format!("publisher connect: {e}"));
            return out;
        }
    };
    let id = match handshake(&mut rd, &mut wr).await {
        Ok(id) => id,
        Err(e) => {
            out.error = Some(format!("publisher: {e}"));
            return out;
        }
    };
    let credits = Arc::new(Semaphore::new(window));
    let acks = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let reader = {
        let (credits, acks) = (credits.clone(), acks.clone());
        tokio::spawn(async move {
            while let Ok(Some(text)) = rd.recv().await {
                let Ok(Value::Array(replies)) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                for reply in replies.iter().filter(|m| m["channel"] == CHANNEL) {
                    match reply["successful"].as_bool() {
                        Some(true) => acks.0.fetch_add(1, Ordering::Relaxed),
                        Some(false) => acks.1.fetch_add(1, Ordering::Relaxed),
                        None => continue,
                    };
                    credits.add_permits(1);
                }
            }
        })
    };
    for i in 0..messages {
        match tokio::time::timeout(REPLY_WAIT, credits.acquire()).await {
            Ok(Ok(permit)) => permit.forget(),
            _ => {
                out.error = Some(format!("no publish acknowledged for {REPLY_WAIT:?}"));
                break;
            }
        }
        let t = shared.now_us();
        let msg = json!([{"channel": CHANNEL, "clientId": id, "id": i.to_string(),
            "data": {"t": t, "i": i, "text": "hello from the benchmark"}}]);
        if let Err(e) = wr.send(&msg.to_string()).await {
            out.error = Some(format!("publish {i}: {e}"));
            break;
        }
        out.sent = i + 1;
        out.last_send_us = t;
    }
    // Every credit back means every publish was acknowledged; closing earlier could drop the last ones.
    let all = u32::try_from(window).unwrap();
    if tokio::time::timeout(REPLY_WAIT, credits.acquire_many(all))
        .await
        .is_err()
        && out.error.is_none()
    {
        out.error = Some("the last publishes were never acknowledged".into());
    }
    reader.abort();
    out.acked = acks.0.load(Ordering::Relaxed);
    out.refused = acks.1.load(Ordering::Relaxed);
    out
}
