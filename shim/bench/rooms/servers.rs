//! The servers measured, each with its own fresh redis-server (ours loads the module), started and
//! killed by pid through bench-support's guards; their CPU and memory from `/proc`.

use bench_support::procs::{commandstats, start_redis, start_server, Guard};
use bench_support::procstat::cpu_s;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::process::Command;

use crate::client::{Client, Room};

/// Faye's `timeout` (long-poll hold) for both, and our presence TTL.
const TIMEOUT_SECS: &str = "30";
/// Clients opening (handshake + held connect) at a time, as in load.rs.
pub const IN_FLIGHT: usize = 64;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// `faye-presence` with this `--batch-ms`.
    Ours(u64),
    /// Node Faye 1.4.3 + faye-presence 0.0.3.
    Theirs,
}

impl Kind {
    pub fn name(self) -> String {
        match self {
            Kind::Ours(ms) => format!("ours --batch-ms {ms}"),
            Kind::Theirs => "Node faye-presence 0.0.3".into(),
        }
    }
}

pub struct Paths {
    pub server_bin: PathBuf,
    pub module: PathBuf,
    pub node_script: PathBuf,
}

pub struct Server {
    pub addr: String,
    pub con: redis::aio::MultiplexedConnection,
    pid: String,
    redis_pid: String,
    server: Guard,
    redis: Guard,
}

/// CPU seconds so far: server, redis-server, this load generator.
#[derive(Clone, Copy, Default)]
pub struct Cpu {
    pub server: f64,
    pub redis: f64,
    pub bench: f64,
}

impl std::ops::Sub for Cpu {
    type Output = Cpu;
    fn sub(self, o: Cpu) -> Cpu {
        Cpu {
            server: self.server - o.server,
            redis: self.redis - o.redis,
            bench: self.bench - o.bench,
        }
    }
}

/// `VmRSS` and `VmHWM` (peak) of a process, in KiB.
fn status_kib(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

impl Server {
    pub async fn start(paths: &Paths, kind: Kind, count_prefix: bool) -> Server {
        let module = matches!(kind, Kind::Ours(_)).then_some(paths.module.as_path());
        let (redis, port, con) = start_redis(module).await;
        let (server, addr) = match kind {
            Kind::Ours(batch_ms) => {
                let mut cmd = Command::new(&paths.server_bin);
                cmd.args(["--listen", "127.0.0.1:0", "--redis"])
                    .arg(format!("redis://127.0.0.1:{port}"))
                    .args(["--timeout", TIMEOUT_SECS, "--ttl", TIMEOUT_SECS])
                    .args(["--value", "object", "--max-connections", "20000"])
                    .args(["--batch-ms", &batch_ms.to_string()])
                    .env("RUST_LOG", "warn");
                if count_prefix {
                    cmd.args(["--count-prefix", "/presence-count/"]);
                }
                start_server(&kind.name(), cmd).await
            }
            Kind::Theirs => {
                let mut cmd = Command::new("node");
                cmd.arg(&paths.node_script)
                    .arg(port.to_string())
                    .arg(TIMEOUT_SECS);
                start_server(&kind.name(), cmd).await
            }
        };
        Server {
            addr,
            con,
            pid: server.pid().to_string(),
            redis_pid: redis.pid().to_string(),
            server,
            redis,
        }
    }

    pub fn cpu(&self) -> Cpu {
        Cpu {
            server: cpu_s(&self.pid),
            redis: cpu_s(&self.redis_pid),
            bench: cpu_s("self"),
        }
    }

    /// The server's resident memory now and at its peak, KiB.
    pub fn rss_kib(&self) -> (u64, u64) {
        (
            status_kib(&self.pid, "VmRSS:"),
            status_kib(&self.pid, "VmHWM:"),
        )
    }

    pub async fn reset_stats(&mut self) {
        redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async::<()>(&mut self.con)
            .await
            .expect("CONFIG RESETSTAT");
    }

    /// Waits until no room message arrived for 300 ms and Redis' command counts did not move over
    /// it; `Err` (what was still moving) after `bound`.
    pub async fn quiet(&mut self, room: &Room, bound: Duration) -> Result<(), String> {
        let start = Instant::now();
        let mut last: Option<Option<BTreeMap<String, u64>>> = None;
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            // commandstats panics when Redis does not answer in time (a starved runtime, this
            // process's or Redis'); in its own task that is one more round that is not quiet.
            let mut con = self.con.clone();
            let stats = tokio::spawn(async move { commandstats(&mut con).await })
                .await
                .ok();
            let idle = room.now_us() - room.last_msg_us.load(Ordering::Relaxed) >= 300_000;
            if idle && stats.is_some() && last.as_ref() == Some(&stats) {
                return Ok(());
            }
            last = Some(stats);
            if start.elapsed() > bound {
                return Err(format!(
                    "not quiet after {bound:?} (room messages still arriving: {})",
                    !idle
                ));
            }
        }
    }

    /// `PRESENCE.COUNT` of the channel's key (members, connections, rev), as Redis has it.
    pub async fn presence_count(&mut self, channel: &str) -> String {
        let v: Result<redis::Value, _> = redis::cmd("PRESENCE.COUNT")
            .arg(format!("presence:{channel}"))
            .query_async(&mut self.con)
            .await;
        format!("{v:?}")
    }

    /// Kills the server, then its redis-server, by pid.
    pub async fn stop(self) {
        self.server.stop().await;
        self.redis.stop().await;
    }
}

/// Opens `n` clients on the room, `IN_FLIGHT` at a time; `Err` names the first failure or the timeout.
pub async fn open_clients(
    addr: &str,
    room: &std::sync::Arc<Room>,
    n: usize,
    steady: bool,
    bound: Duration,
) -> Result<Vec<Client>, String> {
    use futures_util::stream::{self, StreamExt, TryStreamExt};
    let opening = stream::iter(0..n)
        .map(|i| {
            let room = room.clone();
            async move {
                Client::open(addr, room, steady)
                    .await
                    .map_err(|e| format!("client {i} of {n} did not open: {e}"))
            }
        })
        .buffered(IN_FLIGHT)
        .try_collect::<Vec<_>>();
    match tokio::time::timeout(bound, opening).await {
        Ok(r) => r,
        Err(_) => Err(format!("{n} clients not open within {bound:?}")),
    }
}
