//! The two ways to reach the engine's Redis: one server (a redis-rs `ConnectionManager`) or a cluster
//! (a redis-rs cluster connection, which routes each key to its slot's node). Both reconnect by
//! themselves; scripts are sent by hash and loaded again when a restarted Redis lost them.
//!
//! Notifications between processes go over pub/sub: `PUBLISH` on one server, `SPUBLISH` on a cluster,
//! where a plain `PUBLISH` would be copied to every node while a shard channel lives on one.

use std::time::Duration;

use futures_util::future::join_all;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::TcpSettings;
use redis::{
    Cmd, IntoConnectionInfo, Pipeline, ProtocolVersion, PushInfo, RedisFuture, RedisResult, Script,
    ToRedisArgs, Value,
};
use redis_runtime::RedisRuntime;
use tokio::sync::mpsc;

use crate::{EngineError, RedisEngineConfig};

/// A connection for commands, cheap to clone (all clones multiplex one connection per node). It lives
/// on the engine's [`RedisRuntime`], and every command runs there: a server whose runtime is busy
/// delivering cannot then make Redis' answers wait (`tests/busy_runtime.rs`).
#[derive(Clone)]
pub(crate) struct Connection {
    link: Link,
    runtime: RedisRuntime,
}

/// One server's connection or the cluster's.
#[derive(Clone)]
enum Link {
    Server(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Link::Server(c) => c.req_packed_command(cmd),
            Link::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Link::Server(c) => c.req_packed_commands(pipeline, offset, count),
            Link::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::Server(c) => c.get_db(),
            Link::Cluster(c) => c.get_db(),
        }
    }
}

/// One script call: the script, its keys and its arguments.
pub(crate) struct Call {
    pub(crate) script: &'static Script,
    pub(crate) keys: Vec<String>,
    pub(crate) args: Vec<Vec<u8>>,
}

impl Call {
    pub(crate) fn new(script: &'static Script, keys: Vec<String>) -> Self {
        Call {
            script,
            keys,
            args: Vec::new(),
        }
    }

    pub(crate) fn arg(mut self, arg: impl ToRedisArgs) -> Self {
        self.args.extend(arg.to_redis_args());
        self
    }

    fn evalsha(&self) -> Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.script.get_hash())
            .arg(self.keys.len())
            .arg(&self.keys)
            .arg(&self.args);
        cmd
    }
}

impl Connection {
    /// Connects, on `runtime`, the command connection and a second, RESP3 one for this process's
    /// notifications, whose pushes (messages, confirmations, disconnections) go to `pushes`.
    pub(crate) async fn connect(
        config: &RedisEngineConfig,
        pushes: mpsc::UnboundedSender<PushInfo>,
        runtime: RedisRuntime,
    ) -> Result<(Connection, Connection), EngineError> {
        let (commands, notifications) =
            runtime.run(Link::connect(config.clone(), pushes)).await??;
        let on = |link| Connection {
            link,
            runtime: runtime.clone(),
        };
        Ok((on(commands), on(notifications)))
    }
}

impl Link {
    async fn connect(
        config: RedisEngineConfig,
        pushes: mpsc::UnboundedSender<PushInfo>,
    ) -> Result<(Link, Link), EngineError> {
        let timeout = config.timeout;
        let bounded = |_: tokio::time::error::Elapsed| EngineError::Timeout(timeout * 2);
        if let Some(url) = config.url.as_deref().filter(|_| config.cluster.is_empty()) {
            let info = url.into_connection_info()?;
            let manager = |client, config| async move {
                tokio::time::timeout(
                    timeout * 2,
                    ConnectionManager::new_with_config(client, config),
                )
                .await
                .map_err(bounded)?
                .map_err(EngineError::from)
            };
            // A dropped connection is re-established in the background, retried for about two seconds
            // (a Redis restart), so requests after it find a live connection instead of failing once.
            let base = || {
                ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(6)
                    .set_min_delay(Duration::from_millis(50))
                    .set_max_delay(Duration::from_millis(500))
            };
            // RESP3 also for commands: redis-rs then notices a dropped connection as it happens and
            // reconnects at once, instead of failing the next request.
            let resp3 = info
                .redis_settings()
                .clone()
                .set_protocol(ProtocolVersion::RESP3);
            // Small commands whose latency is the delivery's: no Nagle delay on them.
            let info = info
                .set_redis_settings(resp3)
                .set_tcp_settings(TcpSettings::default().set_nodelay(true));
            let notify_client = redis::Client::open(info)?;
            let commands = manager(notify_client.clone(), base()).await?;
            let notify_config = base()
                .set_push_sender(pushes)
                .set_automatic_resubscription();
            let notifications = manager(notify_client, notify_config).await?;
            Ok((Link::Server(commands), Link::Server(notifications)))
        } else {
            let builder = || {
                redis::cluster::ClusterClientBuilder::new(config.cluster.clone())
                    .tcp_settings(TcpSettings::default().set_nodelay(true))
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
            };
            let commands = builder().build()?.get_async_connection().await?;
            let notifications = builder()
                .use_protocol(ProtocolVersion::RESP3)
                .push_sender(pushes)
                .build()?
                .get_async_connection()
                .await?;
            Ok((Link::Cluster(commands), Link::Cluster(notifications)))
        }
    }
}

impl Connection {
    /// Whether this is one Redis server (not a cluster).
    pub(crate) fn is_server(&self) -> bool {
        matches!(self.link, Link::Server(_))
    }

