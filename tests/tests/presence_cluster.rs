//! `faye-presence --cluster` against a 3-master Redis Cluster, with the real Faye client: channels land
//! on every master, each roster lives on exactly one node, and joins and leaves reach observers.

use presence_tests::commands::roster;
use presence_tests::presence_server::{json, Driver, Json, PresenceServer, Transport};
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
                    .arg(channel)
                    .query::<bool>(&mut con)
                    .unwrap_or(false)
            })
            .map(|(i, _)| i)
            .collect();
        assert_eq!(holders.len(), 1, "{channel} on nodes {holders:?}");
        let mut owner = cluster.nodes[holders[0]].connect();
        assert_eq!(roster(&mut owner, channel).unwrap().1.len(), 2);
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
