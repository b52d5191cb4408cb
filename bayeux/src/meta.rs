//! One handler per Bayeux channel kind: handshake, connect, subscribe, unsubscribe, disconnect, publish.

use crate::config::CONNECTION_TYPES;
use crate::extension::{DisconnectReason, Event, UnsubscribeReason};
use crate::server::{reply_to, strip, Done};
use crate::{channel, Error, Message, Server};
use futures_util::future::BoxFuture;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The connects this process holds, per client id, and the clients that disconnected through it.
#[derive(Default)]
pub(crate) struct HeldConnects {
    next: AtomicU64,
    slots: Mutex<HashMap<String, (u64, Arc<Notify>)>>,
    /// Clients that sent `/meta/disconnect` here lately, with when. A connect of such a client is the
    /// end of its connection, not a lost client: it is answered successfully (`reconnect: none`), as
    /// Faye's and CometD's servers answer the connect they hold at a disconnect. CometD aborts its own
    /// pending disconnect if a connect is answered `401 ... reconnect: handshake` before it, and its
    /// connect may be held here, or sent while the disconnect is being handled.
    departed: Mutex<HashMap<String, Instant>>,
}

/// How long a disconnected client's late connects are answered as ended: longer than any hold.
const DEPARTED_FOR: Duration = Duration::from_secs(120);
/// At most this many remembered at once (a flood of disconnects forgets the oldest first).
const DEPARTED_MAX: usize = 100_000;

/// Frees a client's hold slot when its connect ends, however it ends (answered or cancelled because the
/// HTTP request or socket went away), unless a newer connect has taken the slot meanwhile.
struct HoldGuard<'a> {
    held: &'a HeldConnects,
    client_id: String,
    generation: u64,
}

impl HeldConnects {
    /// Takes the client's slot, releasing the connect that held it before.
    fn take(&self, client_id: &str) -> (HoldGuard<'_>, Arc<Notify>) {
        let generation = self.next.fetch_add(1, Ordering::Relaxed);
        let release = Arc::new(Notify::new());
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, older)) = slots.insert(client_id.to_owned(), (generation, release.clone()))
        {
            older.notify_one();
        }
        let guard = HoldGuard {
            held: self,
            client_id: client_id.to_owned(),
            generation,
        };
        (guard, release)
    }

    /// The client asked to disconnect (before it is removed, so its connects know why it is gone).
    fn depart(&self, client_id: &str) {
        let now = Instant::now();
        let mut departed = self.departed.lock().unwrap_or_else(|p| p.into_inner());
        if departed.len() >= DEPARTED_MAX {
            departed.retain(|_, at| now.duration_since(*at) < DEPARTED_FOR);
            if departed.len() >= DEPARTED_MAX {
                if let Some(oldest) = departed
                    .iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(id, _)| id.clone())
                {
                    departed.remove(&oldest);
                }
            }
        }
        departed.insert(client_id.to_owned(), now);
    }

    /// Whether the client disconnected through this process lately.
    fn has_departed(&self, client_id: &str) -> bool {
        let departed = self.departed.lock().unwrap_or_else(|p| p.into_inner());
        departed
            .get(client_id)
            .is_some_and(|at| at.elapsed() < DEPARTED_FOR)
    }
}

impl HeldConnects {
    /// Answers the client's held connect now (e.g. the client is gone and must be told to handshake).
    pub(crate) fn release(&self, client_id: &str) {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, release)) = slots.get(client_id) {
            release.notify_one();
        }
    }
}

