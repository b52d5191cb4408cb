//! Benchmark: one Bayeux service on one process or three, over Redis. Our server on the Redis engine
//! (`RedisEngine`) against Node Faye 1.4.3 with faye-redis 0.2.0, the engine it mirrors, plus our server
//! on the memory engine as the single-process reference. Same WebSocket load generator for all, in one
//! run. Build and run from the workspace root:
//!
//! ```text
//! npm ci --prefix bayeux-redis/bench
//! cargo build --release -p bayeux-redis --examples
//! target/release/examples/engine-bench [--clients 1000] [--messages 100] [--rounds 2] [--window 20]
//!     [--deadline 30] [--only memory,ours-1,ours-3,faye-1,faye-3]
//! ```
//!
//! Configurations (`--only` picks some, e.g. to profile one):
//!
//! - `memory`: our server (`engine-server`, the `bayeux-redis/examples/server.rs` example), one process,
//!   memory engine: the reference.
//! - `ours-1`, `ours-3`: the same server, one or three processes, `--engine redis://...` with the same
//!   URL and namespace.
//! - `faye-1`, `faye-3`: `node bench/faye_redis_server.js`, one or three processes on the same Redis and
//!   namespace.
//!
//! Each measurement starts fresh processes: a plain `redis-server` on a free loopback port (`--save ''
//! --appendonly no`; none for `memory`) and the server processes, each printing `listening on ADDR`.
//! Then:
//!
//! 1. N subscribers open a WebSocket each, handshake and subscribe to one channel (64 in flight, as the
//!    other benchmarks); subscriber i talks to process i mod K. Each then holds a `/meta/connect` and
//!    sends the next one whenever a connect is answered.
//! 2. After a second of quiet, `CONFIG RESETSTAT`, and one publisher on process 1 sends M messages to
//!    the channel, each carrying its sequence number and send time, with at most `--window`
//!    unacknowledged.
//! 3. Every subscriber counts what it receives by sequence number, so messages **missing** (a subscriber
//!    never got sequence i) and **duplicated** (got it more than once) are exact. The measurement ends
//!    when every subscriber has every message, or `--deadline` seconds after the last publish, reporting
//!    what arrived. Delivered messages per second: distinct deliveries / (last distinct delivery - first
//!    publish). Latency: publish send to the subscriber reading it. CPU (from `/proc`) over the publish
//!    phase: the server processes summed, the redis-server, and this generator. `INFO commandstats`
//!    gives Redis commands per delivery.
//!
//! Configurations are interleaved within a round (the order reverses every other round) and the
//! summary takes ratios within each round. Every process is killed by pid when its measurement ends,
//! when an assertion fails, or on Ctrl-C. Loopback only; everything is bounded by timeouts.

// The same WebSocket client and CPU reader as the bayeux and presence benchmarks.
use bench_support::procs::{commandstats, spread, start_redis, start_server};
use bench_support::procstat::cpu_s;
use bench_support::ws;

use clap::Parser;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::process::Command;
use tokio::sync::Semaphore;

const CHANNEL: &str = "/bench/fanout";
/// Subscribers in setup at a time.
const IN_FLIGHT: usize = 64;
/// Every server: Faye's `timeout` (long-poll hold).
const TIMEOUT_SECS: &str = "30";
/// The Redis namespace every process of one service shares.
const NAMESPACE: &str = "bench";
/// Bound on the setup of all subscribers, and on any one reply during it.
const SETUP_WAIT: Duration = Duration::from_secs(120);
const REPLY_WAIT: Duration = Duration::from_secs(30);

#[derive(Parser)]
#[command(
    about = "Redis engine benchmark: our server on 1 and 3 processes against Faye + faye-redis"
)]
struct Args {
    /// Subscribers on the one channel.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Messages the publisher sends per measurement.
    #[arg(long, default_value_t = 100)]
    messages: usize,
    /// Rounds; each runs every configuration once, interleaved.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Publishes unacknowledged at most.
    #[arg(long, default_value_t = 20)]
    window: usize,
    /// Seconds after the last publish before a measurement stops waiting for missing deliveries.
    #[arg(long, default_value_t = 30)]
    deadline: u64,
    /// Configurations to run, comma-separated (default: all five).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "memory,ours-1,ours-3,faye-1,faye-3"
    )]
    only: Vec<Conf>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
