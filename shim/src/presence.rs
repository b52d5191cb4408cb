//! [`Presence`]: the shim's core, independent of any Bayeux server. A host calls
//! [`Presence::subscribe`] when a client's subscription to a presence channel has succeeded,
//! [`Presence::unsubscribe`] when it ends, and [`Presence::admits`] on each delivery; the shim hands
//! ready-made roster messages, each addressed to the members that joined through this process, to the
//! host's [`Deliver`].
//!
//! No roster logic lives here: the module decides who is present; this routes commands, listens to the
//! event stream, and keeps, per channel, the view every local subscriber was told (`view::ChannelView`, private).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};

use async_trait::async_trait;
use presence_client::JoinOptions;
use presence_roster::Event;
use redis_runtime::RedisRuntime;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use crate::claim::Claim;
use crate::config::Config;
use crate::error::ShimError;
use crate::message::{net_message, RosterMessage};
use crate::store::{PresenceStore, Store};
use crate::stream::{EventStream, RedisStreams, StreamSink};
use crate::view::ChannelView;

/// Hands a roster message to the members that joined through this process. Every process receives
/// the events from Redis, so each one addresses its own members only (never a shared engine's channel
/// routing, which would deliver them once per process); with a shared engine the message then follows a
/// member to whichever process it polls.
#[async_trait]
pub trait Deliver: Send + Sync + 'static {
    /// Delivers `message` to each of `clients` (members of `message.channel` whose snapshot does
    /// not have it yet).
    async fn deliver(&self, message: RosterMessage, clients: Vec<String>);

    /// Whether `client` is still subscribed to `channel` in the host. With an engine that several
    /// processes share, a client that joined here may be unsubscribed or removed by another process;
    /// the touch loop asks before refreshing (or re-joining) a connection, so such a member is not kept
    /// alive forever. The default (one process, which hears every unsubscribe) says yes.
    async fn is_subscribed(&self, client: &str, channel: &str) -> bool {
        let _ = (client, channel);
        true
    }
}

/// What a presence subscribe puts into its reply's `ext.presence`.
#[derive(Debug)]
pub struct Subscribed {
    /// `ext.presence` but the roster: `{rev}`, or `{count, rev}` on a count-only channel.
    pub presence: Value,
    /// `ext.presence.subscribe`, the roster, serialized once per revision and shared by every reply
    /// answered at it; `None` on a count-only channel.
    pub roster: Option<Arc<RawValue>>,
}

impl Subscribed {
    /// `ext.presence` as one JSON value, the roster parsed back (for hosts and tests that want a value;
    /// the `bayeux` adapter shares the serialized roster instead, copying no member).
    pub fn to_value(&self) -> Value {
        let mut presence = self.presence.clone();
        if let (Value::Object(fields), Some(roster)) = (&mut presence, &self.roster) {
            let roster = serde_json::from_str(roster.get()).unwrap_or(Value::Null);
            fields.insert("subscribe".into(), roster);
        }
        presence
    }
}

/// The presence shim. Cheap to clone.
#[derive(Clone)]
pub struct Presence {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    store: Arc<dyn PresenceStore>,
    /// Set right after the shim is built: the stream holds the shim (as its sink) weakly.
    streams: OnceLock<Box<dyn EventStream>>,
    deliver: Arc<dyn Deliver>,
    state: Mutex<State>,
}

/// Per channel, so that the hot lookups (a delivery filter per receiver) borrow `&str` keys.
#[derive(Default)]
struct State {
    channels: HashMap<String, Channel>,
}

struct Channel {
    view: ChannelView,
    /// The view's revision, for subscribes waiting for the stream to catch up with their join.
    rev: watch::Sender<u64>,
    /// Local clients with a membership here, joined or joining.
    members: HashMap<String, Membership>,
    /// Events the view has applied, on their way to the members, in order, through a task of the
    /// channel's own: the view (and so every join's snapshot, and the stream's other channels) never
    /// waits for a delivery, which in a big room on a shared engine is a Redis round trip to hundreds
    /// of queues. The task also batches them (see [`Config::batch`]).
    outbox: mpsc::UnboundedSender<Outgoing>,
    /// Members are told the count only (see `Config::count_prefix`).
    count_only: bool,
}

