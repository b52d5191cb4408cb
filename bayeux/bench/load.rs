//! Benchmark: this server against the Node Faye 1.4.3 server under the same WebSocket client load, in
//! one run. Build and run (the Rust server is the `server` example next to this binary; Node Faye comes
//! from `tests/js/node_modules`, so run `npm ci --prefix tests/js` first):
//!
//! ```text
//! cargo build --release -p bayeux --examples && target/release/examples/bench [--clients N] [--messages M]
//! ```
//!
//! For each server: N clients handshake and subscribe over WebSocket (64 at a time): the setup rate; they
//! then idle on a held `/meta/connect`: server memory per idle client (RSS growth / N); then one publisher
//! sends M messages (20 unacknowledged at most) to the channel all N subscribe to: delivered messages per
//! second and publish-to-delivery latency. Prints a Markdown table.

use bench_support::procstat::cpu_s;
use bench_support::ws;

use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{Notify, Semaphore};

const CHANNEL: &str = "/bench/fanout";

struct Target {
    name: &'static str,
    addr: String,
    child: Child,
}

/// Spawns a server that prints `listening on ADDR`, killed when the bench ends.
async fn spawn(name: &'static str, mut cmd: Command) -> Target {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(addr) = line.strip_prefix("listening on ") {
                return addr.to_owned();
            }
        }
        panic!("{name} exited before listening");
    })
    .await
    .unwrap_or_else(|_| panic!("{name} did not start within 20 s"));
    Target { name, addr, child }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[derive(Default)]
struct Stats {
    delivered: AtomicU64,
    last_delivery_us: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
    done: Notify,
}

/// Handshake + subscribe over one socket, then reconnect forever, recording deliveries.
async fn subscriber(
    addr: String,
    base: Instant,
    stats: Arc<Stats>,
    setup: Arc<Semaphore>,
    setups_done: Arc<AtomicU64>,
    target: u64,
) {
    let permit = setup.acquire_owned().await.unwrap();
    let (mut rd, mut wr) = ws::connect(&addr, "/faye").await.expect("ws connect");
    let hs = json!([{"channel": "/meta/handshake", "version": "1.0", "id": "h",
        "supportedConnectionTypes": ["websocket"]}]);
    wr.send(&hs.to_string()).await.unwrap();
    let reply: Value = serde_json::from_str(&rd.recv().await.unwrap().unwrap()).unwrap();
    let id = reply[0]["clientId"].as_str().expect("clientId").to_owned();
    let sub =
        json!([{"channel": "/meta/subscribe", "clientId": id, "subscription": CHANNEL, "id": "s"}]);
    wr.send(&sub.to_string()).await.unwrap();
    loop {
        let text = rd
            .recv()
            .await
            .unwrap()
            .expect("socket closed during setup");
        if text.contains("/meta/subscribe") {
            break;
        }
    }
    setups_done.fetch_add(1, Ordering::Relaxed);
    drop(permit);
    let connect =
        json!([{"channel": "/meta/connect", "clientId": id, "connectionType": "websocket"}])
            .to_string();
    wr.send(&connect).await.unwrap();
    while let Ok(Some(text)) = rd.recv().await {
        let Ok(Value::Array(messages)) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let now = base.elapsed().as_micros() as u64;
        let mut mine = Vec::new();
        for m in &messages {
            match m["channel"].as_str() {
                Some("/meta/connect") => wr.send(&connect).await.unwrap(),
                Some(CHANNEL) => {
                    mine.push(now.saturating_sub(m["data"]["t"].as_u64().unwrap_or(now)))
                }
                _ => {}
            }
        }
        if !mine.is_empty() {
            let n = mine.len() as u64;
            stats.latencies_us.lock().unwrap().extend(mine);
            stats.last_delivery_us.fetch_max(now, Ordering::Relaxed);
            if stats.delivered.fetch_add(n, Ordering::Relaxed) + n >= target {
                stats.done.notify_one();
            }
        }
    }
}

/// Publishes `messages` messages with at most `window` unacknowledged; returns when all are sent.
async fn publisher(addr: &str, base: Instant, messages: usize, window: usize) {
    let (mut rd, mut wr) = ws::connect(addr, "/faye").await.expect("ws connect");
    let hs = json!([{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["websocket"]}]);
    wr.send(&hs.to_string()).await.unwrap();
    let reply: Value = serde_json::from_str(&rd.recv().await.unwrap().unwrap()).unwrap();
    let id = reply[0]["clientId"].as_str().unwrap().to_owned();
    let credits = Arc::new(Semaphore::new(window));
    let acks = credits.clone();
    let reader = tokio::spawn(async move {
        while let Ok(Some(text)) = rd.recv().await {
            let n = text.matches("\"successful\"").count();
            acks.add_permits(n);
        }
    });
    for i in 0..messages {
        credits.acquire().await.unwrap().forget();
        let t = base.elapsed().as_micros() as u64;
        let msg = json!([{"channel": CHANNEL, "clientId": id, "id": i.to_string(),
            "data": {"t": t, "i": i, "text": "hello from the benchmark"}}]);
        wr.send(&msg.to_string()).await.unwrap();
    }
    // Every credit back means every publish was acknowledged; closing earlier could drop the last ones.
    let all = u32::try_from(window).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(60), credits.acquire_many(all)).await;
    reader.abort();
}

