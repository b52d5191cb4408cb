//! A Redis engine for the `bayeux` server: several server processes behind a load balancer serve one
//! Bayeux service, as Faye does with faye-redis and CometD with Oort.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! let engine = bayeux_redis::RedisEngine::connect(
//!     bayeux_redis::RedisEngineConfig::server("redis://127.0.0.1:6379"),
//! )
//! .await?;
//! let server = bayeux::Server::builder().engine(Arc::new(engine)).build()?;
//! server.spawn_sweeper();
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`engine`]: [`RedisEngine`], the `bayeux::Engine` implementation.
//! - `keys` and `scripts`: the data layout (one hash tag per client) and the Lua steps on it.
//! - `backend`: one server or a cluster behind one connection type; pipelined scripts.
//! - `notify`: which clients this process serves, and the listener of its notification channel.
//! - [`config`] and [`error`]: [`RedisEngineConfig`] and [`EngineError`].

pub mod config;
pub mod engine;
pub mod error;

mod backend;
mod keys;
mod notify;
mod scripts;

pub use config::RedisEngineConfig;
pub use engine::RedisEngine;
pub use error::EngineError;