/// Counts a held connect by its connection type (one of [`CONNECTION_TYPES`], so a bounded label) in
/// `bayeux_connects_held`, for as long as it is held however it ends.
struct HeldGauge(&'static str);

impl HeldGauge {
    fn new(connection_type: &str) -> Self {
        let transport = CONNECTION_TYPES
            .iter()
            .find(|t| **t == connection_type)
            .copied()
            .unwrap_or("other");
        metrics::gauge!("bayeux_connects_held", "transport" => transport).increment(1.0);
        HeldGauge(transport)
    }
}

impl Drop for HeldGauge {
    fn drop(&mut self) {
        metrics::gauge!("bayeux_connects_held", "transport" => self.0).decrement(1.0);
    }
}

impl Drop for HoldGuard<'_> {
    fn drop(&mut self) {
        let mut slots = self.held.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots
            .get(&self.client_id)
            .is_some_and(|(generation, _)| *generation == self.generation)
        {
            slots.remove(&self.client_id);
        }
    }
}

impl Server {
    /// Routes an (incoming-hooked, error-free) request to its handler.
    ///
    /// Each handler is a boxed future of its own: a held connect then keeps room for the connect
    /// handler only, not for the biggest of them all.
    pub(crate) fn dispatch<'a>(&'a self, m: &'a Message) -> BoxFuture<'a, Result<Done, Error>> {
        match m.channel.as_str() {
            "/meta/handshake" => Box::pin(self.handshake(m)),
            "/meta/connect" => Box::pin(self.connect(m)),
            "/meta/subscribe" => Box::pin(self.subscribe(m)),
            "/meta/unsubscribe" => Box::pin(self.unsubscribe(m)),
            "/meta/disconnect" => Box::pin(self.disconnect(m)),
            "" => Box::pin(std::future::ready(Err(Error::ParameterMissing(
                "channel".into(),
            )))),
            ch if channel::is_meta(ch) => Box::pin(std::future::ready(Err(
                Error::ChannelForbidden(ch.to_owned()),
            ))),
            _ => Box::pin(self.publish_from_client(m)),
        }
    }

    /// The advice sent with successful handshake and connect replies (milliseconds, as Faye sends).
    fn advice(&self) -> Map<String, Value> {
        let c = &self.inner.config;
        let mut advice = Map::new();
        advice.insert("reconnect".into(), json!("retry"));
        advice.insert("interval".into(), json!(c.interval.as_millis() as u64));
        advice.insert("timeout".into(), json!(c.timeout.as_millis() as u64));
        advice
    }

    /// The client id of a request, which must name a live client.
    async fn known_client(&self, m: &Message) -> Result<String, Error> {
        let id = m.client_id.clone().unwrap_or_default();
        if id.is_empty() || !self.inner.engine.client_exists(&id).await? {
            return Err(Error::ClientUnknown(id));
        }
        Ok(id)
    }

    async fn handshake(&self, m: &Message) -> Result<Done, Error> {
        if m.version.as_deref().unwrap_or("").is_empty() {
            return Err(Error::ParameterMissing("version".into()));
        }
        let offered = m
            .supported_connection_types
            .as_ref()
            .ok_or_else(|| Error::ParameterMissing("supportedConnectionTypes".into()))?;
        if !offered
            .iter()
            .any(|t| CONNECTION_TYPES.contains(&t.as_str()))
        {
            return Err(Error::ConnectionTypeMismatch(offered.clone()));
        }
        let client_id = self.inner.engine.create_client().await?;
        metrics::counter!("bayeux_handshakes_total").increment(1);
        let mut reply = reply_to(m);
        reply.client_id = Some(client_id.clone());
        reply.successful = Some(true);
        reply.version = Some("1.0".into());
        reply.supported_connection_types = Some(CONNECTION_TYPES.map(str::to_owned).to_vec());
        reply.advice = Some(self.advice());
        self.emit(Event::Handshake { client_id }).await;
        Ok(Done::reply(reply))
    }

