//! Benchmark (issue 4): the presence server (`faye-presence`, its rosters in the presence Redis module)
//! against Node Faye 1.4.3 + faye-presence 0.0.3 (npm), under the same WebSocket client load, on the same
//! machine, in one run. Build and run from the workspace root:
//!
//! ```text
//! npm ci --prefix shim/bench
//! cargo build --release -p presence-module -p faye-presence -p presence-shim --bins --examples
//! target/release/examples/presence-bench [--rounds 3] [--clients 200,1000] [--probes 5] [--server ours|theirs]
//! ```
//!
//! Each measurement gets fresh processes: a `redis-server` on a free loopback port (ours loads
//! `libpresence.so` from the same build; theirs is plain) and the server pointed at it (ours:
//! `faye-presence --value object`, the member value faye-presence sends; theirs:
//! `bench/faye_presence_server.js`). Both are driven by the identical generator below:
//!
//! 1. N clients open a WebSocket, handshake and send a held `/meta/connect` (64 in flight).
//! 2. `CONFIG RESETSTAT`; the N clients send `/meta/subscribe` to one shared channel with
//!    `ext.presence = {id, data}`, 64 in flight: subscribes per second (N / time until the last reply)
//!    and each subscribe's latency (send to reply). The join diffs each subscribe fans out to the members
//!    already there are part of the load; the phase's CPU and Redis counts run until everything is quiet.
//!    `INFO commandstats` then gives Redis commands per join.
//! 3. Presence only, `--probes` times: one more client subscribes; the time from its send until every one
//!    of the N members has read `{subscribe: {probe: ...}}`; then it unsubscribes, and the same for the
//!    `{unsubscribe: {probe: null}}` leave diff.
//! 4. `CONFIG RESETSTAT`; the N clients unsubscribe (64 in flight); once quiet, Redis commands per leave.
//!
//! The same steps run twice more on each server: each client on a presence channel of its own
//! (`/presence/solo/<i>`: a roster of one, no diffs, so the presence cost of a subscribe without the
//! fan-out), and every client on one non-presence channel (`/bench/plain`, the same message with the same
//! ext): the plain-subscribe baseline, whose probes publish one message instead (the same N-way fan-out
//! without presence, as a control). Servers are interleaved within a round, rounds repeated; the summary
//! reports medians and the spread, and ratios taken within each round. Every spawned process (servers, redis-servers) is killed by
//! pid when its measurement ends, when an assertion fails, or on Ctrl-C. Loopback only.
//! `PRESENCE_BENCH_TRACE=1` prints every frame the first client reads (to see both servers' traffic).

// The same minimal WebSocket client as the bayeux benchmark, so both benchmarks drive servers alike.
use bench_support::procs::{commandstats, median, spread, start_redis, start_server};
use bench_support::procstat::cpu_s;
use bench_support::ws;

use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::process::Command;
use tokio::sync::{oneshot, Notify, Semaphore};

const PRESENCE_CHANNEL: &str = "/presence/bench";
const PLAIN_CHANNEL: &str = "/bench/plain";
/// Presence with no fan-out: client i subscribes to `/presence/solo/i` alone (a roster of one, no diffs).
const SOLO_PREFIX: &str = "/presence/solo/";
/// Clients in flight at a time during setup, subscribe and unsubscribe phases.
const IN_FLIGHT: usize = 64;
/// Both servers: Faye's `timeout` (long-poll hold), and our presence TTL.
const TIMEOUT_SECS: &str = "30";
/// Bound on every wait for a reply, a fan-out or a quiet system.
const WAIT: Duration = Duration::from_secs(120);

async fn reset_stats(con: &mut redis::aio::MultiplexedConnection) {
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async::<()>(con)
        .await
        .expect("CONFIG RESETSTAT");
}

/// What the members are waiting for during a probe: the first frame containing `needle`, per member.
struct Watch {
    needle: String,
    members: usize,
    seen: Vec<bool>,
    arrivals_us: Vec<u64>,
    done: Arc<Notify>,
}

