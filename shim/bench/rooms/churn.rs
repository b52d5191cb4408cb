//! Steady churn into a full room: the room is filled with N members (checked complete), then churn
//! clients join it as `churn-<j>` (ids never used by the storm) at a fixed rate, each leaving again
//! after a hold; every steady member's roster is followed throughout.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

use crate::client::{churn_id, subscribe_message, unsubscribe_message, Room};
use crate::servers::{open_clients, Cpu, Kind, Paths, Server};
use crate::storm::{diagnose, fill, wrong_members, Fill, SETUP_BOUND};

/// How long wrong rosters are given, once quiet, to become the truth: the TTL (30 s) and the
/// module's expiry sweep, with margin.
const SETTLE: Duration = Duration::from_secs(45);

pub struct ChurnConfig {
    pub members: usize,
    /// Joins per second (and as many leaves).
    pub rate: usize,
    pub secs: u64,
    /// How long each churn client stays in the room.
    pub hold: Duration,
    /// Churn clients, each taking every `pool`-th join in turn.
    pub pool: usize,
}

pub struct ChurnRow {
    pub kind: Kind,
    pub members: usize,
    pub fill: Fill,
    pub joins: usize,
    pub joins_ok: usize,
    pub leaves_ok: usize,
    pub window_s: f64,
    /// Roster messages read by the steady members during the window, and by the churn clients.
    pub member_msgs: u64,
    pub churn_msgs: u64,
    pub cpu: Cpu,
    /// From the end of the window until the last roster message arrived.
    pub drain_s: f64,
    pub drain_msgs: u64,
    /// Join sent to the last steady member having it, for the joins that reached them all.
    pub latencies_ms: Vec<f64>,
    /// A churn join's subscribe sent to its reply read, sorted.
    pub acks_ms: Vec<f64>,
    /// How late the generator sent a join against its schedule, at most.
    pub max_lag_ms: f64,
    pub wrong: usize,
    pub notes: Vec<String>,
}

impl ChurnRow {
    /// The `p` quantile of sorted `v`.
    pub fn percentile(v: &[f64], p: f64) -> f64 {
        if v.is_empty() {
            return f64::NAN;
        }
        v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
    }
}

