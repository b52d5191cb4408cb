//! Three `faye-presence` processes on one Redis engine (`--engine redis`), driven by real Faye clients
//! and by a bare HTTP client that sends each request to another process: one Bayeux service.

use std::collections::BTreeMap;
use std::time::Duration;

use presence_tests::presence_server::http;
use presence_tests::presence_server::{Driver, Json, Observed, PresenceServer, Transport};
use presence_tests::{unique_channel, wait_until, RedisServer};

/// A plain (non-presence) channel of this test.
fn chat_channel() -> String {
    unique_channel("chat").replacen("/presence/", "/chat/", 1)
}

/// Three processes with presence and the engine on one Redis.
fn three_on(redis: &RedisServer, extra: &[&str]) -> Vec<PresenceServer> {
    processes_on(3, redis, "redis", extra)
}

/// `n` processes with presence on `presence` and the engine at `engine` (`redis`: the same server).
fn processes_on(
    n: usize,
    presence: &RedisServer,
    engine: &str,
    extra: &[&str],
) -> Vec<PresenceServer> {
    let url = presence.url();
    (0..n)
        .map(|_| {
            let mut args = vec!["--redis", url.as_str(), "--engine", engine];
            args.extend_from_slice(extra);
            PresenceServer::start(&args)
        })
        .collect()
}

#[test]
fn bursts_from_two_processes_reach_subscribers_on_all_three_in_order() {
    const BURST: usize = 200;
    let redis = RedisServer::start();
    let servers = three_on(&redis, &[]);
    let channel = chat_channel();
    let mut d = Driver::start();
    let mut subscribers = Vec::new();
    for (s, server) in servers.iter().enumerate() {
        for transport in Transport::ALL {
            let name = format!("sub-{s}-{}", transport.name());
            d.client(&name, &server.url(), transport);
            d.subscribe(&name, &channel, None).expect("subscribe");
            subscribers.push(name);
        }
    }
    // Publishers on two processes, one per transport; their bursts interleave at the subscribers, but
    // each one's messages keep their order.
    d.client("pub-ws", &servers[0].url(), Transport::WebSocket);
    d.client("pub-lp", &servers[2].url(), Transport::LongPolling);
    // Faye sends a client's first messages over HTTP while it tries WebSocket; a subscribe round trip
    // first, so the burst goes over the transport the client settled on.
    let warm_up = chat_channel();
    d.subscribe("pub-ws", &warm_up, None).expect("subscribe");
    d.subscribe("pub-lp", &warm_up, None).expect("subscribe");
    let ws = d.send(
        "burst",
        vec![
            ("name", "pub-ws".into()),
            ("channel", channel.as_str().into()),
            ("count", Json::Num(BURST as f64)),
        ],
    );
    d.burst("pub-lp", &channel, BURST)
        .expect("long-polling burst");
    assert_eq!(d.answer(ws).get("ok").as_bool(), Some(true));
    for name in &subscribers {
        let got = d.wait_messages_for(name, &channel, 2 * BURST, Duration::from_secs(30));
        let mut per_publisher: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for message in &got {
            let data = message.get("data");
            let from = data.get("from").as_str().unwrap_or("?").to_owned();
            per_publisher
                .entry(from)
                .or_default()
                .push(data.get("seq").as_f64().unwrap_or(-1.0));
        }
        let want: Vec<f64> = (0..BURST).map(|n| n as f64).collect();
        for publisher in ["pub-lp", "pub-ws"] {
            // Faye's long-polling transport carries a burst in several concurrent requests; the
            // server takes a client's requests in turn, so its order holds there too.
            let seqs = per_publisher.get(publisher).cloned().unwrap_or_default();
            assert_eq!(
                seqs, want,
                "{name}: {publisher}'s messages, once each, in order"
            );
        }
        assert_eq!(got.len(), 2 * BURST, "{name}: nothing else, nothing twice");
    }
    assert!(d.faults().is_empty(), "{:?}", d.faults());
}

