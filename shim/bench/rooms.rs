//! Benchmark (issue 11): large rooms. Build and run from the workspace root:
//!
//! ```text
//! npm ci --prefix shim/bench
//! cargo build --release -p presence-module   # libpresence.so (`--bins --examples` skips it)
//! cargo build --release -p faye-presence -p presence-shim --bins --examples
//! target/release/examples/presence-rooms-bench [--only storm,churn,count] [--sizes 1000,10000]
//!     [--rounds 3] [--batch 50,0] [--deadline 300] [--churn-members 10000] [--churn-rate 100]
//!     [--churn-secs 30] [--hold-ms 1000] [--pool 300] [--count-members 10000] [--no-theirs-above N]
//! ```
//!
//! Every measurement starts fresh processes: a `redis-server` on a free loopback port (ours loads
//! `libpresence.so` from the same build) and the server (ours: `faye-presence --timeout 30 --ttl 30
//! --value object --max-connections 20000 --batch-ms B`; theirs: Node Faye 1.4.3 + faye-presence 0.0.3,
//! `bench/faye_presence_server.js`, as in `load.rs`). Each is killed by pid by its guard, also when a
//! measurement panics or on Ctrl-C. Loopback only.
//!
//! 1. **Join storm**: N WebSocket clients handshake and hold a `/meta/connect` (64 at a time), then
//!    subscribe `user-<i>` to `/presence/bench`, 64 in flight. Each member's roster is its reply's
//!    `ext.presence.subscribe` plus the roster messages after it (`data.subscribe` ids present,
//!    `data.unsubscribe` ids gone), checked against the truth (all N ids). Figures: subscribes/s, ack
//!    p50/p99 (send to reading the reply), time from the first subscribe until the last member's roster
//!    is complete, roster messages delivered, server CPU and RSS, Redis CPU (until quiet). Sizes below
//!    5,000 run `--rounds` times, servers interleaved; larger ones once. A storm not complete within
//!    `--deadline` seconds of its first subscribe fails loudly, reporting how far it got.
//! 2. **Churn** (ours): a room filled with `--churn-members`, then `--churn-rate` joins per second for
//!    `--churn-secs` by churn clients (`churn-<j>`, distinct ids), each leaving after `--hold-ms`.
//!    Figures: roster messages per second delivered to the members, server CPU per second, latency
//!    from a join's subscribe to the last member having it, and the final rosters checked.
//! 3. **Count-only** (ours, `--count-prefix /presence-count/`): the storm on `/presence-count/bench`;
//!    every member's last count must be N.
//!
//! The process raises its own RLIMIT_NOFILE (with `prlimit --pid`, since the workspace forbids
//! `unsafe`), and the servers it starts inherit it.

// The example is a crate root in bench/, so its modules are named by path.
#[path = "rooms/churn.rs"]
mod churn;
#[path = "rooms/client.rs"]
mod client;
#[path = "rooms/frames.rs"]
mod frames;
#[path = "rooms/servers.rs"]
mod servers;
#[path = "rooms/storm.rs"]
mod storm;

use bench_support::procs::median;
use std::path::{Path, PathBuf};
use std::time::Duration;

use churn::{churn, ChurnConfig, ChurnRow};
use servers::{Kind, Paths};
use storm::{storm, StormRow};

/// Open files this process (and the servers it starts) may hold: 10,000 sockets each and headroom.
const NOFILE: u64 = 65536;

/// Soft and hard RLIMIT_NOFILE of this process, from `/proc/self/limits`.
fn nofile() -> (u64, u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_default();
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (
        v.first().copied().unwrap_or(0),
        v.get(1).copied().unwrap_or(0),
    )
}

/// Raises RLIMIT_NOFILE to `want` (soft, and hard if it is lower) with `prlimit --pid`; panics, saying
/// how to run instead, if it stays below `need`.
fn raise_nofile(want: u64, need: u64) {
    let prlimit = |limit: String| {
        let _ = std::process::Command::new("prlimit")
            .args(["--pid", &std::process::id().to_string()])
            .arg(format!("--nofile={limit}"))
            .stderr(std::process::Stdio::null())
            .status();
    };
    let (soft, hard) = nofile();
    if soft < want {
        prlimit(format!("{want}:{}", hard.max(want)));
    }
    // Above the hard limit needs CAP_SYS_RESOURCE; without it, the soft limit goes up to the hard one.
    if nofile().0 < want.min(hard) {
        prlimit(format!("{hard}:{hard}"));
    }
    let (soft, hard) = nofile();
    assert!(
        soft >= need,
        "RLIMIT_NOFILE is {soft} (hard {hard}), {need} needed: run under `prlimit --nofile={want}`"
    );
    println!("RLIMIT_NOFILE: {soft} (hard {hard}), inherited by every server started");
}

fn f(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{v:.decimals$}")
    } else {
        "—".into()
    }
}

fn status(notes: &[String], ok: bool) -> String {
    if ok && notes.is_empty() {
        "ok".into()
    } else if ok {
        format!("ok; {}", notes.join("; "))
    } else {
        format!("**FAILED**: {}", notes.join("; "))
    }
}

