//! [`RedisEngine`]: the `bayeux` engine over Redis.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bayeux::{channel, Engine, Error, Message, Outbound};
use redis::Value;
use redis_runtime::RedisRuntime;
use tokio::sync::{mpsc, oneshot, Notify};

use crate::backend::{Call, Connection};
use crate::keys::Keys;
use crate::notify::{self, Listener, Served, GONE};
use crate::{scripts, EngineError, RedisEngineConfig};

/// An [`Engine`] whose clients, subscriptions and queues live in Redis, shared by every process that
/// uses the same Redis and namespace, as faye-redis does for Faye.
///
/// - A client's state is three keys under its own hash tag; every change to it is one script on one
///   slot. Each channel's subscribers are a set of their own, so a Redis Cluster spreads both.
/// - A publish reads the subscriber sets of the channel and its wildcard patterns, appends the message
///   to each subscriber's queue, then wakes the process serving each subscriber with one notification
///   per process, on that process's own pub/sub channel: on one server all in one script
///   (`scripts::QUEUE`), on a cluster one script per subscriber, pipelined.
/// - A client is served by the process where it last connected (`queue_signal`); it may handshake on
///   one process and poll another, and its queue follows it because it is in Redis.
#[derive(Clone)]
pub struct RedisEngine {
    inner: Arc<Inner>,
}

struct Inner {
    commands: Connection,
    keys: Keys,
    /// This process's id: the owner recorded on the clients it serves.
    process: String,
    served: Arc<Served>,
    max_queue: usize,
    /// Dropped with the engine, which ends the notification listener (it holds the notification
    /// connection, and so its own push sender: without this it would read forever, keeping the
    /// engine's Redis thread and connections alive).
    _listening: oneshot::Sender<()>,
}

impl RedisEngine {
    /// Connects to the engine's Redis and starts listening to this process's notifications.
    pub async fn connect(config: RedisEngineConfig) -> Result<Self, EngineError> {
        config.validate()?;
        let (pushes, receiver) = mpsc::unbounded_channel();
        // The engine's connections, their commands and the notification listener live on a thread of
        // their own (see `redis_runtime`).
        let runtime = RedisRuntime::start("engine-redis")?;
        let (commands, subscriber) = Connection::connect(&config, pushes, runtime.clone()).await?;
        let keys = Keys::new(&config.namespace);
        let process = bayeux::engine::new_client_id();
        let served = Arc::new(Served::default());
        tokio::time::timeout(config.timeout, subscriber.listen(&keys.notify(&process)))
            .await
            .map_err(|_| EngineError::Timeout(config.timeout))??;
        let listener = Listener {
            served: served.clone(),
            subscriber,
            commands: commands.clone(),
            keys: keys.clone(),
            process: process.clone(),
        };
        let (listening, engine_gone) = oneshot::channel();
        runtime.spawn(listener.run(receiver, engine_gone));
        tracing::info!(%process, namespace = %config.namespace, "redis engine connected");
        Ok(RedisEngine {
            inner: Arc::new(Inner {
                commands,
                keys,
                process,
                served,
                max_queue: config.max_queue,
                _listening: listening,
            }),
        })
    }

    /// This process's id in the engine (the owner recorded on the clients it serves).
    pub fn process_id(&self) -> &str {
        &self.inner.process
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn to_json(message: &Message) -> Result<String, EngineError> {
    serde_json::to_string(message)
        .map_err(|e| EngineError::Reply(format!("unserializable message: {e}")))
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) | Value::VerbatimString { text: s, .. } => Some(s.clone()),
        _ => None,
    }
}

impl Inner {
    /// The clients subscribed to `channel` or to a pattern matching it, each once.
    async fn subscribers(
        &self,
        channel: &str,
    ) -> Result<(Vec<String>, HashSet<String>), EngineError> {
        let sets = channel::expand(channel);
        let reads = sets
            .iter()
            .map(|set| redis::Cmd::smembers(self.keys.channel(set)))
            .collect();
        let mut ids = HashSet::new();
        for reply in self.commands.batch(reads).await? {
            if let Value::Array(members) | Value::Set(members) = reply {
                ids.extend(members.iter().filter_map(text));
            }
        }
        Ok((sets, ids))
    }

