//! `faye-presence` end to end with the real Faye client, over long-polling and WebSocket: the roster in
//! the subscribe reply, join and leave diffs, one member for one id on several connections, leaves on
//! unsubscribe and `disconnect()`, a missing id rejected, and plain channels left alone.

use presence_tests::commands::{count, roster};
use presence_tests::presence_server::{
    json, key, Driver, Json, Observed, PresenceServer, Transport,
};
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
        let (_, members) = roster(&mut con, &key(&channel)).unwrap();
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

        let (rev, members) = roster(&mut con, &key(&channel)).unwrap();
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
            || count(&mut con, &key(&channel)).unwrap().1 == 0,
        );
        assert!(d.faults().is_empty(), "{:?}", d.faults());
    }
}

#[test]
fn one_id_on_two_connections_is_one_member() {
    let (redis, server) = setup();
    let mut con = redis.connect();
    for transport in Transport::ALL {
        let channel = unique_channel("twice");
        let mut d = Driver::start();
        for name in ["obs", "tab1", "tab2"] {
            d.client(name, &server.url(), transport);
        }
        let obs = d.join("obs", &channel, "observer", Json::Null);
        let mut seen = Observed::from_reply(&obs);

        // Two connections (two tabs) of one id: one join, and both replies show one member.
        let one = d.join("tab1", &channel, "dana", json(r#"{"tab":1}"#));
        let two = d.join("tab2", &channel, "dana", json(r#"{"tab":1}"#));
        assert_eq!(one.get("subscribe").keys(), ["dana", "observer"]);
        assert_eq!(two.get("subscribe").keys(), ["dana", "observer"]);
        assert_eq!(count(&mut con, &key(&channel)).unwrap().1, 2, "members");
        assert_eq!(count(&mut con, &key(&channel)).unwrap().2, 3, "connections");

        // The first tab leaving changes nothing for others; the member stays.
        d.unsubscribe("tab1", &channel);
        presence_tests::wait_until(
            "the first tab's connection to go",
            presence_tests::presence_server::LIMIT,
            || count(&mut con, &key(&channel)).unwrap().2 == 2,
        );
        // The second leaving (disconnect) is the member's leave. Nothing came in between.
        d.disconnect("tab2");
        let got = d.wait_messages("obs", &channel, 2);
        assert_eq!(
            got.iter()
                .map(|m| m.get("data").clone())
                .collect::<Vec<_>>(),
            vec![
                json(r#"{"subscribe":{"dana":{"tab":1}}}"#),
                json(r#"{"unsubscribe":{"dana":null}}"#),
            ],
            "{transport:?}"
        );
        seen.apply_all(&got);
        assert!(seen.violations.is_empty(), "{:?}", seen.violations);
        assert_eq!(seen.ids(), ["observer"]);
        assert_eq!(count(&mut con, &key(&channel)).unwrap().1, 1);
        // And nothing more arrives after the leave (e.g. a second leave).
        d.unsubscribe("obs", &channel);
        assert_eq!(d.messages("obs", &channel).len(), 2, "{transport:?}");
    }
}

#[test]
fn missing_or_empty_id_is_rejected_and_nothing_is_stored() {
    let (redis, server) = setup();
    let mut con = redis.connect();
    for transport in Transport::ALL {
        let channel = unique_channel("noid");
        let mut d = Driver::start();
        d.client("a", &server.url(), transport);
        for presence in [
            None,
            Some(json(r#"{"data":{"x":1}}"#)),
            Some(json(r#"{"id":42,"data":null}"#)),
            Some(json(r#"{"id":null}"#)),
            // faye-presence 0.0.3 refuses an empty id too (`if (!presence.id)`).
            Some(json(r#"{"id":"","data":{"x":1}}"#)),
            Some(json(r#""alice""#)),
        ] {
            let what = format!("{transport:?} {presence:?}");
            let err = d.subscribe("a", &channel, presence).unwrap_err();
            assert_eq!(
                err, "No presence id specified in presence subscription",
                "{what}"
            );
        }
        let exists: bool = redis::cmd("EXISTS")
            .arg(key(&channel))
            .query(&mut con)
            .unwrap();
        assert!(
            !exists,
            "{transport:?}: a rejected subscribe stored something"
        );
        assert_eq!(count(&mut con, &key(&channel)).unwrap(), (0, 0, 0));
        // The client itself is fine, and can then join properly.
        let ok = d.join("a", &channel, "late", Json::Null);
        assert_eq!(ok.get("subscribe").keys(), ["late"], "{transport:?}");
    }
}

#[test]
fn plain_channels_are_left_alone() {
    let (redis, server) = setup();
    let mut con = redis.connect();
    for transport in Transport::ALL {
        let plain = format!("/chat/{}", unique_channel("plain").replace('/', "_"));
        let channel = unique_channel("rules");
        let mut d = Driver::start();
        d.client("a", &server.url(), transport);
        d.client("b", &server.url(), transport);

        // A plain subscribe: no presence ext in the reply, even when one is sent, nothing in Redis.
        let reply = d
            .subscribe("a", &plain, Some(json(r#"{"id":"alice"}"#)))
            .unwrap();
        assert_eq!(reply.get("presence"), &Json::Null, "{transport:?}: {reply}");
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut con).unwrap();
        assert!(
            keys.iter().all(|k| !k.contains("chat")),
            "plain channel stored: {keys:?}"
        );
        // Publishing works as in any Bayeux server, data untouched.
        d.publish("b", &plain, json(r#"{"text":"hi","subscribe":{"x":1}}"#))
            .unwrap();
        let got = d.wait_messages("a", &plain, 1);
        assert_eq!(
            got[0].get("data"),
            &json(r#"{"text":"hi","subscribe":{"x":1}}"#)
        );

        // Presence channels are the server's: clients may not publish there, nor use wildcards.
        d.join("a", &channel, "alice", Json::Null);
        let err = d
            .publish("b", &channel, json(r#"{"subscribe":{"mallory":null}}"#))
            .unwrap_err();
        assert!(
            err.contains("only the server publishes"),
            "publish on a presence channel: {err}"
        );
        let wild = format!("{}/*", channel.rsplit_once('/').unwrap().0);
        let err = d
            .subscribe("b", &wild, Some(json(r#"{"id":"w"}"#)))
            .expect_err("wildcard subscribe on presence channels accepted");
        assert!(err.contains("wildcard"), "{transport:?}: {err}");
        let (_, members) = roster(&mut con, &key(&channel)).unwrap();
        assert_eq!(members.len(), 1, "{transport:?}: {members:?}");
        // a saw no forged roster message.
        assert!(d.messages("a", &channel).is_empty(), "{transport:?}");
    }
}
