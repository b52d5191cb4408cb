//! [`MemoryStore`]: the module's commands and event stream in memory, for the unit tests of the shim's
//! races. Rosters are `presence_roster::{Roster, Journal}`, the module's own logic, so a join, a leave
//! or a touch changes a roster exactly as `PRESENCE.*` would; only Redis is missing. The clock is
//! tokio's, so a test under `tokio::time::pause` decides when deadlines pass.
//!
//! What a test controls: how long each command takes (`command_delay`), how long events take to reach
//! the shim (`stream_delay`), losing the next events of a channel (the stream then asks for a resync, as
//! a real stream does after a reconnect), and losing the whole data set (a restart without
//! persistence: revisions start again from 0).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use presence_client::JoinOptions;
use presence_roster::roster::Bytes;
use presence_roster::{Event, Journal, Op, Roster as RosterState};
use tokio::sync::mpsc;

use crate::error::ShimError;
use crate::store::{Joined, PresenceStore, Roster};
use crate::stream::{EventStream, StreamSink};

/// The module and its shard pub/sub, in memory.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    rosters: HashMap<String, RosterState>,
    /// Channels the shim listens to, and where their events go.
    listening: HashSet<String>,
    outbox: Option<mpsc::UnboundedSender<Delivery>>,
    command_delay: Duration,
    stream_delay: Duration,
    /// Per channel, how many of its next changes are lost on the way to the shim.
    losses: HashMap<String, usize>,
}

enum Delivery {
    Events(String, Vec<Event>),
    Gap(String),
}

/// Microseconds on tokio's clock (paused in the tests), as the module's deadlines are.
fn now_us() -> u64 {
    static START: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(tokio::time::Instant::now);
    // Far from 0, like a real epoch clock, so nothing treats a deadline as unset.
    1_000_000_000_000
        + tokio::time::Instant::now()
            .duration_since(start)
            .as_micros() as u64
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Every command takes this long before it runs (its effect is atomic, at the end).
    pub fn set_command_delay(&self, delay: Duration) {
        self.state.lock().unwrap().command_delay = delay;
    }

    /// Events reach the shim this long after their command ran, in order.
    pub fn set_stream_delay(&self, delay: Duration) {
        self.state.lock().unwrap().stream_delay = delay;
    }

    /// The next `n` changes of `channel` never reach the shim; after them the stream reports a gap.
    pub fn lose_next(&self, channel: &str, n: usize) {
        self.state
            .lock()
            .unwrap()
            .losses
            .insert(channel.to_owned(), n);
    }

    /// Redis restarted without its data: every roster is gone, and the stream reports a gap on
    /// every channel listened to.
    pub fn lose_everything(&self) {
        let mut state = self.state.lock().unwrap();
        state.rosters.clear();
        let channels: Vec<String> = state.listening.iter().cloned().collect();
        if let Some(outbox) = &state.outbox {
            for channel in channels {
                let _ = outbox.send(Delivery::Gap(channel));
            }
        }
    }

    /// The true roster of `channel`: its revision and its ids, sorted.
    pub fn truth(&self, channel: &str) -> (u64, Vec<String>) {
        let state = self.state.lock().unwrap();
        let Some(roster) = state.rosters.get(channel) else {
            return (0, Vec::new());
        };
        let mut ids: Vec<String> = roster
            .members()
            .map(|(id, _)| String::from_utf8_lossy(id).into_owned())
            .collect();
        ids.sort();
        (roster.rev(), ids)
    }

    /// A join from another process (one this shim does not know), straight into the store.
    pub async fn join_elsewhere(&self, channel: &str, client: &str, id: &str) {
        let options = JoinOptions::new().ttl(Duration::from_secs(3600));
        self.join(channel, client, id, b"null", &options)
            .await
            .expect("a join elsewhere");
    }

    /// The stream, feeding `sink`: one task delivers every listened channel's events in order.
    pub fn stream(self: &Arc<Self>, sink: Arc<dyn StreamSink>) -> MemoryStream {
        let (outbox, mut deliveries) = mpsc::unbounded_channel::<Delivery>();
        self.state.lock().unwrap().outbox = Some(outbox);
        let store = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some(delivery) = deliveries.recv().await {
                let delay = match store.upgrade() {
                    Some(store) => store.state.lock().unwrap().stream_delay,
                    None => return,
                };
                tokio::time::sleep(delay).await;
                match delivery {
                    Delivery::Events(channel, events) => sink.events(&channel, events).await,
                    Delivery::Gap(channel) => {
                        // A real stream retries until the resync works; here the store is always up.
                        let _ = sink.resync(&channel).await;
                    }
                }
            }
        });
        MemoryStream(self.clone())
    }

    /// Runs one change on `channel`'s roster after the command delay, then publishes its events.
    async fn change<T>(
        &self,
        channel: &str,
        change: impl FnOnce(&mut RosterState, &mut Journal, u64) -> Result<T, ShimError>,
    ) -> Result<T, ShimError> {
        let delay = self.state.lock().unwrap().command_delay;
        tokio::time::sleep(delay).await;
        let mut state = self.state.lock().unwrap();
        // A channel that emptied keeps counting (the module keeps `rev` in a tombstone for that).
        let roster = state
            .rosters
            .entry(channel.to_owned())
            .or_insert_with(|| RosterState::new(0));
        let mut journal = Journal::begin(roster);
        let now = now_us();
        journal.purge(roster, now);
        let result = change(roster, &mut journal, now);
        let events = journal.events().to_vec();
        state.publish(channel, events);
        result
    }
}

