//! One Bayeux client over one WebSocket that keeps the roster it is told: its subscribe reply's
//! `ext.presence.subscribe` (or `count`), then every roster message on the room (`data.subscribe` ids
//! present, `data.unsubscribe` ids gone, `data.count` the last count), its frames parsed by
//! [`crate::frames`].

use bench_support::ws;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::oneshot;

use crate::frames::{Ids, Msg, Pid};

/// The storm's members are `user-<i>`; churn joins are `churn-<j>`, never a storm id.
pub fn storm_id(i: usize) -> String {
    format!("user-{i}")
}

/// The presence id of the j-th churn join.
pub fn churn_id(j: usize) -> String {
    format!("churn-{j}")
}

/// Per churn join: when it was sent and answered, how many steady members have it, when the last one got it.
#[derive(Default)]
pub struct JoinTrack {
    pub sent_us: AtomicU64,
    /// When its subscribe reply was read (0: none).
    pub ack_us: AtomicU64,
    pub seen: AtomicU32,
    pub all_us: AtomicU64,
}

/// What every reader of one room shares.
pub struct Room {
    base: Instant,
    pub channel: String,
    /// Members are told counts, not rosters.
    pub count_only: bool,
    /// The steady members (`user-0` .. `user-<truth-1>`): the roster every member must end with.
    pub truth: usize,
    /// Steady members whose roster (or count) has not yet equalled the truth.
    pub incomplete: AtomicUsize,
    pub last_complete_us: AtomicU64,
    /// Roster (or count) messages read by steady members, and by churn clients.
    pub member_msgs: AtomicU64,
    pub churn_msgs: AtomicU64,
    pub last_msg_us: AtomicU64,
    /// `/meta/connect` replies that were not successful.
    pub connects_refused: AtomicU64,
    pub joins: Vec<JoinTrack>,
    pub errors: Mutex<Vec<String>>,
}

impl Room {
    pub fn new(channel: &str, count_only: bool, truth: usize, churn_joins: usize) -> Room {
        Room {
            base: Instant::now(),
            channel: channel.to_owned(),
            count_only,
            truth,
            incomplete: AtomicUsize::new(truth),
            last_complete_us: AtomicU64::new(0),
            member_msgs: AtomicU64::new(0),
            churn_msgs: AtomicU64::new(0),
            last_msg_us: AtomicU64::new(0),
            connects_refused: AtomicU64::new(0),
            joins: (0..churn_joins).map(|_| JoinTrack::default()).collect(),
            errors: Mutex::default(),
        }
    }

    pub fn now_us(&self) -> u64 {
        self.base.elapsed().as_micros() as u64
    }

    /// Keeps the first 20 oddities (unparsed frames, failed requests) for the report.
    pub fn error(&self, e: String) {
        let mut errors = self.errors.lock().unwrap();
        if errors.len() < 20 {
            errors.push(e);
        }
    }
}

/// What one client has been told.
#[derive(Default)]
pub struct Roster {
    pub replied: bool,
    storm: Vec<u64>,
    pub storm_present: usize,
    pub churn: HashSet<u32>,
    pub foreign: usize,
    pub last_count: Option<u64>,
    /// Room messages read before the subscribe reply.
    pub early: usize,
    /// The server closed the socket (or it failed).
    pub closed: bool,
    complete: bool,
}

impl Roster {
    fn set_storm(&mut self, i: usize, present: bool) {
        let (w, b) = (i / 64, 1u64 << (i % 64));
        if w >= self.storm.len() {
            if !present {
                return;
            }
            self.storm.resize(w + 1, 0);
        }
        let was = self.storm[w] & b != 0;
        if was != present {
            self.storm[w] ^= b;
            if present {
                self.storm_present += 1;
            } else {
                self.storm_present -= 1;
            }
        }
    }