    /// Appends `json` to each target's queue and wakes the processes serving them. Targets found gone
    /// are dropped from `sets`, the subscriber sets they were read from.
    async fn deliver(
        &self,
        targets: Vec<String>,
        json: &str,
        sets: &[String],
    ) -> Result<usize, EngineError> {
        let calls = targets
            .iter()
            .map(|id| {
                Call::new(
                    &scripts::DELIVER,
                    vec![self.keys.client(id), self.keys.queue(id)],
                )
                .arg(json)
                .arg(self.max_queue)
            })
            .collect();
        let results = self.commands.eval_many(calls).await?;
        let mut by_owner: HashMap<String, Vec<&str>> = HashMap::new();
        let mut gone = Vec::new();
        let mut delivered = 0;
        for (id, result) in targets.iter().zip(results) {
            match result? {
                Value::Int(-1) => gone.push(id),
                Value::Int(_) => {}
                owner => {
                    delivered += 1;
                    if let Some(owner) = text(&owner) {
                        by_owner.entry(owner).or_default().push(id);
                    }
                }
            }
        }
        let mut followups = Vec::new();
        for (owner, ids) in by_owner {
            if owner == self.process {
                ids.iter().for_each(|id| self.served.wake(id));
            } else {
                let payload = notify::messages_queued(ids.iter().copied());
                followups.push(
                    self.commands
                        .notify_cmd(&self.keys.notify(&owner), &payload),
                );
            }
        }
        // A subscribe that raced with the client's removal can leave its id in a set: clean it here.
        for id in gone {
            for set in sets {
                followups.push(redis::Cmd::srem(self.keys.channel(set), id));
            }
        }
        if !followups.is_empty() {
            self.commands.batch(followups).await?;
        }
        Ok(delivered)
    }

    async fn publish(&self, message: &Message) -> Result<(), EngineError> {
        if self.commands.is_server() {
            return self.fan_out(message).await;
        }
        let (sets, ids) = self.subscribers(&message.channel).await?;
        if ids.is_empty() {
            return Ok(());
        }
        self.deliver(ids.into_iter().collect(), &to_json(message)?, &sets)
            .await?;
        Ok(())
    }

    /// A publish on one server: the whole fan-out in one script (see `scripts::QUEUE`), so the
    /// message crosses the network once, not once per subscriber.
    async fn fan_out(&self, message: &Message) -> Result<(), EngineError> {
        let sets = channel::expand(&message.channel)
            .iter()
            .map(|set| self.keys.channel(set))
            .collect();
        self.queue(sets, &[], message).await
    }

    /// Addressed delivery: one script on one server, a pipelined DELIVER per client on a cluster.
    async fn address(&self, ids: &[String], message: &Message) -> Result<(), EngineError> {
        if ids.is_empty() {
            return Ok(());
        }
        if !self.commands.is_server() {
            self.deliver(ids.to_vec(), &to_json(message)?, &[]).await?;
            return Ok(());
        }
        self.queue(Vec::new(), ids, message).await
    }

    /// Runs `scripts::QUEUE` for the subscribers in `sets` and the clients `ids`, and wakes the targets
    /// this process serves.
    async fn queue(
        &self,
        sets: Vec<String>,
        ids: &[String],
        message: &Message,
    ) -> Result<(), EngineError> {
        let mut call = Call::new(&scripts::QUEUE, sets)
            .arg(to_json(message)?)
            .arg(self.max_queue)
            .arg(self.keys.namespace())
            .arg(&self.process);
        for id in ids {
            call = call.arg(id);
        }
        if let Value::Array(mine) = self.commands.eval(call).await? {
            mine.iter()
                .filter_map(text)
                .for_each(|id| self.served.wake(&id));
        }
        Ok(())
    }

    async fn create_client(&self) -> Result<String, EngineError> {
        let id = bayeux::engine::new_client_id();
        // The index first: if this process dies in between, the sweep still finds and removes the id.
        let index: Value = self
            .commands
            .query(&redis::Cmd::zadd(self.keys.index(), &id, now_ms()))
            .await?;
        let _ = index;
        let record = redis::Cmd::hset_multiple(
            self.keys.client(&id),
            &[("owner", self.process.as_str()), ("gen", "1")],
        );
        self.commands.query::<Value>(&record).await?;
        self.served.serve(&id, 1);
        Ok(id)
    }

    async fn destroy_client(&self, id: &str) -> Result<Option<Vec<String>>, EngineError> {
        let keys = vec![
            self.keys.client(id),
            self.keys.subs(id),
            self.keys.queue(id),
        ];
        let reply = self
            .commands
            .eval(Call::new(&scripts::DESTROY, keys))
            .await?;
        let mut cleanup = vec![redis::Cmd::zrem(self.keys.index(), id)];
        let Value::Array(items) = reply else {
            self.commands.batch(cleanup).await?;
            return Ok(None);
        };
        let mut items = items.iter().filter_map(text);
        let owner = items.next().unwrap_or_default();
        let channels: BTreeSet<String> = items.collect();
        for channel in &channels {
            cleanup.push(redis::Cmd::srem(self.keys.channel(channel), id));
        }
        if owner == self.process {
            self.served.forget(id, GONE);
        } else if !owner.is_empty() {
            let notice = notify::moved(id, GONE);
            cleanup.push(self.commands.notify_cmd(&self.keys.notify(&owner), &notice));
        }
        self.commands.batch(cleanup).await?;
        Ok(Some(channels.into_iter().collect()))
    }

