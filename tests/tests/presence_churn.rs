//! `faye-presence` churn end to end: many Faye clients (both transports) on two or three server
//! processes sharing one Redis subscribe, unsubscribe, disconnect and vanish concurrently under a few
//! shared ids for a bounded time. Then, in the known end state, `PRESENCE.ROSTER` and every observer's roster built from
//! diffs equal the truth, and no observer was ever sent a join for a member it had or a leave for one
//! it did not have. Zero discrepancies.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use presence_tests::commands::roster;
use presence_tests::presence_server::{
    key, messages_in, Driver, Json, Observed, PresenceServer, Transport,
};
use presence_tests::{unique_channel, CpuHogs, RedisServer};

/// xorshift64*: reproducible choices without a crate; the seed is in every failure message.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) % n
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Connected, not on the channel.
    Idle,
    /// On the channel as its id.
    Present,
    /// Disconnected or frozen: this client is done; a new one takes its slot.
    Gone,
}

struct Worker {
    driver: usize,
    name: String,
    id: String,
    server: usize,
    transport: Transport,
    state: State,
}

const IDS: usize = 10;
const WORKERS: usize = 20;
const CHURN: Duration = Duration::from_secs(5);

/// Every id has the same data on every connection, so any `subscribe` for a member already there is a
/// duplicate join, never a data change.
fn data_of(id: &str) -> Json {
    Json::obj(vec![("who", id.into()), ("n", Json::Num(id.len() as f64))])
}

/// How a churn run is set up.
#[derive(Debug, Clone, Copy)]
struct Setup {
    processes: usize,
    /// Share clients and queues through the Redis engine (`--engine redis`) instead of each process's
    /// memory.
    redis_engine: bool,
    cut_pubsub: bool,
}

#[test]
fn churn_over_two_processes_ends_with_every_roster_true() {
    churn(Setup {
        processes: 2,
        redis_engine: false,
        cut_pubsub: false,
    });
}

/// Three processes sharing the Redis engine: a client's removal (by any process's sweep) must leave its
/// presence exactly once, and diffs still reach each observer once, from its own process. Run twice.
#[test]
fn churn_over_three_processes_on_the_redis_engine_ends_with_every_roster_true() {
    for _ in 0..2 {
        churn(Setup {
            processes: 3,
            redis_engine: true,
            cut_pubsub: false,
        });
    }
}

/// The same churn, with both servers' pub/sub connections to Redis cut (CLIENT KILL TYPE pubsub)
/// halfway: each server repairs what its subscribers missed, and still nobody is told wrong.
#[test]
fn churn_through_cut_pubsub_connections_ends_with_every_roster_true() {
    churn(Setup {
        processes: 2,
        redis_engine: false,
        cut_pubsub: true,
    });
}

/// One churn run: start, churn, verify.
fn churn(setup: Setup) {
    let mut run = start(setup);
    let churned = churn_workers(&mut run);
    verify(run, churned);
}

/// What every phase shares: the processes, the channel and the observers.
struct Run {
    setup: Setup,
    seed: u64,
    rng: Rng,
    redis: RedisServer,
    servers: Vec<PresenceServer>,
    channel: String,
    /// The observers' driver, and each observer with what it was told.
    obs: Driver,
    observers: Vec<(String, Observed)>,
}

/// The end of the churn: the workers as they are left, and what happened on the way.
struct Churned {
    workers: Vec<Worker>,
    drivers: [Driver; 2],
    rounds: usize,
    ops: usize,
    refused: usize,
}

