//! The shim's core against real Redis servers (and a cluster) with the module, without a Bayeux server:
//! roster messages are collected by a test [`Deliver`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use presence_shim::RosterMessage;
use presence_shim::{Config, Deliver, Presence};
use presence_tests::presence_server::key;
use presence_tests::{unique_channel, Cluster, RedisServer};
use serde_json::{json, Value};

/// Collects delivered roster messages with the clients each was addressed to.
#[derive(Default)]
struct Collected(Mutex<Vec<(RosterMessage, Vec<String>)>>);

#[async_trait]
impl Deliver for Collected {
    async fn deliver(&self, message: RosterMessage, mut clients: Vec<String>) {
        clients.sort();
        self.0.lock().unwrap().push((message, clients));
    }
}

impl Collected {
    /// The clients each message on `channel` was addressed to, in order.
    fn recipients(&self, channel: &str) -> Vec<Vec<String>> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, _)| m.channel == channel)
            .map(|(_, clients)| clients.clone())
            .collect()
    }

    /// Waits until `count` messages for `channel` arrived, and returns them.
    async fn wait_for(&self, channel: &str, count: usize) -> Vec<RosterMessage> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let got: Vec<RosterMessage> = self
                .0
                .lock()
                .unwrap()
                .iter()
                .filter(|(m, _)| m.channel == channel)
                .map(|(m, _)| m.clone())
                .collect();
            if got.len() >= count {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {count} messages on {channel}, got {got:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn presence_ext(id: &str, data: Value) -> Value {
    json!({"presence": {"id": id, "data": data}})
}

async fn start(config: Config) -> (Presence, Arc<Collected>) {
    let collected = Arc::new(Collected::default());
    let presence = Presence::start(config, collected.clone())
        .await
        .expect("shim starts");
    (presence, collected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_returns_the_roster_and_the_stream_relays_changes() {
    let redis = RedisServer::start();
    let (presence, collected) = start(Config::with_servers([redis.url()])).await;
    let ch = unique_channel("core");

    let first = presence
        .subscribe("c1", &ch, Some(&presence_ext("ann", json!({"n": 1}))))
        .await
        .unwrap()
        .to_value();
    assert_eq!(first["subscribe"], json!({"ann": {"n": 1}}));
    let second = presence
        .subscribe("c2", &ch, Some(&presence_ext("bob", json!(null))))
        .await
        .unwrap()
        .to_value();
    assert_eq!(second["subscribe"], json!({"ann": {"n": 1}, "bob": null}));
    assert!(second["rev"].as_u64() > first["rev"].as_u64());

    // Bob's join reaches local subscribers as a roster message with its revision. (Ann's own join was in
    // the view's first snapshot, so it is not relayed: nobody here had been told anything before it.)
    let messages = collected.wait_for(&ch, 1).await;
    assert_eq!(messages.len(), 1);
    let bob_join = messages
        .iter()
        .find(|m| m.data == json!({"subscribe": {"bob": null}}))
        .expect("bob's join");
    assert_eq!(Some(bob_join.rev), second["rev"].as_u64());
    // c1 is past ann's own join (in its snapshot) but not bob's; c2's snapshot has both.
    assert_eq!(
        collected.recipients(&ch),
        [["c1"]],
        "addressed to the members that lack it only"
    );
    assert!(presence.admits("c1", &bob_join.channel, Some(bob_join.rev)));
    assert!(
        !presence.admits("c2", &bob_join.channel, Some(bob_join.rev)),
        "already in c2's snapshot"
    );
    // A client this process does not know got the message addressed by the process it joined through
    // (it polls this one now): it goes out. Non-members are never addressed at all.
    assert!(presence.admits("joined-elsewhere", &bob_join.channel, Some(bob_join.rev)));

    presence.unsubscribe("c2", &ch).await;
    let messages = collected.wait_for(&ch, 2).await;
    assert_eq!(messages[1].data, json!({"unsubscribe": {"bob": null}}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_subscribe_leaves_nothing_behind() {
    let redis = RedisServer::start();
    let (presence, _) = start(Config::with_servers([redis.url()])).await;
    let ch = unique_channel("refused");
    let error = presence
        .subscribe("c1", &ch, Some(&json!({"presence": {"data": 1}})))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_bayeux(&ch),
        "No presence id specified in presence subscription"
    );
    let mut con = redis.connect();
    assert_eq!(
        presence_tests::commands::count(&mut con, &key(&ch)).unwrap(),
        (0, 0, 0)
    );
}

/// The stream connection is killed while a member joins behind the shim's back: after it reconnects,
/// local subscribers are told exactly what they missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_stream_is_resynced() {
    let redis = RedisServer::start();
    let (presence, collected) = start(Config::with_servers([redis.url()])).await;
    let ch = unique_channel("resync");
    let snapshot = presence
        .subscribe("c1", &ch, Some(&presence_ext("ann", json!(1))))
        .await
        .unwrap()
        .to_value();

    let mut con = redis.connect();
    let killed = redis.kill_pubsub_connections();
    assert_eq!(killed, 1);
    presence_tests::commands::join(&mut con, &key(&ch), "elsewhere", "zed", "\"z\"", &[]).unwrap();

    let messages = collected.wait_for(&ch, 1).await;
    assert_eq!(messages[0].data, json!({"subscribe": {"zed": "z"}}));
    assert!(Some(messages[0].rev) > snapshot["rev"].as_u64());
    assert!(presence.admits("c1", &messages[0].channel, Some(messages[0].rev)));
}

/// Redis forgets a connection (as after a failover): the next touch finds it unknown and joins it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_redis_lost_are_joined_again() {
    let redis = RedisServer::start();
    let mut config = Config::with_servers([redis.url()]);
    config.ttl = Duration::from_millis(600);
    let (presence, collected) = start(config).await;
    let ch = unique_channel("rejoin");
    presence
        .subscribe("c1", &ch, Some(&presence_ext("ann", json!(1))))
        .await
        .unwrap()
        .to_value();
    let mut con = redis.connect();
    presence_tests::commands::leave(&mut con, &key(&ch), "c1").unwrap();
    let messages = collected.wait_for(&ch, 2).await;
    assert_eq!(messages[0].data, json!({"unsubscribe": {"ann": null}}));
    assert_eq!(messages[1].data, json!({"subscribe": {"ann": 1}}));
    let (_, members) = presence_tests::commands::roster(&mut con, &key(&ch)).unwrap();
    assert_eq!(members.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_on_a_redis_cluster() {
    let cluster = Cluster::start();
    let mut config = Config::default();
    config.cluster = cluster.urls();
    let (presence, collected) = start(config).await;
    let channels: Vec<String> = (0..6)
        .map(|n| format!("/presence/cluster-core/{n}"))
        .collect();
    for ch in &channels {
        presence
            .subscribe("c1", ch, Some(&presence_ext("ann", json!(1))))
            .await
            .unwrap()
            .to_value();
        let second = presence
            .subscribe("c2", ch, Some(&presence_ext("bob", json!(2))))
            .await
            .unwrap()
            .to_value();
        assert_eq!(second["subscribe"], json!({"ann": 1, "bob": 2}));
    }
    for ch in &channels {
        let messages = collected.wait_for(ch, 1).await;
        assert_eq!(messages[0].data, json!({"subscribe": {"bob": 2}}), "{ch}");
    }
}

/// On a cluster, connections Redis lost on channels of several slots are found by the touches (one
/// pipeline per slot) and joined again. (One pipeline over all channels failed with CROSSSLOT.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_connections_redis_lost_are_joined_again() {
    let cluster = Cluster::start();
    let mut config = Config::default();
    config.cluster = cluster.urls();
    config.ttl = Duration::from_millis(900);
    let (presence, collected) = start(config).await;
    let channels: Vec<String> = (0..6)
        .map(|n| format!("/presence/cluster-rejoin/{n}"))
        .collect();
    for ch in &channels {
        presence
            .subscribe("c1", ch, Some(&presence_ext("ann", json!(1))))
            .await
            .unwrap()
            .to_value();
    }
    tokio::task::block_in_place(|| {
        let mut con = cluster
            .client()
            .get_connection()
            .expect("cluster connection");
        for ch in &channels {
            presence_tests::commands::leave(&mut con, &key(ch), "c1").unwrap();
        }
    });
    for ch in &channels {
        let messages = collected.wait_for(ch, 2).await;
        assert_eq!(
            messages[0].data,
            json!({"unsubscribe": {"ann": null}}),
            "{ch}"
        );
        assert_eq!(messages[1].data, json!({"subscribe": {"ann": 1}}), "{ch}");
    }
}

/// One of two servers dies: the members on the other keep being touched, several TTLs on. (Touches
/// used to run server after server and stop at the first error, so in one order of the two the live
/// server was never touched again.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_server_does_not_stop_the_touches_of_the_others() {
    let (live, mut dead) = (RedisServer::start(), RedisServer::start());
    let mut config = Config::with_servers([live.url(), dead.url()]);
    config.ttl = Duration::from_millis(1500);
    config.timeout = Duration::from_millis(300);
    let ttl = config.ttl;
    let (presence, _) = start(config).await;
    // A channel on each server (jump hash of the name, as the store routes it).
    let on = |server: usize| {
        (0..)
            .map(|_| unique_channel("two"))
            .find(|ch| presence_shim::shard_of(ch, 2) == server)
            .unwrap()
    };
    let (kept, lost) = (on(0), on(1));
    for ch in [&kept, &lost] {
        presence
            .subscribe("c1", ch, Some(&presence_ext("ann", json!(1))))
            .await
            .unwrap()
            .to_value();
    }
    tokio::task::block_in_place(|| {
        dead.kill9();
        let mut con = live.connect();
        let since = std::time::Instant::now();
        while since.elapsed() < 4 * ttl {
            let (_, members) = presence_tests::commands::roster(&mut con, &key(&kept)).unwrap();
            assert_eq!(
                members.len(),
                1,
                "ann gone {:?} after the other server died",
                since.elapsed()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    });
}

/// Every stream connection to the cluster is cut (as a network fault would), and each channel gets a
/// member behind the shim's back: wherever its slot lives, every channel is subscribed again and its
/// local subscribers are told of the member. (redis-rs' own resubscription sends one `SSUBSCRIBE` per
/// node for all its channels, which Redis refuses with CROSSSLOT when they span two slots.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_cluster_stream_is_subscribed_again_on_every_slot() {
    let cluster = Cluster::start();
    let mut config = Config::default();
    config.cluster = cluster.urls();
    let (presence, collected) = start(config).await;
    let channels: Vec<String> = (0..12)
        .map(|n| format!("/presence/cluster-cut/{n}"))
        .collect();
    for ch in &channels {
        presence
            .subscribe("c1", ch, Some(&presence_ext("ann", json!(1))))
            .await
            .unwrap()
            .to_value();
    }
    tokio::task::block_in_place(|| {
        let cut: i64 = cluster
            .nodes
            .iter()
            .map(|node| node.kill_pubsub_connections())
            .sum();
        assert_eq!(cut, 3, "one stream connection per master");
        let mut con = cluster
            .client()
            .get_connection()
            .expect("cluster connection");
        for ch in &channels {
            presence_tests::commands::join(&mut con, &key(ch), "elsewhere", "zed", "2", &[])
                .unwrap();
        }
    });
    for ch in &channels {
        let messages = collected.wait_for(ch, 1).await;
        assert_eq!(messages[0].data, json!({"subscribe": {"zed": 2}}), "{ch}");
    }
}

/// The error `Presence::start` gave, as text.
async fn start_error(config: Config) -> String {
    match Presence::start(config, Arc::new(Collected::default())).await {
        Ok(_) => panic!("started without a usable presence Redis"),
        Err(error) => error.to_string(),
    }
}

#[tokio::test]
async fn startup_fails_clearly_without_the_module_or_without_redis() {
    let plain = RedisServer::start_with(presence_tests::ServerOptions {
        without_module: true,
        ..Default::default()
    });
    let error = start_error(Config::with_servers([plain.url()])).await;
    assert!(
        error.contains("does not have the presence module loaded"),
        "{error}"
    );

    let port = presence_tests::server::free_port();
    let error = start_error(Config::with_servers([format!("redis://127.0.0.1:{port}")])).await;
    assert!(!error.is_empty(), "unreachable Redis: {error}");
}

#[tokio::test]
async fn startup_fails_clearly_when_one_cluster_master_lacks_the_module() {
    let cluster = Cluster::start_with_module_on([true, true, false]);
    let mut config = Config::with_servers(Vec::<String>::new());
    config.cluster = cluster.urls();
    let error = start_error(config).await;
    assert!(
        error.contains("1 master(s) of the cluster do not have the presence module"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_shim_closes_its_connections() {
    let redis = RedisServer::start();
    let connected = {
        let redis_url = redis.url();
        move || -> usize {
            let client = redis::Client::open(redis_url.as_str()).unwrap();
            let list: String = redis::cmd("CLIENT")
                .arg("LIST")
                .query(&mut client.get_connection().unwrap())
                .unwrap();
            list.lines().count()
        }
    };
    let before = connected();
    let (presence, _collected) = start(Config::with_servers([redis.url()])).await;
    let ch = unique_channel("dropped");
    presence
        .subscribe("c1", &ch, Some(&presence_ext("a", json!(1))))
        .await
        .unwrap();
    assert!(connected() >= before + 2, "commands and the stream");
    drop(presence);
    // The touch loop and the stream end with it, and the Redis thread its connections live on.
    tokio::task::spawn_blocking(move || {
        presence_tests::wait_until(
            "the shim's connections to close",
            Duration::from_secs(10),
            || connected() == before,
        )
    })
    .await
    .unwrap();
}
