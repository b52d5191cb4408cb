//! Module benchmark: `cargo bench -p presence-tests --bench module`.
//!
//! Everything is measured side by side in one run on one server, because the machine is shared and noisy:
//! 1. throughput of `PRESENCE.JOIN` + `PRESENCE.LEAVE` pairs against `HSET` + `HDEL` pairs, driven by one
//!    pipelining load generator (a pair must name the same client or field, which redis-benchmark's
//!    independent random placeholders cannot), the two interleaved over several runs;
//! 2. `PRESENCE.JOIN` cost with 10, 10,000 and 100,000 members already on the channel (server-side
//!    `usec_per_call` from `INFO commandstats`, and client round trips);
//! 3. memory per member for 100,000 members, against the four keys per member faye-presence 0.0.3 writes.
//!
//! Prints a Markdown report for BENCHMARKS.md. Loopback only; every loop is bounded.

use std::time::Instant;

use presence_tests::{RedisServer, ServerOptions};

const ROUNDS: usize = 3;

fn main() {
    let server = RedisServer::start_with(ServerOptions {
        server_args: vec![
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            "no".into(),
        ],
        ..Default::default()
    });
    let mut con = server.connect();
    println!("## Module benchmark\n");
    println!("redis-server {}, module built in release mode, one core for the server and one for the client.\n", redis_version(&mut con));
    throughput(&server, &mut con);
    join_cost_by_roster_size(&mut con);
    memory_per_member(&mut con);
}