pub async fn churn(paths: &Paths, kind: Kind, cfg: &ChurnConfig) -> ChurnRow {
    let n = cfg.members;
    let joins = cfg.rate * cfg.secs as usize;
    let mut server = Server::start(paths, kind, false).await;
    let room = Arc::new(Room::new("/presence/bench", false, n, joins));
    let members = open_clients(&server.addr, &room, n, true, SETUP_BOUND).await;
    let pool = open_clients(&server.addr, &room, cfg.pool, false, SETUP_BOUND).await;
    let (members, pool) = match (members, pool) {
        (Ok(m), Ok(p)) => (Arc::new(m), Arc::new(p)),
        (Err(e), _) | (_, Err(e)) => panic!("{}: {e}", kind.name()),
    };
    eprintln!("  filling the room with {n} members");
    let filled = fill(&members, &room, SETUP_BOUND).await;
    let mut notes = Vec::new();
    if let Err(e) = &filled.status {
        eprintln!(
            "  MEASUREMENT FAILED ({}): the room did not fill: {e}",
            kind.name()
        );
        notes.push(format!("room did not fill: {e}"));
    } else if let Err(e) = server.quiet(&room, SETUP_BOUND).await {
        notes.push(e);
    }
    eprintln!(
        "  filled in {:.2} s; churn: {} joins/s for {} s",
        filled.complete_s(),
        cfg.rate,
        cfg.secs
    );
    server.reset_stats().await;
    let cpu0 = server.cpu();
    let (m0, c0) = (
        room.member_msgs.load(Ordering::Relaxed),
        room.churn_msgs.load(Ordering::Relaxed),
    );
    let t0 = Instant::now();
    let period = Duration::from_secs_f64(1.0 / cfg.rate as f64);
    let joins_ok = Arc::new(AtomicUsize::new(0));
    let leaves_ok = Arc::new(AtomicUsize::new(0));
    let lag_us = Arc::new(AtomicUsize::new(0));
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let tasks: Vec<_> = (0..cfg.pool)
        .map(|c| {
            let (pool, room, failures) = (pool.clone(), room.clone(), failures.clone());
            let (joins_ok, leaves_ok, lag_us) =
                (joins_ok.clone(), leaves_ok.clone(), lag_us.clone());
            let hold = cfg.hold;
            tokio::spawn(async move {
                let client = &pool[c];
                let fail = |e: String| {
                    let mut f = failures.lock().unwrap();
                    if f.len() < 10 {
                        f.push(e);
                    }
                };
                for j in (c..joins).step_by(pool.len()) {
                    let at = t0 + period * j as u32;
                    tokio::time::sleep_until(at).await;
                    lag_us.fetch_max(at.elapsed().as_micros() as usize, Ordering::Relaxed);
                    room.joins[j]
                        .sent_us
                        .store(room.now_us(), Ordering::Relaxed);
                    let bound = at + Duration::from_secs(60);
                    match client
                        .request(subscribe_message(&room.channel, &churn_id(j)), bound)
                        .await
                    {
                        Ok(r) if r.ok => {
                            room.joins[j].ack_us.store(r.at_us, Ordering::Relaxed);
                            joins_ok.fetch_add(1, Ordering::Relaxed)
                        }
                        Ok(r) => {
                            fail(format!("churn-{j} join refused: {:?}", r.error));
                            continue;
                        }
                        Err(e) => {
                            fail(format!("churn-{j} join: {e}"));
                            continue;
                        }
                    };
                    tokio::time::sleep_until(at + hold).await;
                    match client
                        .request(unsubscribe_message(&room.channel), bound)
                        .await
                    {
                        Ok(r) if r.ok => leaves_ok.fetch_add(1, Ordering::Relaxed),
                        Ok(r) => {
                            fail(format!("churn-{j} leave refused: {:?}", r.error));
                            0
                        }
                        Err(e) => {
                            fail(format!("churn-{j} leave: {e}"));
                            0
                        }
                    };
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    let window_s = t0.elapsed().as_secs_f64();
    let end_us = room.now_us();
    let cpu = server.cpu() - cpu0;
    let (m1, c1) = (
        room.member_msgs.load(Ordering::Relaxed),
        room.churn_msgs.load(Ordering::Relaxed),
    );
    if let Err(e) = server.quiet(&room, SETUP_BOUND).await {
        eprintln!("  MEASUREMENT FAILED ({}): {e}", kind.name());
        notes.push(e);
    }
    let drain_s = room
        .last_msg_us
        .load(Ordering::Relaxed)
        .saturating_sub(end_us) as f64
        / 1e6;
    let drain_msgs = room.member_msgs.load(Ordering::Relaxed) - m1;
    let (mut wrong, mut sample) = wrong_members(&members, &room);
    if wrong > 0 {
        eprintln!(
            "  ROSTERS WRONG after churn ({}): {wrong}, e.g. {sample:?}",
            kind.name()
        );
        notes.push(format!(
            "once quiet, {wrong} rosters not the truth, e.g. {sample:?}"
        ));
        // A leave that failed is left to the member's TTL: wait that long for the truth.
        let since = Instant::now();
        while wrong > 0 && since.elapsed() < SETTLE {
            tokio::time::sleep(Duration::from_millis(500)).await;
            (wrong, sample) = wrong_members(&members, &room);
        }
        notes.push(if wrong == 0 {
            format!(
                "every roster the truth {:.1} s after quiet",
                since.elapsed().as_secs_f64()
            )
        } else {
            format!("still {wrong} not the truth {SETTLE:?} after quiet, e.g. {sample:?}")
        });
    }
    if wrong > 0 || !notes.is_empty() {
        let d = diagnose(&mut server, kind, &members, &room).await;
        eprintln!("  {d}");
        notes.push(d);
    }
    let mut latencies_ms: Vec<f64> = room
        .joins
        .iter()
        .filter(|t| t.seen.load(Ordering::Relaxed) as usize == n)
        .map(|t| {
            let (sent, all) = (
                t.sent_us.load(Ordering::Relaxed),
                t.all_us.load(Ordering::Relaxed),
            );
            all.saturating_sub(sent) as f64 / 1000.0
        })
        .collect();
    latencies_ms.sort_by(f64::total_cmp);
    let mut acks_ms: Vec<f64> = room
        .joins
        .iter()
        .filter_map(|t| {
            let (sent, ack) = (
                t.sent_us.load(Ordering::Relaxed),
                t.ack_us.load(Ordering::Relaxed),
            );
            (ack > 0).then(|| ack.saturating_sub(sent) as f64 / 1000.0)
        })
        .collect();
    acks_ms.sort_by(f64::total_cmp);
    if latencies_ms.len() < joins {
        let short: Vec<String> = room
            .joins
            .iter()
            .enumerate()
            .filter(|(_, t)| (t.seen.load(Ordering::Relaxed) as usize) < n)
            .take(3)
            .map(|(j, t)| {
                format!(
                    "churn-{j} reached {} of {n}",
                    t.seen.load(Ordering::Relaxed)
                )
            })
            .collect();
        notes.push(format!(
            "{} of {joins} joins did not reach every member, e.g. {short:?}",
            joins - latencies_ms.len()
        ));
    }
    notes.extend(failures.lock().unwrap().iter().cloned());
    notes.extend(room.errors.lock().unwrap().iter().cloned());
    drop((members, pool));
    server.stop().await;
    ChurnRow {
        kind,
        members: n,
        fill: filled,
        joins,
        joins_ok: joins_ok.load(Ordering::Relaxed),
        leaves_ok: leaves_ok.load(Ordering::Relaxed),
        window_s,
        member_msgs: m1 - m0,
        churn_msgs: c1 - c0,
        cpu,
        drain_s,
        drain_msgs,
        latencies_ms,
        acks_ms,
        max_lag_ms: lag_us.load(Ordering::Relaxed) as f64 / 1000.0,
        wrong,
        notes,
    }
}
