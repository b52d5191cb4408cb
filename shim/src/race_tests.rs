//! The shim's races, played on the in-memory store ([`crate::memory`]) under a paused clock: joins that
//! cross, a client that leaves while its join is in flight, a stream that lags the join, a gap in the
//! stream, and Redis losing its data. Every test ends on the promise the shim exists for: each member's
//! snapshot plus the roster messages addressed to it after that equals the true roster.
//! (`tests/core.rs` and the end-to-end suites play the same against a real Redis.)

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::memory::MemoryStore;
use crate::message::RosterMessage;
use crate::{Config, Deliver, Presence, ShimError};

/// The host: records every roster message with the members it is addressed to.
#[derive(Default)]
struct Host {
    delivered: Mutex<Vec<(RosterMessage, Vec<String>)>>,
}

#[async_trait]
impl Deliver for Host {
    async fn deliver(&self, message: RosterMessage, clients: Vec<String>) {
        self.delivered.lock().unwrap().push((message, clients));
    }
}

/// What a member knows: its snapshot, then the messages addressed to it.
struct Member {
    client: String,
    rev: u64,
    ids: BTreeSet<String>,
    /// Whether revisions may start again from 0 (Redis lost its data): then a message's revision is
    /// no longer above the snapshot's.
    revisions_restart: bool,
}

impl Member {
    fn from_reply(client: &str, reply: &Value) -> Self {
        let ids = reply["subscribe"]
            .as_object()
            .expect("a roster in the reply")
            .keys()
            .cloned()
            .collect();
        Member {
            client: client.to_owned(),
            rev: reply["rev"].as_u64().expect("a revision"),
            ids,
            revisions_restart: false,
        }
    }

    /// The roster this member holds now. Fails if a message it was sent is already in its snapshot
    /// (the host would drop it, but the shim must not address it).
    fn roster(&self, host: &Host) -> Vec<String> {
        let mut ids = self.ids.clone();
        for (message, clients) in host.delivered.lock().unwrap().iter() {
            if !clients.contains(&self.client) {
                continue;
            }
            let rev = message.rev;
            assert!(
                rev > self.rev || self.revisions_restart,
                "{}: a message at {rev} is already in its snapshot at {}",
                self.client,
                self.rev
            );
            let data = &message.data;
            for id in data["subscribe"].as_object().into_iter().flatten() {
                ids.insert(id.0.clone());
            }
            for id in data["unsubscribe"].as_object().into_iter().flatten() {
                ids.remove(id.0);
            }
        }
        ids.into_iter().collect()
    }
}

fn config(batch_ms: u64) -> Config {
    Config {
        batch: Duration::from_millis(batch_ms),
        ..Config::with_servers(["redis://unused.invalid"])
    }
}

fn claim(id: &str) -> Value {
    json!({"presence": {"id": id}})
}

async fn subscribe(presence: &Presence, client: &str, channel: &str, id: &str) -> Member {
    let reply = presence
        .subscribe(client, channel, Some(&claim(id)))
        .await
        .unwrap_or_else(|e| panic!("{client} subscribing as {id}: {e}"));
    Member::from_reply(client, &reply.to_value())
}