/// Redis, the processes, and the observers: one per server and transport, in a driver of their own;
/// they never leave. They all join at once, on a loaded CPU: each one's snapshot crosses the others'
/// joins, and every one of them must still learn of all the others.
fn start(setup: Setup) -> Run {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let redis = RedisServer::start();
    // A short long-poll hold, so frozen clients are timed out within the test.
    let url = redis.url();
    // Batching on, as by default: observers get net changes, checked id by id.
    let mut args = vec![
        "--redis",
        url.as_str(),
        "--timeout",
        "1",
        "--batch-ms",
        "50",
    ];
    if setup.redis_engine {
        args.extend(["--engine", "redis"]);
    }
    let servers: Vec<_> = (0..setup.processes)
        .map(|_| PresenceServer::start(&args))
        .collect();
    let channel = unique_channel("churn");
    let mut obs = Driver::start();
    let mut names = Vec::new();
    for (s, server) in servers.iter().enumerate() {
        for transport in Transport::ALL {
            let name = format!("obs-{s}-{}", transport.name());
            obs.client(&name, &server.url(), transport);
            obs.connect(&name);
            names.push(name);
        }
    }
    let joins: Vec<_> = names
        .iter()
        .map(|name| (name.as_str(), channel.as_str(), name.as_str(), Json::Null))
        .collect();
    let replies = {
        let _hogs = CpuHogs::start(2, Duration::from_secs(60));
        obs.join_all(&joins)
    };
    let observers = names
        .into_iter()
        .zip(&replies)
        .map(|(name, reply)| (name, Observed::from_reply(reply)))
        .collect();
    Run {
        setup,
        seed,
        rng: Rng(seed),
        redis,
        servers,
        channel,
        obs,
        observers,
    }
}

/// Workers, spread over two drivers (two Node processes running their clients concurrently), take
/// random steps for [`CHURN`]: every round each picks one, all are sent at once, then all answers
/// awaited. With `cut_pubsub`, every server's pub/sub connection is cut halfway.
fn churn_workers(run: &mut Run) -> Churned {
    let Run {
        setup,
        seed,
        rng,
        redis,
        servers,
        channel,
        observers,
        ..
    } = run;
    let (seed, processes, cut_pubsub) = (*seed, setup.processes, setup.cut_pubsub);
    let mut drivers = [Driver::start(), Driver::start()];
    let mut workers: Vec<Worker> = (0..WORKERS)
        .map(|i| Worker {
            driver: i % 2,
            name: format!("w{i}.0"),
            id: format!("user-{}", i % IDS),
            server: (i / 2) % processes,
            transport: Transport::ALL[(i / 4) % 2],
            state: State::Gone,
        })
        .collect();
    let mut next_name = 1;
    let started = Instant::now();
    let (mut rounds, mut ops, mut refused) = (0, 0, 0);
    let mut cut = !cut_pubsub;
    while started.elapsed() < CHURN {
        rounds += 1;
        if !cut && started.elapsed() > CHURN / 2 {
            cut = true;
            let killed = redis.kill_pubsub_connections();
            assert!(killed >= 2, "seed {seed}: {killed} pub/sub connections cut");
        }
        let mut pending = Vec::new();
        for (i, w) in workers.iter_mut().enumerate() {
            let d = &mut drivers[w.driver];
            let roll = rng.below(100);
            let (op, next) = match w.state {
                State::Gone => {
                    // A fresh client in this slot (possibly another id, server and transport).
                    w.name = format!("w{i}.{next_name}");
                    next_name += 1;
                    w.id = format!("user-{}", rng.below(IDS as u64));
                    w.server = rng.below(processes as u64) as usize;
                    w.transport = Transport::ALL[rng.below(2) as usize];
                    d.client(&w.name, &servers[w.server].url(), w.transport);
                    ("subscribe", State::Present)
                }
                State::Idle if roll < 70 => ("subscribe", State::Present),
                State::Idle => continue,
                State::Present if roll < 40 => ("unsubscribe", State::Idle),
                State::Present if roll < 60 => ("disconnect", State::Gone),
                State::Present if roll < 65 => ("freeze", State::Gone),
                State::Present => continue,
            };
            let mut fields = vec![("name", Json::from(w.name.as_str()))];
            if op != "disconnect" && op != "freeze" {
                fields.push(("channel", channel.as_str().into()));
            }
            if op == "subscribe" {
                let presence =
                    Json::obj(vec![("id", w.id.as_str().into()), ("data", data_of(&w.id))]);
                fields.push(("presence", presence));
            }
            let req = d.send(op, fields);
            pending.push((i, op, req, next));
        }
        for (i, op, req, next) in pending {
            let w = &mut workers[i];
            let answer = drivers[w.driver].answer(req);
            // While a server's stream reconnects it refuses presence subscribes ("try again").
            let retry = answer
                .get("error")
                .as_str()
                .is_some_and(|e| e.contains("try again"));
            if cut_pubsub && op == "subscribe" && retry {
                refused += 1;
                w.state = State::Idle;
                continue;
            }
            assert!(
                answer.get("ok").as_bool() == Some(true),
                "seed {seed}: {op} by {} ({}) failed: {answer}",
                w.name,
                w.id
            );
            if op == "subscribe" {
                // The reply's roster holds the subscriber and every observer, with their data.
                let members = answer.get("ext").get("presence").get("subscribe");
                assert_eq!(members.get(&w.id), &data_of(&w.id), "seed {seed}: {answer}");
                for (name, _) in observers.iter() {
                    assert!(
                        members.keys().contains(name),
                        "seed {seed}: {name} missing from {answer}"
                    );
                }
            }
            w.state = next;
            ops += 1;
        }
    }
    Churned {
        workers,
        drivers,
        rounds,
        ops,
        refused,
    }
}

