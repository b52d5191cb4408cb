//! The stream of one plain Redis server: a task of its own over a framed TCP connection, with redis-rs'
//! RESP decoder (redis-rs speaks `SSUBSCRIBE` only on cluster connections).
//!
//! When the connection is lost, events published meanwhile are lost with it: after reconnecting, the task
//! subscribes again to every channel and asks the [`StreamSink`] to resync each one *before* it reads
//! any newer event, so order is kept.
//!
//! The task keeps channel names; on the wire each is its key, `<key prefix><channel>`, the shard channel
//! the module publishes on. A message on a shard channel outside the prefix is not ours and is ignored.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use presence_roster::{wire, Event};
use redis::{ConnectionAddr, IntoConnectionInfo, Value};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::Framed;

use super::StreamSink;
use crate::config::Keys;
use crate::error::ShimError;

enum Command {
    Listen(String, oneshot::Sender<Result<(), ShimError>>),
    Unlisten(String),
}

/// The handle of one server's stream task. The task ends when the handle is dropped.
pub struct ServerStream {
    commands: mpsc::UnboundedSender<Command>,
    timeout: Duration,
}

impl ServerStream {
    /// Starts the stream task for the server at `url`, for channels whose keys start with
    /// `key_prefix`.
    pub fn spawn(
        url: &str,
        key_prefix: &str,
        sink: Arc<dyn StreamSink>,
        timeout: Duration,
    ) -> Result<Self, ShimError> {
        let info = url.into_connection_info()?;
        let (commands, receiver) = mpsc::unbounded_channel();
        let keys = Keys::new(key_prefix);
        tokio::spawn(run(info, keys, receiver, sink));
        Ok(ServerStream { commands, timeout })
    }

    /// Makes sure this process receives `channel`'s events: returns once Redis confirmed the
    /// subscription, or fails if it cannot within the timeout.
    pub async fn listen(&self, channel: &str) -> Result<(), ShimError> {
        let (done, confirmed) = oneshot::channel();
        self.commands
            .send(Command::Listen(channel.to_owned(), done))
            .map_err(|_| ShimError::Stream("the stream task has stopped".into()))?;
        match tokio::time::timeout(self.timeout, confirmed).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ShimError::Stream("the stream task has stopped".into())),
            Err(_) => Err(ShimError::Timeout(self.timeout)),
        }
    }

    /// Stops receiving `channel`'s events.
    pub fn unlisten(&self, channel: &str) {
        let _ = self.commands.send(Command::Unlisten(channel.to_owned()));
    }
}

type Connection = Framed<TcpStream, redis::ValueCodec>;

/// What the task keeps across reconnections.
struct Subscriptions {
    /// Channels to receive, confirmed or not.
    wanted: HashSet<String>,
    /// Listen requests waiting for Redis' confirmation.
    waiting: HashMap<String, Vec<oneshot::Sender<Result<(), ShimError>>>>,
}