enum Conf {
    #[value(name = "memory")]
    Memory,
    #[value(name = "ours-1")]
    Ours1,
    #[value(name = "ours-3")]
    Ours3,
    #[value(name = "faye-1")]
    Faye1,
    #[value(name = "faye-3")]
    Faye3,
}

impl Conf {
    fn name(self) -> &'static str {
        match self {
            Conf::Memory => "ours, memory engine, 1 process",
            Conf::Ours1 => "ours, Redis engine, 1 process",
            Conf::Ours3 => "ours, Redis engine, 3 processes",
            Conf::Faye1 => "Faye 1.4.3 + faye-redis 0.2.0, 1 process",
            Conf::Faye3 => "Faye 1.4.3 + faye-redis 0.2.0, 3 processes",
        }
    }

    fn processes(self) -> usize {
        match self {
            Conf::Ours3 | Conf::Faye3 => 3,
            _ => 1,
        }
    }

    fn redis(self) -> bool {
        self != Conf::Memory
    }
}

/// One subscriber's record: how many times it got each sequence number, and each first delivery's
/// latency.
struct Sub {
    /// Set once its subscribe succeeded; a subscriber whose setup failed is not counted as losing.
    subscribed: bool,
    counts: Vec<u8>,
    latencies_us: Vec<u32>,
}

/// State the subscribers share with the measurement.
struct Shared {
    base: Instant,
    subs: Vec<Mutex<Sub>>,
    subscribed: AtomicU64,
    /// Setup failures (handshake or subscribe refused, socket closed, no reply).
    failed: AtomicU64,
    /// Distinct (subscriber, sequence) deliveries so far, and when the last one arrived.
    distinct: AtomicU64,
    last_distinct_us: AtomicU64,
    /// Unsuccessful `/meta/connect` replies and sockets closed after setup.
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.base.elapsed().as_micros() as u64
    }

    fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.first_error.lock().unwrap().get_or_insert(what);
    }
}