/// The known end state (the observers and the ids of workers still present; frozen clients are
/// removed by the inactivity timeout, 1.6 s, meanwhile): `PRESENCE.ROSTER` reaches it, with every
/// value right, and so does every observer's roster built from diffs, with no discrepancy on the way.
fn verify(run: Run, churned: Churned) {
    let Run {
        setup,
        seed,
        redis,
        channel,
        obs,
        mut observers,
        // Kept until the end: the processes must serve the observers while they catch up.
        servers: _servers,
        ..
    } = run;
    let Churned {
        workers,
        drivers,
        rounds,
        ops,
        refused,
    } = churned;
    let mut truth: BTreeSet<String> = observers.iter().map(|(n, _)| n.clone()).collect();
    truth.extend(
        workers
            .iter()
            .filter(|w| w.state == State::Present)
            .map(|w| w.id.clone()),
    );
    let truth: Vec<String> = truth.into_iter().collect();
    let mut con = redis.connect();
    presence_tests::wait_until(
        "PRESENCE.ROSTER to equal the truth",
        Duration::from_secs(15),
        || {
            let (_, members) = roster(&mut con, &key(&channel)).unwrap();
            members
                .keys()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .collect::<Vec<_>>()
                == truth
        },
    );
    let (rev, members) = roster(&mut con, &key(&channel)).unwrap();
    for (id, value) in &members {
        let id = String::from_utf8_lossy(id);
        let want = if id.starts_with("obs-") {
            Json::Null
        } else {
            data_of(&id)
        };
        assert_eq!(
            Json::parse(&String::from_utf8_lossy(value)).ok(),
            Some(want),
            "seed {seed}: {id}'s value in Redis"
        );
    }

    // Every observer's diff-built roster reaches the truth at Redis's rev, with no discrepancy on the way.
    let mut diffs = 0;
    for (name, seen) in &mut observers {
        let got = obs.wait_events(
            &format!("{name}'s roster to reach rev {rev}"),
            Duration::from_secs(15),
            |events| {
                let got = messages_in(events, name, &channel);
                (got.last().and_then(|m| m.get("rev").as_f64()) >= Some(rev as f64)
                    || seen.rev >= rev as f64)
                    .then_some(got)
            },
        );
        diffs += got.len();
        seen.apply_all(&got);
        assert!(
            seen.violations.is_empty(),
            "seed {seed}: {name} was told wrong: {:#?}\nhistory {:?}",
            seen.violations,
            seen.history
        );
        assert_eq!(seen.ids(), truth, "seed {seed}: {name}'s roster");
        assert_eq!(seen.rev, rev as f64, "seed {seed}: {name}'s rev");
        for (id, value) in &seen.members {
            let want = if id.starts_with("obs-") {
                Json::Null
            } else {
                data_of(id)
            };
            assert_eq!(value, &want, "seed {seed}: {name}'s value of {id}");
        }
    }
    for d in drivers.iter().chain([&obs]) {
        assert!(d.faults().is_empty(), "seed {seed}: {:?}", d.faults());
    }
    eprintln!(
        "churn ({setup:?}, {refused} subscribes refused meanwhile): seed {seed}, {rounds} rounds, {ops} steps, {diffs} diffs to {} observers, final rev {rev}, {} members",
        observers.len(),
        truth.len()
    );
}