impl Channel {
    /// The roster messages for a run of events, each with the members to tell: every member gets, in
    /// one message, the net change of the events after what it knows (its snapshot, or the last
    /// message it was sent). Members who know the same get the same message, built once: normally all
    /// of them, and a few that joined during the run.
    fn address(&mut self, channel: &str, run: &[Event]) -> Vec<(RosterMessage, Vec<String>)> {
        if self.count_only {
            return self.address_count(channel, run);
        }
        let Some(last) = run.last().map(|e| e.rev) else {
            return Vec::new();
        };
        let mut by_knowledge: HashMap<u64, Vec<String>> = HashMap::new();
        for (client, membership) in &self.members {
            if let Some(told) = membership.told.filter(|told| *told < last) {
                by_knowledge.entry(told).or_default().push(client.clone());
            }
        }
        let mut addressed = Vec::with_capacity(by_knowledge.len());
        for (told, clients) in by_knowledge {
            let unknown = run.partition_point(|e| e.rev <= told);
            // Nothing changed on the whole: the member is told nothing, and still knows `told`.
            let Some(message) = net_message(channel, &run[unknown..], told + 1) else {
                continue;
            };
            for client in &clients {
                if let Some(membership) = self.members.get_mut(client) {
                    membership.told = Some(last);
                }
            }
            addressed.push((message, clients));
        }
        addressed
    }

    /// On a count-only channel, one `{count: n}` message to the members told another count: the
    /// count the view has now (it may be ahead of the run; the members are then told up to there, and
    /// the events between are not news to them).
    fn address_count(&mut self, channel: &str, run: &[Event]) -> Vec<(RosterMessage, Vec<String>)> {
        let Some(last) = run.last().map(|e| e.rev) else {
            return Vec::new();
        };
        let (count, rev) = (self.view.len(), self.view.rev().max(last));
        let mut clients = Vec::new();
        for (client, membership) in &mut self.members {
            if membership.told.is_some_and(|told| told < last) {
                membership.told = Some(rev);
                if membership.told_count != Some(count) {
                    membership.told_count = Some(count);
                    clients.push(client.clone());
                }
            }
        }
        if clients.is_empty() {
            return Vec::new();
        }
        vec![(count_message(channel, count, rev), clients)]
    }
}

/// The count-only message: `{count: n}`, with the revision it is true at.
fn count_message(channel: &str, count: usize, rev: u64) -> RosterMessage {
    RosterMessage {
        channel: channel.to_owned(),
        data: json!({ "count": count }),
        rev,
        from: None,
    }
}

struct Membership {
    claim: Claim,
    /// Roster messages at or below this revision are already in the client's snapshot; `None` until the
    /// snapshot is taken, when every roster message is held back.
    seen: Option<u64>,
    /// The revision the client's roster is at: its snapshot's, then the last message's it was sent.
    told: Option<u64>,
    /// On a count-only channel, the count the client was told last.
    told_count: Option<usize>,
}

impl Presence {
    /// Connects to Redis, starts the event streams and the touch loop.
    pub async fn start(config: Config, deliver: Arc<dyn Deliver>) -> Result<Self, ShimError> {
        config.validate()?;
        // Every connection, the streams' included, is made on the Redis runtime, so it is driven (and
        // reconnected) there.
        let runtime = RedisRuntime::start("presence-redis")?;
        let store = Store::connect(&config, runtime.clone()).await?;
        let (inner, sink) = Inner::new(config, Arc::new(store.clone()), deliver);
        let streams_config = inner.config.clone();
        let streams = runtime
            .run(async move { RedisStreams::start(&streams_config, store, sink).await })
            .await??;
        Ok(Self::launch(inner, Box::new(streams), Some(&runtime)))
    }

