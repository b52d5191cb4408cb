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
//!
//! The parts, in `bench/load/`:
//!
//! - this file: the flags (`Args`), the configurations (`Conf`), `main` (paths and checks) and the run
//!   loop interleaving the configurations within each round.
//! - `client.rs`: the subscribers (handshake, subscribe, held connects, deliveries counted by sequence
//!   number) and the windowed publisher.
//! - `measure.rs`: one measurement (fresh redis-server and server processes, steps 1–3 above) into a
//!   `Row`: missing, duplicated, rate, latency, CPU, Redis commands.
//! - `report.rs`: the round tables and notes, the summary over rounds and the ratios within each round.

// The example is a crate root in bench/, so its modules are named by path.
#[path = "load/client.rs"]
mod client;
#[path = "load/measure.rs"]
mod measure;
#[path = "load/report.rs"]
mod report;

use clap::Parser;
use std::path::{Path, PathBuf};

use measure::{measure, Setup};
use report::{print_round, print_summary};

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