#[test]
fn a_client_that_hops_between_processes_keeps_its_subscriptions_and_messages() {
    let redis = RedisServer::start();
    let servers = three_on(&redis, &["--timeout", "1"]);
    let addr = |i: usize| servers[i].addr().to_owned();
    let channel = chat_channel();
    // Handshake on the first process, subscribe on the second, poll the third.
    let hopper = http::handshake(&addr(0));
    http::subscription(&addr(1), "/meta/subscribe", &hopper, &channel);
    let publisher = http::handshake(&addr(2));
    http::publish(&addr(0), &publisher, &channel, r#"{"n":1}"#);
    http::publish(&addr(1), &publisher, &channel, r#"{"n":2}"#);
    let got = http::connect(&addr(2), &hopper, &channel);
    assert_eq!(
        got,
        [json_n(1.0), json_n(2.0)],
        "queued while nobody polled"
    );
    // A connect held by one process is woken by a publish on another.
    let held = {
        let a = addr(0);
        let (hopper, channel) = (hopper.clone(), channel.clone());
        std::thread::spawn(move || http::connect(&a, &hopper, &channel))
    };
    let waiting = || {
        let mut con = redis.connect();
        let owner: Option<String> = redis::cmd("HGET")
            .arg(format!("bayeux:client:{{{hopper}}}"))
            .arg("owner")
            .query(&mut con)
            .unwrap();
        owner
    };
    let before = waiting();
    wait_until(
        "the held connect to move the client",
        Duration::from_secs(10),
        || waiting() != before,
    );
    http::publish(&addr(2), &publisher, &channel, r#"{"n":3}"#);
    assert_eq!(held.join().unwrap(), [json_n(3.0)]);
    // Unsubscribed on yet another process: nothing more for it anywhere.
    http::subscription(&addr(2), "/meta/unsubscribe", &hopper, &channel);
    http::publish(&addr(0), &publisher, &channel, r#"{"n":4}"#);
    assert!(http::connect(&addr(1), &hopper, &channel).is_empty());
}

fn json_n(n: f64) -> Json {
    Json::obj(vec![("n", Json::Num(n))])
}

#[test]
fn killing_one_of_three_times_its_clients_out_and_its_members_leave_once() {
    let redis = RedisServer::start();
    // The engine on a Redis of its own, as a deployment may have it.
    let engine = RedisServer::start();
    // A long presence TTL: the members leave because the survivors time the dead process's clients out
    // in the shared engine (1.6 s of silence), not because their connections expired in the module.
    let mut servers = processes_on(3, &redis, &engine.url(), &["--timeout", "1", "--ttl", "60"]);
    let channel = unique_channel("kill3");
    let mut d = Driver::start();
    let mut seen = Vec::new();
    for (s, transport) in [(0, Transport::WebSocket), (1, Transport::LongPolling)] {
        let name = format!("obs{s}");
        d.client(&name, &servers[s].url(), transport);
        let reply = d.join(&name, &channel, &name, Json::Null);
        seen.push((name, Observed::from_reply(&reply)));
    }
    let mut victims = Vec::new();
    for (m, transport) in [Transport::WebSocket, Transport::LongPolling]
        .into_iter()
        .enumerate()
    {
        let name = format!("v{m}");
        d.client(&name, &servers[2].url(), transport);
        d.join(&name, &channel, &format!("victim{m}"), Json::Num(m as f64));
        victims.push(d.connect(&name));
    }
    // victim0 also has a connection on a survivor: it stays.
    d.client("v0b", &servers[0].url(), Transport::LongPolling);
    d.join("v0b", &channel, "victim0", Json::Num(0.0));
    // obs0 also saw obs1 join.
    let joins_seen = [3, 2];
    for ((name, observed), joins) in seen.iter_mut().zip(joins_seen) {
        observed.apply_all(&d.wait_messages(name, &channel, joins));
        assert_eq!(observed.ids(), ["obs0", "obs1", "victim0", "victim1"]);
    }

    servers[2].kill9();
    for ((name, observed), joins) in seen.iter_mut().zip(joins_seen) {
        let got = d.wait_messages_for(name, &channel, joins + 1, Duration::from_secs(15));
        observed.apply_all(&got[joins..]);
        assert!(
            observed.violations.is_empty(),
            "{name}: {:?}",
            observed.violations
        );
        assert_eq!(
            observed.ids(),
            ["obs0", "obs1", "victim0"],
            "{name}: {:?}",
            observed.history
        );
    }
    let mut con = engine.connect();
    for id in &victims {
        wait_until(
            "the dead process's clients to be removed",
            Duration::from_secs(10),
            || {
                let exists: bool = redis::cmd("EXISTS")
                    .arg(format!("bayeux:client:{{{id}}}"))
                    .query(&mut con)
                    .unwrap();
                !exists
            },
        );
    }
    // The survivors keep serving: a message across them, and no second leave meanwhile.
    let chat = chat_channel();
    d.subscribe("obs1", &chat, None).expect("subscribe");
    d.publish("obs0", &chat, Json::Num(7.0)).unwrap();
    assert_eq!(
        d.wait_messages("obs1", &chat, 1)[0].get("data"),
        &Json::Num(7.0)
    );
    for ((name, _), joins) in seen.iter().zip(joins_seen) {
        assert_eq!(
            d.messages(name, &channel).len(),
            joins + 1,
            "{name}: one leave, once"
        );
    }
    assert!(
        d.faults().iter().all(|f| {
            // The dead process's own clients may complain that their server is gone.
            f.get("client")
                .as_str()
                .is_some_and(|c| c.starts_with('v') && c != "v0b")
        }),
        "{:?}",
        d.faults()
    );
}

#[test]
fn cut_engine_notifications_are_resubscribed_and_the_waiting_poll_still_gets_its_message() {
    let redis = RedisServer::start();
    let servers: Vec<_> = three_on(&redis, &["--timeout", "5"])
        .into_iter()
        .take(2)
        .collect();
    let channel = chat_channel();
    let (a, b) = (servers[0].addr().to_owned(), servers[1].addr().to_owned());
    let waiter = http::handshake(&b);
    http::subscription(&b, "/meta/subscribe", &waiter, &channel);
    let publisher = http::handshake(&a);
    // Each connect bumps the client's `gen` in the engine as it starts waiting for messages.
    let mut con = redis.connect();
    let mut gen = || -> i64 {
        redis::cmd("HGET")
            .arg(format!("bayeux:client:{{{waiter}}}"))
            .arg("gen")
            .query(&mut con)
            .unwrap()
    };
    let before = gen();
    let held = {
        let (b, waiter, channel) = (b.clone(), waiter.clone(), channel.clone());
        std::thread::spawn(move || http::connect(&b, &waiter, &channel))
    };
    wait_until("the connect to be held", Duration::from_secs(10), || {
        gen() > before
    });
    // Cut every pub/sub connection (the engines' notifications and the presence streams) as a network
    // fault would, then publish on the other process while the waiter's process may not hear of it.
    assert!(redis.kill_pubsub_connections() >= 2);
    http::publish(&a, &publisher, &channel, r#"{"n":1}"#);
    assert_eq!(
        held.join().unwrap(),
        [json_n(1.0)],
        "the message is not lost"
    );
    wait_until(
        "the loss window to be logged",
        Duration::from_secs(10),
        || servers[1].log().contains("engine notifications back"),
    );
    let log = servers[1].log();
    assert!(log.contains("engine notifications lost"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn an_engine_redis_restart_is_ridden_out_by_the_faye_clients() {
    let presence = RedisServer::start();
    let mut engine = RedisServer::start();
    let servers = processes_on(2, &presence, &engine.url(), &["--timeout", "2"]);
    let channel = chat_channel();
    let mut d = Driver::start();
    d.client("pub", &servers[0].url(), Transport::WebSocket);
    let subscribers = ["sub-ws", "sub-lp"];
    for (name, transport) in subscribers.iter().zip(Transport::ALL) {
        d.client(name, &servers[1].url(), transport);
        d.subscribe(name, &channel, None).expect("subscribe");
    }
    d.publish("pub", &channel, Json::Str("before".into()))
        .unwrap();
    for name in subscribers {
        d.wait_messages(name, &channel, 1);
    }
    // Restarted empty: every client is unknown now. Faye's clients handshake again and subscribe
    // again by themselves; publishes made meanwhile may fail, so keep publishing until both
    // subscribers have a message from after the restart.
    engine.restart(None);
    let mut n = 0;
    wait_until(
        "both subscribers to hear from after the restart",
        Duration::from_secs(30),
        || {
            n += 1;
            let _ = d.publish("pub", &channel, Json::Num(n as f64));
            subscribers.iter().all(|name| {
                d.messages(name, &channel)
                    .iter()
                    .any(|m| matches!(m.get("data"), Json::Num(_)))
            })
        },
    );
    for server in &servers {
        let log = server.log();
        assert!(!log.contains("panicked"), "{log}");
        assert!(log.contains("engine notifications back"), "{log}");
    }
}

#[test]
fn a_wrong_or_unreachable_engine_fails_startup_clearly() {
    let presence = RedisServer::start();
    let run = |engine: &str| {
        let output = std::process::Command::new(presence_tests::presence_server::binary_path())
            .args(["--listen", "127.0.0.1:0", "--redis", &presence.url()])
            .args(["--engine", engine])
            .output()
            .expect("run faye-presence");
        assert!(!output.status.success(), "--engine {engine} started");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let error = run("mysql://localhost");
    assert!(
        error.contains("--engine must be memory, redis or a redis:// URL"),
        "{error}"
    );
    let port = presence_tests::server::free_port();
    let error = run(&format!("redis://127.0.0.1:{port}"));
    assert!(error.contains("faye-presence:"), "{error}");
    assert!(!error.contains("panicked"), "{error}");
}

#[test]
fn a_presence_member_that_polls_other_processes_keeps_getting_its_roster_messages() {
    let redis = RedisServer::start();
    let servers = three_on(&redis, &["--timeout", "1"]);
    let addr = |i: usize| servers[i].addr().to_owned();
    let channel = unique_channel("hop");
    // Handshake on one process, join through a second.
    let hopper = http::handshake(&addr(0));
    let joined = http::presence_subscribe(&addr(1), &hopper, &channel, "hopper");
    assert_eq!(joined.get("subscribe").keys(), ["hopper"]);
    // Alice joins through the third; the hopper hears of it polling the third, which never saw it
    // subscribe, then of her leaving while polling the first.
    let mut d = Driver::start();
    d.client("alice", &servers[2].url(), Transport::WebSocket);
    let reply = d.join("alice", &channel, "alice", Json::Null);
    assert_eq!(reply.get("subscribe").keys(), ["alice", "hopper"]);
    let got = http::connect(&addr(2), &hopper, &channel);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].get("subscribe").keys(), ["alice"]);
    d.unsubscribe("alice", &channel);
    let got = http::connect(&addr(0), &hopper, &channel);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].get("unsubscribe").keys(), ["alice"]);
    // Its own leave, asked of yet another process, reaches the others' members once.
    d.client("bob", &servers[0].url(), Transport::LongPolling);
    let mut seen = Observed::from_reply(&d.join("bob", &channel, "bob", Json::Null));
    http::subscription(&addr(2), "/meta/unsubscribe", &hopper, &channel);
    let got = d.wait_messages("bob", &channel, 1);
    seen.apply_all(&got);
    assert_eq!(seen.ids(), ["bob"], "{:?}", seen.history);
    assert!(seen.violations.is_empty(), "{:?}", seen.violations);
    assert!(d.faults().is_empty(), "{:?}", d.faults());
}

/// The real CometD client, one client on each of two processes sharing the engine, over both transports:
/// each gets what the other publishes (`tests/js/cometd_client.mjs` with a second URL).
#[test]
fn cometd_clients_on_two_processes_see_each_others_messages() {
    let redis = RedisServer::start();
    let servers = processes_on(2, &redis, "redis", &[]);
    for transport in ["long-polling", "websocket"] {
        let prefix = chat_channel();
        let output = std::process::Command::new("node")
            .arg(presence_tests::presence_server::js_dir().join("cometd_client.mjs"))
            .args([&servers[0].url(), transport, &prefix, &servers[1].url()])
            .output()
            .expect("run node (install it with scripts/prerequisites.sh)");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("RESULT "),
            "{transport}: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