    /// The shim over the in-memory store of the unit tests.
    #[cfg(test)]
    pub(crate) fn start_in_memory(
        config: Config,
        deliver: Arc<dyn Deliver>,
        memory: &Arc<crate::memory::MemoryStore>,
    ) -> Self {
        let (inner, sink) = Inner::new(config, memory.clone(), deliver);
        Self::launch(inner, Box::new(memory.stream(sink)), None)
    }

    /// Plugs the stream in and starts the touch loop: on the Redis runtime when there is one, since
    /// touches keep members present and must not wait behind the host's backlog (a touch loop woken
    /// a TTL late lets every member expire).
    fn launch(
        inner: Arc<Inner>,
        streams: Box<dyn EventStream>,
        runtime: Option<&RedisRuntime>,
    ) -> Self {
        let _ = inner.streams.set(streams);
        let touches = touch_loop(Arc::downgrade(&inner));
        match runtime {
            Some(runtime) => runtime.spawn(touches),
            None => {
                tokio::spawn(touches);
            }
        }
        Presence { inner }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// `client` subscribed to the presence `channel` with the request's `ext`: joins it and returns what
    /// the reply's `ext.presence` carries: `{subscribe: {id: value, ...}, rev}`, the roster including
    /// the client (`{count, rev}` on a count-only channel). On error nothing is left behind (the host
    /// undoes the subscription).
    pub async fn subscribe(
        &self,
        client: &str,
        channel: &str,
        ext: Option<&Value>,
    ) -> Result<Subscribed, ShimError> {
        let inner = &self.inner;
        let claim = Claim::from_ext(ext, client, channel, &inner.config)?;
        let was_member = {
            let mut state = inner.state();
            let membership = Membership {
                claim: claim.clone(),
                seen: None,
                told: None,
                told_count: None,
            };
            state
                .channels
                .entry(channel.to_owned())
                .or_insert_with(|| Channel::new(inner, channel))
                .members
                .insert(client.to_owned(), membership)
                .is_some()
        };
        if !was_member {
            metrics::gauge!("presence_local_members").increment(1.0);
        }
        match self.join(client, channel, &claim).await {
            Ok(reply) => {
                // The client may have gone while we joined (disconnected, timed out): its leave may then
                // have reached Redis before our join, so leave again rather than strand the member.
                let gone = inner
                    .state
                    .lock()
                    .unwrap()
                    .membership(client, channel)
                    .is_none();
                if gone {
                    let _ = inner.store.leave(channel, client).await;
                    return Err(ShimError::Interrupted("the client left while joining"));
                }
                Ok(reply)
            }
            Err(error) => {
                if !was_member {
                    self.forget(client, channel);
                    // The join may have reached Redis before the failure; undo it (the TTL would too).
                    // A refusal stored nothing, so there is nothing to undo.
                    if !matches!(error, ShimError::Refused(_)) {
                        let _ = inner.store.leave(channel, client).await;
                    }
                }
                Err(error)
            }
        }
    }

    async fn join(
        &self,
        client: &str,
        channel: &str,
        claim: &Claim,
    ) -> Result<Subscribed, ShimError> {
        let inner = &self.inner;
        // Listen before joining: every event after the join's snapshot then reaches this process.
        inner.stream().listen(channel).await?;
        // The roster from Redis only starts a view; once there is one, the snapshot comes from it, so
        // asking for the whole roster again on every join would be O(n) for nothing.
        let need_roster = {
            let state = inner.state();
            !state
                .channels
                .get(channel)
                .is_some_and(|c| c.view.is_initialized())
        };
        let mut options = JoinOptions::new().ttl(inner.config.ttl);
        if need_roster {
            options = options.with_roster();
        }
        // --max-roster is the module's MAXMEMBERS: checked in the join's own atomic step, so joins
        // racing through several processes cannot pass it. Count-only channels are for big audiences.
        if let Some(max) = inner.config.max_roster {
            if !inner.config.is_count_channel(channel) {
                options = options.max_members(max as u64);
            }
        }
        let joined = inner
            .store
            .join(channel, client, &claim.id, &claim.value, &options)
            .await?;
        let mut caught_up = {
            let mut state = inner.state();
            let entry = state
                .channels
                .get_mut(channel)
                .ok_or(ShimError::Interrupted(
                    "the channel's last local member left meanwhile",
                ))?;
            if let (false, Some(members)) = (entry.view.is_initialized(), joined.members) {
                // Nobody here has been told anything yet, so the early events need no relaying.
                entry.view.initialize(joined.rev, members);
                entry.rev.send_replace(entry.view.rev());
            }
            entry.rev.subscribe()
        };
        // The stream carries our own join too; wait until the view has it, so the snapshot we hand out
        // (taken from the view) includes this client and is what every other local subscriber knows.
        tokio::time::timeout(
            inner.config.timeout,
            caught_up.wait_for(|rev| *rev >= joined.rev),
        )
        .await
        .map_err(|_| ShimError::Timeout(inner.config.timeout))?
        .map_err(|_| ShimError::Interrupted("the channel's last local member left meanwhile"))?;
        let mut state = inner.state();
        let entry = state
            .channels
            .get_mut(channel)
            .ok_or(ShimError::Interrupted(
                "the channel's last local member left meanwhile",
            ))?;
        let rev = entry.view.rev();
        let count = entry.view.len();
        if let Some(membership) = entry.members.get_mut(client) {
            membership.seen = Some(rev);
            membership.told = Some(rev);
            membership.told_count = Some(count);
        }
        if entry.count_only {
            return Ok(Subscribed {
                presence: json!({ "count": count, "rev": rev }),
                roster: None,
            });
        }
        let roster = entry
            .view
            .roster_shared()
            .map_err(|e| ShimError::Internal(format!("the roster did not serialize: {e}")))?;
        Ok(Subscribed {
            presence: json!({ "rev": rev }),
            roster: Some(roster),
        })
    }

    /// `client`'s subscription to the presence `channel` ended (unsubscribe, disconnect, timeout).
    pub async fn unsubscribe(&self, client: &str, channel: &str) {
        self.forget(client, channel);
        // Even when the membership is not ours: with a shared engine the client may have joined through
        // another process and be removed by this one. Leaving twice is a no-op that publishes nothing.
        if let Err(error) = self.inner.store.leave(channel, client).await {
            // The member expires within the TTL anyway, since nobody touches it any more.
            tracing::warn!(%error, client, channel, "presence leave failed; the member will expire");
        }
    }

    /// Leaves every membership this process holds, as each client's unsubscribe would: for a process
    /// about to exit whose members should leave now rather than when their TTL runs out.
    pub async fn leave_all(&self) {
        let held: Vec<(String, String)> = {
            let state = self.inner.state();
            let mut held = Vec::new();
            for (channel, entry) in &state.channels {
                held.extend(entry.members.keys().map(|c| (c.clone(), channel.clone())));
            }
            held
        };
        let leaves = held
            .iter()
            .map(|(client, channel)| self.unsubscribe(client, channel));
        futures_util::future::join_all(leaves).await;
    }

    /// Drops a membership, and the channel's state and stream subscription with its last local member.
    fn forget(&self, client: &str, channel: &str) {
        let mut state = self.inner.state();
        let Some(entry) = state.channels.get_mut(channel) else {
            return;
        };
        if entry.members.remove(client).is_some() {
            metrics::gauge!("presence_local_members").decrement(1.0);
        }
        if entry.members.is_empty() {
            state.channels.remove(channel);
            self.inner.stream().unlisten(channel);
        }
    }

    /// Whether a delivery on `channel` to `client`, a roster message at `rev` (`None`: not one),
    /// should go out: roster messages already in the client's snapshot, or arriving before it has one,
    /// are held back. Roster messages are addressed to members only (a client subscribed to `/**`
    /// never gets one), so a client this process does not know is a member that joined through another
    /// process and polls this one: its roster message was addressed to it there, with that process's
    /// snapshot check, and goes out.
    pub fn admits(&self, client: &str, channel: &str, rev: Option<u64>) -> bool {
        if !self.inner.config.is_presence_channel(channel) {
            return true;
        }
        let Some(rev) = rev else {
            return true;
        };
        let state = self.inner.state();
        match state.membership(client, channel) {
            Some(Membership {
                seen: Some(seen), ..
            }) => rev > *seen,
            Some(Membership { seen: None, .. }) => false,
            None => true,
        }
    }
}

impl State {
    fn membership(&self, client: &str, channel: &str) -> Option<&Membership> {
        self.channels.get(channel)?.members.get(client)
    }
}

impl Channel {
    /// A channel with no view yet, and its delivery task, which ends once the channel is dropped and
    /// its outbox is empty.
    fn new(inner: &Arc<Inner>, channel: &str) -> Self {
        let (outbox, pending) = mpsc::unbounded_channel();
        tokio::spawn(deliver_loop(
            Arc::downgrade(inner),
            channel.to_owned(),
            pending,
            inner.config.batch,
        ));
        Channel {
            view: ChannelView::new(),
            rev: watch::Sender::new(0),
            members: HashMap::new(),
            outbox,
            count_only: inner.config.is_count_channel(channel),
        }
    }

