//! `faye-presence --cluster` against a 3-master Redis Cluster, with the real Faye client: channels land
//! on every master, each roster lives on exactly one node, and joins and leaves reach observers; with
//! `--engine redis`, two processes share clients and messages through the cluster.

use presence_tests::commands::roster;
use presence_tests::presence_server::{json, key, Driver, Json, PresenceServer, Transport};
use presence_tests::Cluster;

#[test]
fn presence_works_through_a_redis_cluster() {
    let cluster = Cluster::start();
    let seeds = cluster.urls().join(",");
    let server = PresenceServer::start(&["--cluster", &seeds]);
    let mut d = Driver::start();
    d.client("a", &server.url(), Transport::WebSocket);
    d.client("b", &server.url(), Transport::LongPolling);
    // Fixed names (the cluster is this test's own): their slots are known to cover all three masters.
    let channels: Vec<String> = (0..12)
        .map(|n| format!("/presence/cluster-e2e/{n}"))
        .collect();
    let mut nodes_used = std::collections::BTreeSet::new();
    for channel in &channels {
        d.join("a", channel, "alice", json(r#"{"k":1}"#));
        let b = d.join("b", channel, "bob", Json::Null);
        assert_eq!(b.get("subscribe").keys(), ["alice", "bob"], "{channel}");
        let got = d.wait_messages("a", channel, 1);
        assert_eq!(got[0].get("data"), &json(r#"{"subscribe":{"bob":null}}"#));
        // The roster is on exactly one node: the one that owns the channel's slot.
        let holders: Vec<usize> = cluster
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, node)| {
                let mut con = node.connect();
                redis::cmd("EXISTS")
                    .arg(key(channel))
                    .query::<bool>(&mut con)
                    .unwrap_or(false)
            })
            .map(|(i, _)| i)
            .collect();
        assert_eq!(holders.len(), 1, "{channel} on nodes {holders:?}");
        let mut owner = cluster.nodes[holders[0]].connect();
        assert_eq!(roster(&mut owner, &key(channel)).unwrap().1.len(), 2);
        nodes_used.insert(holders[0]);
    }
    assert_eq!(nodes_used.len(), 3, "12 channels over all three masters");
    for channel in &channels {
        d.unsubscribe("b", channel);
    }
    for channel in &channels {
        let got = d.wait_messages("a", channel, 2);
        assert_eq!(got[1].get("data"), &json(r#"{"unsubscribe":{"bob":null}}"#));
    }
    assert!(d.faults().is_empty(), "{:?}", d.faults());
}

/// Two processes sharing the Redis engine on the cluster: messages cross between them, the engine's
/// notifications are shard channels (each on one node), and clients' keys spread over the masters.
#[test]
fn two_processes_share_the_redis_engine_on_a_cluster() {
    let cluster = Cluster::start();
    let seeds = cluster.urls().join(",");
    let servers = [
        PresenceServer::start(&["--cluster", &seeds, "--engine", "redis"]),
        PresenceServer::start(&["--cluster", &seeds, "--engine", "redis"]),
    ];
    let mut d = Driver::start();
    let mut names = Vec::new();
    for (s, server) in servers.iter().enumerate() {
        for transport in Transport::ALL {
            let name = format!("c{s}-{}", transport.name());
            d.client(&name, &server.url(), transport);
            names.push(name);
        }
    }
    let channels: Vec<String> = (0..6).map(|n| format!("/chat/cluster-e2e/{n}")).collect();
    for channel in &channels {
        for name in &names {
            d.subscribe(name, channel, None).expect("subscribe");
        }
        d.publish("c0-websocket", channel, json(r#"{"from":0}"#))
            .unwrap();
        d.publish("c1-long-polling", channel, json(r#"{"from":1}"#))
            .unwrap();
    }
    for channel in &channels {
        for name in &names {
            let got = d.wait_messages(name, channel, 2);
            assert_eq!(got.len(), 2, "{name} on {channel}: {got:?}");
        }
    }
    // Where the engine's state went: notification channels are shard channels, none plain.
    let mut shard_channels = 0;
    let mut client_keys_on = std::collections::BTreeSet::new();
    for (i, node) in cluster.nodes.iter().enumerate() {
        let mut con = node.connect();
        let shard: Vec<String> = redis::cmd("PUBSUB")
            .arg("SHARDCHANNELS")
            .arg("bayeux:notify:*")
            .query(&mut con)
            .unwrap();
        shard_channels += shard.len();
        let plain: Vec<String> = redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .arg("bayeux:*")
            .query(&mut con)
            .unwrap();
        assert!(plain.is_empty(), "node {i}: plain channels {plain:?}");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("bayeux:client:*")
            .query(&mut con)
            .unwrap();
        if !keys.is_empty() {
            client_keys_on.insert(i);
        }
    }
    assert_eq!(shard_channels, 2, "one notification channel per process");
    assert!(
        client_keys_on.len() >= 2,
        "clients spread over the masters: {client_keys_on:?}"
    );
    assert!(d.faults().is_empty(), "{:?}", d.faults());
}
