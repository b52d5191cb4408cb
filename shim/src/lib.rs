//! Presence channels for the `bayeux` server: faye-presence's protocol, with rosters kept in Redis by
//! the presence module, one atomic command per change.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = presence_shim::Config::with_servers(["redis://127.0.0.1:6379"]);
//! let server = presence_shim::serve(config, bayeux::Config::default()).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
//! axum::serve(bayeux::without_delay(listener), bayeux::router(server)).await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! Public, for hosts:
//! - [`presence`]: [`Presence`], the server-agnostic core: subscribe → join, unsubscribe → leave,
//!   the per-channel views, the relay and the touch loop. Talks to a host through [`Deliver`], which
//!   it hands its own [`RosterMessage`]s; the server a channel lives on is [`shard_of`]. The core
//!   does not link our Bayeux server: another Rust Bayeux server uses it with
//!   `default-features = false`.
//! - `extension` (feature `bayeux`, on by default): `PresenceExtension`, the adapter for the `bayeux`
//!   server, which turns roster messages into its messages (`rev_of` reads one's revision back);
//!   `serve` and `serve_on` build such a server.
//! - [`config`], [`error`], [`identity`]: [`Config`], [`ShimError`], and the signed identities a
//!   host's backend issues.
//!
//! Inside (`pub(crate)`, free to change):
//! - `store`: the module's commands behind the `PresenceStore` trait, and `Store`, which runs them on
//!   the server (or cluster) that owns each channel through `presence-client` (the typed commands, for
//!   anyone calling the module directly).
//! - `stream`: the `EventStream` trait, and one shard pub/sub connection per server, with resync after
//!   a gap.
//! - `memory` and `race_tests` (unit tests only): the same two traits in memory, over the module's own
//!   roster logic with no Redis, and the shim's races played on it under a paused clock.
//! - `view`, `claim`, `message`, `route`: pure parts: the roster as told, the subscriber's claim,
//!   faye-presence's message format, jump-hash routing.

// Public: what a host configures, implements or calls. The rest is how the shim does it, free to change.
pub mod config;
pub mod error;
#[cfg(feature = "bayeux")]
pub mod extension;
pub mod identity;
pub mod presence;

#[cfg(test)]
mod memory;
#[cfg(test)]
mod race_tests;

pub(crate) mod claim;
pub(crate) mod message;
pub(crate) mod route;
pub(crate) mod store;
pub(crate) mod stream;
pub(crate) mod view;

#[cfg(feature = "bayeux")]
use std::sync::Arc;

pub use config::{Config, ValueMode};
pub use error::ShimError;
#[cfg(feature = "bayeux")]
pub use extension::{rev_of, PresenceExtension};
pub use message::RosterMessage;
pub use presence::{Deliver, Presence, Subscribed};
pub use route::shard_of;

#[cfg(feature = "bayeux")]
/// Builds a `bayeux` server with presence on the in-memory engine (one process): starts the shim,
/// registers its extension and its sweeper.
pub async fn serve(
    config: Config,
    bayeux_config: bayeux::Config,
) -> Result<bayeux::Server, ShimError> {
    let (server, _) =
        serve_on(config, bayeux_config, Arc::new(bayeux::MemoryEngine::new())).await?;
    Ok(server)
}

#[cfg(feature = "bayeux")]
/// Like [`serve`] on the given engine, e.g. a `bayeux_redis::RedisEngine` shared by several server
/// processes, and with the shim too (for a host that leaves every member at shutdown, say). Roster
/// messages are still addressed to the members that joined through this process, from Redis' stream
/// (never published by channel through the shared engine, which would deliver them once per process).
pub async fn serve_on(
    config: Config,
    bayeux_config: bayeux::Config,
    engine: Arc<dyn bayeux::Engine>,
) -> Result<(bayeux::Server, Presence), ShimError> {
    let delivery = Arc::new(extension::MemberDelivery::new());
    let presence = Presence::start(config, delivery.clone()).await?;
    let server = bayeux::Server::builder()
        .config(bayeux_config)
        .engine(engine)
        .extension(Arc::new(PresenceExtension::new(presence.clone())))
        .build()
        .map_err(|e| ShimError::Config(e.to_string()))?;
    delivery.attach(&server);
    server.spawn_sweeper();
    Ok((server, presence))
}
