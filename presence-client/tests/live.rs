//! The client against a real `redis-server` with the module loaded: every command through the blocking
//! and the async trait, on RESP2 and on RESP3 connections, reads the same typed replies.

use std::time::Duration;

use presence_client::{cmd, JoinOptions, PresenceAsyncCommands, PresenceCommands, Touched};
use presence_tests::{unique_channel, RedisServer};

/// Every command once, on one blocking connection.
fn round(con: &mut redis::Connection, key: &str) {
    let options = JoinOptions::new()
        .ttl(Duration::from_secs(60))
        .with_roster();
    let alice = con
        .presence_join(key, "c1", "alice", b"{\"n\":1}", &options)
        .unwrap();
    assert!(alice.joined && !alice.changed);
    let roster = alice.roster.expect("WITHROSTER");
    assert_eq!(roster[&b"alice"[..]], b"{\"n\":1}");

    let again = con
        .presence_join(key, "c2", "alice", "2", &JoinOptions::new())
        .unwrap();
    assert!(!again.joined && again.changed);
    assert_eq!(again.rev, alice.rev + 1);
    assert_eq!(again.roster, None);

    let count = con.presence_count(key).unwrap();
    assert_eq!(
        (count.rev, count.members, count.connections),
        (again.rev, 1, 2)
    );
    let roster = con.presence_roster(key).unwrap();
    assert_eq!(roster.rev, again.rev);
    assert_eq!(roster.members[&b"alice"[..]], b"2");

    let touched = con
        .presence_touch(key, &["c1", "ghost"], Some(Duration::from_secs(60)))
        .unwrap();
    assert_eq!(touched.unknown, vec![b"ghost".to_vec()]);
    assert!(touched.expired.is_empty());

    let first = con.presence_leave(key, "c1").unwrap();
    assert_eq!(
        (first.left, first.id.as_deref()),
        (false, Some(&b"alice"[..]))
    );
    let last = con.presence_leave(key, "c2").unwrap();
    assert!(last.left);
    let unknown = con.presence_leave(key, "c2").unwrap();
    assert_eq!((unknown.left, unknown.id), (false, None));
}

#[test]
fn blocking_on_resp2_and_resp3() {
    let redis = RedisServer::start();
    round(&mut redis.connect(), &unique_channel("client-resp2"));
    round(&mut redis.connect_resp3(), &unique_channel("client-resp3"));
}

#[test]
fn a_pipeline_of_touches_reads_typed_replies() {
    let redis = RedisServer::start();
    let mut con = redis.connect_resp3();
    let keys = [unique_channel("client-pipe"), unique_channel("client-pipe")];
    con.presence_join(&keys[0], "c", "id", "null", &JoinOptions::new())
        .unwrap();
    let mut pipe = redis::pipe();
    for key in &keys {
        pipe.add_command(cmd::touch(key, &["c"], None));
    }
    let touched: Vec<Touched> = pipe.query(&mut con).unwrap();
    assert!(touched[0].unknown.is_empty());
    assert_eq!(touched[1].unknown, vec![b"c".to_vec()]);
}

#[tokio::test]
async fn async_on_resp2_and_resp3() {
    let redis = RedisServer::start();
    for url in [redis.url(), format!("{}/?protocol=resp3", redis.url())] {
        let client = redis::Client::open(url).unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        let key = unique_channel("client-async");
        let joined = con
            .presence_join(&key, "c1", "bob", "null", &JoinOptions::new().with_roster())
            .await
            .unwrap();
        assert!(joined.joined);
        assert_eq!(joined.roster.unwrap().len(), 1);
        let touched = con.presence_touch(&key, "c1", None).await.unwrap();
        assert!(touched.unknown.is_empty());
        let count = con.presence_count(&key).await.unwrap();
        assert_eq!((count.members, count.connections), (1, 1));
        let roster = con.presence_roster(&key).await.unwrap();
        assert_eq!(roster.members[&b"bob"[..]], b"null");
        assert!(con.presence_leave(&key, "c1").await.unwrap().left);
        assert_eq!(con.presence_count(&key).await.unwrap().members, 0);
    }
}

#[test]
fn the_module_s_refusals_stay_redis_errors() {
    let redis = RedisServer::start();
    let mut con = redis.connect();
    let key = unique_channel("client-refused");
    let error = con
        .presence_join(
            &key,
            "c",
            "id",
            "x",
            &JoinOptions::new().ttl(Duration::ZERO),
        )
        .unwrap_err();
    assert_eq!(error.code(), Some("ERR"), "{error}");
    assert!(error.to_string().contains("TTL"), "{error}");
}
