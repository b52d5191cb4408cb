//! `faye-presence` end to end with the real Faye client, over long-polling and WebSocket: the roster in
//! the subscribe reply, join and leave diffs, one member for one id on several connections, leaves on
//! unsubscribe and `disconnect()`, a missing id rejected, and plain channels left alone.

use presence_tests::commands::{count, roster};
use presence_tests::presence_server::{json, Driver, Json, Observed, PresenceServer, Transport};
use presence_tests::{unique_channel, RedisServer};

fn setup() -> (RedisServer, PresenceServer) {
    let redis = RedisServer::start();
    let server = PresenceServer::start(&["--redis", &redis.url()]);
    (redis, server)
}

#[test]
fn reply_roster_and_join_leave_diffs() {
    let (redis, server) = setup();
    let mut con = redis.connect();
    for transport in Transport::ALL {
        let channel = unique_channel("basic");
        let mut d = Driver::start();
        for name in ["a", "b", "c"] {
            d.client(name, &server.url(), transport);
        }

        // The first subscriber's reply holds itself, with its data, and a rev.
        let a = d.join("a", &channel, "alice", json(r#"{"name":"Alice","n":1}"#));
        assert_eq!(
            a.get("subscribe"),
            &json(r#"{"alice":{"name":"Alice","n":1}}"#),
            "{transport:?}: {a}"
        );
        let mut seen_a = Observed::from_reply(&a);

        // The second sees both; the first gets exactly one join diff with a newer rev.
        let b = d.join("b", &channel, "bob", json(r#""just a string""#));
        assert_eq!(
            b.get("subscribe"),
            &json(r#"{"alice":{"name":"Alice","n":1},"bob":"just a string"}"#),
            "{transport:?}: {b}"
        );
        let mut seen_b = Observed::from_reply(&b);
        assert!(seen_b.rev > seen_a.rev, "{transport:?}: revs {a} then {b}");
        let to_a = d.wait_messages("a", &channel, 1);
        assert_eq!(
            to_a[0].get("data"),
            &json(r#"{"subscribe":{"bob":"just a string"}}"#)
        );
        seen_a.apply_all(&to_a);

        // A member with no data is null.
        let c = d.join("c", &channel, "carol", Json::Null);
        assert_eq!(c.get("subscribe").get("carol"), &Json::Null, "{c}");
        assert_eq!(c.get("subscribe").keys(), ["alice", "bob", "carol"]);

        // Redis holds the same.
        let (_, members) = roster(&mut con, &channel).unwrap();
        assert_eq!(members.len(), 3, "{transport:?}: {members:?}");

        // Leave on unsubscribe, then on disconnect(): the others get one leave each.
        d.unsubscribe("c", &channel);
        d.disconnect("b");
        let to_a = d.wait_messages("a", &channel, 4);
        assert_eq!(
            to_a[1..]
                .iter()
                .map(|m| m.get("data").clone())
                .collect::<Vec<_>>(),
            vec![
                json(r#"{"subscribe":{"carol":null}}"#),
                json(r#"{"unsubscribe":{"carol":null}}"#),
                json(r#"{"unsubscribe":{"bob":null}}"#),
            ],
            "{transport:?}"
        );
        let mut seen_a = Observed::from_reply(&a);
        seen_a.apply_all(&to_a);
        assert!(seen_a.violations.is_empty(), "{:?}", seen_a.violations);
        assert_eq!(seen_a.ids(), ["alice"]);
        let to_b = d.wait_messages("b", &channel, 2);
        seen_b.apply_all(&to_b[..2]);
        assert!(seen_b.violations.is_empty(), "{:?}", seen_b.violations);

        let (rev, members) = roster(&mut con, &channel).unwrap();
        assert_eq!(
            members.keys().cloned().collect::<Vec<_>>(),
            [b"alice".to_vec()],
            "{transport:?}"
        );
        assert_eq!(
            rev as f64, seen_a.rev,
            "{transport:?}: rev in Redis and as told"
        );
        d.disconnect("a");
        presence_tests::wait_until(
            "the channel to empty",
            presence_tests::presence_server::LIMIT,
            || count(&mut con, &channel).unwrap().1 == 0,
        );
        assert!(d.faults().is_empty(), "{:?}", d.faults());
    }
}