    /// Holds the connect until a message is queued for the client or the hold time passes, then answers
    /// with the reply and everything queued.
    async fn connect(&self, m: &Message) -> Result<Done, Error> {
        // A client that has gone is told to handshake again, unless it left by its own disconnect:
        // then this connect is simply the end of its connection.
        let gone = |client_id: String| {
            if self.inner.held.has_departed(&client_id) {
                let mut reply = reply_to(m);
                reply.successful = Some(true);
                let mut advice = self.advice();
                advice.insert("reconnect".into(), json!("none"));
                reply.advice = Some(advice);
                Ok(Done::reply(reply))
            } else {
                Err(Error::ClientUnknown(client_id))
            }
        };
        let client_id = match self.known_client(m).await {
            Err(Error::ClientUnknown(client_id)) => return gone(client_id),
            known => known?,
        };
        let connection_type = m
            .connection_type
            .as_deref()
            .ok_or_else(|| Error::ParameterMissing("connectionType".into()))?;
        if !CONNECTION_TYPES.contains(&connection_type) {
            return Err(Error::ConnectionTypeMismatch(vec![connection_type.into()]));
        }
        let engine = &self.inner.engine;
        engine.ping(&client_id).await?;
        // Clients ask for an immediate answer to their first connect with `advice.timeout: 0`
        // (CometD always does); never hold longer than the configured timeout.
        let asked = m
            .advice
            .as_ref()
            .and_then(|a| a.get("timeout"))
            .and_then(Value::as_u64)
            .map(Duration::from_millis);
        let hold = asked.map_or(self.inner.config.timeout, |t| {
            t.min(self.inner.config.timeout)
        });
        // Made before the check, so a drain between the two still wakes this connect.
        let drained = self.inner.drained.notified();
        tokio::pin!(drained);
        let hold = if self.is_draining() {
            Duration::ZERO
        } else {
            hold
        };
        let deadline = Instant::now() + hold;
        let signal = engine
            .queue_signal(&client_id)
            .await?
            .ok_or_else(|| Error::ClientUnknown(client_id.clone()))?;
        let (_guard, released) = self.inner.held.take(&client_id);
        let _held = HeldGauge::new(connection_type);
        // A client whose socket gets pushed deliveries (see `push`) only uses connects as a heartbeat.
        let pushed = self.is_pushed(&client_id);
        // `known_client` has just checked that the client exists; after a wake-up with nothing queued,
        // check again (its removal wakes the connect). Each check is a round trip on a shared engine, so
        // none is made twice.
        let mut woken = false;
        let deliveries = loop {
            let queued = if pushed {
                Vec::new()
            } else {
                engine.take_queue(&client_id).await?
            };
            if !queued.is_empty() {
                break queued;
            }
            if woken && !engine.client_exists(&client_id).await? {
                return gone(client_id);
            }
            tokio::select! {
                _ = signal.notified(), if !pushed => woken = true,
                // A newer connect from this client holds now; leave the queue to it.
                _ = released.notified() => break Vec::new(),
                // The process is about to exit: answer now, so the client connects again elsewhere.
                _ = &mut drained => {
                    break if pushed { Vec::new() } else { engine.take_queue(&client_id).await? };
                }
                _ = tokio::time::sleep_until(deadline) => {
                    break if pushed { Vec::new() } else { engine.take_queue(&client_id).await? };
                }
            }
        };
        // With deliveries in hand the client was there a moment ago; without, it may have been
        // disconnected or removed while we held its connect, and must handshake again.
        if deliveries.is_empty() && !engine.client_exists(&client_id).await? {
            return gone(client_id);
        }
        engine.ping(&client_id).await?;
        let mut reply = reply_to(m);
        reply.successful = Some(true);
        reply.advice = Some(self.advice());
        Ok(Done {
            reply,
            deliveries,
            subscribed: Vec::new(),
        })
    }

    /// Validates a subscribe or unsubscribe request: live client, channel list, each channel allowed.
    async fn subscription_request(&self, m: &Message) -> Result<(String, Vec<String>), Error> {
        let client_id = self.known_client(m).await?;
        let channels = m
            .subscriptions()
            .ok_or_else(|| Error::ParameterMissing("subscription".into()))?;
        for ch in &channels {
            if !channel::is_valid(ch) {
                return Err(Error::ChannelInvalid(ch.clone()));
            }
            if !channel::is_subscribable(ch) {
                return Err(Error::ChannelForbidden(ch.clone()));
            }
        }
        Ok((client_id, channels))
    }

