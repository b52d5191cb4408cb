//! The protocol core: messages in, replies and deliveries out. No sockets, no HTTP.
//!
//! Transports decode a request into messages, call [`Server::process`], and encode what comes back.
//! Time enters only through tokio's clock (the connect hold and the inactivity sweep), so tests drive it
//! with `tokio::time::pause`.

use crate::extension::{Context, Direction, DisconnectReason, Event, Pipeline, UnsubscribeReason};
use crate::fence::ReplyFence;
use crate::{channel, Config, Engine, Error, Extension, MemoryEngine, Message, Outbound};
use futures_util::future::join_all;
use serde_json::{json, Map, Value};
use std::future::Future;
use std::sync::{Arc, Weak};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

/// A Bayeux server: configuration, engine and extensions. Cheap to clone (all clones are one server).
#[derive(Clone)]
pub struct Server {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) engine: Arc<dyn Engine>,
    pub(crate) pipeline: Pipeline,
    events: broadcast::Sender<Event>,
    /// Connects held by this process, per client: a new connect from the same client releases the
    /// older one, so a stale request (its client gone or moved to another transport) never takes
    /// messages meant for the live one.
    pub(crate) held: crate::meta::HeldConnects,
    /// Clients whose deliveries a WebSocket in this process pushes.
    pub(crate) pushing: crate::push::Pushing,
    /// Addressed deliveries waiting for a subscribe reply to be written.
    pub(crate) fences: crate::fence::Fences,
    /// Each client's batches, one at a time.
    turns: crate::turns::Turns,
    /// Set by [`Server::drain`]; `drained` wakes the connects held at that moment.
    draining: std::sync::atomic::AtomicBool,
    pub(crate) drained: tokio::sync::Notify,
}

/// What a request gets back: its replies, and the fence that holds back the deliveries that must
/// follow them. Drop `fence` once `replies` are written to the client.
pub struct Answer {
    /// The replies in request order, with the deliveries for the client after its connect's reply.
    pub replies: Vec<Outbound>,
    /// Lowered when dropped.
    pub fence: ReplyFence,
}

/// A [`Server`] handle that does not keep it alive; see [`Server::downgrade`].
#[derive(Clone)]
pub struct WeakServer(Weak<Inner>);

impl WeakServer {
    /// The server, unless every strong handle to it is gone.
    pub fn upgrade(&self) -> Option<Server> {
        self.0.upgrade().map(|inner| Server { inner })
    }
}

/// Builds a [`Server`]: `Server::builder().config(c).extension(e).build()`.
#[derive(Default)]
pub struct ServerBuilder {
    config: Config,
    engine: Option<Arc<dyn Engine>>,
    extensions: Vec<Arc<dyn Extension>>,
}

impl ServerBuilder {
    /// Uses `config` (default: [`Config::default`]).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Uses `engine` (default: a new [`MemoryEngine`]).
    pub fn engine(mut self, engine: Arc<dyn Engine>) -> Self {
        self.engine = Some(engine);
        self
    }

    /// Adds an extension after those already added; extensions run in this order both ways.
    pub fn extension(mut self, extension: Arc<dyn Extension>) -> Self {
        self.extensions.push(extension);
        self
    }

    /// Validates the configuration and builds the server.
    pub fn build(self) -> Result<Server, Error> {
        self.config.validate()?;
        let (events, _) = broadcast::channel(1024);
        let pipeline = Pipeline::new(self.extensions, self.config.hook_timeout);
        Ok(Server {
            inner: Arc::new(Inner {
                config: self.config,
                engine: self.engine.unwrap_or_else(|| Arc::new(MemoryEngine::new())),
                pipeline,
                events,
                held: Default::default(),
                pushing: Default::default(),
                fences: Default::default(),
                turns: Default::default(),
                draining: Default::default(),
                drained: Default::default(),
            }),
        })
    }
}

