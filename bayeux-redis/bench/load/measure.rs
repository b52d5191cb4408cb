//! One measurement: fresh redis-server and server processes for one configuration, the subscribers
//! set up, the publisher run, then every subscriber's deliveries counted (steps 1–3 of the tour in
//! `load.rs`) into one `Row`.

// The same CPU reader and process guards as the bayeux and presence benchmarks.
use bench_support::procs::{commandstats, start_redis, start_server};
use bench_support::procstat::cpu_s;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::process::Command;
use tokio::sync::Semaphore;

use crate::client::{publisher, subscriber, Shared, Sub};
use crate::{Args, Conf};

/// Subscribers in setup at a time.
const IN_FLIGHT: usize = 64;
/// Every server: Faye's `timeout` (long-poll hold).
const TIMEOUT_SECS: &str = "30";
/// The Redis namespace every process of one service shares.
const NAMESPACE: &str = "bench";
/// Bound on the setup of all subscribers.
const SETUP_WAIT: Duration = Duration::from_secs(120);

pub struct Row {
    pub conf: Conf,
    pub subscribed: u64,
    pub setup_failed: u64,
    pub setup_per_s: f64,
    pub published: usize,
    pub acked: u64,
    pub refused: u64,
    pub expected: u64,
    pub distinct: u64,
    pub missing: u64,
    pub duplicated: u64,
    /// Missing deliveries by the process the subscriber was on.
    pub missing_by_process: Vec<u64>,
    pub subscribers_missing: usize,
    pub complete: bool,
    pub delivered_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub server_cpu_s: f64,
    pub redis_cpu_s: f64,
    pub bench_cpu_s: f64,
    pub redis_cmds: BTreeMap<String, u64>,
    pub errors: u64,
    pub notes: Vec<String>,
}

pub struct Setup {
    pub server_bin: PathBuf,
    pub node_script: PathBuf,
}

pub async fn measure(setup: &Setup, args: &Args, conf: Conf) -> Row {
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
