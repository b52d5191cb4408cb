//! `faye-presence` end to end: member data and ids as the app sends them (unicode, nested JSON, ids that
//! look like separators), the `--value object` switch, and signed identities with `--secret`.

use presence_tests::commands::{count, roster};
use presence_tests::presence_server::{
    json, key, Driver, Json, Observed, PresenceServer, Transport,
};
use presence_tests::{unique_channel, RedisServer};

#[test]
fn unicode_and_nested_data_round_trip_exactly() {
    let redis = RedisServer::start();
    let server = PresenceServer::start(&["--redis", &redis.url()]);
    let values = [
        json(
            r#"{"name":"Zoë Ångström 王秀英 😀","tags":["ü","\u0000x","\"quoted\"","back\\slash","line\nbreak"]}"#,
        ),
        json(
            r#"{"deep":{"a":[1,[2,[3,{"b":null,"c":true,"d":false}]]],"e":-0.5,"f":1e21,"g":""}}"#,
        ),
        json(r#"[{"x":{}},[],"\ud83c\udf0d",12345678901]"#),
        json(r#""a plain string with ☃""#),
        json("3.25"),
        json("false"),
    ];
    for transport in Transport::ALL {
        let channel = unique_channel("data");
        let mut d = Driver::start();
        d.client("obs", &server.url(), transport);
        d.join("obs", &channel, "observer", Json::Null);
        let mut expected = vec![("observer".to_owned(), Json::Null)];
        for (i, value) in values.iter().enumerate() {
            let name = format!("m{i}");
            let id = format!("member-{i}");
            d.client(&name, &server.url(), transport);
            let reply = d.join(&name, &channel, &id, value.clone());
            // In its own reply...
            assert_eq!(
                reply.get("subscribe").get(&id),
                value,
                "{transport:?}: own reply {reply}"
            );
            // ...in the diff to others...
            let got = d.wait_messages("obs", &channel, i + 1);
            assert_eq!(
                got[i].get("data").get("subscribe").get(&id),
                value,
                "{transport:?}: diff {}",
                got[i]
            );
            expected.push((id, value.clone()));
        }
        // ...and in the reply of someone joining later.
        d.client("late", &server.url(), transport);
        let reply = d.join("late", &channel, "late", Json::Null);
        expected.push(("late".to_owned(), Json::Null));
        let want = Json::Obj(expected.into_iter().collect());
        assert_eq!(reply.get("subscribe"), &want, "{transport:?}");
        assert!(d.faults().is_empty(), "{:?}", d.faults());
    }
}

#[test]
fn ids_with_separators_and_emoji_do_not_collide() {
    let redis = RedisServer::start();
    let server = PresenceServer::start(&["--redis", &redis.url()]);
    let mut con = redis.connect();
    // Pairs that a naive "id:client" or "{...}" key scheme would confuse.
    let ids = [
        "a",
        "a:b",
        "a:b:c",
        "a::",
        ":a",
        "{a}",
        "{a",
        "a}",
        "{",
        "a b",
        " a",
        "a ",
        "😀",
        "😀:😀",
        "{😀} :",
        "A",
        // (An empty id is refused, as faye-presence refuses it: see presence_roster.rs.)
        " ",
    ];
    for transport in Transport::ALL {
        let channel = unique_channel("ids");
        let mut d = Driver::start();
        d.client("obs", &server.url(), transport);
        let mut seen = Observed::from_reply(&d.join("obs", &channel, "observer", Json::Null));
        for (i, id) in ids.iter().enumerate() {
            let name = format!("c{i}");
            d.client(&name, &server.url(), transport);
            d.join(&name, &channel, id, Json::Num(i as f64));
        }
        let got = d.wait_messages("obs", &channel, ids.len());
        seen.apply_all(&got);
        assert!(seen.violations.is_empty(), "{:?}", seen.violations);
        let mut want: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        want.push("observer".into());
        want.sort();
        assert_eq!(seen.ids(), want, "{transport:?}");
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(
                seen.members[*id],
                Json::Num(i as f64),
                "{transport:?} {id:?}"
            );
        }
        let (_, members) = roster(&mut con, &key(&channel)).unwrap();
        assert_eq!(members.len(), ids.len() + 1, "{transport:?}: {members:?}");

        // Leaving one of the look-alikes removes exactly that one.
        d.disconnect("c1"); // "a:b"
        let got = d.wait_messages("obs", &channel, ids.len() + 1);
        seen.apply(&got[ids.len()]);
        assert_eq!(
            got[ids.len()].get("data"),
            &json(r#"{"unsubscribe":{"a:b":null}}"#)
        );
        assert!(seen.violations.is_empty(), "{:?}", seen.violations);
        assert_eq!(
            count(&mut con, &key(&channel)).unwrap().1 as usize,
            ids.len()
        );
    }
}

#[test]
fn value_object_mode_sends_the_whole_presence_object() {
    let redis = RedisServer::start();
    let server = PresenceServer::start(&["--redis", &redis.url(), "--value", "object"]);
    for transport in Transport::ALL {
        let channel = unique_channel("object");
        let mut d = Driver::start();
        d.client("a", &server.url(), transport);
        d.client("b", &server.url(), transport);
        let a = d.join("a", &channel, "alice", json(r#"{"name":"Alice"}"#));
        assert_eq!(
            a.get("subscribe"),
            &json(r#"{"alice":{"id":"alice","data":{"name":"Alice"}}}"#),
            "{transport:?}: {a}"
        );
        let b = d.join("b", &channel, "bob", json(r#"[1,"é"]"#));
        let bob = json(r#"{"id":"bob","data":[1,"é"]}"#);
        assert_eq!(b.get("subscribe").get("bob"), &bob, "{b}");
        assert_eq!(
            b.get("subscribe").get("alice"),
            a.get("subscribe").get("alice")
        );
        let got = d.wait_messages("a", &channel, 1);
        assert_eq!(
            got[0].get("data"),
            &Json::obj(vec![("subscribe", Json::obj(vec![("bob", bob)]))])
        );
        d.disconnect("b");
        let got = d.wait_messages("a", &channel, 2);
        assert_eq!(got[1].get("data"), &json(r#"{"unsubscribe":{"bob":null}}"#));
    }
}

/// faye-presence 0.0.3 stored and sent `message.ext.presence` as it came (its index.js:
/// `publish.subscribe[message.ext.presence.id] = message.ext.presence`), so front ends that put more than
/// `id` and `data` there (an avatar, a name) read those fields from the roster.
#[test]
fn value_object_mode_keeps_extra_presence_fields() {
    let redis = RedisServer::start();
    let server = PresenceServer::start(&["--redis", &redis.url(), "--value", "object"]);
    let channel = unique_channel("object-extra");
    let mut d = Driver::start();
    d.client("a", &server.url(), Transport::LongPolling);
    let sent = json(r#"{"id":"bob","data":[1,"é"],"avatar":"b.png"}"#);
    let reply = d.subscribe("a", &channel, Some(sent.clone())).unwrap();
    assert_eq!(
        reply.get("presence").get("subscribe").get("bob"),
        &sent,
        "{reply}"
    );
}

const SECRET: &str = "backend-s3cret";

#[test]
fn signed_identity_accepted_and_forged_rejected() {
    let redis = RedisServer::start();
    let server = PresenceServer::start(&["--redis", &redis.url(), "--secret", SECRET]);
    let mut con = redis.connect();
    for transport in Transport::ALL {
        let channel = unique_channel("signed");
        let other = unique_channel("signed-other");
        let mut d = Driver::start();
        d.client("a", &server.url(), transport);
        d.client("m", &server.url(), transport);
        let a_id = d.connect("a");
        d.connect("m");
        let data = r#"{"id":"alice","data":{"role":"admin","name":"Alïce"}}"#;
        let signed = |extra: &str| {
            json(&format!(
                r#"{{"secret":{},"channel_data":{}{extra}}}"#,
                Json::from(SECRET),
                Json::from(data)
            ))
        };

        // Forgeries first, while the channel is empty: each is rejected and stores nothing.
        let forgeries = [
            (
                "wrong secret",
                json(&format!(
                    r#"{{"secret":"guess","channel_data":{}}}"#,
                    Json::from(data)
                )),
            ),
            (
                "token of another client",
                signed(&format!(r#","client_id":{}"#, Json::from(a_id.as_str()))),
            ),
            (
                "token for another channel",
                signed(&format!(r#","channel":{}"#, Json::from(other.as_str()))),
            ),
            (
                "channel_data changed after signing",
                signed(&format!(
                    r#","tamper":{}"#,
                    Json::from(r#"{"id":"mallory","data":{"role":"admin"}}"#)
                )),
            ),
        ];
        for (what, forged) in forgeries {
            let result = d.subscribe_signed("m", &channel, forged);
            let err = result.expect_err(&format!("{transport:?}: {what} accepted"));
            assert!(err.contains("presence identity rejected"), "{what}: {err}");
        }
        // A plain claimed id is not enough once a secret is set.
        assert!(
            d.subscribe("m", &channel, Some(json(r#"{"id":"alice"}"#)))
                .is_err(),
            "{transport:?}: unsigned id accepted"
        );
        let exists: bool = redis::cmd("EXISTS")
            .arg(key(&channel))
            .query(&mut con)
            .unwrap();
        assert!(
            !exists,
            "{transport:?}: a rejected subscribe stored something"
        );

        // The real token: accepted, with the id and data from channel_data.
        let ext = d.subscribe_signed("a", &channel, signed("")).unwrap();
        assert_eq!(
            ext.get("presence").get("subscribe"),
            &json(r#"{"alice":{"role":"admin","name":"Alïce"}}"#),
            "{transport:?}: {ext}"
        );
        assert_eq!(count(&mut con, &key(&channel)).unwrap().1, 1);
    }
}
