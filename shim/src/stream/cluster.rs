//! The stream of a Redis Cluster, over a redis-rs cluster connection in RESP3 with a push channel.
//!
//! redis-rs sends each `SSUBSCRIBE` to the node that owns the channel's slot and subscribes again by
//! itself after a reconnection or a slot move. Each confirmation arrives as an `ssubscribe` push: the one
//! answering our own request is expected; any other means the subscription was re-established after a
//! gap, so the channel is resynced before the events behind it are read.
//!
//! Channels are subscribed as their keys (`<key prefix><channel>`, the shard channel the module
//! publishes on) and pushes are named back as channels; a push outside the prefix is ignored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use presence_roster::wire;
use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc;

use super::StreamSink;
use crate::error::ShimError;

/// The handle of the cluster stream.
pub struct ClusterStream {
    connection: ClusterConnection,
    key_prefix: String,
    /// Confirmations we are waiting for, per channel.
    expected: Arc<Mutex<HashMap<String, usize>>>,
    timeout: Duration,
}

impl ClusterStream {
    /// Connects to the cluster and starts reading its pushes, for channels whose keys start with
    /// `key_prefix`.
    pub async fn connect(
        seeds: &[String],
        key_prefix: &str,
        sink: Arc<dyn StreamSink>,
        timeout: Duration,
    ) -> Result<Self, ShimError> {
        let (pushes, receiver) = mpsc::unbounded_channel();
        let client = redis::cluster::ClusterClientBuilder::new(seeds.to_vec())
            .tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true))
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(pushes)
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .build()?;
        let connection = client.get_async_connection().await?;
        let expected = Arc::new(Mutex::new(HashMap::new()));
        tokio::spawn(run(receiver, key_prefix.to_owned(), sink, expected.clone()));
        Ok(ClusterStream {
            connection,
            key_prefix: key_prefix.to_owned(),
            expected,
            timeout,
        })
    }

    /// See [`super::Stream::listen`].
    pub async fn listen(&self, channel: &str) -> Result<(), ShimError> {
        *self
            .expected
            .lock()
            .unwrap()
            .entry(channel.to_owned())
            .or_default() += 1;
        let mut connection = self.connection.clone();
        let key = format!("{}{channel}", self.key_prefix);
        match tokio::time::timeout(self.timeout, connection.ssubscribe(key)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(error.into()),
            Err(_) => Err(ShimError::Timeout(self.timeout)),
        }
    }

    /// See [`super::Stream::unlisten`].
    pub fn unlisten(&self, channel: &str) {
        let mut connection = self.connection.clone();
        let key = format!("{}{channel}", self.key_prefix);
        tokio::spawn(async move {
            if let Err(error) = connection.sunsubscribe(&key).await {
                tracing::debug!(%error, key, "SUNSUBSCRIBE failed");
            }
        });
    }
}

async fn run(
    mut pushes: mpsc::UnboundedReceiver<PushInfo>,
    key_prefix: String,
    sink: Arc<dyn StreamSink>,
    expected: Arc<Mutex<HashMap<String, usize>>>,
) {
    while let Some(push) = pushes.recv().await {
        // A shard channel named back as its channel; not ours if it is outside the prefix.
        let text = |v: Option<&Value>| {
            let key = match v {
                Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                Some(Value::SimpleString(s)) => s.clone(),
                _ => return None,
            };
            key.strip_prefix(key_prefix.as_str()).map(str::to_owned)
        };
        match push.kind {
            PushKind::SMessage => {
                let (Some(channel), Some(Value::BulkString(payload))) =
                    (text(push.data.first()), push.data.get(1))
                else {
                    continue;
                };
                match wire::decode(payload) {
                    Ok(events) => sink.events(&channel, events).await,
                    Err(error) => {
                        tracing::warn!(%error, channel, "ignoring a malformed roster message")
                    }
                }
            }
            PushKind::SSubscribe => {
                let Some(channel) = text(push.data.first()) else {
                    continue;
                };
                let ours = {
                    let mut expected = expected.lock().unwrap();
                    match expected.get_mut(&channel) {
                        Some(n) if *n > 0 => {
                            *n -= 1;
                            if *n == 0 {
                                expected.remove(&channel);
                            }
                            true
                        }
                        _ => false,
                    }
                };
                if !ours {
                    tracing::info!(channel, "presence stream resubscribed after a gap");
                    // Newer events wait behind the resync, so retry until the roster can be read.
                    let mut pause = Duration::from_millis(50);
                    while let Err(error) = sink.resync(&channel).await {
                        tracing::warn!(%error, channel, "presence resync failed; retrying");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(2));
                    }
                }
            }
            PushKind::Disconnection => {
                tracing::warn!("a presence stream connection to the cluster was lost")
            }
            _ => {}
        }
    }
}
