//! The stream of a Redis Cluster, over a redis-rs cluster connection in RESP3 with a push channel.
//!
//! redis-rs sends each `SSUBSCRIBE` to the node that owns the channel's slot. Each confirmation arrives
//! as an `ssubscribe` push: the one answering our own [`ClusterStream::listen`] is expected; any other
//! means the subscription was re-established after a gap, so the channel is resynced before the events
//! behind it are read.
//!
//! After a lost connection the stream subscribes again to every channel itself, one command per channel
//! ([`repair`]): redis-rs' own resubscription is refused by Redis as soon as a node holds channels of
//! two slots, and does not follow a failover by itself, so a channel on a crashed master would never be
//! heard again after its replica's promotion.
//!
//! Channels are subscribed as their keys (`<key prefix><channel>`, the shard channel the module
//! publishes on) and pushes are named back as channels; a push outside the prefix is ignored.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use presence_roster::wire;
use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc;

use super::StreamSink;
use crate::config::Keys;
use crate::error::ShimError;

/// The handle of the cluster stream.
pub struct ClusterStream {
    /// The repair task holds it weakly, so dropping the stream closes the connection, which ends the
    /// push reader, which ends the repair task.
    connection: Arc<ClusterConnection>,
    keys: Keys,
    /// Confirmations we are waiting for, per channel.
    expected: Arc<Mutex<HashMap<String, usize>>>,
    /// The channels listened to, subscribed again after a lost connection.
    listening: Arc<Mutex<HashSet<String>>>,
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
        let connection = Arc::new(client.get_async_connection().await?);
        let keys = Keys::new(key_prefix);
        let expected = Arc::new(Mutex::new(HashMap::new()));
        let listening = Arc::new(Mutex::new(HashSet::new()));
        let (lost, repairs) = mpsc::unbounded_channel();
        tokio::spawn(run(receiver, keys.clone(), sink, expected.clone(), lost));
        tokio::spawn(repair(
            Arc::downgrade(&connection),
            keys.clone(),
            listening.clone(),
            timeout,
            repairs,
        ));
        Ok(ClusterStream {
            connection,
            keys,
            expected,
            listening,
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
        self.listening
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(channel.to_owned());
        let mut connection = (*self.connection).clone();
        let key = self.keys.key(channel);
        match tokio::time::timeout(self.timeout, connection.ssubscribe(key)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(error.into()),
            Err(_) => Err(ShimError::Timeout(self.timeout)),
        }
    }

    /// See [`super::Stream::unlisten`].
    pub fn unlisten(&self, channel: &str) {
        self.listening
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(channel);
        let mut connection = (*self.connection).clone();
        let key = self.keys.key(channel);
        tokio::spawn(async move {
            if let Err(error) = connection.sunsubscribe(&key).await {
                tracing::debug!(%error, key, "SUNSUBSCRIBE failed");
            }
        });
    }
}

async fn run(
    mut pushes: mpsc::UnboundedReceiver<PushInfo>,
    keys: Keys,
    sink: Arc<dyn StreamSink>,
    expected: Arc<Mutex<HashMap<String, usize>>>,
    lost: mpsc::UnboundedSender<()>,
) {
    while let Some(push) = pushes.recv().await {
        // A shard channel named back as its channel; not ours if it is outside the prefix.
        let text = |v: Option<&Value>| {
            let key = match v {
                Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                Some(Value::SimpleString(s)) => s.clone(),
                _ => return None,
            };
            keys.channel(&key).map(str::to_owned)
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
                    let mut expected = expected.lock().unwrap_or_else(PoisonError::into_inner);
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
                tracing::warn!("a presence stream connection to the cluster was lost");
                let _ = lost.send(());
            }
            _ => {}
        }
    }
}

/// After each lost connection: `SSUBSCRIBE` again to every channel we listen on, one command per
/// channel, retrying those that fail until all are confirmed. Each command is routed by its channel's
/// slot, and one that reaches a dead node makes redis-rs refresh its slot map, so the retries land on
/// whichever master serves the slot once the failover is over. redis-rs' own resubscription cannot be
/// relied on: it sends one `SSUBSCRIBE` per node with all that node's channels, which Redis refuses
/// with CROSSSLOT as soon as they span two slots, and after a failover it only runs when a request
/// refreshes the map. Each confirmation is an `ssubscribe` push we did not ask for through
/// [`ClusterStream::listen`], so its channel is resynced before its newer events are read; for a
/// channel whose subscription survived, that resync finds nothing to correct.
async fn repair(
    connection: Weak<ClusterConnection>,
    keys: Keys,
    listening: Arc<Mutex<HashSet<String>>>,
    timeout: Duration,
    mut lost: mpsc::UnboundedReceiver<()>,
) {
    while lost.recv().await.is_some() {
        let mut pending = HashSet::new();
        let mut pause = Duration::from_millis(100);
        loop {
            // This loss, or one reported meanwhile: every channel listened to now, again.
            while lost.try_recv().is_ok() {}
            pending.extend(
                listening
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .iter()
                    .cloned(),
            );
            let Some(connection) = connection.upgrade().map(|c| (*c).clone()) else {
                return;
            };
            let attempts = pending.iter().map(|channel| {
                let mut connection = connection.clone();
                let key = keys.key(channel);
                async move {
                    let subscribed = tokio::time::timeout(timeout, connection.ssubscribe(&key));
                    (channel.clone(), matches!(subscribed.await, Ok(Ok(()))))
                }
            });
            let confirmed = futures_util::future::join_all(attempts).await;
            drop(connection);
            for (channel, ok) in confirmed {
                if ok {
                    pending.remove(&channel);
                }
            }
            // A channel no longer listened to needs no subscription (its events would be dropped).
            let still = listening
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            pending.retain(|channel| still.contains(channel));
            if pending.is_empty() {
                tracing::info!(
                    channels = still.len(),
                    "presence stream subscribed again to every channel after a lost connection"
                );
                break;
            }
            tracing::debug!(
                waiting = pending.len(),
                "presence stream: some channels' slots are not served yet"
            );
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }
}