    /// Queues events for the members, after those queued before.
    fn send(&self, events: Vec<Event>) {
        if !events.is_empty() {
            // The task outlives the sender: it ends only when this channel is dropped.
            let _ = self.outbox.send(Outgoing::Events(events));
        }
    }

    /// Once everything queued before is addressed, members' rosters count as at `rev` at most (see
    /// [`Outgoing::Rebase`]).
    fn rebase(&self, rev: u64) {
        let _ = self.outbox.send(Outgoing::Rebase(rev));
    }

    /// [`Outgoing::Rebase`], applied.
    fn apply_rebase(&mut self, rev: u64) {
        for membership in self.members.values_mut() {
            membership.told = membership.told.map(|told| told.min(rev));
        }
    }
}

/// What a channel's delivery task is handed, in order.
enum Outgoing {
    /// Events the view applied, to tell the members.
    Events(Vec<Event>),
    /// Redis lost data and its revisions went back to this one: once the corrections queued before are
    /// addressed (each member is told them relative to what it knew), later events restart from here
    /// and must not be taken for ones the members know already.
    Rebase(u64),
}

impl Channel {}

/// Delivers a channel's events to its members, in order. With a batch window, the events of a window
/// (and any that piled up while the previous delivery was under way) go to each member as one message;
/// without, each event is its own message, as faye-presence sends them.
async fn deliver_loop(
    inner: Weak<Inner>,
    channel: String,
    mut pending: mpsc::UnboundedReceiver<Outgoing>,
    window: std::time::Duration,
) {
    let batching = !window.is_zero();
    while let Some(first) = pending.recv().await {
        let mut batch = vec![first];
        if batching {
            tokio::time::sleep(window).await;
            while let Ok(more) = pending.try_recv() {
                batch.push(more);
            }
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let addressed = {
            let mut state = inner.state();
            let Some(entry) = state.channels.get_mut(&channel) else {
                continue; // Dropped meanwhile: its last member is gone.
            };
            let mut addressed = Vec::new();
            let mut events = Vec::new();
            for item in batch {
                match item {
                    Outgoing::Events(more) => events.extend(more),
                    Outgoing::Rebase(rev) => {
                        for run in runs(&events, batching) {
                            addressed.extend(entry.address(&channel, run));
                        }
                        events.clear();
                        entry.apply_rebase(rev);
                    }
                }
            }
            for run in runs(&events, batching) {
                addressed.extend(entry.address(&channel, run));
            }
            addressed
        };
        for (message, clients) in addressed {
            metrics::counter!("presence_roster_messages_sent_total")
                .increment(clients.len() as u64);
            inner.deliver.deliver(message, clients).await;
        }
    }
}

/// The runs of `events` that one message may cover: each event alone when not `batching`, else the
/// stretches of increasing revisions (revisions go back only after Redis lost data; see
/// `Inner::resync`).
fn runs(events: &[Event], batching: bool) -> Vec<&[Event]> {
    if !batching {
        return events.chunks(1).collect();
    }
    let mut runs = Vec::new();
    let mut start = 0;
    for i in 1..events.len() {
        if events[i].rev <= events[i - 1].rev {
            runs.push(&events[start..i]);
            start = i;
        }
    }
    if start < events.len() {
        runs.push(&events[start..]);
    }
    runs
}

impl Inner {
    /// The shim, and the sink its stream feeds (which holds it weakly: the shim owns the stream).
    fn new(
        config: Config,
        store: Arc<dyn PresenceStore>,
        deliver: Arc<dyn Deliver>,
    ) -> (Arc<Inner>, Arc<dyn StreamSink>) {
        let inner = Arc::new(Inner {
            config,
            store,
            streams: OnceLock::new(),
            deliver,
            state: Mutex::new(State::default()),
        });
        let sink = Arc::new(Sink(Arc::downgrade(&inner)));
        (inner, sink)
    }

    /// The shim's state. A panic while it was held (a bug) does not take every later subscribe down
    /// with it: the state is used as it was left, as bayeux does with its own locks.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stream(&self) -> &dyn EventStream {
        self.streams
            .get()
            .expect("the stream is plugged in by Presence::launch")
            .as_ref()
    }

    /// Applies events to the channel's view and relays the new ones, in order.
    fn relay(&self, channel: &str, events: Vec<Event>) {
        let mut state = self.state();
        let Some(entry) = state.channels.get_mut(channel) else {
            return; // Nobody here listens any more.
        };
        let fresh = entry.view.apply(events);
        fresh.iter().for_each(|e| {
            metrics::counter!("presence_events_relayed_total", "kind" => e.kind.as_str())
                .increment(1)
        });
        entry.rev.send_replace(entry.view.rev());
        entry.send(fresh);
    }

    /// Repairs the channel's view after a gap in the stream. Fails if the roster cannot be read; the
    /// stream then tries again, and holds back newer events until it succeeds (relaying them on a stale
    /// view would tell subscribers of joins they already have).
    async fn resync(&self, channel: &str) -> Result<(), ShimError> {
        let truth = self.store.roster(channel).await?;
        metrics::counter!("presence_resyncs_total").increment(1);
        let diff = {
            let mut state = self.state();
            let Some(entry) = state.channels.get_mut(channel) else {
                return Ok(());
            };
            let (diff, went_back) = entry.view.resync(truth.rev, truth.members);
            entry.rev.send_replace(entry.view.rev());
            if went_back {
                tracing::warn!(channel, "presence revision went backwards: Redis lost data; telling subscribers the roster as it is now");
                // The corrections come right after the view's old revision (see ChannelView::resync).
                // Later events restart from the lower revision Redis now has: snapshots must not hold
                // them back, so deliveries are admitted from there at once; what each member was told
                // is lowered only once the corrections are addressed (relative to what it knew), or a
                // member would be told its own join again as news and never hear it is gone.
                for membership in entry.members.values_mut() {
                    membership.seen = membership.seen.map(|seen| seen.min(truth.rev));
                }
            }
            let corrections = diff.len();
            entry.send(diff);
            if went_back {
                entry.rebase(truth.rev);
            }
            corrections
        };
        tracing::info!(
            channel,
            corrections = diff,
            "presence roster resynced after a stream gap"
        );
        Ok(())
    }
}

/// The stream's view of the shim; weak, so the shim can be dropped.
struct Sink(Weak<Inner>);

#[async_trait]
impl StreamSink for Sink {
    async fn events(&self, channel: &str, events: Vec<Event>) {
        if let Some(inner) = self.0.upgrade() {
            inner.relay(channel, events);
        }
    }

