//! The join storm: N members subscribe to one room, 64 in flight, and every member's roster (or count)
//! is followed until it equals the truth.

use futures_util::stream::{self, StreamExt};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::client::{storm_id, subscribe_message, Client, Room};
use crate::servers::{open_clients, Cpu, Kind, Paths, Server, IN_FLIGHT};

/// Subscribes in flight at a time, as in load.rs.
const SUBSCRIBES_IN_FLIGHT: usize = 64;
/// Bound on opening the clients and on the system going quiet.
pub const SETUP_BOUND: Duration = Duration::from_secs(180);

/// What filling a room got to: the subscribes and every member's roster.
pub struct Fill {
    pub t0_us: u64,
    pub answered: usize,
    pub failed: usize,
    /// Send subscribe to read its reply, sorted.
    pub latencies_ms: Vec<f64>,
    pub last_reply_us: u64,
    pub members_complete: usize,
    /// The last member's roster complete, if every one was.
    pub complete_us: Option<u64>,
    /// `Err`: the deadline passed, with what was missing.
    pub status: Result<(), String>,
}

impl Fill {
    pub fn subs_per_s(&self) -> f64 {
        self.answered as f64 / ((self.last_reply_us - self.t0_us) as f64 / 1e6)
    }

    pub fn percentile(&self, p: f64) -> f64 {
        let v = &self.latencies_ms;
        if v.is_empty() {
            return f64::NAN;
        }
        v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
    }

    pub fn complete_s(&self) -> f64 {
        self.complete_us
            .map_or(f64::NAN, |c| (c - self.t0_us) as f64 / 1e6)
    }
}

/// What the server and Redis say once a measurement ends: member sockets closed, connects refused,
/// and (ours) `PRESENCE.COUNT` of the room.
pub async fn diagnose(server: &mut Server, kind: Kind, clients: &[Client], room: &Room) -> String {
    let closed = clients
        .iter()
        .filter(|c| c.roster.lock().unwrap().closed)
        .count();
    let refused = room.connects_refused.load(Ordering::Relaxed);
    let count = match kind {
        Kind::Ours(_) => server.presence_count(&room.channel).await,
        Kind::Theirs => "n/a".into(),
    };
    format!("{closed} member sockets closed, {refused} connects refused, PRESENCE.COUNT {count}")
}

/// The first few members whose roster is not the truth, described.
pub fn wrong_members(clients: &[Client], room: &Room) -> (usize, Vec<String>) {
    let mut wrong = 0;
    let mut sample = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        let r = c.roster.lock().unwrap();
        if r.closed && sample.is_empty() {
            sample.push(format!("member {i}'s socket closed"));
        }
        if !r.is_truth(room) {
            wrong += 1;
            if sample.len() < 3 {
                sample.push(format!("member {i}: {}", r.describe(room)));
            }
        }
    }
    (wrong, sample)
}

/// One subscribe's outcome: when it was answered (or given up), and its latency in ms or the failure.
type Answer = (u64, Result<f64, String>);