async fn handshake(rd: &mut ws::Reader, wr: &mut ws::Writer) -> Result<String, String> {
    let hs = json!([{"channel": "/meta/handshake", "version": "1.0", "id": "h",
        "supportedConnectionTypes": ["websocket"]}]);
    wr.send(&hs.to_string()).await.map_err(|e| e.to_string())?;
    let text = tokio::time::timeout(REPLY_WAIT, rd.recv())
        .await
        .map_err(|_| "no handshake reply".to_owned())?
        .map_err(|e| e.to_string())?
        .ok_or("closed during handshake")?;
    let reply: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    reply[0]["clientId"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("handshake refused: {text}"))
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
async fn subscriber(addr: String, index: usize, shared: Arc<Shared>, gate: Arc<Semaphore>) {
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
struct Published {
    sent: usize,
    acked: u64,
    refused: u64,
    last_send_us: u64,
    error: Option<String>,
}

/// Publishes `messages` messages with at most `window` unacknowledged. Stops early if no
/// acknowledgement comes for `REPLY_WAIT`.
async fn publisher(addr: &str, shared: &Shared, messages: usize, window: usize) -> Published {
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

struct Row {
    conf: Conf,
    subscribed: u64,
    setup_failed: u64,
    setup_per_s: f64,
    published: usize,
    acked: u64,
    refused: u64,
    expected: u64,
    distinct: u64,
    missing: u64,
    duplicated: u64,
    /// Missing deliveries by the process the subscriber was on.
    missing_by_process: Vec<u64>,
    subscribers_missing: usize,
    complete: bool,
    delivered_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    server_cpu_s: f64,
    redis_cpu_s: f64,
    bench_cpu_s: f64,
    redis_cmds: BTreeMap<String, u64>,
    errors: u64,
    notes: Vec<String>,
}

struct Setup {
    server_bin: PathBuf,
    node_script: PathBuf,
}

async fn measure(setup: &Setup, args: &Args, conf: Conf) -> Row {
    let k = conf.processes();
    let (n, m) = (args.clients, args.messages);
    let mut redis = if conf.redis() {
        Some(start_redis(None).await)
    } else {
        None
    };
    let redis_port = redis.as_ref().map(|r| r.1);
    let mut servers = Vec::new();
    for p in 0..k {
        let name = format!("{} #{}", conf.name(), p + 1);
        let cmd = match conf {
            Conf::Memory | Conf::Ours1 | Conf::Ours3 => {
                let mut cmd = Command::new(&setup.server_bin);
                cmd.args(["--listen", "127.0.0.1:0", "--timeout", TIMEOUT_SECS])
                    .env("RUST_LOG", "warn");
                if let Some(port) = redis_port {
                    cmd.arg("--engine")
                        .arg(format!("redis://127.0.0.1:{port}"))
                        .args(["--namespace", NAMESPACE]);
                }
                cmd
            }
            Conf::Faye1 | Conf::Faye3 => {
                let mut cmd = Command::new("node");
                cmd.arg(&setup.node_script)
                    .arg(redis_port.expect("faye-redis needs Redis").to_string())
                    .args([TIMEOUT_SECS, NAMESPACE]);
                cmd
            }
        };
        servers.push(start_server(&name, cmd).await);
    }
    let addrs: Vec<String> = servers.iter().map(|(_, a)| a.clone()).collect();
    let pids: Vec<String> = servers.iter().map(|(g, _)| g.pid().to_string()).collect();
    let redis_pid = redis.as_ref().map(|r| r.0.pid().to_string());

    let shared = Arc::new(Shared {
        base: Instant::now(),
        subs: (0..n)
            .map(|_| {
                Mutex::new(Sub {
                    subscribed: false,
                    counts: vec![0; m],
                    latencies_us: Vec::with_capacity(m),
                })
            })
            .collect(),
        subscribed: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        distinct: AtomicU64::new(0),
        last_distinct_us: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        first_error: Mutex::new(None),
    });

    // 1. Subscribers, spread round-robin over the processes, 64 in setup at a time.
    let gate = Arc::new(Semaphore::new(IN_FLIGHT));
    let start = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            tokio::spawn(subscriber(
                addrs[i % k].clone(),
                i,
                shared.clone(),
                gate.clone(),
            ))
        })
        .collect();
    let settled = || {
        shared.subscribed.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed)
            >= n as u64
    };
    while !settled() && start.elapsed() < SETUP_WAIT {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let setup_s = start.elapsed().as_secs_f64();
    let subscribed = shared.subscribed.load(Ordering::Relaxed);
    let setup_failed = n as u64 - subscribed;
    tokio::time::sleep(Duration::from_secs(1)).await; // let the held connects arrive

    // 2. The publisher, on process 1.
    if let Some((_, _, con)) = redis.as_mut() {
        redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async::<()>(con)
            .await
            .expect("CONFIG RESETSTAT");
    }
    let cpu = |pids: &[String], redis: &Option<String>| {
        (
            pids.iter().map(|p| cpu_s(p)).sum::<f64>(),
            redis.as_deref().map_or(0.0, cpu_s),
            cpu_s("self"),
        )
    };
    let cpu0 = cpu(&pids, &redis_pid);
    let first_publish_us = shared.now_us();
    let published = publisher(&addrs[0], &shared, m, args.window).await;

    // 3. Until every subscriber has every message sent, or the deadline after the last publish.
    let expected = subscribed * published.sent as u64;
    let deadline = published.last_send_us + args.deadline * 1_000_000;
    while shared.distinct.load(Ordering::Relaxed) < expected && shared.now_us() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let complete = shared.distinct.load(Ordering::Relaxed) >= expected;
    if complete {
        // A moment more for duplicates, which would arrive after the last distinct delivery.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let cpu1 = cpu(&pids, &redis_pid);
    let redis_cmds = match redis.as_mut() {
        Some((_, _, con)) => commandstats(con).await,
        None => BTreeMap::new(),
    };
    for t in &tasks {
        t.abort();
    }
    for t in tasks {
        let _ = t.await;
    }
    for (guard, _) in servers {
        guard.stop().await;
    }
    if let Some((guard, _, _)) = redis {
        guard.stop().await;
    }

    // Count per subscriber: missing and duplicated deliveries of the messages actually sent.
    let (mut missing, mut duplicated) = (0u64, 0u64);
    let mut missing_by_process = vec![0u64; k];
    let mut subscribers_missing = 0;
    let mut latencies = Vec::with_capacity(expected as usize);
    for (i, sub) in shared.subs.iter().enumerate() {
        let sub = sub.lock().unwrap();
        if !sub.subscribed {
            continue; // a setup failure, reported as such
        }
        let received = &sub.counts[..published.sent];
        let lost = received.iter().filter(|&&c| c == 0).count() as u64;
        duplicated += received
            .iter()
            .map(|&c| u64::from(c.saturating_sub(1)))
            .sum::<u64>();
        latencies.extend_from_slice(&sub.latencies_us);
        if lost > 0 {
            missing += lost;
            missing_by_process[i % k] += lost;
            subscribers_missing += 1;
        }
    }
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(f64::NAN, |&us| f64::from(us) / 1000.0)
    };
    let distinct = shared.distinct.load(Ordering::Relaxed);
    let span_us = shared
        .last_distinct_us
        .load(Ordering::Relaxed)
        .saturating_sub(first_publish_us)
        .max(1);
    let mut notes = Vec::new();
    if let Some(e) = &published.error {
        notes.push(format!("publisher: {e}"));
    }
    if let Some(e) = shared.first_error.lock().unwrap().take() {
        notes.push(format!("first client error: {e}"));
    }
    Row {
        conf,
        subscribed,
        setup_failed,
        setup_per_s: subscribed as f64 / setup_s,
        published: published.sent,
        acked: published.acked,
        refused: published.refused,
        expected,
        distinct,
        missing,
        duplicated,
        missing_by_process,
        subscribers_missing,
        complete,
        delivered_per_s: distinct as f64 / (span_us as f64 / 1e6),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        server_cpu_s: cpu1.0 - cpu0.0,
        redis_cpu_s: cpu1.1 - cpu0.1,
        bench_cpu_s: cpu1.2 - cpu0.2,
        redis_cmds,
        errors: shared.errors.load(Ordering::Relaxed),
        notes,
    }
}

fn cmds_per(row: &Row) -> f64 {
    row.redis_cmds.values().sum::<u64>() as f64 / row.distinct.max(1) as f64
}

fn print_round(round: usize, rows: &[Row]) {
    println!("\n### Round {round}\n");
    println!(
        "| configuration | subscribed | published (acked) | delivered | missing | duplicated \
         | delivered msgs/s | p50 ms | p99 ms | server CPU s | redis CPU s | bench CPU s \
         | Redis cmds per delivery | setup/s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {}{} | {} ({}{}) | {} of {}{} | {} | {} | {:.0} | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} | {} | {:.0} |",
            r.conf.name(),
            r.subscribed,
            if r.setup_failed > 0 { format!(" ({} failed)", r.setup_failed) } else { String::new() },
            r.published,
            r.acked,
            if r.refused > 0 { format!(", {} refused", r.refused) } else { String::new() },
            r.distinct,
            r.expected,
            if r.complete { "" } else { " (deadline)" },
            r.missing,
            r.duplicated,
            r.delivered_per_s,
            r.p50_ms,
            r.p99_ms,
            r.server_cpu_s,
            r.redis_cpu_s,
            r.bench_cpu_s,
            if r.conf.redis() { format!("{:.2}", cmds_per(r)) } else { "-".into() },
            r.setup_per_s,
        );
    }
    println!();
    for r in rows {
        if r.conf.redis() {
            let by_name: Vec<String> = r
                .redis_cmds
                .iter()
                .map(|(name, calls)| {
                    format!("{name} {:.2}", *calls as f64 / r.distinct.max(1) as f64)
                })
                .collect();
            println!(
                "- {}: Redis commands per delivery: {}",
                r.conf.name(),
                by_name.join(", ")
            );
        }
        if r.missing > 0 {
            let by: Vec<String> = r
                .missing_by_process
                .iter()
                .enumerate()
                .map(|(p, n)| format!("process {}: {n}", p + 1))
                .collect();
            println!(
                "- {}: {} deliveries missing at {} subscribers ({})",
                r.conf.name(),
                r.missing,
                r.subscribers_missing,
                by.join(", ")
            );
        }
        if r.errors > 0 {
            println!("- {}: {} client errors", r.conf.name(), r.errors);
        }
        for note in &r.notes {
            println!("- {}: {note}", r.conf.name());
        }
    }
}