impl Server {
    /// A builder with default configuration, a memory engine and no extensions.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.inner.engine
    }

    /// Stops holding connects, for a process about to exit: every connect held now is answered at
    /// once (with what is queued and `advice.reconnect: retry`, so its client connects again, through
    /// a load balancer to another process), and so is every later one. [`crate::serve`] calls it when
    /// its shutdown signal fires. It cannot be undone.
    pub fn drain(&self) {
        self.inner
            .draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.inner.drained.notify_waiters();
    }

    /// Whether [`Server::drain`] was called.
    pub fn is_draining(&self) -> bool {
        self.inner
            .draining
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A receiver of every lifecycle [`Event`] from now on (a broadcast: a receiver that falls more than
    /// 1024 events behind loses the oldest; extensions that must not miss any use [`Extension::event`]).
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// Handles a batch of messages from one client request and returns what goes back: the replies in
    /// request order, with the deliveries for the client after the reply to its `/meta/connect`.
    /// Transports use [`Server::answer`] instead, which also says when the replies may be followed by
    /// deliveries addressed to the client.
    pub async fn process(&self, messages: Vec<Message>) -> Vec<Outbound> {
        self.answer(messages).await.replies
    }

    /// Like [`Server::process`], with the [`ReplyFence`] of the batch's subscribes: drop it once the
    /// replies are written to the client. Until then, deliveries addressed (with
    /// [`Server::deliver_to_many`]) to the client on a channel it is subscribing to wait, so none
    /// overtakes the subscribe reply (see the `fence` module).
    ///
    /// One client's batches are handled one at a time, in the order of their message ids (Faye's
    /// long-polling transport splits a burst of publishes over several concurrent requests, which may
    /// arrive in another order), so its messages keep their order (see the `turns` module). A
    /// `/meta/connect` is handled after every other message of the batch
    /// (so a publish sent with it is not held up), and outside that turn: it is held until something is
    /// queued for the client or the timeout passes, except in a batch that also subscribes, whose connect
    /// is answered at once (the deliveries the subscribe's fence holds back can only follow the reply).
    pub async fn answer(&self, messages: Vec<Message>) -> Answer {
        let (mut connects, others): (Vec<_>, Vec<_>) = messages
            .into_iter()
            .partition(|m| m.channel == "/meta/connect");
        let mut fence = ReplyFence::new(self);
        let mut out = Vec::new();
        if !others.is_empty() {
            // Boxed, like every part a held connect (below) does not need: this future stays as
            // small as holding a connect takes, for as long as the connect is held.
            out = Box::pin(self.answer_in_turn(others, &connects, &mut fence)).await;
        }
        if fence.is_up() {
            for connect in &mut connects {
                connect
                    .advice
                    .get_or_insert_with(Map::new)
                    .insert("timeout".into(), json!(0));
            }
        }
        // One connect (the usual case) is awaited in place, without the batch's vector (room for four
        // messages) or join_all's room for several.
        if connects.len() > 1 {
            let all = join_all(connects.into_iter().map(|connect| self.handle(connect)));
            for batch in Box::pin(all).await {
                out.extend(batch);
            }
        } else if let Some(connect) = connects.pop().map(|connect| self.handle(connect)) {
            drop(connects);
            out.extend(connect.await);
        }
        Answer {
            replies: out,
            fence,
        }
    }

    /// The messages of a batch other than its connects, in their client's turn (see [`Server::answer`]).
    async fn answer_in_turn(
        &self,
        others: Vec<Message>,
        connects: &[Message],
        fence: &mut ReplyFence,
    ) -> Vec<Outbound> {
        let mut out = Vec::new();
        let sender = others.iter().find_map(|m| m.client_id.clone());
        let _turn = match &sender {
            Some(client_id) => {
                let ids: Vec<&Value> = others.iter().filter_map(|m| m.id.as_ref()).collect();
                let held: Vec<&Value> = connects.iter().filter_map(|m| m.id.as_ref()).collect();
                Some(self.inner.turns.take(client_id, &ids, &held).await)
            }
            None => None,
        };
        for message in others {
            if message.channel == "/meta/subscribe" {
                if let (Some(client_id), Some(channels)) =
                    (&message.client_id, message.subscriptions())
                {
                    self.inner.fences.raise(client_id, &channels, fence);
                }
            }
            out.extend(self.handle(message).await);
        }
        out
    }

    /// Like [`Server::process`] for a decoded JSON body: an array of messages or a single message. An
    /// element that is not a well-formed message gets a `400` error reply of its own; a body that is
    /// neither an array nor an object is an [`Error::BadRequest`] (transports answer HTTP 400).
    pub async fn process_json(&self, body: Value) -> Result<Vec<Outbound>, Error> {
        Ok(self.answer_json(body).await?.replies)
    }

    /// Like [`Server::answer`] for a decoded JSON body, as [`Server::process_json`] reads it.
    pub async fn answer_json(&self, body: Value) -> Result<Answer, Error> {
        let (good, bad) = crate::message::decode_batch(body, &self.inner.config)?;
        let mut answer = self.answer(good).await;
        answer.replies.extend(bad);
        Ok(answer)
    }

    /// Publishes a message from server code to every subscriber of its channel (in every process that
    /// shares the engine), like Faye's `server.getClient().publish`. Incoming hooks are not run (the
    /// message comes from trusted code); outgoing hooks run per receiving client as for any delivery.
    pub async fn publish(&self, message: Message) -> Result<(), Error> {
        check_publishable(&message)?;
        self.inner.engine.publish(&strip(message)).await
    }

    /// Delivers a message to each of `client_ids` (through the outgoing hooks like any delivery),
    /// whatever their subscriptions and whichever process they poll; unknown clients are skipped. For
    /// messages meant for a known set of clients, like roster messages to a channel's members.
    ///
    /// A client whose subscribe to the message's channel is being answered gets it right after that
    /// reply has been written (see [`Server::answer`]), never before.
    pub async fn deliver_to_many(
        &self,
        client_ids: &[String],
        message: Message,
    ) -> Result<(), Error> {
        check_publishable(&message)?;
        let message = strip(message);
        let free = self.inner.fences.park(client_ids, &message);
        if free.is_empty() {
            return Ok(());
        }
        self.inner.engine.queue_for_many(&free, &message).await
    }

    /// A handle that does not keep the server alive: for extensions (which the server owns, so a
    /// strong handle inside one would be a reference cycle) and background tasks.
    pub fn downgrade(&self) -> WeakServer {
        WeakServer(Arc::downgrade(&self.inner))
    }

    /// Removes every client inactive for longer than [`Config::inactivity`], reporting an unsubscribe
    /// per channel and a disconnect (reason: timeout) for each. Returns the removed ids.
    pub async fn sweep(&self) -> Vec<String> {
        let idle = match self
            .inner
            .engine
            .inactive_clients(self.inner.config.inactivity)
            .await
        {
            Ok(idle) => idle,
            Err(e) => {
                tracing::warn!(error = %e, "inactivity sweep failed");
                return Vec::new();
            }
        };
        let mut removed = Vec::new();
        for id in idle {
            if self
                .remove_client(&id, DisconnectReason::Timeout)
                .await
                .unwrap_or(false)
            {
                tracing::debug!(client = %id, "client timed out");
                removed.push(id);
            }
        }
        removed
    }

    /// Starts a task that calls [`Server::sweep`] periodically (every quarter of the inactivity
    /// timeout, at most every second). The task ends when the last clone of the server is dropped.
    pub fn spawn_sweeper(&self) -> JoinHandle<()> {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let period = (self.inner.config.inactivity / 4).min(std::time::Duration::from_secs(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                Server { inner }.sweep().await;
            }
        })
    }

    /// Removes a client: unsubscribe events for its channels, then a disconnect event. `Ok(false)` if
    /// it was already gone (another request or process removed it first).
    pub(crate) async fn remove_client(
        &self,
        client_id: &str,
        reason: DisconnectReason,
    ) -> Result<bool, Error> {
        let Some(channels) = self.inner.engine.destroy_client(client_id).await? else {
            return Ok(false);
        };
        self.inner.turns.forget(client_id);
        let unsub_reason = match reason {
            DisconnectReason::Explicit => UnsubscribeReason::Disconnect,
            DisconnectReason::Timeout => UnsubscribeReason::Timeout,
        };
        for channel in channels {
            self.emit(Event::Unsubscribe {
                client_id: client_id.to_owned(),
                channel,
                reason: unsub_reason,
            })
            .await;
        }
        self.emit(Event::Disconnect {
            client_id: client_id.to_owned(),
            reason,
        })
        .await;
        Ok(true)
    }

    pub(crate) async fn emit(&self, event: Event) {
        self.inner.pipeline.event(&event).await;
        // No receivers is fine: events() is optional.
        let _ = self.inner.events.send(event);
    }

    /// One message through incoming hooks, the handler, and outgoing hooks.
    ///
    /// A held connect keeps this future, and the handler's, alive for as long as its client idles
    /// (thousands of them at once), and a future is as big as the most it holds at any await: only the
    /// request (boxed) and the id it claimed stay here across the handler, and the steps before and
    /// after it are boxed futures of their own, which take memory only while they run (measured: 2.8
    /// KiB per idle client before).
    pub(crate) fn handle(
        &self,
        message: Message,
    ) -> impl Future<Output = Vec<Outbound>> + Send + '_ {
        // Made here, so that this future does not keep room for the message too.
        let incoming = Box::pin(self.incoming(message));
        async move {
            let (claimed, Some(request)) = incoming.await else {
                return Vec::new();
            };
            let conclude = {
                let outcome = match &request.error {
                    Some(error) => Err(Error::Extension(error.clone())),
                    None => self.dispatch(&request).await,
                };
                Box::pin(self.conclude(request, claimed, outcome))
            };
            conclude.await
        }
    }

    /// A message through the incoming hooks (`None` if one dropped it), with the client id it
    /// claimed before them.
    async fn incoming(&self, message: Message) -> (Option<String>, Option<Box<Message>>) {
        let claimed = message.client_id.clone();
        let ctx = Context {
            direction: Direction::Incoming,
            client_id: claimed.as_deref(),
            request: None,
        };
        let request = self.inner.pipeline.run(message, ctx).await.map(Box::new);
        (claimed, request)
    }

    /// The rest of [`Server::handle`] once the handler is done: outgoing hooks on the reply, the
    /// subscribe events (or the undoing of a vetoed subscription), and the deliveries.
    async fn conclude(
        &self,
        request: Box<Message>,
        claimed: Option<String>,
        outcome: Result<Done, Error>,
    ) -> Vec<Outbound> {
        let (reply, deliveries, added, cause) = match outcome {
            Ok(done) => (done.reply, done.deliveries, done.subscribed, None),
            Err(e) => (
                self.error_reply(&request, &e),
                Vec::new(),
                Vec::new(),
                Some(e),
            ),
        };
        let reply_client = reply.client_id.clone().or(claimed);
        let ctx = Context {
            direction: Direction::Reply,
            client_id: reply_client.as_deref(),
            request: Some(&request),
        };
        let reply = Box::pin(self.inner.pipeline.run(reply, ctx)).await;
        if !added.is_empty() {
            let client_id = reply_client.clone().unwrap_or_default();
            let accepted = reply
                .as_ref()
                .is_some_and(|r| r.error.is_none() && r.successful != Some(false));
            if accepted {
                for channel in added {
                    metrics::counter!("bayeux_subscriptions_total").increment(1);
                    let client_id = client_id.clone();
                    Box::pin(self.emit(Event::Subscribe { client_id, channel })).await;
                }
            } else {
                // An outgoing hook vetoed the subscription (the presence extension failed to join):
                // undo exactly what this request added.
                for channel in &added {
                    if let Err(e) = self.inner.engine.unsubscribe(&client_id, channel).await {
                        tracing::warn!(error = %e, %channel, "could not undo vetoed subscription");
                    }
                }
            }
        }
        let mut out: Vec<Outbound> = reply
            .into_iter()
            .map(|r| finish_reply(r, &request))
            .inspect(|r| log_failure(r, reply_client.as_deref(), cause.as_ref()))
            .map(Outbound::new)
            .collect();
        out.extend(Box::pin(self.outgoing_deliveries(reply_client.as_deref(), deliveries)).await);
        out
    }

    /// Runs each delivery through the outgoing hooks for the receiving client; drops rejected ones.
    pub(crate) async fn outgoing_deliveries(
        &self,
        client: Option<&str>,
        queue: Vec<Outbound>,
    ) -> Vec<Outbound> {
        let mut out = Vec::with_capacity(queue.len());
        for shared in queue {
            if !self
                .inner
                .pipeline
                .admits_delivery(shared.message(), client)
            {
                continue;
            }
            if !self
                .inner
                .pipeline
                .sees_deliveries(&shared.message().channel)
            {
                // Nobody rewrites this delivery per client: send the shared, serialized copy.
                out.push(shared);
                continue;
            }
            let ctx = Context {
                direction: Direction::Delivery,
                client_id: client,
                request: None,
            };
            if let Some(m) = self.inner.pipeline.run(shared.into_message(), ctx).await {
                if m.error.is_none() {
                    out.push(Outbound::new(m));
                }
            }
        }
        metrics::counter!("bayeux_messages_delivered_total").increment(out.len() as u64);
        out
    }

    /// The reply to `request` for `error`, with the advice Faye gives (`reconnect: handshake` after a
    /// failed handshake or connect, or for an unknown client).
    pub(crate) fn error_reply(&self, request: &Message, error: &Error) -> Message {
        let mut reply = reply_to(request);
        reply.successful = Some(false);
        reply.error = Some(error.to_bayeux());
        if error.needs_handshake()
            || request.channel == "/meta/handshake"
            || request.channel == "/meta/connect"
        {
            reply.client_id = None;
            let mut advice = Map::new();
            advice.insert("reconnect".into(), json!("handshake"));
            advice.insert(
                "interval".into(),
                json!(self.inner.config.interval.as_millis() as u64),
            );
            reply.advice = Some(advice);
        }
        reply
    }
}