/// State every client's reader shares.
struct Shared {
    base: Instant,
    /// `"channel":"<the channel>"`, counted in each frame: channel messages (roster diffs) received.
    pattern: String,
    channel_msgs: AtomicU64,
    last_msg_us: AtomicU64,
    watch: Mutex<Option<Watch>>,
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.base.elapsed().as_micros() as u64
    }
}

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Value>>>>;

/// One Bayeux client over one WebSocket: a reader task answers `/meta/connect` with the next connect,
/// hands replies to whoever waits for their `id`, and counts channel messages.
struct Client {
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
    async fn open(addr: &str, index: usize, shared: Arc<Shared>) -> io::Result<Client> {
        let (mut rd, mut wr) = ws::connect(addr, "/faye").await?;
        let hs = json!([{"channel": "/meta/handshake", "version": "1.0", "id": "h",
            "supportedConnectionTypes": ["websocket"]}]);
        wr.send(&hs.to_string()).await?;
        let text = rd
            .recv()
            .await?
            .ok_or_else(|| io::Error::other("closed during handshake"))?;
        let reply: Value = serde_json::from_str(&text).map_err(io::Error::other)?;
        let id = reply[0]["clientId"]
            .as_str()
            .ok_or_else(|| io::Error::other(format!("handshake refused: {text}")))?
            .to_owned();
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
    async fn publish(&self, channel: &str, data: Value) -> io::Result<()> {
        let message = json!([{"channel": channel, "clientId": self.id, "data": data}]);
        self.writer.lock().await.send(&message.to_string()).await
    }

    /// Sends one message (its `id` and `clientId` filled in) and waits for the reply with that id.
    async fn request(&self, mut message: Value) -> io::Result<Value> {
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

fn subscribe_message(channel: &str, presence_id: &str) -> Value {
    json!({"channel": "/meta/subscribe", "subscription": channel,
        "ext": {"presence": {"id": presence_id, "data": {"name": format!("User {presence_id}"), "status": "online"}}}})
}

fn unsubscribe_message(channel: &str) -> Value {
    json!({"channel": "/meta/unsubscribe", "subscription": channel})
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Ours,
    Theirs,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Ours => "faye-presence (Rust) + module",
            Kind::Theirs => "Node Faye 1.4.3 + faye-presence 0.0.3",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Mode {
    /// Every client on one presence channel (the issue's load).
    Presence,
    /// Every client on a presence channel of its own.
    Solo,
    /// Every client on one non-presence channel.
    Plain,
}

impl Mode {
    /// The channel client `i` subscribes to.
    fn channel(self, i: usize) -> String {
        match self {
            Mode::Presence => PRESENCE_CHANNEL.to_owned(),
            Mode::Solo => format!("{SOLO_PREFIX}{i}"),
            Mode::Plain => PLAIN_CHANNEL.to_owned(),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Mode::Presence => "/presence/bench (shared)",
            Mode::Solo => "/presence/solo/i (one each)",
            Mode::Plain => "/bench/plain (shared)",
        }
    }

    /// What every channel message of this mode's channels starts with.
    fn pattern(self) -> String {
        let prefix = match self {
            Mode::Presence => PRESENCE_CHANNEL,
            Mode::Solo => SOLO_PREFIX,
            Mode::Plain => PLAIN_CHANNEL,
        };
        format!("\"channel\":\"{prefix}")
    }
}

/// One probe: a client joins the N-member channel, then leaves it.
struct Probe {
    reply_ms: f64,
    /// Roster size in the probe's subscribe reply (N + 1 when everyone is there).
    roster: usize,
    join_all_ms: f64,
    join_p50_ms: f64,
    leave_all_ms: f64,
    /// Members that got the join / the leave (N when complete).
    joined_seen: usize,
    left_seen: usize,
}

struct Row {
    kind: Kind,
    mode: Mode,
    clients: usize,
    subs_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    failed: usize,
    server_cpu_s: f64,
    redis_cpu_s: f64,
    bench_cpu_s: f64,
    diffs: u64,
    join_cmds: BTreeMap<String, u64>,
    unsubs_per_s: f64,
    leave_cmds: BTreeMap<String, u64>,
    probes: Vec<Probe>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

struct Setup {
    server_bin: PathBuf,
    module: PathBuf,
    node_script: PathBuf,
}

/// Waits until no channel message arrived for 300 ms and Redis' command counts did not move over it.
async fn quiet(shared: &Shared, con: &mut redis::aio::MultiplexedConnection) {
    let start = Instant::now();
    let mut last: Option<BTreeMap<String, u64>> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stats = commandstats(con).await;
        let idle = shared.now_us() - shared.last_msg_us.load(Ordering::Relaxed) >= 300_000;
        if idle && last.as_ref() == Some(&stats) {
            return;
        }
        last = Some(stats);
        assert!(start.elapsed() < WAIT, "not quiet after {WAIT:?}");
    }
}

/// Runs `op` for every client, `IN_FLIGHT` at a time; returns the wall time and each latency (`None`: failed).
async fn each_client<F, Fut>(clients: &Arc<Vec<Client>>, op: F) -> (f64, Vec<Option<f64>>)
where
    F: Fn(Arc<Vec<Client>>, usize) -> Fut,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let gate = Arc::new(Semaphore::new(IN_FLIGHT));
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients.len())
        .map(|i| {
            let gate = gate.clone();
            let work = op(clients.clone(), i);
            tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.unwrap();
                let t = Instant::now();
                let ok = work.await;
                ok.then(|| t.elapsed().as_secs_f64() * 1000.0)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(tasks.len());
    for t in tasks {
        latencies.push(t.await.unwrap_or(None));
    }
    (start.elapsed().as_secs_f64(), latencies)
}

async fn wait_watch(shared: &Shared, needle: String, members: usize) -> (Arc<Notify>, u64) {
    let done = Arc::new(Notify::new());
    *shared.watch.lock().unwrap() = Some(Watch {
        needle,
        members,
        seen: vec![false; members],
        arrivals_us: Vec::with_capacity(members),
        done: done.clone(),
    });
    (done, shared.now_us())
}

/// Ends the watch: (time until the last member, median member, members reached) in ms from `t0`.
async fn finish_watch(shared: &Shared, done: Arc<Notify>, t0: u64) -> (f64, f64, usize) {
    let _ = tokio::time::timeout(Duration::from_secs(30), done.notified()).await;
    let w = shared.watch.lock().unwrap().take().unwrap();
    let mut arrivals: Vec<f64> = w
        .arrivals_us
        .iter()
        .map(|&a| a.saturating_sub(t0) as f64 / 1000.0)
        .collect();
    arrivals.sort_by(f64::total_cmp);
    let all = if arrivals.len() == w.members {
        *arrivals.last().unwrap_or(&f64::NAN)
    } else {
        f64::NAN
    };
    (all, percentile(&arrivals, 0.5), arrivals.len())
}

async fn measure(setup: &Setup, kind: Kind, mode: Mode, n: usize, probes: usize) -> Row {
    let channel = mode.channel(0);
    let module = (kind == Kind::Ours).then_some(setup.module.as_path());
    let (redis, redis_port, mut con) = start_redis(module).await;
    let (server, addr) = match kind {
        Kind::Ours => {
            let mut cmd = Command::new(&setup.server_bin);
            cmd.args(["--listen", "127.0.0.1:0", "--timeout", TIMEOUT_SECS])
                .args(["--ttl", TIMEOUT_SECS, "--value", "object", "--redis"])
                .arg(format!("redis://127.0.0.1:{redis_port}"))
                .env("RUST_LOG", "warn");
            start_server(kind.name(), cmd).await
        }
        Kind::Theirs => {
            let mut cmd = Command::new("node");
            cmd.arg(&setup.node_script)
                .arg(redis_port.to_string())
                .arg(TIMEOUT_SECS);
            start_server(kind.name(), cmd).await
        }
    };
    let (server_pid, redis_pid) = (server.pid().to_string(), redis.pid().to_string());
    let shared = Arc::new(Shared {
        base: Instant::now(),
        pattern: mode.pattern(),
        channel_msgs: AtomicU64::new(0),
        last_msg_us: AtomicU64::new(0),
        watch: Mutex::new(None),
    });

    // 1. Handshake + held connect, 64 at a time.
    let gate = Arc::new(Semaphore::new(IN_FLIGHT));
    let opening: Vec<_> = (0..n)
        .map(|i| {
            let (gate, addr, shared) = (gate.clone(), addr.clone(), shared.clone());
            tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.unwrap();
                Client::open(&addr, i, shared).await
            })
        })
        .collect();
    let mut clients = Vec::with_capacity(n);
    for t in opening {
        clients.push(
            t.await
                .unwrap()
                .unwrap_or_else(|e| panic!("{}: client setup failed: {e}", kind.name())),
        );
    }
    let clients = Arc::new(clients);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 2. Subscribes, 64 in flight.
    reset_stats(&mut con).await;
    let cpu0 = (cpu_s(&server_pid), cpu_s(&redis_pid), cpu_s("self"));
    let (secs, latencies) = each_client(&clients, |clients, i| async move {
        let message = subscribe_message(&mode.channel(i), &format!("user-{i}"));
        matches!(clients[i].request(message).await, Ok(r) if r["successful"] == true)
    })
    .await;
    quiet(&shared, &mut con).await;
    let cpu1 = (cpu_s(&server_pid), cpu_s(&redis_pid), cpu_s("self"));
    let join_cmds = commandstats(&mut con).await;
    let diffs = shared.channel_msgs.load(Ordering::Relaxed);
    let failed = latencies.iter().filter(|l| l.is_none()).count();
    let mut lat: Vec<f64> = latencies.into_iter().flatten().collect();
    lat.sort_by(f64::total_cmp);

    // 3. Join and leave diffs reaching all N members. On the plain channel, the control: one published
    //    message reaching all N subscribers (the same fan-out without presence, on the same server).
    let mut probe_rows = Vec::new();
    for k in 0..if mode == Mode::Solo { 0 } else { probes } {
        let probe = Client::open(&addr, n + k, shared.clone())
            .await
            .expect("probe client");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let id = format!("probe-{k}");
        if mode == Mode::Plain {
            let (done, t0) = wait_watch(&shared, format!("\"probe\":\"{id}\""), n).await;
            probe
                .publish(&channel, json!({"probe": id}))
                .await
                .expect("probe publish");
            let (all_ms, p50_ms, seen) = finish_watch(&shared, done, t0).await;
            drop(probe);
            quiet(&shared, &mut con).await;
            probe_rows.push(Probe {
                reply_ms: f64::NAN,
                roster: 0,
                join_all_ms: all_ms,
                join_p50_ms: p50_ms,
                leave_all_ms: f64::NAN,
                joined_seen: seen,
                left_seen: 0,
            });
            continue;
        }
        let (done, t0) = wait_watch(&shared, format!("{{\"subscribe\":{{\"{id}\""), n).await;
        let reply = probe
            .request(subscribe_message(&channel, &id))
            .await
            .expect("probe subscribe");
        let reply_ms = (shared.now_us() - t0) as f64 / 1000.0;
        let roster = reply["ext"]["presence"]["subscribe"]
            .as_object()
            .map_or(0, |r| r.len());
        let (join_all_ms, join_p50_ms, joined_seen) = finish_watch(&shared, done, t0).await;
        let (done, t0) = wait_watch(&shared, format!("{{\"unsubscribe\":{{\"{id}\""), n).await;
        probe
            .request(unsubscribe_message(&channel))
            .await
            .expect("probe unsubscribe");
        let (leave_all_ms, _, left_seen) = finish_watch(&shared, done, t0).await;
        drop(probe);
        quiet(&shared, &mut con).await;
        probe_rows.push(Probe {
            reply_ms,
            roster,
            join_all_ms,
            join_p50_ms,
            leave_all_ms,
            joined_seen,
            left_seen,
        });
    }

    // 4. Unsubscribes, 64 in flight; Redis commands per leave once everything is quiet.
    quiet(&shared, &mut con).await;
    reset_stats(&mut con).await;
    let (unsub_secs, _) = each_client(&clients, |clients, i| async move {
        matches!(clients[i].request(unsubscribe_message(&mode.channel(i))).await, Ok(r) if r["successful"] == true)
    })
    .await;
    quiet(&shared, &mut con).await;
    let leave_cmds = commandstats(&mut con).await;

    drop(clients);
    drop(server);
    drop(redis);
    Row {
        kind,
        mode,
        clients: n,
        subs_per_s: n as f64 / secs,
        p50_ms: percentile(&lat, 0.50),
        p99_ms: percentile(&lat, 0.99),
        failed,
        server_cpu_s: cpu1.0 - cpu0.0,
        redis_cpu_s: cpu1.1 - cpu0.1,
        bench_cpu_s: cpu1.2 - cpu0.2,
        diffs,
        join_cmds,
        unsubs_per_s: n as f64 / unsub_secs,
        leave_cmds,
        probes: probe_rows,
    }
}

fn per(cmds: &BTreeMap<String, u64>, n: usize) -> f64 {
    cmds.values().sum::<u64>() as f64 / n as f64
}

fn breakdown(cmds: &BTreeMap<String, u64>, n: usize) -> String {
    cmds.iter()
        .map(|(name, calls)| format!("{name} {:.2}", *calls as f64 / n as f64))
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_round(round: usize, rows: &[Row]) {
    println!("\n### Round {round}\n");
    println!(
        "| server | channel | clients | subscribes/s | p50 ms | p99 ms | failed | server CPU s | redis CPU s \
         | bench CPU s | diffs received | Redis cmds per join | unsubscribes/s | Redis cmds per leave |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {:.0} | {:.1} | {:.1} | {} | {:.2} | {:.2} | {:.2} | {} | {:.2} | {:.0} | {:.2} |",
            r.kind.name(),
            r.mode.label(),
            r.clients,
            r.subs_per_s,
            r.p50_ms,
            r.p99_ms,
            r.failed,
            r.server_cpu_s,
            r.redis_cpu_s,
            r.bench_cpu_s,
            r.diffs,
            per(&r.join_cmds, r.clients),
            r.unsubs_per_s,
            per(&r.leave_cmds, r.clients)
        );
    }
    for r in rows.iter().filter(|r| r.mode != Mode::Plain) {
        println!(
            "\n{} on {} at {} clients, Redis commands per join: {}; per leave: {}",
            r.kind.name(),
            r.mode.label(),
            r.clients,
            breakdown(&r.join_cmds, r.clients),
            breakdown(&r.leave_cmds, r.clients)
        );
        for (k, p) in r.probes.iter().enumerate() {
            println!(
                "- probe {k}: reply {:.1} ms (roster of {}), join diff at all {} members {:.1} ms (median member {:.1} ms, reached {}), leave diff at all {:.1} ms (reached {})",
                p.reply_ms, p.roster, r.clients, p.join_all_ms, p.join_p50_ms, p.joined_seen, p.leave_all_ms, p.left_seen
            );
        }
    }
    for r in rows.iter().filter(|r| r.mode == Mode::Plain) {
        let ms: Vec<String> = r
            .probes
            .iter()
            .map(|p| format!("{:.1}", p.join_all_ms))
            .collect();
        println!(
            "\n{} at {} clients, one publish on the plain channel at all subscribers (ms): {}",
            r.kind.name(),
            r.clients,
            ms.join(", ")
        );
    }
}

fn print_summary(rows: &[Row], sizes: &[usize]) {
    let pick = |kind: Kind, mode: Mode, n: usize| -> Vec<&Row> {
        rows.iter()
            .filter(|r| r.kind == kind && r.mode == mode && r.clients == n)
            .collect()
    };
    let fig = |rs: &[&Row], f: fn(&Row) -> f64| rs.iter().map(|r| f(r)).collect::<Vec<_>>();
    println!("\n### Summary: median [min–max] over rounds\n");
    println!("| server | channel | clients | subscribes/s | p50 ms | p99 ms | server+redis CPU s | Redis cmds per join | Redis cmds per leave |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for &n in sizes {
        for mode in [Mode::Presence, Mode::Solo, Mode::Plain] {
            for kind in [Kind::Ours, Kind::Theirs] {
                let rs = pick(kind, mode, n);
                println!(
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    kind.name(),
                    mode.label(),
                    n,
                    spread(&fig(&rs, |r| r.subs_per_s), 0),
                    spread(&fig(&rs, |r| r.p50_ms), 1),
                    spread(&fig(&rs, |r| r.p99_ms), 1),
                    spread(&fig(&rs, |r| r.server_cpu_s + r.redis_cpu_s), 2),
                    spread(&fig(&rs, |r| per(&r.join_cmds, r.clients)), 2),
                    spread(&fig(&rs, |r| per(&r.leave_cmds, r.clients)), 2),
                );
            }
        }
    }
    // Ratios are taken within each round (the two servers ran side by side), then summarised.
    let ratio = |n: usize, f: &dyn Fn(&Row, &Row) -> f64, a: (Kind, Mode), b: (Kind, Mode)| {
        let (xs, ys) = (pick(a.0, a.1, n), pick(b.0, b.1, n));
        let v: Vec<f64> = xs.iter().zip(&ys).map(|(x, y)| f(x, y)).collect();
        spread(&v, 2)
    };
    let ours_p = (Kind::Ours, Mode::Presence);
    let theirs_p = (Kind::Theirs, Mode::Presence);
    let ours_plain = (Kind::Ours, Mode::Plain);
    let theirs_plain = (Kind::Theirs, Mode::Plain);
    let ours_solo = (Kind::Ours, Mode::Solo);
    let theirs_solo = (Kind::Theirs, Mode::Solo);
    let subs = |x: &Row, y: &Row| x.subs_per_s / y.subs_per_s;
    let p50 = |x: &Row, y: &Row| x.p50_ms / y.p50_ms;
    let p99 = |x: &Row, y: &Row| x.p99_ms / y.p99_ms;
    println!("\n### Ratios within each round: median [min–max]\n");
    println!("Ours against theirs (target: presence subscribes/s ≥ 5x):\n");
    println!("| clients | channels | subscribes/s ours / theirs | p50 latency theirs / ours | p99 theirs / ours |");
    println!("|---|---|---|---|---|");
    for &n in sizes {
        for (label, ours, theirs) in [
            (Mode::Presence.label(), ours_p, theirs_p),
            (Mode::Solo.label(), ours_solo, theirs_solo),
            (Mode::Plain.label(), ours_plain, theirs_plain),
        ] {
            println!(
                "| {n} | {label} | {} | {} | {} |",
                ratio(n, &subs, ours, theirs),
                ratio(n, &|x, y| p50(y, x), ours, theirs),
                ratio(n, &|x, y| p99(y, x), ours, theirs),
            );
        }
    }
    println!("\nPresence against plain subscribes on the same server (target on ours: p50 latency ≤ 1.5x):\n");
    println!("| clients | server | presence channels | p50 presence / plain | p99 presence / plain | subscribes/s presence / plain |");
    println!("|---|---|---|---|---|---|");
    for &n in sizes {
        for (kind, plain) in [(Kind::Ours, ours_plain), (Kind::Theirs, theirs_plain)] {
            for mode in [Mode::Presence, Mode::Solo] {
                let pres = (kind, mode);
                println!(
                    "| {n} | {} | {} | {} | {} | {} |",
                    kind.name(),
                    mode.label(),
                    ratio(n, &p50, pres, plain),
                    ratio(n, &p99, pres, plain),
                    ratio(n, &subs, pres, plain),
                );
            }
        }
    }
    println!(
        "\n### Join and leave diffs reaching every member: median [min–max] over all probes\n"
    );
    println!("| server | members | probe subscribe reply ms | join diff at all members ms | join diff at median member ms | leave diff at all members ms | control: one publish on the plain channel at all subscribers ms |");
    println!("|---|---|---|---|---|---|---|");
    for &n in sizes {
        for kind in [Kind::Ours, Kind::Theirs] {
            let probes_of = |mode: Mode| -> Vec<&Probe> {
                pick(kind, mode, n)
                    .into_iter()
                    .flat_map(|r| &r.probes)
                    .collect()
            };
            let (ps, control) = (probes_of(Mode::Presence), probes_of(Mode::Plain));
            let f = |ps: &[&Probe], g: fn(&Probe) -> f64| {
                spread(&ps.iter().map(|p| g(p)).collect::<Vec<_>>(), 1)
            };
            println!(
                "| {} | {n} | {} | {} | {} | {} | {} |",
                kind.name(),
                f(&ps, |p| p.reply_ms),
                f(&ps, |p| p.join_all_ms),
                f(&ps, |p| p.join_p50_ms),
                f(&ps, |p| p.leave_all_ms),
                f(&control, |p| p.join_all_ms)
            );
        }
    }
    // After the table, so it stays one table.
    println!();
    for &n in sizes {
        let all = |kind: Kind| {
            median(
                &pick(kind, Mode::Presence, n)
                    .into_iter()
                    .flat_map(|r| r.probes.iter().map(|p| p.join_all_ms))
                    .collect::<Vec<_>>(),
            )
        };
        println!(
            "join diff at all {n} members, theirs / ours (medians): {:.2}",
            all(Kind::Theirs) / all(Kind::Ours)
        );
    }
}

async fn run(setup: Setup, rounds: usize, sizes: Vec<usize>, probes: usize, kinds: Vec<Kind>) {
    let mut rows = Vec::new();
    for round in 1..=rounds {
        let mut these = Vec::new();
        for &n in &sizes {
            // Alternate which server goes first, so neither always runs on the warmer (or busier) machine.
            let mut order = [
                (Kind::Ours, Mode::Presence),
                (Kind::Theirs, Mode::Presence),
                (Kind::Ours, Mode::Solo),
                (Kind::Theirs, Mode::Solo),
                (Kind::Ours, Mode::Plain),
                (Kind::Theirs, Mode::Plain),
            ];
            if round % 2 == 0 {
                order.swap(0, 1);
                order.swap(2, 3);
                order.swap(4, 5);
            }
            for (kind, mode) in order.into_iter().filter(|(k, _)| kinds.contains(k)) {
                eprintln!(
                    "round {round}: {} on {} with {n} clients",
                    kind.name(),
                    mode.label()
                );
                these.push(measure(&setup, kind, mode, n, probes).await);
            }
        }
        print_round(round, &these);
        rows.extend(these);
    }
    print_summary(&rows, &sizes);
}

#[tokio::main]
async fn main() {
    let (mut rounds, mut sizes, mut probes) = (3, vec![200, 1000], 5);
    let mut kinds = vec![Kind::Ours, Kind::Theirs];
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().expect("a value after the flag");
        match flag.as_str() {
            "--rounds" => rounds = value.parse().expect("--rounds N"),
            "--probes" => probes = value.parse().expect("--probes N"),
            "--clients" => {
                sizes = value
                    .split(',')
                    .map(|v| v.parse().expect("--clients N[,N...]"))
                    .collect()
            }
            // One server only (to profile it, say): no ratios then.
            "--server" if value == "ours" => kinds = vec![Kind::Ours],
            "--server" if value == "theirs" => kinds = vec![Kind::Theirs],
            _ => panic!(
                "usage: presence-bench [--rounds R] [--clients N,N] [--probes K] [--server ours|theirs]"
            ),
        }
    }
    // This binary is target/<profile>/examples/presence-bench; the server and the module are one level up.
    let exe = std::env::current_exe().unwrap();
    let release = exe.parent().and_then(Path::parent).unwrap().to_owned();
    let setup = Setup {
        server_bin: release.join("faye-presence"),
        module: release.join("libpresence.so"),
        node_script: PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("bench/faye_presence_server.js"),
    };
    for (path, hint) in [
        (
            &setup.server_bin,
            "cargo build --release -p presence-module -p faye-presence -p presence-shim --bins --examples",
        ),
        (
            &setup.module,
            "cargo build --release -p presence-module -p faye-presence -p presence-shim --bins --examples",
        ),
        (&setup.node_script, "the bench folder"),
    ] {
        assert!(path.exists(), "{} is missing ({hint})", path.display());
    }
    let node_modules =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/node_modules/faye-presence");
    assert!(
        node_modules.exists(),
        "run `npm ci --prefix shim/bench` first"
    );
    println!(
        "Presence benchmark: {rounds} round(s), {sizes:?} clients, {probes} probe(s), {IN_FLIGHT} in flight"
    );
    // Ctrl-C drops the run, and with it every process guard.
    tokio::select! {
        () = run(setup, rounds, sizes, probes, kinds) => {}
        _ = tokio::signal::ctrl_c() => eprintln!("interrupted: stopping every server and redis-server"),
    }
}
