//! A Redis that stalls (SIGSTOP, every connection left open) while members come and go through two
//! `faye-presence` processes: subscribes during the stall fail with `503 ... try again` and store
//! nothing for good, leaves during it are not lost (they run when Redis goes on, or the members
//! expire), and once Redis answers again every observer's roster (built from its snapshot and roster
//! messages) and Redis itself equal the truth within the TTL.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use presence_tests::commands::roster;
use presence_tests::presence_server::{key, Driver, Json, Observed, PresenceServer, Transport};
use presence_tests::{unique_channel, RedisServer};

/// The presence TTL of the servers: what a lost leave costs at most.
const TTL_SECS: u64 = 3;

#[test]
fn a_stalled_redis_costs_no_member_and_keeps_no_ghost() {
    let redis = RedisServer::start();
    let url = redis.url();
    let ttl = TTL_SECS.to_string();
    let args = [
        "--redis",
        url.as_str(),
        "--ttl",
        ttl.as_str(),
        "--redis-timeout",
        "1",
        "--batch-ms",
        "50",
    ];
    let servers = [PresenceServer::start(&args), PresenceServer::start(&args)];
    let channel = unique_channel("stall");
    let mut d = Driver::start();

    // Observers on both processes and transports, and six members.
    let mut observers = Vec::new();
    for (s, server) in servers.iter().enumerate() {
        for transport in Transport::ALL {
            let name = format!("obs-{s}-{}", transport.name());
            d.client(&name, &server.url(), transport);
            let reply = d.join(&name, &channel, &name, Json::Null);
            observers.push((name, Observed::from_reply(&reply)));
        }
    }
    let mut truth: BTreeSet<String> = observers.iter().map(|(n, _)| n.clone()).collect();
    for m in 0..6 {
        let name = format!("m{m}");
        d.client(&name, &servers[m % 2].url(), Transport::ALL[m % 2]);
        d.join(&name, &channel, &name, Json::Null);
        truth.insert(name);
    }
    for (m, server) in servers.iter().enumerate() {
        d.client(&format!("late{m}"), &server.url(), Transport::WebSocket);
        d.connect(&format!("late{m}"));
    }

    // Redis stops. Two members leave (one unsubscribes, one disconnects) and two clients try to join.
    let stalled_at = Instant::now();
    let refused = {
        let _stalled = redis.stall();
        let unsubscribe = d.send(
            "unsubscribe",
            vec![("name", "m0".into()), ("channel", channel.as_str().into())],
        );
        let disconnect = d.send("disconnect", vec![("name", "m1".into())]);
        let joins: Vec<u64> = (0..2)
            .map(|m| {
                let name = format!("late{m}");
                let presence = Json::obj(vec![("id", name.as_str().into()), ("data", Json::Null)]);
                let fields = vec![
                    ("name", name.as_str().into()),
                    ("channel", channel.as_str().into()),
                    ("presence", presence),
                ];
                d.send("subscribe", fields)
            })
            .collect();
        // The joins are answered while Redis is still stopped: a refusal, not a hang.
        let refused: Vec<Json> = joins.into_iter().map(|req| d.answer(req)).collect();
        assert!(
            stalled_at.elapsed() < Duration::from_secs(10),
            "answered within the Redis timeout, not held"
        );
        // The leaves are the server's business now; the clients are told they are done.
        for req in [unsubscribe, disconnect] {
            assert_eq!(d.answer(req).get("ok").as_bool(), Some(true));
        }
        refused
    };
    for answer in &refused {
        assert_eq!(answer.get("ok").as_bool(), Some(false), "{answer}");
        let raw = answer.get("raw").as_str().unwrap_or_default();
        assert!(raw.starts_with("503:"), "a retryable refusal: {answer}");
    }
    truth.remove("m0");
    truth.remove("m1");

    // Redis goes on. Within the TTL (plus the module's second, plus slack for a loaded machine),
    // Redis and every observer agree with the truth.
    let deadline = Instant::now() + Duration::from_secs(TTL_SECS + 15);
    let mut con = redis.connect();
    let in_redis = |con: &mut redis::Connection| -> BTreeSet<String> {
        let (_, members) = roster(con, &key(&channel)).expect("PRESENCE.ROSTER");
        members
            .keys()
            .map(|id| String::from_utf8_lossy(id).into_owned())
            .collect()
    };
    loop {
        let redis_ok = in_redis(&mut con) == truth;
        let observed: Vec<(String, Observed)> = observers
            .iter()
            .map(|(name, start)| {
                let mut seen = start.clone();
                seen.apply_all(&d.messages(name, &channel));
                (name.clone(), seen)
            })
            .collect();
        let all_ok = observed
            .iter()
            .all(|(_, seen)| seen.ids().into_iter().collect::<BTreeSet<_>>() == truth);
        if redis_ok && all_ok {
            for (name, seen) in &observed {
                assert!(seen.violations.is_empty(), "{name}: {:?}", seen.violations);
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not converged: Redis {:?}, truth {truth:?}, observers {:?}\nlogs:\n{}\n---\n{}",
            in_redis(&mut con),
            observed
                .iter()
                .map(|(n, s)| (n, s.ids(), &s.violations))
                .collect::<Vec<_>>(),
            servers[0].log(),
            servers[1].log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // And presence works again: a refused client joins now, and everyone sees it.
    let reply = d.join("late0", &channel, "late0", Json::Null);
    assert!(reply.get("subscribe").keys().contains(&"late0".to_owned()));
    assert!(d.faults().is_empty(), "{:?}", d.faults());
}