fn print_summary(rows: &[Row], confs: &[Conf]) {
    let pick = |conf: Conf| -> Vec<&Row> { rows.iter().filter(|r| r.conf == conf).collect() };
    let fig = |rs: &[&Row], f: fn(&Row) -> f64| rs.iter().map(|r| f(r)).collect::<Vec<_>>();
    println!("\n### Summary: median [min–max] over rounds\n");
    println!(
        "| configuration | delivered msgs/s | missing (sum over rounds) | duplicated (sum) | p50 ms | p99 ms \
         | server CPU s | redis CPU s | delivered per server+redis CPU s | Redis cmds per delivery |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for &conf in confs {
        let rs = pick(conf);
        println!(
            "| {} | {} | {} of {} | {} | {} | {} | {} | {} | {} | {} |",
            conf.name(),
            spread(&fig(&rs, |r| r.delivered_per_s), 0),
            rs.iter().map(|r| r.missing).sum::<u64>(),
            rs.iter().map(|r| r.expected).sum::<u64>(),
            rs.iter().map(|r| r.duplicated).sum::<u64>(),
            spread(&fig(&rs, |r| r.p50_ms), 1),
            spread(&fig(&rs, |r| r.p99_ms), 1),
            spread(&fig(&rs, |r| r.server_cpu_s), 2),
            spread(&fig(&rs, |r| r.redis_cpu_s), 2),
            spread(
                &fig(&rs, |r| r.distinct as f64
                    / (r.server_cpu_s + r.redis_cpu_s).max(0.01)),
                0
            ),
            if conf.redis() {
                spread(&fig(&rs, cmds_per), 2)
            } else {
                "-".into()
            },
        );
    }
    // Ratios are taken within each round (the configurations ran side by side), then summarised.
    let ratio = |a: Conf, b: Conf, f: fn(&Row) -> f64| -> Option<String> {
        let (xs, ys) = (pick(a), pick(b));
        if xs.is_empty() || ys.is_empty() {
            return None;
        }
        let v: Vec<f64> = xs.iter().zip(&ys).map(|(x, y)| f(x) / f(y)).collect();
        Some(spread(&v, 2))
    };
    println!("\n### Ratios within each round: median [min–max]\n");
    println!("| ratio | delivered msgs/s | delivered per server+redis CPU s |");
    println!("|---|---|---|");
    let per_cpu = |r: &Row| r.distinct as f64 / (r.server_cpu_s + r.redis_cpu_s).max(0.01);
    for (label, a, b) in [
        ("ours-3 / ours-1", Conf::Ours3, Conf::Ours1),
        ("ours-1 / faye-redis-1", Conf::Ours1, Conf::Faye1),
        ("ours-3 / faye-redis-3", Conf::Ours3, Conf::Faye3),
        ("faye-redis-3 / faye-redis-1", Conf::Faye3, Conf::Faye1),
        ("ours-1 (Redis) / ours memory", Conf::Ours1, Conf::Memory),
    ] {
        if let (Some(rate), Some(cpu)) = (ratio(a, b, |r| r.delivered_per_s), ratio(a, b, per_cpu))
        {
            println!("| {label} | {rate} | {cpu} |");
        }
    }
}