fn storm_header() {
    println!(
        "\n| server | room | N | subscribes/s | ack p50 ms | ack p99 ms | first subscribe → last roster complete s \
         | answered / failed | complete rosters | roster msgs delivered | server CPU s | server RSS MiB (peak) \
         | redis CPU s | bench CPU s | status |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
}

fn storm_line(r: &StormRow) {
    let ok = r.fill.status.is_ok() && r.wrong == 0;
    println!(
        "| {} | {} | {} | {} | {} | {} | {} | {} / {} | {} | {} | {:.2} | {:.0} ({:.0}) | {:.2} | {:.2} | {} |",
        r.kind.name(),
        if r.count_only { "count-only" } else { "roster" },
        r.n,
        f(r.fill.subs_per_s(), 0),
        f(r.fill.percentile(0.50), 1),
        f(r.fill.percentile(0.99), 1),
        f(r.fill.complete_s(), 2),
        r.fill.answered,
        r.fill.failed,
        r.fill.members_complete,
        r.msgs,
        r.cpu.server,
        r.rss_kib.0 as f64 / 1024.0,
        r.rss_kib.1 as f64 / 1024.0,
        r.cpu.redis,
        r.cpu.bench,
        status(&r.notes, ok)
    );
}

fn churn_header() {
    println!(
        "\n| server | members | joins sent / ok / left | window s | roster msgs/s to members | msgs/s to churn clients \
         | server CPU s per s | redis CPU s per s | bench CPU s per s | join ack p50 / p99 ms | join → last member p50 ms | p99 ms | max ms \
         | joins reaching all | drain after window s (msgs) | max send lag ms | status |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
}

fn churn_line(r: &ChurnRow) {
    let w = r.window_s;
    println!(
        "| {} | {} | {} / {} / {} | {:.1} | {:.0} | {:.0} | {:.3} | {:.3} | {:.3} | {} / {} | {} | {} | {} | {} of {} | {:.2} ({}) | {:.1} | {} |",
        r.kind.name(),
        r.members,
        r.joins,
        r.joins_ok,
        r.leaves_ok,
        w,
        r.member_msgs as f64 / w,
        r.churn_msgs as f64 / w,
        r.cpu.server / w,
        r.cpu.redis / w,
        r.cpu.bench / w,
        f(ChurnRow::percentile(&r.acks_ms, 0.5), 1),
        f(ChurnRow::percentile(&r.acks_ms, 0.99), 1),
        f(ChurnRow::percentile(&r.latencies_ms, 0.5), 1),
        f(ChurnRow::percentile(&r.latencies_ms, 0.99), 1),
        f(r.latencies_ms.last().copied().unwrap_or(f64::NAN), 1),
        r.latencies_ms.len(),
        r.joins,
        r.drain_s,
        r.drain_msgs,
        r.max_lag_ms,
        status(
            &r.notes,
            r.fill.status.is_ok() && r.wrong == 0 && r.joins_ok == r.joins && r.leaves_ok == r.joins
        )
    );
}

/// Ratios of the storms of one size, taken within each round, then the median.
fn storm_summary(rows: &[StormRow], n: usize, batches: &[u64]) {
    let of = |k: Kind| -> Vec<&StormRow> {
        rows.iter()
            .filter(|r| r.kind == k && r.n == n && !r.count_only)
            .collect()
    };
    let theirs = of(Kind::Theirs);
    for &b in batches {
        let ours = of(Kind::Ours(b));
        if ours.is_empty() || theirs.is_empty() {
            continue;
        }
        let ratio = |g: &dyn Fn(&StormRow, &StormRow) -> f64| {
            let v: Vec<f64> = ours.iter().zip(&theirs).map(|(o, t)| g(o, t)).collect();
            let all: Vec<String> = v.iter().map(|x| f(*x, 2)).collect();
            format!("{} (rounds: {})", f(median(&v), 2), all.join(", "))
        };
        println!(
            "- N = {n}, ours --batch-ms {b} / theirs: subscribes/s {}; ack p99 theirs / ours {}; last roster complete theirs / ours {}",
            ratio(&|o, t| o.fill.subs_per_s() / t.fill.subs_per_s()),
            ratio(&|o, t| t.fill.percentile(0.99) / o.fill.percentile(0.99)),
            ratio(&|o, t| t.fill.complete_s() / o.fill.complete_s()),
        );
    }
}

struct Options {
    only: Vec<String>,
    sizes: Vec<usize>,
    rounds: usize,
    batches: Vec<u64>,
    deadline: Duration,
    churn: ChurnConfig,
    count_members: usize,
    no_theirs_above: usize,
}

fn options() -> Options {
    let mut o = Options {
        only: vec!["storm".into(), "churn".into(), "count".into()],
        sizes: vec![1000, 10000],
        rounds: 3,
        batches: vec![50, 0],
        deadline: Duration::from_secs(300),
        churn: ChurnConfig {
            members: 10000,
            rate: 100,
            secs: 30,
            hold: Duration::from_millis(1000),
            pool: 300,
        },
        count_members: 10000,
        no_theirs_above: usize::MAX,
    };
    let mut args = std::env::args().skip(1);
    let list =
        |v: &str| -> Vec<u64> { v.split(',').map(|x| x.parse().expect("a number")).collect() };
    while let Some(flag) = args.next() {
        let v = args.next().expect("a value after the flag");
        let num = || -> u64 { v.parse().expect("a number") };
        match flag.as_str() {
            "--only" => o.only = v.split(',').map(str::to_owned).collect(),
            "--sizes" => o.sizes = list(&v).into_iter().map(|x| x as usize).collect(),
            "--rounds" => o.rounds = num() as usize,
            "--batch" => o.batches = list(&v),
            "--deadline" => o.deadline = Duration::from_secs(num()),
            "--churn-members" => o.churn.members = num() as usize,
            "--churn-rate" => o.churn.rate = num() as usize,
            "--churn-secs" => o.churn.secs = num(),
            "--hold-ms" => o.churn.hold = Duration::from_millis(num()),
            "--pool" => o.churn.pool = num() as usize,
            "--count-members" => o.count_members = num() as usize,
            "--no-theirs-above" => o.no_theirs_above = num() as usize,
            _ => panic!("unknown flag {flag}; see the header of shim/bench/rooms.rs"),
        }
    }
    let cycle = o.churn.pool as f64 / o.churn.rate as f64;
    assert!(
        cycle > o.churn.hold.as_secs_f64() * 1.5,
        "--pool {} at --churn-rate {} gives each churn client a join every {cycle} s: more than 1.5 holds needed",
        o.churn.pool,
        o.churn.rate
    );
    o
}

async fn run(paths: Paths, o: Options) {
    let ours: Vec<Kind> = o.batches.iter().map(|&b| Kind::Ours(b)).collect();
    if o.only.iter().any(|s| s == "storm") {
        for &n in &o.sizes {
            let rounds = if n < 5000 { o.rounds } else { 1 };
            let mut rows = Vec::new();
            println!(
                "\n### Join storm, N = {n} ({rounds} round(s), deadline {:?})",
                o.deadline
            );
            storm_header();
            for round in 1..=rounds {
                let mut kinds = ours.clone();
                if n <= o.no_theirs_above {
                    kinds.push(Kind::Theirs);
                }
                if round % 2 == 0 {
                    kinds.reverse();
                }
                for kind in kinds {
                    eprintln!("storm round {round}: {} with N = {n}", kind.name());
                    let row = storm(&paths, kind, false, n, o.deadline).await;
                    storm_line(&row);
                    rows.push(row);
                }
            }
            println!();
            storm_summary(&rows, n, &o.batches);
        }
    }
    if o.only.iter().any(|s| s == "churn") {
        let c = &o.churn;
        println!(
            "\n### Churn: {} joins/s + leaves for {} s (hold {:?}, {} churn clients) into a room of {}",
            c.rate, c.secs, c.hold, c.pool, c.members
        );
        churn_header();
        for &kind in &ours {
            eprintln!("churn: {}", kind.name());
            churn_line(&churn(&paths, kind, c).await);
        }
    }
    if o.only.iter().any(|s| s == "count") {
        let n = o.count_members;
        println!("\n### Count-only channel, N = {n}");
        storm_header();
        eprintln!("count storm: ours --batch-ms 50 with N = {n}");
        storm_line(&storm(&paths, Kind::Ours(50), true, n, o.deadline).await);
    }
}

#[tokio::main]
async fn main() {
    let o = options();
    let biggest = o
        .sizes
        .iter()
        .copied()
        .chain([o.churn.members + o.churn.pool, o.count_members])
        .max()
        .unwrap_or(0) as u64;
    raise_nofile(NOFILE, biggest + 1000);
    // target/<profile>/examples/presence-rooms-bench; the server and the module are one level up.
    let exe = std::env::current_exe().unwrap();
    let release = exe.parent().and_then(Path::parent).unwrap().to_owned();
    let bench = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench");
    let paths = Paths {
        server_bin: release.join("faye-presence"),
        module: release.join("libpresence.so"),
        node_script: bench.join("faye_presence_server.js"),
    };
    for p in [&paths.server_bin, &paths.module] {
        assert!(
            p.exists(),
            "{} is missing: cargo build --release -p presence-module, then -p faye-presence -p presence-shim --bins --examples",
            p.display()
        );
    }
    assert!(
        bench.join("node_modules/faye-presence").exists(),
        "run `npm ci --prefix shim/bench` first"
    );
    println!(
        "Large-room benchmark (issue 11): storms {:?}, batch {:?}, churn {} joins/s for {} s into {}, count-only {}",
        o.sizes, o.batches, o.churn.rate, o.churn.secs, o.churn.members, o.count_members
    );
    // Ctrl-C drops the run, and with it every process guard.
    tokio::select! {
        () = run(paths, o) => {}
        _ = tokio::signal::ctrl_c() => eprintln!("interrupted: stopping every server and redis-server"),
    }
}
