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
//!
//! The parts, in `bench/load/`:
//!
//! - this file: the flags, `main` (paths and checks), and the run loop interleaving servers and modes
//!   within each round; the servers (`Kind`) and the channel layouts (`Mode`).
//! - `client.rs`: the Bayeux client over one WebSocket, its reader task (held connects, replies by id,
//!   channel messages counted and watched for a probe's diff), and the subscribe/unsubscribe messages.
//! - `measure.rs`: one measurement (fresh redis-server and server, steps 1–4 above) into a `Row`.
//! - `report.rs`: the round tables, the summary (medians, spreads, ratios within each round), and the
//!   statistics they use.

// The example is a crate root in bench/, so its modules are named by path.
#[path = "load/client.rs"]
mod client;
#[path = "load/measure.rs"]
mod measure;
#[path = "load/report.rs"]
mod report;

use std::path::{Path, PathBuf};

use measure::{measure, Setup, IN_FLIGHT};
use report::{print_round, print_summary};

const PRESENCE_CHANNEL: &str = "/presence/bench";
const PLAIN_CHANNEL: &str = "/bench/plain";
/// Presence with no fan-out: client i subscribes to `/presence/solo/i` alone (a roster of one, no diffs).
const SOLO_PREFIX: &str = "/presence/solo/";

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
