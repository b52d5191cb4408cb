//! `faye-presence` under abuse, end to end with real Faye clients: a refusal for what a subscribe *is*
//! (data or id over the module's limits) is final (`400`), while Redis being down or slow stays
//! `503 ... try again`; ids over `presence.max-id-bytes` are refused before anything is stored.

use std::time::{Duration, Instant};

use presence_tests::presence_server::{json, key, Driver, Json, PresenceServer, Transport};
use presence_tests::{unique_channel, wait_until, RedisServer};

/// Subscribes `name` to `channel` with `ext.presence = presence`; the reply's raw `error` text, or
/// `None` when the subscribe succeeded.
fn refusal(d: &mut Driver, name: &str, channel: &str, presence: Json) -> Option<String> {
    let answer = d.request(
        "subscribe",
        vec![
            ("name", name.into()),
            ("channel", channel.into()),
            ("presence", presence),
        ],
    );
    if answer.get("ok").as_bool() == Some(true) {
        return None;
    }
    let raw = answer.get("raw").as_str().map(str::to_owned);
    Some(raw.unwrap_or_else(|| panic!("a failed subscribe without an error text: {answer}")))
}

fn stored(redis: &RedisServer, channel: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(key(channel))
        .query(&mut redis.connect())
        .unwrap()
}

/// A Bayeux error string is `code:params:message`; the code decides whether a client retries.
fn code(error: &str) -> &str {
    error.split(':').next().unwrap_or("")
}

#[test]
fn data_over_the_module_limit_is_a_final_refusal_with_the_reason() {
    let redis = RedisServer::start();
    let server = PresenceServer::start(&["--redis", &redis.url()]);
    let mut d = Driver::start();
    for transport in Transport::ALL {
        let name = format!("{transport:?}");
        d.client(&name, &server.url(), transport);
        let channel = unique_channel("big-data");
        // 70,000 characters of JSON string: 70,002 bytes of data, over the default 65,536.
        let big = Json::from("x".repeat(70_000).as_str());
        let presence = Json::obj(vec![("id", "alice".into()), ("data", big)]);
        let error = refusal(&mut d, &name, &channel, presence).expect("70 kB of data was accepted");
        assert_eq!(code(&error), "400", "{transport:?}: {error}");
        assert!(
            error.contains("data is 70002 bytes, over presence.max-data-bytes (65536)"),
            "{transport:?}: the reason is missing: {error}"
        );
        assert!(
            !error.contains("try again"),
            "{transport:?}: a final refusal must not invite a retry: {error}"
        );
        assert!(!stored(&redis, &channel), "{transport:?}: something stored");
        // The same client goes on: a subscribe within the limit works.
        d.join(&name, &channel, "alice", json(r#"{"small":true}"#));
    }
    assert!(d.faults().is_empty(), "{:?}", d.faults());
}

#[test]
fn an_id_over_max_id_bytes_is_refused_before_redis_and_stores_nothing() {
    let redis = RedisServer::start();
    let server = PresenceServer::start(&["--redis", &redis.url()]);
    let mut con = redis.connect();
    let joins_before = info_joins(&mut con);
    let mut d = Driver::start();
    d.client("c", &server.url(), Transport::LongPolling);
    for len in [257, 100 * 1024] {
        let channel = unique_channel("long-id");
        let id = "i".repeat(len);
        let presence = Json::obj(vec![("id", id.as_str().into())]);
        let error = refusal(&mut d, "c", &channel, presence)
            .unwrap_or_else(|| panic!("an id of {len} bytes was accepted"));
        assert_eq!(code(&error), "400", "{len}: {error}");
        assert!(
            error.contains(&format!(
                "id is {len} bytes, over presence.max-id-bytes (256)"
            )),
            "{len}: the reason is missing: {}",
            &error[..error.len().min(300)]
        );
        assert!(
            error.len() < 1024,
            "the error echoes the id: {} bytes",
            error.len()
        );
        assert!(!stored(&redis, &channel), "an id of {len} bytes was stored");
    }
    // Refused by the shim itself: the module never saw a join.
    assert_eq!(info_joins(&mut con), joins_before);
    // 256 bytes is within the limit.
    let channel = unique_channel("long-id-ok");
    let id = "i".repeat(256);
    let reply = d.join("c", &channel, &id, Json::Null);
    assert_eq!(reply.get("subscribe").get(&id), &Json::Null, "{reply}");
}

fn info_joins(con: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("presence").query(con).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("presence_joins:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no presence_joins in {info}"))
}

#[test]
fn redis_slow_or_down_stays_503_try_again() {
    let redis = RedisServer::start();
    let server = PresenceServer::start(&["--redis", &redis.url()]);
    let mut d = Driver::start();
    d.client("c", &server.url(), Transport::LongPolling);
    d.connect("c");

    // Slow: writes paused for longer than the shim waits for Redis (2 s).
    let mut admin = redis.connect();
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(6000)
        .arg("WRITE")
        .query(&mut admin)
        .unwrap();
    let channel = unique_channel("slow");
    let error = refusal(&mut d, "c", &channel, json(r#"{"id":"alice"}"#))
        .expect("a join succeeded while Redis paused writes");
    let _: () = redis::cmd("CLIENT")
        .arg("UNPAUSE")
        .query(&mut admin)
        .unwrap();
    assert_eq!(code(&error), "503", "{error}");
    assert!(error.contains("try again"), "{error}");

    // Down.
    let _: redis::RedisResult<()> = redis::cmd("SHUTDOWN").arg("NOSAVE").query(&mut admin);
    wait_until("Redis to stop", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", redis.port())).is_err()
    });
    let channel = unique_channel("down");
    let started = Instant::now();
    let error = refusal(&mut d, "c", &channel, json(r#"{"id":"alice"}"#))
        .expect("a join succeeded with Redis down");
    assert_eq!(code(&error), "503", "{error}");
    assert!(error.contains("try again"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(10));
}
