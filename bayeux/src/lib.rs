//! A Bayeux 1.0 server for tokio and axum, accepted by the Faye and CometD clients.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let server = bayeux::Server::builder().build()?;
//! server.spawn_sweeper();
//! let app = bayeux::router(server);
//! let listener = bayeux::without_delay(tokio::net::TcpListener::bind("127.0.0.1:8000").await?);
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`message`]: the [`Message`] struct, as it travels in JSON.
//! - [`outbound`]: [`Outbound`], a message on its way out, shared by all its receivers and serialized
//!   once.
//! - [`channel`]: channel grammar, `/meta/` and `/service/`, wildcard expansion.
//! - [`error`]: the one [`Error`] enum and its Bayeux error strings (`401:id:Unknown client`).
//! - [`config`]: [`Config`], every field documenting its default.
//! - `server` and `meta`: the protocol core, [`Server`] (and [`WeakServer`]). Messages in, replies and
//!   deliveries out; no I/O, so it is unit-tested without sockets (`core_tests`, `ext_tests`,
//!   `handle_tests`), with paused tokio time for connect holds and inactivity.
//! - `fence`: [`ReplyFence`], which keeps deliveries addressed to a client behind its subscribe reply.
//! - `turns`: one client's batches handled one at a time, in arrival order.
//! - `push`: [`Server::push_deliveries`], a [`Push`] stream of deliveries the moment they are
//!   queued, for transports that can write at any time (WebSocket).
//! - [`engine`]: the [`Engine`] trait (clients, subscriptions, queues, routing), the in-memory
//!   [`MemoryEngine`], and the conformance suite every engine must pass.
//! - [`extension`]: the [`Extension`] trait (ordered async hooks), lifecycle [`Event`]s, and how a
//!   presence extension hooks subscriptions.
//! - [`transport`]: thin axum adapters: long-polling, cross-origin long-polling (CORS), callback-polling
//!   (JSONP) and WebSocket, all on one mount path, built by [`router`].

#![warn(missing_docs)]

pub mod channel;
pub mod config;
pub mod engine;
pub mod error;
pub mod extension;
mod fence;
pub mod message;
mod meta;
pub mod outbound;
mod push;
mod server;
pub mod transport;
mod turns;

#[cfg(test)]
mod core_tests;
#[cfg(test)]
mod ext_tests;
#[cfg(test)]
mod handle_tests;
#[cfg(test)]
mod order_tests;

pub use config::Config;
pub use engine::{Engine, MemoryEngine};
pub use error::Error;
pub use extension::{Context, Direction, DisconnectReason, Event, Extension, UnsubscribeReason};
pub use fence::ReplyFence;
pub use message::{Message, SharedExt};
pub use outbound::Outbound;
pub use push::Push;
pub use server::{Answer, Server, ServerBuilder, WeakServer};
pub use transport::{router, serve, serve_with, without_delay};
