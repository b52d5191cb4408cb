//! Extensions: ordered async hooks on every message in and out, plus lifecycle events.
//!
//! # Order
//! Extensions run in **registration order, both ways**: the first registered extension sees an incoming
//! message first *and* an outgoing message first (Faye's rule; CometD reverses outgoing, we do not).
//!
//! # What a hook may do
//! A hook gets the message by value and returns:
//! - `Ok(Some(message))`, changed or not: the next extension sees it;
//! - `Ok(Some(message))` with [`Message::error`] set: on an incoming message, the server does not act on
//!   it and replies `successful: false` with that error; on a reply, the client gets the error;
//! - `Ok(None)`: the message is dropped (an incoming message is ignored and gets no reply; a reply or a
//!   delivery is not sent);
//! - `Err(error)`: like setting `error` to [`Error::to_bayeux`]. A hook that panics is caught and
//!   counts as `Err(Error::Internal)`: no hook can take the server down. So does a hook that runs
//!   longer than [`crate::Config::hook_timeout`]: no hook can hang a request.
//!
//! # Hooking subscriptions (what a presence extension needs)
//! `/meta/subscribe` runs as: incoming hooks on the request → the server validates and subscribes the
//! client in the engine → outgoing hooks on the reply, with [`Context::request`] holding the (incoming-
//! hooked) request. So an outgoing hook on a successful `/meta/subscribe` reply runs **after the
//! subscription is known to succeed**, may do async work (a Redis round trip), read the request's `ext`,
//! and put data into the reply's `ext`. If it sets `error` (or returns `Err`, or drops the reply), the
//! server **undoes the subscription** (unsubscribes the client from the channels this request added) and
//! the client gets `successful: false`. [`Event::Subscribe`] fires only once the reply has passed every
//! outgoing hook, so a vetoed subscription produces no events.
//!
//! # Deliveries
//! A published message reaches each subscriber as a delivery; `outgoing` runs once per delivery per
//! receiving client, with [`Context::client_id`] naming the receiver, so an extension can drop or amend
//! it per client. An extension that only cares about requests and replies, or about deliveries on some
//! channels only, says so with [`Extension::sees_deliveries`]; a delivery that no extension wants to see
//! skips the hooks and is shared, serialized once, between all its receivers.
//!
//! # Events
//! [`Extension::event`] sees [`Event`]s: subscribe, unsubscribe (with an [`UnsubscribeReason`]), and
//! disconnect (with a [`DisconnectReason`]). A client that is removed unsubscribes from each channel
//! first, then disconnects. Events are awaited in registration order, so a hook can finish its clean-up
//! (a Redis `LEAVE`) before the next event.

use crate::{Error, Message};
use async_trait::async_trait;
use futures_util::FutureExt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

/// Which way a message is going through the hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Direction {
    /// A message from a client (or a transport) into the server.
    Incoming,
    /// A reply from the server to the client that sent the request.
    Reply,
    /// A message published on a channel, on its way to one subscriber.
    Delivery,
}

/// What a hook knows about the message besides the message itself.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Context<'a> {
    /// Which way the message is going.
    pub direction: Direction,
    /// The client concerned: for incoming messages the `clientId` the message claims (not yet
    /// verified); for replies the client that sent the request (the new id for a handshake reply); for
    /// deliveries the client that will receive it.
    pub client_id: Option<&'a str>,
    /// For replies: the request as the incoming hooks left it.
    pub request: Option<&'a Message>,
}

/// Why a client stopped being subscribed to a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnsubscribeReason {
    /// The client sent `/meta/unsubscribe`.
    Explicit,
    /// The client sent `/meta/disconnect`.
    Disconnect,
    /// The client stopped polling and was removed.
    Timeout,
}

/// Why a client went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The client sent `/meta/disconnect`.
    Explicit,
    /// The client did not connect within the inactivity timeout.
    Timeout,
}

/// A change in a client's lifecycle, reported to every extension's [`Extension::event`] and to
/// [`crate::Server::events`] receivers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A client completed a handshake.
    Handshake {
        /// The new client id.
        client_id: String,
    },
    /// A client subscribed to a channel (name or pattern), after every outgoing hook accepted it. Not
    /// reported again when a client subscribes to a channel it already has.
    Subscribe {
        /// The client.
        client_id: String,
        /// The channel name or pattern.
        channel: String,
    },
    /// A client's subscription ended.
    Unsubscribe {
        /// The client.
        client_id: String,
        /// The channel name or pattern.
        channel: String,
        /// Why.
        reason: UnsubscribeReason,
    },
    /// A client was removed, after an [`Event::Unsubscribe`] for each of its channels.
    Disconnect {
        /// The client.
        client_id: String,
        /// Why.
        reason: DisconnectReason,
    },
}

