//! The module in a three-master Redis Cluster: each channel is one key in one slot, the cluster client
//! routes every command by its first argument, and a node that does not own a channel answers MOVED.

use std::collections::BTreeSet;

use presence_tests::commands::{join, leave, roster, roster_of};
use presence_tests::{Cluster, Listener};

#[test]
fn channels_spread_over_the_masters_and_each_lives_on_exactly_one() {
    let cluster = Cluster::start();
    let mut con = cluster
        .client()
        .get_connection()
        .expect("cluster connection");
    let channels: Vec<String> = (0..30)
        .map(|n| format!("/presence/cluster/room-{n}"))
        .collect();
    for ch in &channels {
        let joined = join(&mut con, ch, "c1", "alice", "a", &[]).unwrap();
        assert!(joined.joined);
        join(&mut con, ch, "c2", "bob", "b", &[]).unwrap();
        leave(&mut con, ch, "c2").unwrap();
        assert_eq!(
            roster(&mut con, ch).unwrap().1,
            roster_of(&[("alice", "a")])
        );
    }

    let mut owners = BTreeSet::new();
    for ch in &channels {
        let holders: Vec<usize> = cluster
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, node)| {
                let mut direct = node.connect();
                // READONLY-free EXISTS on a node that does not own the slot answers MOVED: count as absent.
                redis::cmd("EXISTS")
                    .arg(ch)
                    .query::<bool>(&mut direct)
                    .unwrap_or(false)
            })
            .map(|(i, _)| i)
            .collect();
        assert_eq!(
            holders.len(),
            1,
            "{ch} must live on exactly one node, found {holders:?}"
        );
        owners.insert(holders[0]);
    }
    assert_eq!(owners.len(), 3, "30 channels spread over all three masters");
}

#[test]
fn a_node_that_does_not_own_the_channel_answers_moved_and_events_come_from_the_owner() {
    let cluster = Cluster::start();
    let ch = "/presence/cluster/moved";
    let slot: u16 = {
        let mut con = cluster.nodes[0].connect();
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(ch)
            .query(&mut con)
            .unwrap()
    };
    let mut owner = None;
    for node in &cluster.nodes {
        let mut direct = node.connect();
        match join(&mut direct, ch, "c", "id", "", &[]) {
            Ok(_) => owner = Some(node),
            Err(error) => {
                assert_eq!(error.code(), Some("MOVED"), "{error}");
                assert!(error.to_string().contains(&slot.to_string()));
            }
        }
    }
    let owner = owner.expect("one node owns the slot");
    // Shard pub/sub for the channel is served by the owner of the same slot.
    let mut listener = Listener::subscribe(&owner.url(), ch);
    let mut con = owner.connect();
    let left = leave(&mut con, ch, "c").unwrap();
    let events = listener.next_events();
    assert_eq!(events[0].rev, left.rev);
}
