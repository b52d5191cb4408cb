//! Typed calls of the presence module's commands for [redis-rs](https://docs.rs/redis), the way
//! `redis::JsonCommands` does it for RedisJSON: a trait on every connection, one method per command,
//! replies as structs that read RESP2 and RESP3 alike.
//!
//! The module (`libpresence.so`, see the workspace README) keeps one channel's roster in one key and
//! changes it with one atomic command; this crate is how a Rust program calls those commands directly,
//! without the Bayeux side. Every method takes the channel's **key** (the presence server names it
//! `<key prefix><channel>`, e.g. `presence:/presence/room`; the module takes any key name), so cluster
//! clients route it by its slot.
//!
//! Blocking, on a [`redis::Connection`] (or anything [`redis::ConnectionLike`]):
//!
//! ```no_run
//! use std::time::Duration;
//! use presence_client::{JoinOptions, PresenceCommands};
//!
//! # fn run() -> redis::RedisResult<()> {
//! let mut con = redis::Client::open("redis://127.0.0.1:6379")?.get_connection()?;
//! let key = "presence:/presence/room";
//! let options = JoinOptions::new().ttl(Duration::from_secs(30)).with_roster();
//! let joined = con.presence_join(key, "client-1", "alice", br#"{"name":"Alice"}"#, &options)?;
//! assert!(joined.joined);
//! println!("rev {}, roster {:?}", joined.rev, joined.roster);
//!
//! let roster = con.presence_roster(key)?;
//! assert!(roster.members.contains_key(&b"alice"[..]));
//! let touched = con.presence_touch(key, &["client-1", "client-9"], Some(Duration::from_secs(30)))?;
//! assert_eq!(touched.unknown, vec![b"client-9".to_vec()]); // join it again
//! let left = con.presence_leave(key, "client-1")?;
//! assert!(left.left);
//! # Ok(()) }
//! ```
//!
//! Async, on a multiplexed connection, a `ConnectionManager` or a cluster connection (anything
//! [`redis::aio::ConnectionLike`]):
//!
//! ```no_run
//! use presence_client::{JoinOptions, PresenceAsyncCommands};
//!
//! # async fn run() -> redis::RedisResult<()> {
//! let client = redis::Client::open("redis://127.0.0.1:6379")?;
//! let mut con = client.get_multiplexed_async_connection().await?;
//! let key = "presence:/presence/room";
//! con.presence_join(key, "client-2", "bob", b"null", &JoinOptions::new()).await?;
//! let count = con.presence_count(key).await?;
//! println!("{} members on {} connections at rev {}", count.members, count.connections, count.rev);
//! # Ok(()) }
//! ```
//!
//! For a pipeline, or options the builders do not offer, build the command with [`cmd`] and query the
//! typed reply yourself: `cmd::touch(key, clients, ttl)` in a `redis::pipe()`, then
//! `query::<Vec<Touched>>`.
//!
//! # Layout
//! - [`cmd`]: one function per command building its [`redis::Cmd`], and [`JoinOptions`].
//! - [`reply`]: the typed replies ([`Joined`], [`Left`], [`Touched`], [`Roster`], [`Count`]) and the
//!   functions that read a raw reply in either protocol.
//! - this file: [`PresenceCommands`] (blocking) and [`PresenceAsyncCommands`], implemented for every
//!   connection.

pub mod cmd;
pub mod reply;

use std::future::Future;
use std::time::Duration;

use redis::{RedisResult, ToRedisArgs};

pub use cmd::JoinOptions;
pub use reply::{Count, Joined, Left, Members, Roster, Touched};

/// The presence commands on a blocking connection; implemented for every [`redis::ConnectionLike`].
pub trait PresenceCommands: redis::ConnectionLike + Sized {
    /// `PRESENCE.JOIN key client id data [TTL ms] [WITHROSTER]`: binds connection `client` to member
    /// `id` with `data` (the newest data wins), and says what changed.
    fn presence_join<K: ToRedisArgs, C: ToRedisArgs, I: ToRedisArgs, D: ToRedisArgs>(
        &mut self,
        key: K,
        client: C,
        id: I,
        data: D,
        options: &JoinOptions,
    ) -> RedisResult<Joined> {
        cmd::join_with(key, client, id, data, options).query(self)
    }

