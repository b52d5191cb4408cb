//! One measurement: a fresh redis-server and server, N clients, then the subscribes, the probes and
//! the unsubscribes (steps 1–4 of the tour in `load.rs`), into one `Row`.

use bench_support::procs::{commandstats, start_redis, start_server};
use bench_support::procstat::cpu_s;

use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::process::Command;
use tokio::sync::{Notify, Semaphore};

use crate::client::{subscribe_message, unsubscribe_message, Client, Shared, Watch, WAIT};
use crate::report::percentile;
use crate::{Kind, Mode};

/// Clients in flight at a time during setup, subscribe and unsubscribe phases.
pub const IN_FLIGHT: usize = 64;
/// Both servers: Faye's `timeout` (long-poll hold), and our presence TTL.
const TIMEOUT_SECS: &str = "30";

async fn reset_stats(con: &mut redis::aio::MultiplexedConnection) {
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async::<()>(con)
        .await
        .expect("CONFIG RESETSTAT");
}

/// One probe: a client joins the N-member channel, then leaves it.
pub struct Probe {
    pub reply_ms: f64,
    /// Roster size in the probe's subscribe reply (N + 1 when everyone is there).
    pub roster: usize,
    pub join_all_ms: f64,
    pub join_p50_ms: f64,
    pub leave_all_ms: f64,
    /// Members that got the join / the leave (N when complete).
    pub joined_seen: usize,
    pub left_seen: usize,
}

pub struct Row {
    pub kind: Kind,
    pub mode: Mode,
    pub clients: usize,
    pub subs_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub failed: usize,
    pub server_cpu_s: f64,
    pub redis_cpu_s: f64,
    pub bench_cpu_s: f64,
    pub diffs: u64,
    pub join_cmds: BTreeMap<String, u64>,
    pub unsubs_per_s: f64,
    pub leave_cmds: BTreeMap<String, u64>,
    pub probes: Vec<Probe>,
}

pub struct Setup {
    pub server_bin: PathBuf,
    pub module: PathBuf,
    pub node_script: PathBuf,
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

pub async fn measure(setup: &Setup, kind: Kind, mode: Mode, n: usize, probes: usize) -> Row {
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