async fn run(
    info: redis::ConnectionInfo,
    keys: Keys,
    mut commands: mpsc::UnboundedReceiver<Command>,
    sink: Arc<dyn StreamSink>,
) {
    let mut subs = Subscriptions {
        wanted: HashSet::new(),
        waiting: HashMap::new(),
    };
    let mut backoff = Duration::from_millis(50);
    let mut had_connection = false;
    loop {
        match connect(&info).await {
            Ok(mut connection) => {
                backoff = Duration::from_millis(50);
                let gap = had_connection;
                had_connection = true;
                match serve(
                    &mut connection,
                    &keys,
                    &mut commands,
                    &mut subs,
                    sink.as_ref(),
                    gap,
                )
                .await
                {
                    Ok(()) => return, // the handle was dropped
                    Err(error) => {
                        tracing::warn!(%error, "presence stream lost; events until it is back are resynced")
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "presence stream cannot connect"),
        }
        fail_waiting(&mut subs, "the presence stream is reconnecting");
        // Keep taking commands while disconnected, so listens fail fast instead of hanging.
        let pause = tokio::time::sleep(backoff);
        tokio::pin!(pause);
        loop {
            tokio::select! {
                _ = &mut pause => break,
                command = commands.recv() => match command {
                    None => return,
                    Some(Command::Listen(_, done)) => {
                        let _ = done.send(Err(ShimError::Stream("the presence stream is reconnecting".into())));
                    }
                    Some(Command::Unlisten(channel)) => {
                        subs.wanted.remove(&channel);
                    }
                },
            }
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

fn fail_waiting(subs: &mut Subscriptions, why: &str) {
    for (channel, waiting) in subs.waiting.drain() {
        subs.wanted.remove(&channel);
        for done in waiting {
            let _ = done.send(Err(ShimError::Stream(why.into())));
        }
    }
}

async fn connect(info: &redis::ConnectionInfo) -> Result<Connection, ShimError> {
    let (host, port) = match info.addr() {
        ConnectionAddr::Tcp(host, port) => (host.clone(), *port),
        other => {
            return Err(ShimError::Config(format!(
                "the presence stream needs a plain TCP address, not {other}"
            )))
        }
    };
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(redis::RedisError::from)?;
    tcp.set_nodelay(true).map_err(redis::RedisError::from)?;
    let mut connection = Framed::new(tcp, redis::ValueCodec::default());
    let redis_info = info.redis_settings();
    if let Some(password) = redis_info.password() {
        let mut auth = redis::cmd("AUTH");
        if let Some(user) = redis_info.username() {
            auth.arg(user);
        }
        auth.arg(password);
        connection.send(auth.get_packed_command()).await?;
        match connection.next().await {
            Some(Ok(Value::Okay)) | Some(Ok(Value::SimpleString(_))) => {}
            other => return Err(ShimError::Stream(format!("AUTH failed: {other:?}"))),
        }
    }
    Ok(connection)
}

/// Serves one connection until it fails (`Err`) or the handle is dropped (`Ok`).
async fn serve(
    connection: &mut Connection,
    keys: &Keys,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    subs: &mut Subscriptions,
    sink: &dyn StreamSink,
    gap: bool,
) -> Result<(), ShimError> {
    if !subs.wanted.is_empty() {
        let channels: Vec<String> = subs.wanted.iter().cloned().collect();
        let shard_channels: Vec<String> = channels.iter().map(|c| keys.key(c)).collect();
        connection
            .send(
                redis::cmd("SSUBSCRIBE")
                    .arg(&shard_channels)
                    .get_packed_command(),
            )
            .await?;
        // Hold back events until every channel is confirmed and resynced, so none overtakes its resync.
        let mut held = VecDeque::new();
        let mut unconfirmed: HashSet<String> = channels.iter().cloned().collect();
        while !unconfirmed.is_empty() {
            match read(connection, keys).await? {
                Frame::Subscribed(channel) => {
                    unconfirmed.remove(&channel);
                }
                frame @ Frame::Message(..) => held.push_back(frame),
                Frame::Other => {}
            }
        }
        if gap {
            for channel in &channels {
                sink.resync(channel).await?;
            }
        }
        for frame in held {
            if let Frame::Message(channel, events) = frame {
                sink.events(&channel, events).await;
            }
        }
    }
    loop {
        tokio::select! {
            frame = read(connection, keys) => match frame? {
                Frame::Message(channel, events) => sink.events(&channel, events).await,
                Frame::Subscribed(channel) => {
                    for done in subs.waiting.remove(&channel).unwrap_or_default() {
                        let _ = done.send(Ok(()));
                    }
                }
                Frame::Other => {}
            },
            command = commands.recv() => match command {
                None => return Ok(()),
                Some(Command::Listen(channel, done)) => {
                    if subs.wanted.contains(&channel) && !subs.waiting.contains_key(&channel) {
                        let _ = done.send(Ok(()));
                        continue;
                    }
                    let first = !subs.waiting.contains_key(&channel);
                    subs.wanted.insert(channel.clone());
                    subs.waiting.entry(channel.clone()).or_default().push(done);
                    if first {
                        connection.send(redis::cmd("SSUBSCRIBE").arg(keys.key(&channel)).get_packed_command()).await?;
                    }
                }
                Some(Command::Unlisten(channel)) => {
                    if subs.wanted.remove(&channel) {
                        connection.send(redis::cmd("SUNSUBSCRIBE").arg(keys.key(&channel)).get_packed_command()).await?;
                    }
                }
            },
        }
    }
}

enum Frame {
    Message(String, Vec<Event>),
    Subscribed(String),
    Other,
}

/// The next frame, with shard channels named back as channels.
async fn read(connection: &mut Connection, keys: &Keys) -> Result<Frame, ShimError> {
    let value = match connection.next().await {
        Some(value) => value?,
        None => return Err(ShimError::Stream("connection closed".into())),
    };
    let items = match value {
        Value::Array(items) | Value::Push { data: items, .. } => items,
        Value::ServerError(error) => {
            return Err(ShimError::Stream(format!(
                "Redis refused a subscription: {error:?}"
            )))
        }
        _ => return Ok(Frame::Other),
    };
    let text = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        _ => String::new(),
    };
    let kind = items.first().map(text);
    let Some(channel) = items
        .get(1)
        .map(text)
        .and_then(|key| keys.channel(&key).map(str::to_owned))
    else {
        return Ok(Frame::Other);
    };
    match (kind.as_deref(), items.get(2)) {
        (Some("smessage"), Some(Value::BulkString(payload))) => match wire::decode(payload) {
            Ok(events) => Ok(Frame::Message(channel, events)),
            Err(error) => {
                // Not ours (someone SPUBLISHed by hand): never let it break the stream.
                tracing::warn!(%error, channel, "ignoring a malformed roster message");
                Ok(Frame::Other)
            }
        },
        (Some("ssubscribe"), _) => Ok(Frame::Subscribed(channel)),
        _ => Ok(Frame::Other),
    }
}