struct Row {
    name: &'static str,
    setup_per_s: f64,
    kib_per_client: f64,
    delivered: u64,
    delivered_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    server_cpu_s: f64,
    bench_cpu_s: f64,
}

async fn measure(target: Target, clients: usize, messages: usize) -> Row {
    let pid = target.child.id().unwrap();
    let before = rss_kib(pid);
    let base = Instant::now();
    let stats = Arc::new(Stats::default());
    let setup = Arc::new(Semaphore::new(64));
    let done = Arc::new(AtomicU64::new(0));
    let expected = (clients * messages) as u64;
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (a, s, sem, d) = (
                target.addr.clone(),
                stats.clone(),
                setup.clone(),
                done.clone(),
            );
            tokio::spawn(subscriber(a, base, s, sem, d, expected))
        })
        .collect();
    // Setup ends when every client holds its subscription (all 64 permits free and count complete).
    while done.load(Ordering::Relaxed) < clients as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{}: setup took over 120 s",
            target.name
        );
    }
    let setup_s = start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await; // let the held connects arrive
    let idle = rss_kib(pid);
    let (server_cpu0, bench_cpu0) = (cpu_s(&pid.to_string()), cpu_s("self"));
    let first_publish_us = base.elapsed().as_micros() as u64;
    let publishing = publisher(&target.addr, base, messages, 20);
    let waiting = tokio::time::timeout(Duration::from_secs(60), stats.done.notified());
    let (_, finished) = tokio::join!(publishing, waiting);
    if finished.is_err() {
        eprintln!(
            "{}: timed out with {} of {expected} delivered",
            target.name,
            stats.delivered.load(Ordering::Relaxed)
        );
    }
    let server_cpu = cpu_s(&pid.to_string()) - server_cpu0;
    let bench_cpu = cpu_s("self") - bench_cpu0;
    for t in tasks {
        t.abort();
    }
    let delivered = stats.delivered.load(Ordering::Relaxed);
    let span_us = stats
        .last_delivery_us
        .load(Ordering::Relaxed)
        .saturating_sub(first_publish_us)
        .max(1);
    let mut lat = std::mem::take(&mut *stats.latencies_us.lock().unwrap());
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    Row {
        name: target.name,
        setup_per_s: clients as f64 / setup_s,
        kib_per_client: idle.saturating_sub(before) as f64 / clients as f64,
        delivered,
        delivered_per_s: delivered as f64 / (span_us as f64 / 1e6),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        server_cpu_s: server_cpu,
        bench_cpu_s: bench_cpu,
    }
}

#[tokio::main]
async fn main() {
    let mut clients = 1000;
    let mut messages = 200;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v: usize = args
            .next()
            .and_then(|v| v.parse().ok())
            .expect("a number after the flag");
        match a.as_str() {
            "--clients" => clients = v,
            "--messages" => messages = v,
            _ => panic!("usage: bench [--clients N] [--messages M]"),
        }
    }
    let exe_dir: PathBuf = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_owned();
    let server_bin = exe_dir.join("server");
    assert!(
        server_bin.exists(),
        "build the server first: cargo build --release -p bayeux --examples"
    );
    let faye_js = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/faye_server.js");

    let mut rust = Command::new(server_bin);
    rust.args(["--listen", "127.0.0.1:0", "--timeout", "30"])
        .env("RUST_LOG", "warn");
    let rust_row = measure(spawn("bayeux (Rust)", rust).await, clients, messages).await;
    let mut faye = Command::new("node");
    faye.arg(faye_js).arg("30");
    let faye_row = measure(spawn("Faye 1.4.3 (Node)", faye).await, clients, messages).await;

    println!("{clients} WebSocket subscribers on one channel, {messages} messages published (window 20)\n");
    println!(
        "| server | setup (handshake+subscribe)/s | delivered msgs/s | p50 latency ms | p99 latency ms \
         | server CPU s (fan-out) | delivered per server CPU s | bench client CPU s \
         | RSS per idle client KiB | delivered |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in [&rust_row, &faye_row] {
        println!(
            "| {} | {:.0} | {:.0} | {:.1} | {:.1} | {:.2} | {:.0} | {:.2} | {:.1} | {} |",
            r.name,
            r.setup_per_s,
            r.delivered_per_s,
            r.p50_ms,
            r.p99_ms,
            r.server_cpu_s,
            r.delivered as f64 / r.server_cpu_s.max(0.01),
            r.bench_cpu_s,
            r.kib_per_client,
            r.delivered
        );
    }
    let per_cpu = |r: &Row| r.delivered as f64 / r.server_cpu_s.max(0.01);
    println!(
        "\nratio (bayeux / Faye): delivered msgs/s {:.1}x, delivered per server CPU second {:.1}x, setup rate {:.1}x, memory per idle client {:.2}x",
        rust_row.delivered_per_s / faye_row.delivered_per_s,
        per_cpu(&rust_row) / per_cpu(&faye_row),
        rust_row.setup_per_s / faye_row.setup_per_s,
        rust_row.kib_per_client / faye_row.kib_per_client
    );
}
