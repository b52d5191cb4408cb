//! The roster event streams: how this process receives every change of the channels it serves.
//!
//! The module publishes each change on the shard channel named like the channel key; Redis runs commands
//! one at a time, so a subscriber receives each channel's events exactly once, in `rev` order. Each
//! [`Stream`] feeds a [`StreamSink`] (the shim) one call at a time, and asks it to resync a channel
//! whenever the subscription had a gap (a lost connection, a cluster failover), before any newer event.

mod cluster;
mod server;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use presence_roster::Event;

pub use cluster::ClusterStream;
pub use server::ServerStream;

use crate::config::Config;
use crate::error::ShimError;
use crate::store::{Shard, Store};

/// Where the shim listens for channels' events: [`RedisStreams`] on Redis' shard pub/sub; the unit
/// tests' in-memory store (`crate::memory`) delivers its own events, with a delay and losses on demand.
#[async_trait]
pub trait EventStream: Send + Sync + 'static {
    /// Makes sure this process receives `channel`'s events: returns once the subscription is
    /// confirmed, or fails within the timeout.
    async fn listen(&self, channel: &str) -> Result<(), ShimError>;
    /// Stops receiving `channel`'s events.
    fn unlisten(&self, channel: &str);
}

/// The streams of every configured server, or of the cluster, each channel on its shard's.
pub struct RedisStreams {
    streams: HashMap<Shard, Stream>,
    store: Store,
}

impl RedisStreams {
    /// Starts the stream of each server (or the cluster's), feeding `sink`.
    pub async fn start(
        config: &Config,
        store: Store,
        sink: Arc<dyn StreamSink>,
    ) -> Result<Self, ShimError> {
        let mut streams = HashMap::new();
        if config.cluster.is_empty() {
            for (i, url) in config.servers.iter().enumerate() {
                let stream =
                    ServerStream::spawn(url, &config.key_prefix, sink.clone(), config.timeout)?;
                streams.insert(Shard::Server(i), Stream::Server(stream));
            }
        } else {
            let stream =
                ClusterStream::connect(&config.cluster, &config.key_prefix, sink, config.timeout)
                    .await?;
            streams.insert(Shard::Cluster, Stream::Cluster(stream));
        }
        Ok(RedisStreams { streams, store })
    }

    fn of(&self, channel: &str) -> Option<&Stream> {
        self.streams.get(&self.store.shard_of(channel))
    }
}

#[async_trait]
impl EventStream for RedisStreams {
    async fn listen(&self, channel: &str) -> Result<(), ShimError> {
        match self.of(channel) {
            Some(stream) => stream.listen(channel).await,
            None => Err(ShimError::Stream(format!("no stream for {channel}"))),
        }
    }

    fn unlisten(&self, channel: &str) {
        if let Some(stream) = self.of(channel) {
            stream.unlisten(channel);
        }
    }
}

/// Receives what a stream reads. Called one call at a time, in order.
#[async_trait]
pub trait StreamSink: Send + Sync + 'static {
    /// Events of `channel`, in `rev` order.
    async fn events(&self, channel: &str, events: Vec<Event>);
    /// The subscription to `channel` had a gap: resync it now. Events read after this call returns are
    /// newer than anything the gap hid. On an error the stream retries (a plain server's stream by
    /// reconnecting, which resyncs again) before it reads on.
    async fn resync(&self, channel: &str) -> Result<(), ShimError>;
}

/// The stream of one server, or of a whole cluster.
pub enum Stream {
    /// A plain Redis server.
    Server(ServerStream),
    /// A Redis Cluster (redis-rs routes each channel's subscription to the node of its slot).
    Cluster(ClusterStream),
}

impl Stream {
    /// Makes sure this process receives `channel`'s events: returns once Redis confirmed the
    /// subscription, or fails within the timeout.
    pub async fn listen(&self, channel: &str) -> Result<(), ShimError> {
        match self {
            Stream::Server(stream) => stream.listen(channel).await,
            Stream::Cluster(stream) => stream.listen(channel).await,
        }
    }

    /// Stops receiving `channel`'s events.
    pub fn unlisten(&self, channel: &str) {
        match self {
            Stream::Server(stream) => stream.unlisten(channel),
            Stream::Cluster(stream) => stream.unlisten(channel),
        }
    }
}
