//! What keeps big rooms affordable, end to end with real Faye clients: count-only channels (members
//! are told `{count: n}`, never the roster) and `--max-roster` (a roster channel that is full refuses
//! one more member, storing nothing). Batching itself is in the mass join and the churn.

use std::time::Duration;

use presence_tests::commands::count;
use presence_tests::presence_server::{
    key, messages_in, Driver, Json, PresenceServer, Transport, LIMIT,
};
use presence_tests::{unique_channel, RedisServer};

/// Every count message `name` got on `channel` among the driver's `events`, in order, checking that
/// none carries a roster.
fn counts(events: &[Json], name: &str, channel: &str) -> Vec<f64> {
    messages_in(events, name, channel)
        .iter()
        .map(|m| {
            let data = m.get("data");
            assert_eq!(
                data.keys(),
                ["count"],
                "{name}: only counts, never rosters: {m}"
            );
            data.get("count").as_f64().expect("a number")
        })
        .collect()
}

#[test]
fn count_only_channels_tell_members_the_count_and_never_the_roster() {
    let redis = RedisServer::start();
    let args = [
        "--redis",
        &redis.url(),
        "--count-prefix",
        "/presence-count/",
        "--batch-ms",
        "50",
    ];
    let server = PresenceServer::start(&args);
    let mut con = redis.connect();
    for transport in Transport::ALL {
        let channel = unique_channel("count").replacen("/presence/", "/presence-count/", 1);
        let mut d = Driver::start();
        for name in ["a", "b", "c", "b2"] {
            d.client(name, &server.url(), transport);
        }
        // Each reply has the count, the subscriber included, and its revision; no roster.
        for (name, id, want) in [
            ("a", "ann", 1.0),
            ("b", "bob", 2.0),
            ("b2", "bob", 2.0),
            ("c", "cat", 3.0),
        ] {
            let reply = d.join(name, &channel, id, Json::Null);
            assert_eq!(
                reply.get("count").as_f64(),
                Some(want),
                "{transport:?} {name}: {reply}"
            );
            assert!(reply.get("rev").as_f64().is_some(), "{reply}");
            assert_eq!(reply.get("subscribe"), &Json::Null, "no roster: {reply}");
        }
        // Members hear the count change (batched: the last one they hear is what counts).
        let last_is = |d: &Driver, name: &str, n: f64| {
            d.wait_events(&format!("{name} told {n}"), LIMIT, |events| {
                (counts(events, name, &channel).last() == Some(&n)).then_some(())
            })
        };
        last_is(&d, "a", 3.0);
        // A second connection of bob's is not a member more; its leave is not a member less.
        d.unsubscribe("b2", &channel);
        d.unsubscribe("c", &channel);
        last_is(&d, "a", 2.0);
        last_is(&d, "b", 2.0);
        assert_eq!(
            count(&mut con, &key(&channel)).unwrap().1,
            2,
            "Redis agrees"
        );
        // Counts only ever name a change: never the same count twice in a row.
        let told = counts(&d.events(), "a", &channel);
        assert!(
            told.windows(2).all(|w| w[0] != w[1]),
            "{transport:?}: {told:?}"
        );
        // The same rules as presence channels: an id is required.
        d.client("x", &server.url(), transport);
        let refused = d.subscribe("x", &channel, None).unwrap_err();
        assert_eq!(refused, "No presence id specified in presence subscription");
        assert!(d.faults().is_empty(), "{:?}", d.faults());
    }
}

#[test]
fn a_full_roster_channel_refuses_one_more_member_and_stores_nothing() {
    let redis = RedisServer::start();
    let server = PresenceServer::start(&["--redis", &redis.url(), "--max-roster", "2"]);
    let mut con = redis.connect();
    for transport in Transport::ALL {
        let channel = unique_channel("full");
        let mut d = Driver::start();
        for name in ["a", "b", "c", "a2"] {
            d.client(name, &server.url(), transport);
        }
        d.join("a", &channel, "ann", Json::Null);
        d.join("b", &channel, "bob", Json::Null);
        let refused = d.subscribe("c", &channel, Some(Json::obj(vec![("id", "cat".into())])));
        let error = refused.expect_err("the third member is refused");
        assert!(
            error.contains("Presence refused (LIMIT the channel has 2 members, the most MAXMEMBERS allows (2))"),
            "{transport:?}: {error}"
        );
        // Another connection of a member is not one more member.
        d.join("a2", &channel, "ann", Json::Null);
        let (_, members, connections) = count(&mut con, &key(&channel)).unwrap();
        assert_eq!(
            (members, connections),
            (2, 3),
            "{transport:?}: nothing stored for cat"
        );
        // Nobody was told of cat: a's messages (after bob's join) end with bob's leave.
        d.unsubscribe("b", &channel);
        let got = d.wait_messages_for("a", &channel, 2, Duration::from_secs(20));
        let ids: Vec<String> = got
            .iter()
            .flat_map(|m| {
                let data = m.get("data");
                let mut ids = data.get("subscribe").keys();
                ids.extend(data.get("unsubscribe").keys());
                ids
            })
            .collect();
        assert_eq!(ids, ["bob", "bob"], "{transport:?}: {got:?}");
        // With room again, cat joins.
        let reply = d.join("c", &channel, "cat", Json::Null);
        assert_eq!(reply.get("subscribe").keys(), ["ann", "cat"], "{reply}");
    }
}
