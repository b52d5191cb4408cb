//! What the benchmarks share besides the WebSocket client: spawning the processes they measure (each
//! killed by pid when its guard drops, also on a panic or Ctrl-C), a fresh redis-server, Redis command
//! counts, and the median [min–max] summaries.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A spawned process (a server or a redis-server), killed by pid when dropped: at the end of its
/// measurement, when an assertion unwinds, or when Ctrl-C drops the whole run.
pub struct Guard {
    name: String,
    child: Child,
    pid: u32,
}

impl Guard {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Kills the process and waits for it (the normal end of a measurement).
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            eprintln!(
                "{} (pid {}) did not exit after SIGKILL",
                self.name, self.pid
            );
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Starts `cmd` (its stderr shown, its stdout as given) under a [`Guard`]; panics, naming it, if it
/// cannot start: a benchmark without its process has nothing to measure.
pub fn spawn(name: &str, cmd: &mut Command, stdout: Stdio) -> Guard {
    let child = cmd
        .stdout(stdout)
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    let pid = child.id().expect("a running child has a pid");
    Guard {
        name: name.to_owned(),
        child,
        pid,
    }
}

/// A loopback port free right now (the OS's pick; the listener is closed before the caller binds).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    listener.local_addr().unwrap().port()
}

/// A fresh `redis-server` on a free loopback port (with the presence module when given), and a
/// connection for the statistics.
pub async fn start_redis(module: Option<&Path>) -> (Guard, u16, redis::aio::MultiplexedConnection) {
    let port = free_port();
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(std::env::temp_dir());
    if let Some(module) = module {
        cmd.arg("--loadmodule").arg(module);
    }
    let guard = spawn("redis-server", &mut cmd, Stdio::null());
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    for _ in 0..200 {
        if let Ok(mut con) = client.get_multiplexed_async_connection().await {
            if redis::cmd("PING")
                .query_async::<String>(&mut con)
                .await
                .is_ok()
            {
                return (guard, port, con);
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("redis-server on port {port} did not start within 5 s");
}

/// Spawns a server that prints `listening on ADDR`; returns its guard and address.
pub async fn start_server(name: &str, mut cmd: Command) -> (Guard, String) {
    let mut guard = spawn(name, &mut cmd, Stdio::piped());
    let stdout = guard.child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let addr = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(addr) = line.strip_prefix("listening on ") {
                return addr.to_owned();
            }
        }
        panic!("{name} exited before listening");
    })
    .await
    .unwrap_or_else(|_| panic!("{name} did not start within 20 s"));
    // Keep draining stdout so a chatty server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (guard, addr)
}

/// `INFO commandstats` as command -> calls, without this benchmark's own INFO and CONFIG.
pub async fn commandstats(con: &mut redis::aio::MultiplexedConnection) -> BTreeMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(con)
        .await
        .expect("INFO commandstats");
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            (!name.starts_with("info") && !name.starts_with("config"))
                .then(|| (name.to_owned(), calls))
        })
        .collect()
}

/// The median of the finite values (NaN if there are none: a figure no round measured).
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// "median [min–max]" of a figure over rounds.
pub fn spread(values: &[f64], decimals: usize) -> String {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() {
        return "n/a".into();
    }
    let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!(
        "{:.d$} [{:.d$}–{:.d$}]",
        median(&finite),
        min,
        max,
        d = decimals
    )
}
