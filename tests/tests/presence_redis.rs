//! `faye-presence` end to end against its Redis servers: channels sharded over two of them, and a Redis
//! that goes down and comes back.

use std::time::{Duration, Instant};

use presence_tests::commands::roster;
use presence_tests::presence_server::{
    json, key, Driver, Json, Observed, PresenceServer, Transport,
};
use presence_tests::{unique_channel, wait_until, RedisServer, ServerOptions};

fn exists(con: &mut redis::Connection, key: &str) -> bool {
    redis::cmd("EXISTS").arg(key).query(con).unwrap()
}

#[test]
fn channels_spread_over_two_shards_each_on_exactly_one() {
    let shards = [RedisServer::start(), RedisServer::start()];
    let server = PresenceServer::start(&["--redis", &shards[0].url(), "--redis", &shards[1].url()]);
    let mut cons: Vec<_> = shards.iter().map(|s| s.connect()).collect();
    let mut d = Driver::start();
    d.client("a", &server.url(), Transport::LongPolling);
    d.client("b", &server.url(), Transport::WebSocket);
    let channels: Vec<String> = (0..16).map(|_| unique_channel("shard")).collect();
    let mut on = [0, 0];
    for channel in &channels {
        d.join("a", channel, "alice", json(r#"{"k":1}"#));
        let b = d.join("b", channel, "bob", Json::Null);
        assert_eq!(b.get("subscribe").keys(), ["alice", "bob"], "{channel}");
        let held: Vec<bool> = cons.iter_mut().map(|c| exists(c, &key(channel))).collect();
        assert_eq!(
            held.iter().filter(|h| **h).count(),
            1,
            "{channel} on shards {held:?}"
        );
        let shard = held.iter().position(|h| *h).unwrap();
        on[shard] += 1;
        let (_, members) = roster(&mut cons[shard], &key(channel)).unwrap();
        assert_eq!(members.len(), 2, "{channel}: {members:?}");
        // The diff is relayed from whichever shard holds the channel.
        let got = d.wait_messages("a", channel, 1);
        assert_eq!(got[0].get("data"), &json(r#"{"subscribe":{"bob":null}}"#));
    }
    assert!(
        on[0] > 0 && on[1] > 0,
        "all 16 channels on one shard: {on:?}"
    );
    // Leaves go to the right shard too.
    for channel in &channels {
        d.unsubscribe("b", channel);
    }
    for channel in &channels {
        let got = d.wait_messages("a", channel, 2);
        assert_eq!(got[1].get("data"), &json(r#"{"unsubscribe":{"bob":null}}"#));
        let shard = cons
            .iter_mut()
            .position(|c| exists(c, &key(channel)))
            .unwrap();
        let (_, members) = roster(&mut cons[shard], &key(channel)).unwrap();
        assert_eq!(members.len(), 1, "{channel}: {members:?}");
    }
    assert!(d.faults().is_empty(), "{:?}", d.faults());
}

/// Waits until the observer "obs" has been told exactly `truth` on `channel`, then applies what it was
/// told after its first roster message to `seen` (which checks every step).
fn catch_up(
    d: &Driver,
    seen: &mut Observed,
    channel: &str,
    truth: &[&str],
    what: &str,
    limit: Duration,
) {
    let got = d.wait_events(what, limit, |events| {
        let got = presence_tests::presence_server::messages_in(events, "obs", channel);
        let mut o = seen.clone();
        o.apply_all(&got[1..]);
        (o.ids() == truth).then_some(got)
    });
    seen.apply_all(&got[1..]);
}

/// Stops `redis` (SHUTDOWN NOSAVE: its port closes, its data is gone) and waits until it is down.
fn stop(redis: &RedisServer) {
    let mut con = redis.connect();
    let _: redis::RedisResult<()> = redis::cmd("SHUTDOWN").arg("NOSAVE").query(&mut con);
    wait_until("Redis to stop", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", redis.port())).is_err()
    });
}

#[test]
fn redis_down_fails_presence_clearly_and_plain_channels_keep_working() {
    let mut redis = RedisServer::start();
    let server = PresenceServer::start(&["--redis", &redis.url()]);
    let plain = "/plain/redis-down";
    let mut d = Driver::start();
    for (name, transport) in [
        ("lp", Transport::LongPolling),
        ("ws", Transport::WebSocket),
        ("pub", Transport::LongPolling),
    ] {
        d.client(name, &server.url(), transport);
        d.connect(name);
    }
    d.subscribe("lp", plain, None).unwrap();
    stop(&redis);

    // Presence subscribes fail with an error, soon.
    for name in ["lp", "ws"] {
        let channel = unique_channel("down");
        let started = Instant::now();
        let result = d.subscribe(name, &channel, Some(json(r#"{"id":"alice"}"#)));
        let took = started.elapsed();
        let err = result.expect_err("a presence subscribe with Redis down succeeded");
        assert!(
            err.contains("Redis") || err.contains("presence"),
            "{name}: not a clear error: {err:?}"
        );
        assert!(
            took < Duration::from_secs(10),
            "{name}: failed only after {took:?}"
        );
    }
    // Plain channels keep working: subscribe, publish, deliver.
    d.subscribe("ws", plain, None).unwrap();
    d.publish("pub", plain, json(r#"{"n":1}"#)).unwrap();
    for name in ["lp", "ws"] {
        let got = d.wait_messages(name, plain, 1);
        assert_eq!(got[0].get("data"), &json(r#"{"n":1}"#));
    }

    // Redis is back (same port, module loaded, empty): presence works again, within a bound.
    redis.restart(None);
    let channel = unique_channel("back");
    let back = Instant::now();
    let mut attempts = 0;
    let reply = loop {
        attempts += 1;
        match d.subscribe("lp", &channel, Some(json(r#"{"id":"alice","data":1}"#))) {
            Ok(ext) => break ext,
            Err(e) => {
                assert!(
                    back.elapsed() < Duration::from_secs(15),
                    "presence still failing {:?} after Redis came back ({attempts} tries): {e}",
                    back.elapsed()
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    assert_eq!(
        reply.get("presence").get("subscribe"),
        &json(r#"{"alice":1}"#)
    );
    let mut seen = Observed::from_reply(reply.get("presence"));
    d.join("ws", &channel, "bob", Json::Null);
    let got = d.wait_messages("lp", &channel, 1);
    seen.apply_all(&got);
    assert!(seen.violations.is_empty(), "{:?}", seen.violations);
    assert_eq!(seen.ids(), ["alice", "bob"]);
    let (_, members) = roster(&mut redis.connect(), &key(&channel)).unwrap();
    assert_eq!(members.len(), 2, "{members:?}");
    assert!(d.faults().is_empty(), "{:?}", d.faults());
}

/// Redis restarts empty (no persistence): the server re-joins the connections it holds (TOUCH reports
/// them unknown), re-listens to the channel's diff stream, and its subscribers from before the outage
/// go on hearing changes, with a roster that still matches the truth.
#[test]
fn subscribers_from_before_an_outage_keep_a_true_roster_after_it() {
    let mut redis = RedisServer::start();
    let server = PresenceServer::start(&["--redis", &redis.url(), "--ttl", "1.5"]);
    let channel = unique_channel("outage");
    let mut d = Driver::start();
    d.client("obs", &server.url(), Transport::WebSocket);
    d.client("alice", &server.url(), Transport::LongPolling);
    d.client("bob", &server.url(), Transport::LongPolling);
    let mut seen = Observed::from_reply(&d.join("obs", &channel, "observer", Json::Null));
    d.join("alice", &channel, "alice", json(r#"{"a":1}"#));
    seen.apply_all(&d.wait_messages("obs", &channel, 1));

    stop(&redis);
    redis.restart(None);
    let mut con = redis.connect();
    wait_until(
        "the server to re-join its connections",
        Duration::from_secs(10),
        || {
            roster(&mut con, &key(&channel))
                .map(|(_, m)| m.len() == 2)
                .unwrap_or(false)
        },
    );
    let joined = Instant::now();
    let bob = loop {
        match d.subscribe("bob", &channel, Some(json(r#"{"id":"bob"}"#))) {
            Ok(ext) => break ext,
            Err(e) => {
                assert!(joined.elapsed() < Duration::from_secs(10), "bob: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    assert_eq!(
        bob.get("presence").get("subscribe").keys(),
        ["alice", "bob", "observer"]
    );
    let truth = ["alice", "bob", "observer"];
    catch_up(
        &d,
        &mut seen,
        &channel,
        &truth,
        "the observer to hear bob",
        Duration::from_secs(10),
    );
    assert!(seen.violations.is_empty(), "{:?}", seen.violations);
    let (rev, members) = roster(&mut con, &key(&channel)).unwrap();
    assert_eq!(members.len(), 3, "{members:?}");
    assert_eq!(seen.rev, rev as f64, "history {:?}", seen.history);
}

/// The server's pub/sub connection is cut (CLIENT KILL TYPE pubsub): it re-listens, tells its
/// subscribers what changed meanwhile, and they hear later changes exactly once, in order.
#[test]
fn a_cut_pubsub_connection_is_repaired() {
    let redis = RedisServer::start();
    let server = PresenceServer::start(&["--redis", &redis.url()]);
    let channel = unique_channel("cut");
    let mut d = Driver::start();
    for (name, transport) in [
        ("obs", Transport::WebSocket),
        ("a", Transport::LongPolling),
        ("b", Transport::WebSocket),
    ] {
        d.client(name, &server.url(), transport);
    }
    let mut seen = Observed::from_reply(&d.join("obs", &channel, "observer", Json::Null));
    d.join("a", &channel, "alice", Json::Null);
    seen.apply_all(&d.wait_messages("obs", &channel, 1));

    let mut con = redis.connect();
    let killed = redis.kill_pubsub_connections();
    assert!(killed >= 1, "the server had no pub/sub connection");
    // Another process's member joins right away, most likely while this server's stream is down: the
    // repair (read the roster, tell the difference) must bring it to the observer anyway.
    presence_tests::commands::join(
        &mut con,
        &key(&channel),
        "elsewhere",
        "carol",
        r#"{"c":1}"#,
        &["TTL", "60000"],
    )
    .unwrap();
    // While the stream reconnects, a presence subscribe fails with "try again" (503): retry, bounded.
    let cut = Instant::now();
    while let Err(e) = d.subscribe("b", &channel, Some(json(r#"{"id":"bob"}"#))) {
        assert!(
            e.contains("try again") && cut.elapsed() < Duration::from_secs(10),
            "bob after {:?}: {e}",
            cut.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    d.disconnect("a");
    let truth = ["bob", "carol", "observer"];
    catch_up(
        &d,
        &mut seen,
        &channel,
        &truth,
        "the observer to catch up",
        Duration::from_secs(15),
    );
    assert!(seen.violations.is_empty(), "{:?}", seen.violations);
    let (rev, _) = roster(&mut con, &key(&channel)).unwrap();
    assert_eq!(seen.rev, rev as f64, "history {:?}", seen.history);
    assert_eq!(seen.members["carol"], json(r#"{"c":1}"#));
}

/// Redis restarts with its AOF: the roster is kept, and subscribers see no change that did not happen.
#[test]
fn a_redis_restart_with_aof_keeps_rosters() {
    let mut redis = RedisServer::start_with(ServerOptions {
        server_args: ["--appendonly", "yes", "--appendfsync", "always"]
            .map(String::from)
            .to_vec(),
        ..Default::default()
    });
    let server = PresenceServer::start(&["--redis", &redis.url(), "--ttl", "3"]);
    let channel = unique_channel("aof");
    let mut d = Driver::start();
    d.client("obs", &server.url(), Transport::WebSocket);
    d.client("a", &server.url(), Transport::LongPolling);
    d.client("b", &server.url(), Transport::LongPolling);
    let mut seen = Observed::from_reply(&d.join("obs", &channel, "observer", Json::Null));
    d.join("a", &channel, "alice", json(r#"{"a":1}"#));
    seen.apply_all(&d.wait_messages("obs", &channel, 1));

    redis.restart(None);
    let mut con = redis.connect();
    let (_, members) = roster(&mut con, &key(&channel)).unwrap();
    assert_eq!(members.len(), 2, "roster after restart: {members:?}");
    let back = Instant::now();
    loop {
        match d.subscribe("b", &channel, Some(json(r#"{"id":"bob"}"#))) {
            Ok(_) => break,
            Err(e) => {
                assert!(back.elapsed() < Duration::from_secs(10), "bob: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    // Longer than a TTL, so a connection the server failed to keep alive would have expired.
    let settle = Instant::now() + Duration::from_secs(4);
    wait_until("a TTL to pass", Duration::from_secs(10), || {
        Instant::now() >= settle
    });
    let got = d.messages("obs", &channel);
    seen.apply_all(&got[1..]);
    assert!(seen.violations.is_empty(), "{:?}", seen.violations);
    assert_eq!(
        seen.ids(),
        ["alice", "bob", "observer"],
        "{:?}",
        seen.history
    );
    let (rev, members) = roster(&mut con, &key(&channel)).unwrap();
    assert_eq!(members.len(), 3, "{members:?}");
    assert_eq!(seen.rev, rev as f64, "history {:?}", seen.history);
}
