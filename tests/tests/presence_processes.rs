//! `faye-presence` end to end with two server processes on one Redis, each with its own in-memory
//! Bayeux engine: roster changes caused on one reach observers on the other in `rev` order, and when one
//! process is killed its members expire and the survivor relays their leaves.

use std::time::{Duration, Instant};

use presence_tests::commands::roster;
use presence_tests::presence_server::{
    json, key, Driver, Json, Observed, PresenceServer, Transport,
};
use presence_tests::{unique_channel, wait_until, RedisServer};

#[test]
fn an_observer_on_one_process_sees_changes_made_on_the_other() {
    let redis = RedisServer::start();
    let one = PresenceServer::start(&["--redis", &redis.url()]);
    let two = PresenceServer::start(&["--redis", &redis.url()]);
    let mut con = redis.connect();
    for transport in Transport::ALL {
        let channel = unique_channel("procs");
        let mut d = Driver::start();
        d.client("obs", &one.url(), transport);
        let mut seen = Observed::from_reply(&d.join("obs", &channel, "observer", Json::Null));
        // Changes on process two: joins, a second connection of one id, unsubscribe, disconnect.
        for (name, id) in [("x1", "x"), ("y", "y"), ("x2", "x"), ("z", "z")] {
            d.client(name, &two.url(), transport);
            let reply = d.join(
                name,
                &channel,
                id,
                json(&format!(r#"{{"via":"two","n":"{name}"}}"#)),
            );
            // Replies on two include the observer that joined on one.
            assert!(
                reply
                    .get("subscribe")
                    .keys()
                    .contains(&"observer".to_owned()),
                "{reply}"
            );
        }
        d.unsubscribe("y", &channel);
        d.disconnect("x1"); // x still has x2
        d.disconnect("z");
        d.disconnect("x2"); // now x leaves
        let want_end = ["observer"];
        let got = d.wait_events(
            "the observer's roster to settle",
            Duration::from_secs(20),
            |events| {
                let got = presence_tests::presence_server::messages_in(events, "obs", &channel);
                let mut o = seen.clone();
                o.apply_all(&got);
                (o.ids() == want_end && got.len() >= 7).then_some(got)
            },
        );
        seen.apply_all(&got);
        assert!(
            seen.violations.is_empty(),
            "{transport:?}: {:?}",
            seen.violations
        );
        // In the order caused: x2's different data is an update of x, not a second join.
        assert_eq!(
            seen.history,
            ["+x", "+y", "~x", "+z", "-y", "-z", "-x"],
            "{transport:?}"
        );
        let (rev, members) = roster(&mut con, &key(&channel)).unwrap();
        assert_eq!(
            rev as f64, seen.rev,
            "{transport:?}: the last rev told is Redis's"
        );
        assert_eq!(
            members.keys().cloned().collect::<Vec<_>>(),
            [b"observer".to_vec()]
        );
        assert!(d.faults().is_empty(), "{:?}", d.faults());
    }
}

#[test]
fn a_killed_process_members_leave_within_the_ttl() {
    const TTL: f64 = 1.0;
    let redis = RedisServer::start();
    let ttl = TTL.to_string();
    let survivor = PresenceServer::start(&["--redis", &redis.url(), "--ttl", &ttl]);
    let mut victim = PresenceServer::start(&["--redis", &redis.url(), "--ttl", &ttl]);
    let mut con = redis.connect();
    let channels = [unique_channel("crash"), unique_channel("crash")];
    let mut d = Driver::start();
    let mut seen = Vec::new();
    for (i, channel) in channels.iter().enumerate() {
        let transport = Transport::ALL[i];
        let obs = format!("obs{i}");
        d.client(&obs, &survivor.url(), transport);
        seen.push(Observed::from_reply(&d.join(
            &obs,
            channel,
            "observer",
            Json::Null,
        )));
        for m in 0..3 {
            let name = format!("m{i}-{m}");
            d.client(&name, &victim.url(), transport);
            d.join(&name, channel, &format!("member{m}"), Json::Num(m as f64));
        }
        // A member on both processes stays: its survivor connection keeps it present.
        let both = format!("both{i}");
        d.client(&both, &survivor.url(), transport);
        d.join(&both, channel, "member0", Json::Num(0.0));
        let got = d.wait_messages(&obs, channel, 3);
        seen[i].apply_all(&got);
        assert_eq!(seen[i].ids(), ["member0", "member1", "member2", "observer"]);
    }

    let killed = Instant::now();
    victim.kill9();
    for (i, channel) in channels.iter().enumerate() {
        let obs = format!("obs{i}");
        let got = d.wait_messages_for(&obs, channel, 5, Duration::from_secs(10));
        let took = killed.elapsed();
        seen[i].apply_all(&got[3..]);
        assert!(seen[i].violations.is_empty(), "{:?}", seen[i].violations);
        assert_eq!(
            seen[i].ids(),
            ["member0", "observer"],
            "{:?}",
            seen[i].history
        );
        // Within the TTL, plus one touch period of the survivor and scheduling slack.
        assert!(
            took.as_secs_f64() < TTL + TTL / 3.0 + 1.5,
            "leaves after {took:?} with a TTL of {TTL} s"
        );
        wait_until(
            "the roster in Redis to be clean",
            Duration::from_secs(5),
            || {
                let (_, members) = roster(&mut con, &key(channel)).unwrap();
                members.keys().cloned().collect::<Vec<_>>()
                    == [b"member0".to_vec(), b"observer".to_vec()]
            },
        );
    }
    // Nothing more after the survivor kept its members alive for a few more TTLs.
    let settle = Instant::now() + Duration::from_secs_f64(TTL * 2.0);
    wait_until("two TTLs to pass", Duration::from_secs(10), || {
        Instant::now() >= settle
    });
    for (i, channel) in channels.iter().enumerate() {
        let got = d.messages(&format!("obs{i}"), channel);
        assert_eq!(got.len(), 5, "{channel}: {got:?}");
        let (_, members) = roster(&mut con, &key(channel)).unwrap();
        assert_eq!(
            members.len(),
            2,
            "{channel}: survivor's members expired: {members:?}"
        );
    }
    assert!(d.faults().is_empty(), "{:?}", d.faults());
}