/// Lets the paused clock run until every member holds the truth, or fails after a bounded wait
/// (virtual time: a minute of it passes in an instant).
async fn settle(store: &MemoryStore, host: &Host, channel: &str, members: &[Member]) {
    let mut last = Vec::new();
    for _ in 0..600 {
        let truth = store.truth(channel).1;
        last = members
            .iter()
            .map(|m| (m.roster(host), truth.clone()))
            .collect();
        if last.iter().all(|(roster, truth)| roster == truth) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("members never held the truth: {last:?}");
}

#[tokio::test(start_paused = true)]
async fn joins_that_cross_leave_every_member_with_the_truth() {
    for batch_ms in [0, 50] {
        let store = MemoryStore::new();
        store.set_command_delay(Duration::from_millis(2));
        store.set_stream_delay(Duration::from_millis(7));
        let host = Arc::new(Host::default());
        let presence = Presence::start_in_memory(config(batch_ms), host.clone(), &store);
        let channel = "/presence/cross";
        let joins = (0..60).map(|i| {
            let presence = presence.clone();
            async move { subscribe(&presence, &format!("c{i}"), channel, &format!("m{i}")).await }
        });
        let members = futures_util::future::join_all(joins).await;
        // Each snapshot holds its own member; those that joined while others were joining learn of
        // them from messages.
        for (i, member) in members.iter().enumerate() {
            assert!(member.ids.contains(&format!("m{i}")), "batch {batch_ms}");
        }
        settle(&store, &host, channel, &members).await;
        assert_eq!(store.truth(channel).1.len(), 60);
    }
}

#[tokio::test(start_paused = true)]
async fn a_client_that_leaves_while_its_join_is_in_flight_leaves_nothing_behind() {
    let store = MemoryStore::new();
    store.set_command_delay(Duration::from_millis(20));
    let host = Arc::new(Host::default());
    let presence = Presence::start_in_memory(config(50), host.clone(), &store);
    let channel = "/presence/in-flight";
    let observer = subscribe(&presence, "obs", channel, "observer").await;
    let joining = {
        let presence = presence.clone();
        tokio::spawn(async move { presence.subscribe("c1", channel, Some(&claim("ann"))).await })
    };
    // The join is in the store's hands; the client goes meanwhile (a disconnect, a timeout).
    tokio::time::sleep(Duration::from_millis(5)).await;
    presence.unsubscribe("c1", channel).await;
    let outcome = joining.await.unwrap();
    assert!(
        matches!(&outcome, Err(ShimError::Interrupted(why)) if why.contains("left while joining")),
        "{outcome:?}"
    );
    settle(&store, &host, channel, &[observer]).await;
    assert_eq!(store.truth(channel).1, ["observer"], "ann is not stranded");
}

#[tokio::test(start_paused = true)]
async fn a_reply_waits_for_the_stream_to_catch_up_with_its_own_join() {
    let store = MemoryStore::new();
    store.set_stream_delay(Duration::from_millis(300));
    let host = Arc::new(Host::default());
    let presence = Presence::start_in_memory(config(50), host.clone(), &store);
    let channel = "/presence/lagging";
    let first = subscribe(&presence, "c1", channel, "ann").await;
    let started = tokio::time::Instant::now();
    let second = subscribe(&presence, "c2", channel, "bob").await;
    // The view had to hear bob's own join before answering: the reply is what every local member
    // knows, so it waited for the stream.
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(second.ids, BTreeSet::from(["ann".into(), "bob".into()]));
    settle(&store, &host, channel, &[first, second]).await;
}

#[tokio::test(start_paused = true)]
async fn a_gap_in_the_stream_is_repaired_by_a_resync_before_newer_events() {
    let store = MemoryStore::new();
    store.set_stream_delay(Duration::from_millis(3));
    let host = Arc::new(Host::default());
    let presence = Presence::start_in_memory(config(50), host.clone(), &store);
    let channel = "/presence/gap";
    let ann = subscribe(&presence, "c1", channel, "ann").await;
    store.lose_next(channel, 2);
    store.join_elsewhere(channel, "x1", "xena").await;
    store.join_elsewhere(channel, "y1", "yuri").await;
    store.join_elsewhere(channel, "z1", "zoe").await;
    settle(&store, &host, channel, &[ann]).await;
    assert_eq!(store.truth(channel).1, ["ann", "xena", "yuri", "zoe"]);
}

#[tokio::test(start_paused = true)]
async fn after_redis_lost_its_data_members_are_told_the_roster_as_it_is_and_then_rejoined() {
    let store = MemoryStore::new();
    let host = Arc::new(Host::default());
    let presence = Presence::start_in_memory(config(50), host.clone(), &store);
    let channel = "/presence/lost";
    let ann = subscribe(&presence, "c1", channel, "ann").await;
    let bob = subscribe(&presence, "c2", channel, "bob").await;
    store.lose_everything();
    // The resync finds nothing: the members are told so at once...
    let mut members = [ann, bob];
    for member in &mut members {
        member.revisions_restart = true;
    }
    let mut told_empty = false;
    for _ in 0..100 {
        if members.iter().all(|m| m.roster(&host).is_empty()) {
            told_empty = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        told_empty,
        "members told that Redis has nobody: {:?}",
        host.delivered.lock().unwrap()
    );
    // ...and the next touch (every TTL/3) joins this process's connections again, which they hear of.
    let mut rejoined = false;
    for _ in 0..300 {
        if store.truth(channel).1 == ["ann", "bob"] {
            rejoined = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        rejoined,
        "the touch loop joined both again: {:?}",
        store.truth(channel)
    );
    settle(&store, &host, channel, &members).await;
}