    /// Subscribes this (RESP3) connection to a notification channel; the confirmation also arrives as
    /// a push.
    pub(crate) async fn listen(&self, channel: &str) -> Result<(), EngineError> {
        let (link, channel) = (self.link.clone(), channel.to_owned());
        let subscribed = self
            .runtime
            .run(async move {
                match link {
                    Link::Server(mut c) => c.subscribe(&channel).await,
                    Link::Cluster(mut c) => c.ssubscribe(&channel).await,
                }
            })
            .await?;
        Ok(subscribed?)
    }

    /// The command that notifies the listener of `channel`.
    pub(crate) fn notify_cmd(&self, channel: &str, payload: &str) -> Cmd {
        let verb = match self.link {
            Link::Server(_) => "PUBLISH",
            Link::Cluster(_) => "SPUBLISH",
        };
        let mut cmd = redis::cmd(verb);
        cmd.arg(channel).arg(payload);
        cmd
    }

    /// Runs one command.
    pub(crate) async fn query<T: redis::FromRedisValue + Send + 'static>(
        &self,
        cmd: &Cmd,
    ) -> Result<T, EngineError> {
        let started = std::time::Instant::now();
        let (mut link, cmd) = (self.link.clone(), cmd.clone());
        let result = self
            .runtime
            .run(async move { cmd.query_async(&mut link).await })
            .await?;
        metrics::histogram!("redis_command_duration_seconds", "kind" => "engine", "command" => "command").record(started.elapsed());
        Ok(result?)
    }

    /// Runs commands together (not a transaction) and returns every reply, in order. The first error
    /// fails the whole batch; see [`Connection::batch_results`] to keep going.
    pub(crate) async fn batch(&self, cmds: Vec<Cmd>) -> Result<Vec<Value>, EngineError> {
        self.batch_results(cmds).await?.into_iter().collect()
    }

    /// Runs commands together and returns each one's own result. On one server that is one pipeline;
    /// a cluster connection refuses pipelines that span slots, so there the commands go concurrently
    /// (still pipelined on each node's multiplexed connection).
    pub(crate) async fn batch_results(
        &self,
        cmds: Vec<Cmd>,
    ) -> Result<Vec<Result<Value, EngineError>>, EngineError> {
        let _timed = Timed(std::time::Instant::now());
        let link = self.link.clone();
        self.runtime.run(link.batch_results(cmds)).await?
    }

    /// Runs one script.
    pub(crate) async fn eval(&self, call: Call) -> Result<Value, EngineError> {
        self.eval_many(vec![call])
            .await?
            .pop()
            .unwrap_or(Ok(Value::Nil))
    }

    /// Runs scripts in one pipeline; each call has its own result. Calls refused because a restarted
    /// Redis lost its script cache are sent again (only those: the others already ran) after loading.
    pub(crate) async fn eval_many(
        &self,
        calls: Vec<Call>,
    ) -> Result<Vec<Result<Value, EngineError>>, EngineError> {
        let mut results: Vec<Option<Result<Value, EngineError>>> =
            calls.iter().map(|_| None).collect();
        let mut pending: Vec<usize> = (0..calls.len()).collect();
        for attempt in 0..2 {
            if pending.is_empty() {
                break;
            }
            let cmds = pending.iter().map(|&i| calls[i].evalsha()).collect();
            let replies = self.batch_results(cmds).await?;
            let mut missing = Vec::new();
            for (&i, reply) in pending.iter().zip(replies) {
                match reply {
                    Err(EngineError::Redis(e)) if is_noscript(&e) && attempt == 0 => {
                        missing.push(i)
                    }
                    other => results[i] = Some(other),
                }
            }
            if !missing.is_empty() {
                self.load_scripts().await?;
            }
            pending = missing;
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(EngineError::Reply("script not run".into()))))
            .collect())
    }

    async fn load_scripts(&self) -> Result<(), EngineError> {
        tracing::info!("loading the engine's scripts into redis");
        for source in crate::scripts::sources() {
            let mut load = redis::cmd("SCRIPT");
            load.arg("LOAD").arg(source);
            let _: String = self.query(&load).await?;
        }
        Ok(())
    }
}

impl Link {
    async fn batch_results(
        self,
        cmds: Vec<Cmd>,
    ) -> Result<Vec<Result<Value, EngineError>>, EngineError> {
        match self {
            Link::Server(mut server) => {
                let mut pipe = Pipeline::with_capacity(cmds.len());
                pipe.ignore_errors();
                for cmd in cmds {
                    pipe.add_command(cmd);
                }
                let replies: Vec<RedisResult<Value>> = pipe.query_async(&mut server).await?;
                Ok(replies
                    .into_iter()
                    .map(|r| r.map_err(EngineError::from))
                    .collect())
            }
            Link::Cluster(cluster) => Ok(join_all(cmds.iter().map(|cmd| {
                let mut cluster = cluster.clone();
                async move {
                    cmd.query_async::<Value>(&mut cluster)
                        .await
                        .map_err(EngineError::from)
                }
            }))
            .await),
        }
    }
}

fn is_noscript(error: &redis::RedisError) -> bool {
    error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}

/// Records an engine pipeline's duration when dropped, however it ends.
struct Timed(std::time::Instant);

impl Drop for Timed {
    fn drop(&mut self) {
        metrics::histogram!("redis_command_duration_seconds", "kind" => "engine", "command" => "pipeline").record(self.0.elapsed());
    }
}