/// Every client subscribes `user-<i>` to the room, 64 in flight; waits (until `deadline` after the
/// first subscribe) for every reply and every member's roster to equal the truth.
pub async fn fill(clients: &Arc<Vec<Client>>, room: &Arc<Room>, deadline: Duration) -> Fill {
    let n = clients.len();
    let t0_us = room.now_us();
    let until = tokio::time::Instant::now() + deadline;
    let results: Arc<Mutex<Vec<Answer>>> = Arc::default();
    let driver = {
        let (clients, room, results) = (clients.clone(), room.clone(), results.clone());
        tokio::spawn(async move {
            stream::iter(0..n)
                .for_each_concurrent(SUBSCRIBES_IN_FLIGHT, |i| {
                    let (clients, room, results) = (&clients, &room, &results);
                    async move {
                        let message = subscribe_message(&room.channel, &storm_id(i));
                        let sent = room.now_us();
                        let r = match clients[i].request(message, until).await {
                            Ok(r) if r.ok => Ok((r.at_us, (r.at_us - sent) as f64 / 1000.0)),
                            Ok(r) => Err(format!("user-{i} refused: {:?}", r.error)),
                            Err(e) => Err(format!("user-{i}: {e}")),
                        };
                        let entry = match r {
                            Ok((at, ms)) => (at, Ok(ms)),
                            Err(e) => (room.now_us(), Err(e)),
                        };
                        results.lock().unwrap().push(entry);
                    }
                })
                .await;
        })
    };
    let mut all_answered_at: Option<tokio::time::Instant> = None;
    let status = loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let (answered, failed) = {
            let r = results.lock().unwrap();
            (r.len(), r.iter().filter(|(_, x)| x.is_err()).count())
        };
        let incomplete = room.incomplete.load(Ordering::Relaxed);
        if answered == n && incomplete == 0 {
            break Ok(());
        }
        if answered == n && failed > 0 {
            // A failed member can never be complete: give the others 10 s, then report.
            let at = *all_answered_at.get_or_insert_with(tokio::time::Instant::now);
            if at.elapsed() > Duration::from_secs(10) {
                break Err(format!("{failed} of {n} subscribes failed"));
            }
        }
        if tokio::time::Instant::now() >= until {
            driver.abort();
            break Err(format!(
                "deadline {deadline:?} passed: {answered} of {n} subscribes answered ({failed} failed), {} of {n} rosters complete",
                n - incomplete
            ));
        }
    };
    let results = std::mem::take(&mut *results.lock().unwrap());
    let mut latencies_ms: Vec<f64> = results.iter().filter_map(|(_, r)| r.clone().ok()).collect();
    latencies_ms.sort_by(f64::total_cmp);
    let failures: Vec<&String> = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().err())
        .collect();
    let status = status.map_err(|e| {
        let (_, sample) = wrong_members(clients, room);
        format!(
            "{e}; first failures {:?}; incomplete rosters e.g. {sample:?}",
            &failures[..failures.len().min(3)]
        )
    });
    let incomplete = room.incomplete.load(Ordering::Relaxed);
    Fill {
        t0_us,
        answered: results.len(),
        failed: failures.len(),
        latencies_ms,
        last_reply_us: results.iter().map(|(at, _)| *at).max().unwrap_or(t0_us),
        members_complete: n - incomplete,
        complete_us: (incomplete == 0).then(|| room.last_complete_us.load(Ordering::Relaxed)),
        status,
    }
}

pub struct StormRow {
    pub kind: Kind,
    pub count_only: bool,
    pub n: usize,
    pub fill: Fill,
    pub msgs: u64,
    pub cpu: Cpu,
    pub rss_kib: (u64, u64),
    /// Members whose final roster (or count), once quiet, was not the truth.
    pub wrong: usize,
    pub notes: Vec<String>,
}

/// One storm on a fresh server: N clients open, then subscribe to the room; figures until quiet.
pub async fn storm(
    paths: &Paths,
    kind: Kind,
    count_only: bool,
    n: usize,
    deadline: Duration,
) -> StormRow {
    let channel = if count_only {
        "/presence-count/bench"
    } else {
        "/presence/bench"
    };
    let mut server = Server::start(paths, kind, count_only).await;
    let room = Arc::new(Room::new(channel, count_only, n, 0));
    let clients = open_clients(&server.addr, &room, n, true, SETUP_BOUND)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", kind.name()));
    let clients = Arc::new(clients);
    tokio::time::sleep(Duration::from_millis(500)).await;
    eprintln!("  {n} clients open ({IN_FLIGHT} at a time); storm");
    server.reset_stats().await;
    let cpu0 = server.cpu();
    let fill = fill(&clients, &room, deadline).await;
    let mut notes = Vec::new();
    if fill.status.is_ok() {
        if let Err(e) = server.quiet(&room, SETUP_BOUND).await {
            notes.push(e);
        }
    }
    let cpu = server.cpu() - cpu0;
    let rss_kib = server.rss_kib();
    let (wrong, sample) = wrong_members(&clients, &room);
    if fill.status.is_err() || wrong > 0 {
        notes.push(diagnose(&mut server, kind, &clients, &room).await);
    }
    if let Err(e) = &fill.status {
        eprintln!("  MEASUREMENT FAILED ({}, N = {n}): {e}", kind.name());
        notes.push(e.clone());
    } else if wrong > 0 {
        eprintln!(
            "  ROSTERS WRONG ({}, N = {n}): {wrong} members, e.g. {sample:?}",
            kind.name()
        );
        notes.push(format!(
            "{wrong} final rosters not the truth, e.g. {sample:?}"
        ));
    }
    notes.extend(room.errors.lock().unwrap().iter().cloned());
    let msgs = room.member_msgs.load(Ordering::Relaxed);
    drop(clients);
    server.stop().await;
    StormRow {
        kind,
        count_only,
        n,
        fill,
        msgs,
        cpu,
        rss_kib,
        wrong,
        notes,
    }
}