    async fn queue_signal(&self, id: &str) -> Result<Option<Arc<Notify>>, EngineError> {
        let reply = self
            .commands
            .eval(Call::new(&scripts::ATTACH, vec![self.keys.client(id)]).arg(&self.process))
            .await?;
        let Value::Array(items) = reply else {
            return Ok(None);
        };
        let previous = items.first().and_then(text).unwrap_or_default();
        let gen = match items.get(1) {
            Some(Value::Int(gen)) => *gen as u64,
            other => return Err(EngineError::Reply(format!("attach gen: {other:?}"))),
        };
        // Served here before the previous owner hears of the move, so no wake-up falls in between.
        let signal = self.served.serve(id, gen);
        if !previous.is_empty() && previous != self.process {
            let notice = self
                .commands
                .notify_cmd(&self.keys.notify(&previous), &notify::moved(id, gen));
            self.commands.query::<Value>(&notice).await?;
        }
        Ok(Some(signal))
    }

    async fn take_queue(&self, id: &str) -> Result<Vec<Outbound>, EngineError> {
        let mut pop = redis::cmd("LPOP");
        pop.arg(self.keys.queue(id)).arg(self.max_queue);
        let raw: Option<Vec<String>> = self.commands.query(&pop).await?;
        Ok(raw
            .unwrap_or_default()
            .into_iter()
            .filter_map(|json| match serde_json::from_str::<Message>(&json) {
                Ok(message) => Some(Outbound::with_json(message, json)),
                Err(error) => {
                    tracing::warn!(%error, client = id, "dropping an unreadable queued message");
                    None
                }
            })
            .collect())
    }
}

#[async_trait]
impl Engine for RedisEngine {
    async fn create_client(&self) -> Result<String, Error> {
        Ok(self.inner.create_client().await?)
    }

    async fn client_exists(&self, client_id: &str) -> Result<bool, Error> {
        let mut exists = redis::cmd("EXISTS");
        exists.arg(self.inner.keys.client(client_id));
        Ok(self.inner.commands.query::<bool>(&exists).await?)
    }

    async fn destroy_client(&self, client_id: &str) -> Result<Option<Vec<String>>, Error> {
        Ok(self.inner.destroy_client(client_id).await?)
    }

    async fn ping(&self, client_id: &str) -> Result<(), Error> {
        // XX: a ping never brings a removed client back into the index.
        let mut zadd = redis::cmd("ZADD");
        zadd.arg(self.inner.keys.index())
            .arg("XX")
            .arg(now_ms())
            .arg(client_id);
        self.inner.commands.query::<Value>(&zadd).await?;
        Ok(())
    }

    async fn inactive_clients(&self, inactivity: Duration) -> Result<Vec<String>, Error> {
        let cutoff = now_ms().saturating_sub(inactivity.as_millis() as u64);
        let mut range = redis::cmd("ZRANGEBYSCORE");
        range
            .arg(self.inner.keys.index())
            .arg("-inf")
            .arg(format!("({cutoff}"));
        Ok(self.inner.commands.query(&range).await?)
    }

    async fn subscribe(&self, client_id: &str, channel: &str) -> Result<bool, Error> {
        let keys = &self.inner.keys;
        let call = Call::new(
            &scripts::SUBSCRIBE,
            vec![keys.client(client_id), keys.subs(client_id)],
        )
        .arg(channel);
        let added = match self.inner.commands.eval(call).await? {
            Value::Int(-1) => return Err(Error::ClientUnknown(client_id.to_owned())),
            Value::Int(n) => n == 1,
            other => return Err(EngineError::Reply(format!("subscribe: {other:?}")).into()),
        };
        // Also when not new: repairs a set entry lost to a failure between the two steps.
        let mut sadd = redis::cmd("SADD");
        sadd.arg(keys.channel(channel)).arg(client_id);
        self.inner.commands.query::<Value>(&sadd).await?;
        Ok(added)
    }

    async fn unsubscribe(&self, client_id: &str, channel: &str) -> Result<bool, Error> {
        let keys = &self.inner.keys;
        let replies = self
            .inner
            .commands
            .batch(vec![
                redis::Cmd::srem(keys.subs(client_id), channel),
                redis::Cmd::srem(keys.channel(channel), client_id),
            ])
            .await?;
        Ok(matches!(replies.first(), Some(Value::Int(1))))
    }

    async fn subscriptions(&self, client_id: &str) -> Result<Vec<String>, Error> {
        let mut members = redis::cmd("SMEMBERS");
        members.arg(self.inner.keys.subs(client_id));
        let mut channels: Vec<String> = self.inner.commands.query(&members).await?;
        channels.sort();
        Ok(channels)
    }

    async fn publish(&self, message: &Message) -> Result<(), Error> {
        Ok(self.inner.publish(message).await?)
    }

    async fn queue_for(&self, client_id: &str, message: &Message) -> Result<bool, Error> {
        let delivered = self
            .inner
            .deliver(vec![client_id.to_owned()], &to_json(message)?, &[])
            .await?;
        Ok(delivered == 1)
    }

    async fn queue_for_many(&self, client_ids: &[String], message: &Message) -> Result<(), Error> {
        Ok(self.inner.address(client_ids, message).await?)
    }

    async fn take_queue(&self, client_id: &str) -> Result<Vec<Outbound>, Error> {
        Ok(self.inner.take_queue(client_id).await?)
    }

    async fn queue_signal(&self, client_id: &str) -> Result<Option<Arc<Notify>>, Error> {
        Ok(self.inner.queue_signal(client_id).await?)
    }
}