fn redis_version(con: &mut redis::Connection) -> String {
    let info: String = redis::cmd("INFO").arg("server").query(con).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("?")
        .trim()
        .to_string()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

const THREADS: usize = 4;
const PAIRS_PER_THREAD: usize = 25_000;

/// Pairs per second for `THREADS` connections, each sending pipelines of `depth` pairs built by
/// `pair(pipe, thread, n)`. The same generator drives both workloads, so the ratio compares the server.
fn pairs_per_second(
    server: &RedisServer,
    depth: usize,
    pair: fn(&mut redis::Pipeline, usize, usize),
) -> f64 {
    let started = Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            let mut con = server.connect();
            std::thread::spawn(move || {
                for batch in (0..PAIRS_PER_THREAD).step_by(depth) {
                    let mut pipe = redis::pipe();
                    for n in batch..batch + depth {
                        pair(&mut pipe, thread, n);
                    }
                    pipe.query::<()>(&mut con).expect("pipeline");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    (THREADS * PAIRS_PER_THREAD) as f64 / started.elapsed().as_secs_f64()
}

const DATA: &str = r#"{"name":"user 12345","avatar":"/a/12345.png"}"#;

fn join_leave(pipe: &mut redis::Pipeline, thread: usize, n: usize) {
    let client = format!("client-{thread}-{n}");
    // Every pair is a member arriving and leaving: the path that publishes two events.
    pipe.cmd("PRESENCE.JOIN")
        .arg("/presence/bench")
        .arg(&client)
        .arg(format!("user-{thread}-{n}"))
        .arg(DATA)
        .ignore();
    pipe.cmd("PRESENCE.LEAVE")
        .arg("/presence/bench")
        .arg(&client)
        .ignore();
}

fn hset_hdel(pipe: &mut redis::Pipeline, thread: usize, n: usize) {
    let field = format!("user-{thread}-{n}");
    pipe.cmd("HSET")
        .arg("/presence/bench-hash")
        .arg(&field)
        .arg(DATA)
        .ignore();
    pipe.cmd("HDEL")
        .arg("/presence/bench-hash")
        .arg(&field)
        .ignore();
}

fn throughput(server: &RedisServer, con: &mut redis::Connection) {
    redis::cmd("FLUSHALL").query::<()>(con).unwrap();
    // Both structures start with 1,000 entries, so neither pays for creating its key.
    let mut pipe = redis::pipe();
    for n in 0..1000 {
        pipe.cmd("PRESENCE.JOIN")
            .arg("/presence/bench")
            .arg(format!("resident-{n}"))
            .arg(format!("resident-{n}"))
            .arg(DATA)
            .ignore();
        pipe.cmd("HSET")
            .arg("/presence/bench-hash")
            .arg(format!("resident-{n}"))
            .arg(DATA)
            .ignore();
    }
    pipe.query::<()>(con).unwrap();
    for depth in [16, 1] {
        redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query::<()>(con)
            .unwrap();
        let (mut ours, mut plain) = (vec![], vec![]);
        for _ in 0..ROUNDS {
            ours.push(pairs_per_second(server, depth, join_leave));
            plain.push(pairs_per_second(server, depth, hset_hdel));
        }
        let (ours, plain) = (median(ours), median(plain));
        println!(
            "### Throughput, pipelines of {depth} pair(s) ({THREADS} connections, {} pairs per run, median of {ROUNDS} interleaved runs)\n",
            THREADS * PAIRS_PER_THREAD
        );
        println!("Each pair is a new member joining and leaving (two published events), against HSET+HDEL of a new field.\n");
        println!("| workload | pairs/s | server usec_per_call |\n|---|---|---|");
        println!(
            "| PRESENCE.JOIN + PRESENCE.LEAVE | {ours:.0} | {:.2} + {:.2} |",
            usec_per_call(con, "PRESENCE.JOIN"),
            usec_per_call(con, "PRESENCE.LEAVE")
        );
        println!(
            "| HSET + HDEL | {plain:.0} | {:.2} + {:.2} |",
            usec_per_call(con, "hset"),
            usec_per_call(con, "hdel")
        );
        println!("\n**JOIN+LEAVE / HSET+HDEL = {:.2}**\n", ours / plain);
    }
}

fn usec_per_call(con: &mut redis::Connection, command: &str) -> f64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query(con).unwrap();
    let prefix = format!("cmdstat_{command}:");
    let line = info
        .lines()
        .find(|l| l.starts_with(&prefix))
        .expect("command stats");
    line.split(',')
        .find_map(|f| f.strip_prefix("usec_per_call="))
        .and_then(|v| v.parse().ok())
        .expect("usec_per_call")
}

fn prefill(con: &mut redis::Connection, channel: &str, members: usize) {
    for chunk in (0..members).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for n in chunk {
            pipe.cmd("PRESENCE.JOIN")
                .arg(channel)
                .arg(format!("prefill-client-{n}"))
                .arg(format!("prefill-{n}"))
                .arg(format!(r#"{{"name":"user {n}"}}"#))
                .ignore();
        }
        pipe.query::<()>(con).unwrap();
    }
}

const SIZES: [usize; 3] = [10, 10_000, 100_000];
const SIZE_ROUNDS: usize = 10;
const PAIRS_PER_ROUND: usize = 2_000;

/// The three roster sizes live side by side on one server and are measured in interleaved rounds, so
/// noise from the rest of the machine lands on all of them alike.
fn join_cost_by_roster_size(con: &mut redis::Connection) {
    redis::cmd("FLUSHALL").query::<()>(con).unwrap();
    for size in SIZES {
        prefill(con, &format!("/presence/size-{size}"), size);
        // The control: a hash of the same size, to tell the memory hierarchy from the algorithm.
        for chunk in (0..size).collect::<Vec<_>>().chunks(1000) {
            let mut pipe = redis::pipe();
            for n in chunk {
                pipe.cmd("HSET")
                    .arg(format!("/hash/size-{size}"))
                    .arg(format!("prefill-{n}"))
                    .arg(DATA)
                    .ignore();
            }
            pipe.query::<()>(con).unwrap();
        }
    }
    let mut server_join = vec![vec![]; SIZES.len()];
    let mut server_leave = vec![vec![]; SIZES.len()];
    let mut rtts = vec![vec![]; SIZES.len()];
    let mut server_hset = vec![vec![]; SIZES.len()];
    for round in 0..SIZE_ROUNDS {
        for (s, size) in SIZES.iter().enumerate() {
            let channel = format!("/presence/size-{size}");
            redis::cmd("CONFIG")
                .arg("RESETSTAT")
                .query::<()>(con)
                .unwrap();
            for n in round * PAIRS_PER_ROUND..(round + 1) * PAIRS_PER_ROUND {
                let started = Instant::now();
                redis::cmd("PRESENCE.JOIN")
                    .arg(&channel)
                    .arg(format!("c{n}"))
                    .arg(format!("new-{n}"))
                    .arg(r#"{"name":"new"}"#)
                    .query::<redis::Value>(con)
                    .unwrap();
                rtts[s].push(started.elapsed().as_secs_f64() * 1e6);
                redis::cmd("PRESENCE.LEAVE")
                    .arg(&channel)
                    .arg(format!("c{n}"))
                    .query::<redis::Value>(con)
                    .unwrap();
            }
            server_join[s].push(usec_per_call(con, "PRESENCE.JOIN"));
            server_leave[s].push(usec_per_call(con, "PRESENCE.LEAVE"));
            let hash = format!("/hash/size-{size}");
            for n in round * PAIRS_PER_ROUND..(round + 1) * PAIRS_PER_ROUND {
                redis::cmd("HSET")
                    .arg(&hash)
                    .arg(format!("new-{n}"))
                    .arg(DATA)
                    .query::<redis::Value>(con)
                    .unwrap();
                redis::cmd("HDEL")
                    .arg(&hash)
                    .arg(format!("new-{n}"))
                    .query::<redis::Value>(con)
                    .unwrap();
            }
            server_hset[s].push(usec_per_call(con, "hset"));
        }
    }
    println!(
        "### PRESENCE.JOIN cost by roster size (a new member joins, then leaves; {} times per size, one connection, sizes interleaved in {SIZE_ROUNDS} rounds)\n",
        SIZE_ROUNDS * PAIRS_PER_ROUND
    );
    println!("| members already on the channel | server usec_per_call JOIN (median round) | LEAVE | HSET on a hash of that size | JOIN client round trip p50 | p99 |");
    println!("|---|---|---|---|---|---|");
    for (s, size) in SIZES.iter().enumerate() {
        let mut sorted = rtts[s].clone();
        sorted.sort_by(f64::total_cmp);
        println!(
            "| {size} | {:.2} µs | {:.2} µs | {:.2} µs | {:.1} µs | {:.1} µs |",
            median(server_join[s].clone()),
            median(server_leave[s].clone()),
            median(server_hset[s].clone()),
            sorted[sorted.len() / 2],
            sorted[sorted.len() * 99 / 100]
        );
    }
    println!();
}

fn used_memory(con: &mut redis::Connection) -> i64 {
    let info: String = redis::cmd("INFO").arg("memory").query(con).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory")
}

fn memory_per_member(con: &mut redis::Connection) {
    const MEMBERS: usize = 100_000;
    let channel = "/presence/memory";
    // Faye client ids are 31-character base-36 strings; use ones of that size.
    let client_id = |n: usize| format!("{n:0>31}");
    let data = |n: usize| format!(r#"{{"name":"user {n}"}}"#);

    redis::cmd("FLUSHALL").query::<()>(con).unwrap();
    let before = used_memory(con);
    for chunk in (0..MEMBERS).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for &n in chunk {
            pipe.cmd("PRESENCE.JOIN")
                .arg(channel)
                .arg(client_id(n))
                .arg(format!("user-{n}"))
                .arg(data(n))
                .ignore();
        }
        pipe.query::<()>(con).unwrap();
    }
    let ours = (used_memory(con) - before) as f64 / MEMBERS as f64;

    // faye-presence 0.0.3: data:$ch:$pid and pid:$ch:$cid strings, cids:$ch:$pid and pids:$ch sorted sets.
    redis::cmd("FLUSHALL").query::<()>(con).unwrap();
    let before = used_memory(con);
    let now = 1_700_000_000_000u64;
    for chunk in (0..MEMBERS).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for &n in chunk {
            let pid = format!("user-{n}");
            pipe.cmd("SET")
                .arg(format!("presence:data:{channel}:{pid}"))
                .arg(data(n))
                .ignore();
            pipe.cmd("SET")
                .arg(format!("presence:pid:{channel}:{}", client_id(n)))
                .arg(&pid)
                .ignore();
            pipe.cmd("ZADD")
                .arg(format!("presence:cids:{channel}:{pid}"))
                .arg(now)
                .arg(client_id(n))
                .ignore();
            pipe.cmd("ZADD")
                .arg(format!("presence:pids:{channel}"))
                .arg(now)
                .arg(&pid)
                .ignore();
        }
        pipe.query::<()>(con).unwrap();
    }
    let theirs = (used_memory(con) - before) as f64 / MEMBERS as f64;
    println!("### Memory per member ({MEMBERS} members, one 31-byte client id each, ~20-byte data; used_memory delta)\n");
    println!("| layout | bytes per member |\n|---|---|");
    println!("| presence module (one key per channel) | {ours:.0} |");
    println!("| faye-presence 0.0.3 (4 keys per member) | {theirs:.0} |");
    println!("\n**module / faye-presence = {:.2}**", ours / theirs);
}
