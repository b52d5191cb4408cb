//! `faye-presence` end to end: a client that stops polling leaves when the server's inactivity timeout
//! removes it, over long-polling and WebSocket.

use std::time::{Duration, Instant};

use presence_tests::commands::count;
use presence_tests::presence_server::{
    json, key, Driver, Json, Observed, PresenceServer, Transport,
};
use presence_tests::{unique_channel, wait_until, RedisServer};

#[test]
fn a_client_that_stops_polling_leaves_after_the_inactivity_timeout() {
    let redis = RedisServer::start();
    // Long-poll hold 1 s: a silent client is removed after about 1.6 s. The TTL is long, so the leave
    // can only come from the inactivity timeout, not from presence expiry.
    let server = PresenceServer::start(&["--redis", &redis.url(), "--timeout", "1", "--ttl", "60"]);
    let mut con = redis.connect();
    for transport in Transport::ALL {
        let channel = unique_channel("idle");
        let mut d = Driver::start();
        d.client("obs", &server.url(), transport);
        d.client("gone", &server.url(), transport);
        let mut seen = Observed::from_reply(&d.join("obs", &channel, "observer", Json::Null));
        d.join("gone", &channel, "ghost", json(r#"{"x":1}"#));
        let joined = d.wait_messages("obs", &channel, 1);
        seen.apply_all(&joined);

        let froze = Instant::now();
        d.freeze("gone");
        let got = d.wait_messages_for("obs", &channel, 2, Duration::from_secs(15));
        let took = froze.elapsed();
        eprintln!("{transport:?}: leave {took:?} after the client went silent");
        assert_eq!(
            got[1].get("data"),
            &json(r#"{"unsubscribe":{"ghost":null}}"#),
            "{transport:?}"
        );
        // 1.6 x the 1 s hold, plus a long-poll in flight and a loaded machine.
        assert!(
            took < Duration::from_secs(8),
            "{transport:?}: leave after {took:?}"
        );
        seen.apply(&got[1]);
        assert!(seen.violations.is_empty(), "{:?}", seen.violations);
        wait_until(
            "Redis to hold only the observer",
            Duration::from_secs(5),
            || count(&mut con, &key(&channel)).unwrap().1 == 1,
        );
        // The observer, polling all along, is still there and hears no more.
        assert_eq!(
            count(&mut con, &key(&channel)).unwrap(),
            (seen.rev as u64, 1, 1)
        );
        assert_eq!(d.messages("obs", &channel).len(), 2);
    }
}