    async fn resync(&self, channel: &str) -> Result<(), ShimError> {
        match self.0.upgrade() {
            Some(inner) => inner.resync(channel).await,
            None => Ok(()),
        }
    }
}

/// Keeps the memberships the host still has; forgets (and leaves) those another process ended.
async fn still_subscribed(
    inner: &Arc<Inner>,
    batch: Vec<(String, Vec<String>)>,
) -> Vec<(String, Vec<String>)> {
    let presence = Presence {
        inner: inner.clone(),
    };
    // The host answers on its own runtime, which may be far behind; the touches must not wait for it.
    // Past the budget, unknown is not gone: the rest are kept and asked again next time.
    let deadline = tokio::time::Instant::now() + inner.config.timeout;
    let mut kept = Vec::with_capacity(batch.len());
    for (channel, clients) in batch {
        let mut live = Vec::with_capacity(clients.len());
        for client in clients {
            let asked = inner.deliver.is_subscribed(&client, &channel);
            if tokio::time::timeout_at(deadline, asked)
                .await
                .unwrap_or(true)
            {
                live.push(client);
            } else {
                tracing::debug!(client, channel, "membership ended elsewhere; leaving");
                presence.unsubscribe(&client, &channel).await;
            }
        }
        if !live.is_empty() {
            kept.push((channel, live));
        }
    }
    kept
}

/// Every TTL/3: refreshes this process's connections, one `PRESENCE.TOUCH` per channel, pipelined per
/// server. That also purges other processes' dead connections (and the module publishes their leaves).
/// Connections Redis no longer knows (a failover, a flush) are joined again.
async fn touch_loop(inner: Weak<Inner>) {
    let interval = match inner.upgrade() {
        Some(inner) => inner.config.touch_interval(),
        None => return,
    };
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let batch: Vec<(String, Vec<String>)> = {
            let state = inner.state();
            state
                .channels
                .iter()
                .map(|(channel, entry)| {
                    let joined = entry.members.iter().filter(|(_, m)| m.seen.is_some());
                    (
                        channel.clone(),
                        joined.map(|(client, _)| client.clone()).collect::<Vec<_>>(),
                    )
                })
                .filter(|(_, clients)| !clients.is_empty())
                .collect()
        };
        let batch = still_subscribed(&inner, batch).await;
        if batch.is_empty() {
            continue;
        }
        match inner.store.touch(&batch, inner.config.ttl).await {
            Ok(lost) => {
                for (channel, clients) in lost {
                    for client in clients {
                        let claim = {
                            let state = inner.state();
                            state.membership(&client, &channel).map(|m| m.claim.clone())
                        };
                        if let Some(claim) = claim {
                            tracing::info!(
                                client,
                                channel,
                                "Redis lost a connection; joining it again"
                            );
                            if let Err(error) = inner
                                .store
                                .rejoin(
                                    &channel,
                                    &client,
                                    &claim.id,
                                    &claim.value,
                                    inner.config.ttl,
                                )
                                .await
                            {
                                tracing::warn!(%error, client, channel, "re-join failed; will retry next touch");
                            }
                        }
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "presence touch failed; will retry"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use presence_roster::roster::Bytes;
    use presence_roster::EventKind;

    fn event(rev: u64, kind: EventKind, id: &str) -> Event {
        let data =
            matches!(kind, EventKind::Join | EventKind::Update).then(|| Bytes::from(&b"1"[..]));
        Event {
            rev,
            kind,
            id: Bytes::from(id.as_bytes()),
            data,
        }
    }

    fn channel_with(members: &[(&str, Option<u64>)]) -> Channel {
        let (outbox, _) = mpsc::unbounded_channel();
        Channel {
            view: ChannelView::new(),
            rev: watch::Sender::new(0),
            members: members
                .iter()
                .map(|&(client, told)| {
                    let claim = Claim {
                        id: client.to_owned(),
                        value: b"null".to_vec(),
                    };
                    (
                        client.to_owned(),
                        Membership {
                            claim,
                            seen: told,
                            told,
                            told_count: None,
                        },
                    )
                })
                .collect(),
            outbox,
            count_only: false,
        }
    }

    fn sorted(mut addressed: Vec<(RosterMessage, Vec<String>)>) -> Vec<(Value, u64, Vec<String>)> {
        for (_, clients) in &mut addressed {
            clients.sort();
        }
        let mut out: Vec<_> = addressed
            .into_iter()
            .map(|(m, clients)| (m.data, m.from.unwrap(), clients))
            .collect();
        out.sort_by_key(|(_, from, _)| *from);
        out
    }

    #[test]
    fn a_run_goes_to_each_member_as_the_net_change_after_what_it_knows() {
        use EventKind::*;
        // a and b knew rev 9; c joined mid-run (its snapshot has rev 11); d is still joining.
        let mut channel =
            channel_with(&[("a", Some(9)), ("b", Some(9)), ("c", Some(11)), ("d", None)]);
        let run = [
            event(10, Join, "x"),
            event(11, Join, "y"),
            event(12, Leave, "x"),
            event(13, Update, "y"),
        ];
        let got = sorted(channel.address("/presence/r", &run));
        assert_eq!(
            got,
            vec![
                // x came and went: a and b only hear of y.
                (
                    json!({"subscribe": {"y": 1}}),
                    10,
                    vec!["a".into(), "b".into()]
                ),
                // c's snapshot had x and y: x left, y changed.
                (
                    json!({"subscribe": {"y": 1}, "unsubscribe": {"x": null}}),
                    12,
                    vec!["c".into()]
                ),
            ]
        );
        for client in ["a", "b", "c"] {
            assert_eq!(channel.members[client].told, Some(13), "{client}");
        }
        assert_eq!(
            channel.members["d"].told, None,
            "nothing for a member still joining"
        );
        // Nothing new: nobody is told anything again.
        assert!(channel.address("/presence/r", &run).is_empty());
    }

    #[test]
    fn a_count_only_channel_tells_each_member_the_count_once_when_it_changed() {
        use EventKind::*;
        // a knows rev 3 and count 0 (its snapshot); b joined at rev 5 with count 2; c is still joining.
        let mut channel = channel_with(&[("a", Some(3)), ("b", Some(5)), ("c", None)]);
        channel.count_only = true;
        channel.members.get_mut("a").unwrap().told_count = Some(0);
        channel.members.get_mut("b").unwrap().told_count = Some(2);
        channel.view.initialize(3, Vec::new());
        let run = vec![
            event(4, Join, "x"),
            event(5, Join, "y"),
            event(6, Leave, "x"),
        ];
        channel.view.apply(run.clone());
        let got = channel.address("/presence-count/r", &run);
        assert_eq!(got.len(), 1, "one message for everyone told the same");
        let (message, mut clients) = got.into_iter().next().unwrap();
        clients.sort();
        assert_eq!(message.data, json!({"count": 1}));
        assert_eq!(message.ext(), json!({"presence": {"rev": 6}}));
        assert_eq!(clients, ["a", "b"], "nothing for a member still joining");
        // A join and a leave that cancel out: the count did not change, nobody is told.
        let run = vec![event(7, Join, "z"), event(8, Expire, "z")];
        channel.view.apply(run.clone());
        assert!(channel.address("/presence-count/r", &run).is_empty());
        assert_eq!(channel.members["a"].told, Some(8));
        assert_eq!(channel.members["c"].told_count, None);
    }

    #[test]
    fn a_run_with_no_net_change_is_not_sent_and_the_next_message_covers_it() {
        use EventKind::*;
        let mut channel = channel_with(&[("a", Some(4))]);
        assert!(channel
            .address("/presence/r", &[event(5, Join, "x"), event(6, Expire, "x")])
            .is_empty());
        assert_eq!(channel.members["a"].told, Some(4), "still knows 4");
        let got = sorted(channel.address("/presence/r", &[event(7, Join, "z")]));
        // From 5: a's roster is at 4, and nothing between was lost on it.
        assert_eq!(
            got,
            vec![(json!({"subscribe": {"z": 1}}), 5, vec!["a".into()])]
        );
    }

    #[test]
    fn runs_split_where_revisions_go_back_and_each_event_alone_without_batching() {
        use EventKind::*;
        let events = [
            event(5, Join, "a"),
            event(6, Join, "b"),
            event(3, Join, "c"),
        ];
        let lens = |runs: Vec<&[Event]>| runs.iter().map(|r| r.len()).collect::<Vec<_>>();
        assert_eq!(lens(runs(&events, true)), vec![2, 1]);
        assert_eq!(lens(runs(&events, false)), vec![1, 1, 1]);
        assert!(runs(&[], true).is_empty());
    }
}