impl State {
    fn publish(&mut self, channel: &str, events: Vec<Event>) {
        if events.is_empty() || !self.listening.contains(channel) {
            return;
        }
        if let Some(left) = self.losses.get_mut(channel) {
            *left -= 1;
            if *left == 0 {
                self.losses.remove(channel);
                if let Some(outbox) = &self.outbox {
                    let _ = outbox.send(Delivery::Gap(channel.to_owned()));
                }
            }
            return;
        }
        if let Some(outbox) = &self.outbox {
            let _ = outbox.send(Delivery::Events(channel.to_owned(), events));
        }
    }
}

fn members(roster: &RosterState) -> Vec<(Bytes, Bytes)> {
    roster
        .members()
        .map(|(id, data)| (id.clone(), data.clone()))
        .collect()
}

#[async_trait]
impl PresenceStore for MemoryStore {
    async fn join(
        &self,
        channel: &str,
        client: &str,
        id: &str,
        value: &[u8],
        options: &JoinOptions,
    ) -> Result<Joined, ShimError> {
        let ttl_us = options.ttl.unwrap_or(Duration::from_secs(60)).as_micros() as u64;
        let (max, with_roster) = (options.max_members, options.with_roster);
        self.change(channel, |roster, journal, now| {
            let count = roster.member_count();
            if let Some(max) = max.filter(|max| count as u64 >= *max) {
                if !roster.has_member(id.as_bytes()) {
                    return Err(ShimError::Refused(format!(
                        "LIMIT the channel has {count} members, the most MAXMEMBERS allows ({max})"
                    )));
                }
            }
            let (id, data) = roster.share_member(id.as_bytes(), value);
            let op = Op::Join {
                client: roster.share_client(client.as_bytes()),
                id,
                data,
                deadline: now + ttl_us,
            };
            journal.apply(roster, op);
            Ok(Joined {
                rev: roster.rev(),
                members: with_roster.then(|| members(roster)),
            })
        })
        .await
    }

    async fn rejoin(
        &self,
        channel: &str,
        client: &str,
        id: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<(), ShimError> {
        let options = JoinOptions::new().ttl(ttl);
        self.join(channel, client, id, value, &options)
            .await
            .map(drop)
    }

    async fn leave(&self, channel: &str, client: &str) -> Result<(), ShimError> {
        self.change(channel, |roster, journal, _| {
            if roster.member_of(client.as_bytes()).is_some() {
                let client = roster.share_client(client.as_bytes());
                journal.apply(roster, Op::Leave { client });
            }
            Ok(())
        })
        .await
    }

    async fn roster(&self, channel: &str) -> Result<Roster, ShimError> {
        let delay = self.state.lock().unwrap().command_delay;
        tokio::time::sleep(delay).await;
        let state = self.state.lock().unwrap();
        Ok(match state.rosters.get(channel) {
            Some(roster) => Roster {
                rev: roster.rev(),
                members: members(roster),
            },
            None => Roster::default(),
        })
    }

    async fn touch(
        &self,
        batch: &[(String, Vec<String>)],
        ttl: Duration,
    ) -> Result<Vec<(String, Vec<String>)>, ShimError> {
        let mut unknown = Vec::new();
        for (channel, clients) in batch {
            let lost = self
                .change(channel, |roster, journal, now| {
                    let mut lost = Vec::new();
                    for client in clients {
                        if roster.deadline_of(client.as_bytes()).is_some() {
                            let client = roster.share_client(client.as_bytes());
                            let deadline = now + ttl.as_micros() as u64;
                            journal.apply(roster, Op::Touch { client, deadline });
                        } else {
                            lost.push(client.clone());
                        }
                    }
                    Ok(lost)
                })
                .await?;
            if !lost.is_empty() {
                unknown.push((channel.clone(), lost));
            }
        }
        Ok(unknown)
    }
}

/// [`MemoryStore`]'s event stream.
pub struct MemoryStream(Arc<MemoryStore>);

#[async_trait]
impl EventStream for MemoryStream {
    async fn listen(&self, channel: &str) -> Result<(), ShimError> {
        self.0
            .state
            .lock()
            .unwrap()
            .listening
            .insert(channel.to_owned());
        Ok(())
    }

    fn unlisten(&self, channel: &str) {
        self.0.state.lock().unwrap().listening.remove(channel);
    }
}
