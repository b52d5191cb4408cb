//! The engine: where clients, subscriptions and message queues live.
//!
//! The protocol core ([`crate::Server`]) keeps no client state of its own; it asks the engine. That is
//! what lets a later Redis engine spread one Bayeux service over several processes: the in-memory
//! engine holds everything in this process, a shared engine would hold it in Redis and fan deliveries
//! out over pub/sub (as faye-redis does). Nothing outside an engine may assume there is only one process.
//!
//! Every engine must pass [`conformance::run`], the behaviour contract written once for all engines.

pub mod conformance;
mod memory;

pub use memory::{new_client_id, MemoryEngine};

use crate::{Error, Message, Outbound};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Client, subscription and queue storage plus message routing.
///
/// All methods are async so that an engine may do network round trips; errors surface to clients as
/// `500` replies. Channel names given to an engine have already been validated by the core.
#[async_trait]
pub trait Engine: Send + Sync + 'static {
    /// Registers a new client and returns its id (unguessable: it is the client's only credential).
    async fn create_client(&self) -> Result<String, Error>;

    /// Whether `client_id` is a live client.
    async fn client_exists(&self, client_id: &str) -> Result<bool, Error>;

    /// Removes a client with its subscriptions and queue. Returns the channels it was subscribed to
    /// (so the caller can report an unsubscribe for each), or `None` if the client was unknown, so that
    /// two processes racing to remove the same client report it once.
    async fn destroy_client(&self, client_id: &str) -> Result<Option<Vec<String>>, Error>;

    /// Records that the client is active now (it sent a message or holds a connect), pushing back its
    /// inactivity deadline.
    async fn ping(&self, client_id: &str) -> Result<(), Error>;

    /// Clients that have not been pinged for longer than `inactivity`. The caller removes them with
    /// [`Engine::destroy_client`].
    async fn inactive_clients(&self, inactivity: Duration) -> Result<Vec<String>, Error>;

    /// Subscribes a client to a channel name or pattern; `Ok(false)` if it already was subscribed.
    /// Fails with [`Error::ClientUnknown`] for an unknown client.
    async fn subscribe(&self, client_id: &str, channel: &str) -> Result<bool, Error>;

    /// Unsubscribes a client; `Ok(false)` if it was not subscribed.
    async fn unsubscribe(&self, client_id: &str, channel: &str) -> Result<bool, Error>;

    /// The channels (names and patterns) a client is subscribed to, sorted.
    async fn subscriptions(&self, client_id: &str) -> Result<Vec<String>, Error>;

    /// Queues `message` for every subscriber of its channel (wildcards included, each client once),
    /// in every process that shares this engine.
    async fn publish(&self, message: &Message) -> Result<(), Error>;

    /// Queues `message` for one client whatever its subscriptions (e.g. to resend a roster to a client
    /// that missed diffs); `Ok(false)` for an unknown client.
    async fn queue_for(&self, client_id: &str, message: &Message) -> Result<bool, Error>;

    /// Queues `message` for each of `client_ids` (unknown ones are skipped) whatever their
    /// subscriptions and wherever they connect: addressed delivery, e.g. roster messages to the members
    /// one process knows, which must follow a member that polls another process. The default calls
    /// [`Engine::queue_for`] per client; engines override it to share one copy.
    async fn queue_for_many(&self, client_ids: &[String], message: &Message) -> Result<(), Error> {
        for id in client_ids {
            self.queue_for(id, message).await?;
        }
        Ok(())
    }

    /// Takes every message queued for the client, oldest first.
    async fn take_queue(&self, client_id: &str) -> Result<Vec<Outbound>, Error>;

    /// A signal raised (with `notify_one`, so a wake-up is never lost) whenever a message is queued for
    /// the client; `None` for an unknown client. A held `/meta/connect` waits on it.
    async fn queue_signal(&self, client_id: &str) -> Result<Option<Arc<Notify>>, Error>;
}