    async fn subscribe(&self, m: &Message) -> Result<Done, Error> {
        let (client_id, channels) = self.subscription_request(m).await?;
        let engine = &self.inner.engine;
        engine.ping(&client_id).await?;
        self.within_subscription_bound(&client_id, &channels)
            .await?;
        let mut added = Vec::new();
        for ch in channels {
            match engine.subscribe(&client_id, &ch).await {
                Ok(true) => added.push(ch),
                Ok(false) => {}
                Err(e) => {
                    // All or nothing: a half-applied list would leave the client guessing.
                    for done in &added {
                        let _ = engine.unsubscribe(&client_id, done).await;
                    }
                    return Err(e);
                }
            }
        }
        let mut reply = reply_to(m);
        reply.successful = Some(true);
        reply.subscription = m.subscription.clone();
        Ok(Done {
            reply,
            deliveries: Vec::new(),
            subscribed: added,
        })
    }

    /// Refuses a subscribe that would leave the client with more than
    /// [`crate::Config::max_subscriptions`] channels (channels it already has cost nothing).
    async fn within_subscription_bound(
        &self,
        client_id: &str,
        channels: &[String],
    ) -> Result<(), Error> {
        let max = self.inner.config.max_subscriptions;
        let have = self.inner.engine.subscriptions(client_id).await?;
        let mut new: Vec<&String> = channels.iter().filter(|c| !have.contains(c)).collect();
        new.sort();
        new.dedup();
        if have.len() + new.len() > max {
            return Err(Error::OverLimit {
                field: channels.first().cloned().unwrap_or_default(),
                why: format!(
                    "subscribing would make {}, over the {max} subscriptions a client may hold",
                    have.len() + new.len()
                ),
            });
        }
        Ok(())
    }

    async fn unsubscribe(&self, m: &Message) -> Result<Done, Error> {
        let (client_id, channels) = self.subscription_request(m).await?;
        self.inner.engine.ping(&client_id).await?;
        for channel in channels {
            if self.inner.engine.unsubscribe(&client_id, &channel).await? {
                let client_id = client_id.clone();
                let reason = UnsubscribeReason::Explicit;
                self.emit(Event::Unsubscribe {
                    client_id,
                    channel,
                    reason,
                })
                .await;
            }
        }
        let mut reply = reply_to(m);
        reply.successful = Some(true);
        reply.subscription = m.subscription.clone();
        Ok(Done::reply(reply))
    }

    async fn disconnect(&self, m: &Message) -> Result<Done, Error> {
        let client_id = self.known_client(m).await?;
        self.inner.held.depart(&client_id);
        if !self
            .remove_client(&client_id, DisconnectReason::Explicit)
            .await?
        {
            return Err(Error::ClientUnknown(client_id));
        }
        let mut reply = reply_to(m);
        reply.successful = Some(true);
        Ok(Done::reply(reply))
    }

    /// A publish from a client. `/service/` messages stop here: they are for the server (extensions see
    /// them in their incoming hook) and never reach subscribers.
    async fn publish_from_client(&self, m: &Message) -> Result<Done, Error> {
        if !channel::is_valid_name(&m.channel) {
            return Err(Error::ChannelInvalid(m.channel.clone()));
        }
        if m.data.is_none() {
            return Err(Error::ParameterMissing("data".into()));
        }
        let client_id = self.known_client(m).await?;
        self.inner.engine.ping(&client_id).await?;
        if !channel::is_service(&m.channel) {
            self.inner.engine.publish(&strip(m.clone())).await?;
            metrics::counter!("bayeux_messages_published_total").increment(1);
        }
        let mut reply = reply_to(m);
        reply.successful = Some(true);
        Ok(Done::reply(reply))
    }
}