/// What a handler produced for one request.
pub(crate) struct Done {
    pub(crate) reply: Message,
    pub(crate) deliveries: Vec<Outbound>,
    /// Channels a `/meta/subscribe` newly added, undone if an outgoing hook vetoes the reply.
    pub(crate) subscribed: Vec<String>,
}

impl Done {
    pub(crate) fn reply(reply: Message) -> Self {
        Done {
            reply,
            deliveries: Vec::new(),
            subscribed: Vec::new(),
        }
    }
}

/// The skeleton of a reply: same channel and id, the client id the request named.
pub(crate) fn reply_to(request: &Message) -> Message {
    Message {
        channel: request.channel.clone(),
        id: request.id.clone(),
        client_id: request.client_id.clone(),
        ..Message::default()
    }
}

/// One log line per failed reply a client sees: its Bayeux error and, when the server made it, the
/// cause (an error an extension set carries its cause in its own text). Counted by error code: the
/// code is a number the server chose, so the label set stays small.
fn log_failure(reply: &Message, client: Option<&str>, cause: Option<&Error>) {
    let Some(error) = &reply.error else { return };
    let code = match error.split(':').next() {
        Some(code) if code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()) => code,
        _ => "other",
    };
    metrics::counter!("bayeux_errors_total", "code" => code.to_owned()).increment(1);
    let cause = cause.map_or_else(|| "refused by an extension".to_owned(), |e| e.to_string());
    let client = client.unwrap_or("");
    if code.starts_with('5') {
        tracing::warn!(channel = %reply.channel, client, bayeux_error = %error, %cause, "request failed");
    } else {
        tracing::info!(channel = %reply.channel, client, bayeux_error = %error, %cause, "request refused");
    }
}

/// Makes a reply consistent after the outgoing hooks: a reply carrying an error is never `successful`.
fn finish_reply(mut reply: Message, request: &Message) -> Message {
    if reply.error.is_some() {
        reply.successful = Some(false);
    }
    if reply.channel.is_empty() {
        reply.channel = request.channel.clone();
    }
    reply
}

fn check_publishable(message: &Message) -> Result<(), Error> {
    if !channel::is_valid_name(&message.channel) {
        return Err(Error::ChannelInvalid(message.channel.clone()));
    }
    if channel::is_meta(&message.channel) {
        return Err(Error::ChannelForbidden(message.channel.clone()));
    }
    if message.data.is_none() {
        return Err(Error::ParameterMissing("data".into()));
    }
    Ok(())
}

/// The delivery form of a published message: the publisher's client id stays private.
pub(crate) fn strip(mut message: Message) -> Message {
    message.client_id = None;
    message.successful = None;
    message.error = None;
    message
}