async fn run(setup: Setup, args: Args) {
    let mut rows = Vec::new();
    for round in 1..=args.rounds {
        // Reverse the order every other round, so no configuration always runs on the warmer (or
        // busier) machine.
        let mut order = args.only.clone();
        if round % 2 == 0 {
            order.reverse();
        }
        let mut these = Vec::new();
        for conf in order {
            eprintln!(
                "round {round}: {} ({} subscribers, {} messages)",
                conf.name(),
                args.clients,
                args.messages
            );
            these.push(measure(&setup, &args, conf).await);
        }
        print_round(round, &these);
        rows.extend(these);
    }
    print_summary(&rows, &args.only);
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    // This binary is target/<profile>/examples/engine-bench; the server example is beside it.
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap();
    let setup = Setup {
        server_bin: dir.join("engine-server"),
        node_script: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/faye_redis_server.js"),
    };
    assert!(
        setup.server_bin.exists(),
        "{} is missing: cargo build --release -p bayeux-redis --examples",
        setup.server_bin.display()
    );
    let faye = args
        .only
        .iter()
        .any(|c| matches!(c, Conf::Faye1 | Conf::Faye3));
    let node_modules = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/node_modules/faye-redis");
    assert!(
        !faye || node_modules.exists(),
        "run `npm ci --prefix bayeux-redis/bench` first"
    );
    println!(
        "Redis engine benchmark: {} subscriber(s) on one channel, {} message(s), window {}, {} round(s), \
         deadline {} s after the last publish; load average at start {}",
        args.clients,
        args.messages,
        args.window,
        args.rounds,
        args.deadline,
        load_average()
    );
    // Ctrl-C drops the run, and with it every process guard.
    tokio::select! {
        () = run(setup, args) => {}
        _ = tokio::signal::ctrl_c() => eprintln!("interrupted: stopping every server and redis-server"),
    }
    println!("\nload average at end: {}", load_average());
}