    fn has_storm(&self, i: usize) -> bool {
        self.storm
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    fn apply(&mut self, ids: &Ids, present: bool, room: &Room, steady: bool, now: u64) {
        for &pid in &ids.0 {
            match pid {
                Pid::Storm(i) => {
                    if (i as usize) < room.truth || !present {
                        self.set_storm(i as usize, present);
                    } else {
                        self.foreign += 1;
                    }
                }
                Pid::Churn(j) if present => {
                    if self.churn.insert(j) && steady {
                        if let Some(t) = room.joins.get(j as usize) {
                            if t.seen.fetch_add(1, Ordering::Relaxed) + 1 == room.truth as u32 {
                                t.all_us.store(now, Ordering::Relaxed);
                            }
                        }
                    }
                }
                Pid::Churn(j) => {
                    self.churn.remove(&j);
                }
                Pid::Foreign => self.foreign += usize::from(present),
            }
        }
    }

    /// Whether this client's roster (or count) is the truth: every steady member, nothing else.
    pub fn is_truth(&self, room: &Room) -> bool {
        self.replied
            && if room.count_only {
                self.last_count == Some(room.truth as u64)
            } else {
                self.storm_present == room.truth && self.churn.is_empty() && self.foreign == 0
            }
    }

    fn check_complete(&mut self, room: &Room, now: u64) {
        if !self.complete && self.is_truth(room) {
            self.complete = true;
            room.last_complete_us.fetch_max(now, Ordering::Relaxed);
            room.incomplete.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// What differs from the truth, for a loud failure.
    pub fn describe(&self, room: &Room) -> String {
        let missing: Vec<usize> = (0..room.truth)
            .filter(|&i| !self.has_storm(i))
            .take(5)
            .collect();
        format!(
            "replied {}, {} of {} storm ids (first missing {:?}), {} churn ids, {} foreign, last count {:?}, {} messages before the reply",
            self.replied,
            self.storm_present,
            room.truth,
            missing,
            self.churn.len(),
            self.foreign,
            self.last_count,
            self.early
        )
    }
}

/// A request's answer as the reader saw it.
pub struct Reply {
    pub ok: bool,
    pub error: Option<String>,
    pub at_us: u64,
}

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Reply>>>>;

/// One Bayeux client: a reader task answers each `/meta/connect` with the next, applies roster
/// messages and hands replies to whoever waits for their `id`.
pub struct Client {
    id: String,
    writer: Arc<tokio::sync::Mutex<ws::Writer>>,
    pending: Pending,
    next: AtomicU64,
    reader: tokio::task::JoinHandle<()>,
    pub roster: Arc<Mutex<Roster>>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Client {
    /// Opens the socket, handshakes, starts the reader and sends the first (held) `/meta/connect`.
    /// `steady`: one of the room's members whose roster is checked (churn clients are not).
    pub async fn open(addr: &str, room: Arc<Room>, steady: bool) -> io::Result<Client> {
        let (mut rd, mut wr) = ws::connect(addr, "/faye").await?;
        let id = ws::handshake(&mut rd, &mut wr).await?;
        let connect =
            json!([{"channel": "/meta/connect", "clientId": id, "connectionType": "websocket"}])
                .to_string();
        let writer = Arc::new(tokio::sync::Mutex::new(wr));
        let pending: Pending = Arc::default();
        let roster: Arc<Mutex<Roster>> = Arc::default();
        let reader = tokio::spawn(read_loop(
            rd,
            writer.clone(),
            pending.clone(),
            room,
            roster.clone(),
            connect.clone(),
            steady,
        ));
        writer.lock().await.send(&connect).await?;
        Ok(Client {
            id,
            writer,
            pending,
            next: AtomicU64::new(0),
            reader,
            roster,
        })
    }

    /// Sends one message (its `id` and `clientId` filled in) and waits for its reply until `deadline`.
    pub async fn request(
        &self,
        mut message: Value,
        deadline: tokio::time::Instant,
    ) -> Result<Reply, String> {
        let id = self.next.fetch_add(1, Ordering::Relaxed).to_string();
        message["id"] = json!(id);
        message["clientId"] = json!(self.id);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        self.writer
            .lock()
            .await
            .send(&json!([message]).to_string())
            .await
            .map_err(|e| format!("send failed: {e}"))?;
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err("connection closed before the reply".into()),
            Err(_) => Err("no reply before the deadline".into()),
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

async fn read_loop(
    mut rd: ws::Reader,
    writer: Arc<tokio::sync::Mutex<ws::Writer>>,
    pending: Pending,
    room: Arc<Room>,
    roster: Arc<Mutex<Roster>>,
    connect: String,
    steady: bool,
) {
    while let Ok(Some(text)) = rd.recv().await {
        let now = room.now_us();
        let messages: Vec<Msg> = match serde_json::from_str(&text) {
            Ok(m) => m,
            Err(e) => {
                let head: String = text.chars().take(200).collect();
                room.error(format!("unparsed frame ({e}): {head}"));
                continue;
            }
        };
        for m in messages {
            if m.channel == "/meta/connect" {
                if m.successful != Some(true) {
                    room.connects_refused.fetch_add(1, Ordering::Relaxed);
                    room.error(format!("connect refused: {:?}", m.error));
                } else if writer.lock().await.send(&connect).await.is_err() {
                    break;
                }
            } else if m.channel.starts_with("/meta/") {
                let ok = m.successful == Some(true);
                if ok && m.channel == "/meta/subscribe" {
                    let mut r = roster.lock().unwrap();
                    r.replied = true;
                    if let Some(p) = m.ext.and_then(|e| e.presence) {
                        if let Some(ids) = &p.subscribe {
                            r.apply(ids, true, &room, steady, now);
                        }
                        if p.count.is_some() {
                            r.last_count = p.count;
                        }
                    }
                    if steady {
                        r.check_complete(&room, now);
                    }
                }
                let waiter =
                    m.id.and_then(|id| pending.lock().unwrap().remove(id.as_ref()));
                if let Some(waiter) = waiter {
                    let _ = waiter.send(Reply {
                        ok,
                        error: m.error,
                        at_us: now,
                    });
                }
            } else if m.channel == room.channel {
                let counter = if steady {
                    &room.member_msgs
                } else {
                    &room.churn_msgs
                };
                counter.fetch_add(1, Ordering::Relaxed);
                room.last_msg_us.fetch_max(now, Ordering::Relaxed);
                let mut r = roster.lock().unwrap();
                if !r.replied {
                    r.early += 1;
                }
                if let Some(d) = &m.data {
                    if let Some(ids) = &d.subscribe {
                        r.apply(ids, true, &room, steady, now);
                    }
                    if let Some(ids) = &d.unsubscribe {
                        r.apply(ids, false, &room, steady, now);
                    }
                    if d.count.is_some() {
                        r.last_count = d.count;
                    }
                }
                if steady {
                    r.check_complete(&room, now);
                }
            }
        }
    }
    roster.lock().unwrap().closed = true;
}