/// A Faye-style server extension. Every method has a pass-through default; implement the ones you need.
/// See the [module docs](self) for ordering, rejecting, and the subscribe veto.
#[async_trait]
pub trait Extension: Send + Sync + 'static {
    /// Sees every message a client sends, before the server acts on it.
    async fn incoming(&self, message: Message, ctx: Context<'_>) -> Result<Option<Message>, Error> {
        let _ = ctx;
        Ok(Some(message))
    }

    /// Sees every reply, and every delivery once per receiving client, before it is sent.
    async fn outgoing(&self, message: Message, ctx: Context<'_>) -> Result<Option<Message>, Error> {
        let _ = ctx;
        Ok(Some(message))
    }

    /// Whether [`Extension::outgoing`] wants to see deliveries (one call per message per receiving
    /// client) on `channel`. Return `false` for channels it does not filter per client (for a presence
    /// extension: everything but presence channels): fan-out on them then skips copying and
    /// re-serializing each delivery per client. Default: `true` (every delivery).
    fn sees_deliveries(&self, channel: &str) -> bool {
        let _ = channel;
        true
    }

    /// A cheap per-receiver filter, run on every delivery before any `outgoing` hook and without
    /// copying the message: `false` drops `message` for the receiving client. Unlike `outgoing`, it
    /// keeps the shared, serialize-once fan-out, so an extension that only decides *who* gets a delivery
    /// (a presence extension holding back diffs already in a client's snapshot) should use this and
    /// return `false` from [`Extension::sees_deliveries`]. Must not block. Default: `true`.
    fn admits_delivery(&self, message: &Message, client_id: Option<&str>) -> bool {
        let _ = (message, client_id);
        true
    }

    /// Sees lifecycle events. Awaited: the server moves on to the next event when this returns.
    async fn event(&self, event: &Event) {
        let _ = event;
    }
}

/// The registered extensions, run as one pipeline.
#[derive(Clone)]
pub(crate) struct Pipeline {
    extensions: Vec<Arc<dyn Extension>>,
    /// Longest a single hook may run before it counts as failed.
    hook_timeout: Duration,
}

impl Pipeline {
    pub(crate) fn new(extensions: Vec<Arc<dyn Extension>>, hook_timeout: Duration) -> Self {
        Pipeline {
            extensions,
            hook_timeout,
        }
    }

    /// Runs `message` through every extension's hook for its direction. `Err` and panics become the
    /// message's `error`; the later extensions still see the message (Faye passes rejected messages on).
    pub(crate) async fn run(&self, mut message: Message, ctx: Context<'_>) -> Option<Message> {
        for ext in &self.extensions {
            if ctx.direction == Direction::Delivery && !ext.sees_deliveries(&message.channel) {
                continue;
            }
            let snapshot = message.clone();
            let hook = match ctx.direction {
                Direction::Incoming => ext.incoming(message, ctx),
                Direction::Reply | Direction::Delivery => ext.outgoing(message, ctx),
            };
            let guarded = AssertUnwindSafe(hook).catch_unwind();
            message = match tokio::time::timeout(self.hook_timeout, guarded).await {
                Ok(Ok(Ok(Some(m)))) => m,
                Ok(Ok(Ok(None))) => return None,
                Ok(Ok(Err(e))) => reject(snapshot, &e),
                Ok(Err(_)) => {
                    tracing::error!(channel = %snapshot.channel, "extension hook panicked");
                    reject(snapshot, &Error::Internal("extension panicked".into()))
                }
                // A hung hook (say, a Redis call that never returns) must not hang the request.
                Err(_) => {
                    tracing::error!(channel = %snapshot.channel, "extension hook timed out");
                    metrics::counter!("bayeux_extension_timeouts_total").increment(1);
                    reject(snapshot, &Error::Internal("extension timed out".into()))
                }
            };
        }
        Some(message)
    }

    /// Whether any extension hooks deliveries on `channel`.
    pub(crate) fn sees_deliveries(&self, channel: &str) -> bool {
        self.extensions.iter().any(|e| e.sees_deliveries(channel))
    }

    /// Whether every extension admits this delivery to `client_id`; a panicking filter drops it.
    pub(crate) fn admits_delivery(&self, message: &Message, client_id: Option<&str>) -> bool {
        self.extensions.iter().all(|e| {
            std::panic::catch_unwind(AssertUnwindSafe(|| e.admits_delivery(message, client_id)))
                .unwrap_or_else(|_| {
                    tracing::error!(channel = %message.channel, "extension delivery filter panicked");
                    false
                })
        })
    }

    /// Hands `event` to every extension in order; a panicking or hung listener is logged and skipped.
    pub(crate) async fn event(&self, event: &Event) {
        for ext in &self.extensions {
            let guarded = AssertUnwindSafe(ext.event(event)).catch_unwind();
            match tokio::time::timeout(self.hook_timeout, guarded).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => tracing::error!(?event, "extension event hook panicked"),
                Err(_) => {
                    tracing::error!(?event, "extension event hook timed out");
                    metrics::counter!("bayeux_extension_timeouts_total").increment(1);
                }
            }
        }
    }
}

fn reject(mut message: Message, error: &Error) -> Message {
    message.error = Some(error.to_bayeux());
    if message.successful.is_some() {
        message.successful = Some(false);
    }
    message
}
