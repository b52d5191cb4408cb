//! [`PresenceExtension`]: the shim as a `bayeux` server extension.
//!
//! - `/meta/subscribe` to a presence channel: after the server accepted the subscription (the reply's
//!   outgoing hook), [`Presence::subscribe`]; its roster goes into the reply's `ext.presence`, its error
//!   into the reply's `error`, which makes the server undo the subscription.
//! - Unsubscribe, disconnect and timeout events: [`Presence::unsubscribe`].
//! - Deliveries on presence channels pass [`Presence::admits`] (a filter: the shared fan-out stays).
//! - Clients may not publish on presence channels, nor subscribe to them with wildcards.
//! - [`MemberDelivery`]: the core's [`RosterMessage`]s, as `bayeux` messages, to their members.

use async_trait::async_trait;
use bayeux::{Context, Direction, Event, Extension, Message, SharedExt};
use serde_json::Value;

use crate::error::ShimError;
use crate::message::RosterMessage;
use crate::presence::{Presence, Subscribed};

/// Presence as a Bayeux extension.
pub struct PresenceExtension {
    presence: Presence,
}

impl PresenceExtension {
    /// Wraps a started [`Presence`].
    pub fn new(presence: Presence) -> Self {
        PresenceExtension { presence }
    }

    fn is_presence(&self, channel: &str) -> bool {
        self.presence.config().is_presence_channel(channel)
    }

    /// The presence channels named by a subscribe, and whether one of them is a wildcard.
    fn presence_subscriptions(&self, message: &Message) -> Vec<String> {
        let names: Vec<&str> = match &message.subscription {
            Some(Value::String(one)) => vec![one.as_str()],
            Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        names
            .into_iter()
            .filter(|c| self.is_presence(c))
            .map(str::to_owned)
            .collect()
    }
}

fn subscription_count(message: &Message) -> usize {
    match &message.subscription {
        Some(Value::Array(many)) => many.len(),
        Some(_) => 1,
        None => 0,
    }
}

/// The revision of a roster message, if `message` is one (its `ext.presence.rev`).
pub fn rev_of(message: &Message) -> Option<u64> {
    message.ext.as_ref()?.get("presence")?.get("rev")?.as_u64()
}

/// A roster message of the core as a `bayeux` message.
pub fn to_message(roster: RosterMessage) -> Message {
    let ext = roster.ext();
    let mut message = Message::publish(roster.channel, roster.data);
    message.ext = Some(ext);
    message
}

/// Puts a subscribe's presence into its reply's `ext`, keeping what else the `ext` holds; the roster
/// goes in as shared bytes ([`bayeux::SharedExt`]), serialized once per revision for every reply.
fn put_into(subscribed: Subscribed, reply: &mut Message) {
    let ext = reply
        .ext
        .get_or_insert_with(|| Value::Object(Default::default()));
    if !ext.is_object() {
        *ext = Value::Object(Default::default());
    }
    if let Value::Object(ext) = ext {
        ext.insert("presence".into(), subscribed.presence);
    }
    reply.ext_shared = subscribed
        .roster
        .map(|roster| SharedExt::new("presence", "subscribe", roster));
}

fn reject(mut message: Message, error: ShimError, channel: &str) -> Message {
    message.error = Some(error.to_bayeux(channel));
    message
}

#[async_trait]
impl Extension for PresenceExtension {
    /// Deliveries are only filtered (see `admits_delivery`), never rewritten, so every channel keeps
    /// the shared, serialize-once fan-out.
    fn sees_deliveries(&self, _channel: &str) -> bool {
        false
    }

    fn admits_delivery(&self, message: &Message, client_id: Option<&str>) -> bool {
        client_id.is_none_or(|client| {
            self.presence
                .admits(client, &message.channel, rev_of(message))
        })
    }

    async fn incoming(
        &self,
        message: Message,
        _ctx: Context<'_>,
    ) -> Result<Option<Message>, bayeux::Error> {
        if message.channel == "/meta/subscribe" {
            let presence = self.presence_subscriptions(&message);
            if let Some(first) = presence.first().cloned() {
                let wildcard = presence
                    .iter()
                    .find(|c| c.ends_with("/*") || c.ends_with("/**"));
                let error = match (wildcard, subscription_count(&message)) {
                    (Some(wild), _) => Some((ShimError::Wildcard, wild.clone())),
                    // One reply carries one roster: a presence channel is subscribed on its own.
                    (None, count) if count > 1 => Some((ShimError::SeveralChannels, first)),
                    _ => None,
                };
                if let Some((error, channel)) = error {
                    return Ok(Some(reject(message, error, &channel)));
                }
            }
        } else if !message.channel.starts_with("/meta/") && self.is_presence(&message.channel) {
            let channel = message.channel.clone();
            return Ok(Some(reject(message, ShimError::PublishForbidden, &channel)));
        }
        Ok(Some(message))
    }

    async fn outgoing(
        &self,
        mut message: Message,
        ctx: Context<'_>,
    ) -> Result<Option<Message>, bayeux::Error> {
        match ctx.direction {
            Direction::Reply
                if message.channel == "/meta/subscribe" && message.successful == Some(true) =>
            {
                let (Some(request), Some(client)) = (ctx.request, ctx.client_id) else {
                    return Ok(Some(message));
                };
                let Some(channel) = self.presence_subscriptions(request).into_iter().next() else {
                    return Ok(Some(message));
                };
                match self
                    .presence
                    .subscribe(client, &channel, request.ext.as_ref())
                    .await
                {
                    Ok(subscribed) => {
                        put_into(subscribed, &mut message);
                        Ok(Some(message))
                    }
                    Err(error) => {
                        tracing::debug!(%error, client, channel, "presence subscribe refused");
                        Ok(Some(reject(message, error, &channel)))
                    }
                }
            }
            _ => Ok(Some(message)),
        }
    }

    async fn event(&self, event: &Event) {
        if let Event::Unsubscribe {
            client_id, channel, ..
        } = event
        {
            if self.is_presence(channel) {
                self.presence.unsubscribe(client_id, channel).await;
            }
        }
    }
}

/// Hands roster messages to the members they are addressed to through a `bayeux` server's engine, so
/// each reaches its member on whichever process that member polls. Holds the server weakly: the server
/// owns the presence extension, which owns the shim, which owns this; a strong handle here would keep
/// the server alive from inside itself.
#[derive(Default)]
pub struct MemberDelivery(std::sync::OnceLock<bayeux::WeakServer>);

impl MemberDelivery {
    /// A delivery with no server yet: messages are dropped until [`MemberDelivery::attach`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Delivers through `server` from now on (once; later calls are ignored).
    pub fn attach(&self, server: &bayeux::Server) {
        let _ = self.0.set(server.downgrade());
    }

    fn server(&self) -> Option<bayeux::Server> {
        self.0.get()?.upgrade()
    }
}

#[async_trait]
impl crate::presence::Deliver for MemberDelivery {
    async fn deliver(&self, message: RosterMessage, clients: Vec<String>) {
        let Some(server) = self.server() else {
            return;
        };
        if let Err(error) = server.deliver_to_many(&clients, to_message(message)).await {
            tracing::warn!(%error, "a roster message could not be delivered");
        }
    }

    async fn is_subscribed(&self, client: &str, channel: &str) -> bool {
        let Some(server) = self.server() else {
            return true;
        };
        match server.engine().subscriptions(client).await {
            Ok(channels) => channels.iter().any(|c| c == channel),
            // Unknown is not gone: keep the member until the engine answers.
            Err(_) => true,
        }
    }
}