    /// `PRESENCE.LEAVE key client`: removes one connection; the member leaves with its last. Leaving
    /// twice is a no-op, not an error.
    fn presence_leave<K: ToRedisArgs, C: ToRedisArgs>(
        &mut self,
        key: K,
        client: C,
    ) -> RedisResult<Left> {
        cmd::leave(key, client).query(self)
    }

    /// `PRESENCE.TOUCH key client [client ...] [TTL ms]`: moves the deadlines of live connections on
    /// and says which clients the channel does not know.
    fn presence_touch<K: ToRedisArgs, C: ToRedisArgs>(
        &mut self,
        key: K,
        clients: C,
        ttl: Option<Duration>,
    ) -> RedisResult<Touched> {
        cmd::touch(key, clients, ttl).query(self)
    }

    /// `PRESENCE.ROSTER key`: the roster and its revision.
    fn presence_roster<K: ToRedisArgs>(&mut self, key: K) -> RedisResult<Roster> {
        cmd::roster(key).query(self)
    }

    /// `PRESENCE.COUNT key`: members, connections and revision.
    fn presence_count<K: ToRedisArgs>(&mut self, key: K) -> RedisResult<Count> {
        cmd::count(key).query(self)
    }
}

impl<T: redis::ConnectionLike> PresenceCommands for T {}

/// The presence commands on an async connection; implemented for every [`redis::aio::ConnectionLike`]
/// that is `Send`. Each method builds its command first, so the future borrows only the connection.
pub trait PresenceAsyncCommands: redis::aio::ConnectionLike + Send + Sized {
    /// `PRESENCE.JOIN key client id data [TTL ms] [WITHROSTER]` (see
    /// [`PresenceCommands::presence_join`]).
    fn presence_join<K: ToRedisArgs, C: ToRedisArgs, I: ToRedisArgs, D: ToRedisArgs>(
        &mut self,
        key: K,
        client: C,
        id: I,
        data: D,
        options: &JoinOptions,
    ) -> impl Future<Output = RedisResult<Joined>> + Send {
        let cmd = cmd::join_with(key, client, id, data, options);
        async move { cmd.query_async(self).await }
    }

    /// `PRESENCE.LEAVE key client` (see [`PresenceCommands::presence_leave`]).
    fn presence_leave<K: ToRedisArgs, C: ToRedisArgs>(
        &mut self,
        key: K,
        client: C,
    ) -> impl Future<Output = RedisResult<Left>> + Send {
        let cmd = cmd::leave(key, client);
        async move { cmd.query_async(self).await }
    }

    /// `PRESENCE.TOUCH key client [client ...] [TTL ms]` (see [`PresenceCommands::presence_touch`]).
    fn presence_touch<K: ToRedisArgs, C: ToRedisArgs>(
        &mut self,
        key: K,
        clients: C,
        ttl: Option<Duration>,
    ) -> impl Future<Output = RedisResult<Touched>> + Send {
        let cmd = cmd::touch(key, clients, ttl);
        async move { cmd.query_async(self).await }
    }

    /// `PRESENCE.ROSTER key` (see [`PresenceCommands::presence_roster`]).
    fn presence_roster<K: ToRedisArgs>(
        &mut self,
        key: K,
    ) -> impl Future<Output = RedisResult<Roster>> + Send {
        let cmd = cmd::roster(key);
        async move { cmd.query_async(self).await }
    }

    /// `PRESENCE.COUNT key` (see [`PresenceCommands::presence_count`]).
    fn presence_count<K: ToRedisArgs>(
        &mut self,
        key: K,
    ) -> impl Future<Output = RedisResult<Count>> + Send {
        let cmd = cmd::count(key);
        async move { cmd.query_async(self).await }
    }
}

impl<T: redis::aio::ConnectionLike + Send> PresenceAsyncCommands for T {}
