//! [`Store`]: the presence commands on the Redis server that owns each channel.
//!
//! Every roster change is one module command on the channel's own server, so sharding never splits a
//! change; this file only routes, bounds each call in time, and keeps what the shim needs of a reply.
//! The commands and their replies (RESP2 or RESP3) are `presence-client`'s. Callers name channels; each
//! one's roster is the key `<key prefix><channel>` ([`Keys`]), and nothing outside the prefix is ever
//! read or written. Connections are redis-rs `ConnectionManager`s (one multiplexed, self-reconnecting
//! connection per server) or one cluster connection, never blocking a task.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;

use presence_client::{cmd as command, JoinOptions, Members, Touched};
use presence_roster::roster::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot;
use redis::io::tcp::TcpSettings;
use redis::{Cmd, IntoConnectionInfo, Pipeline, Value};
use redis_runtime::RedisRuntime;

use crate::config::{Config, Keys};
use crate::error::ShimError;
use crate::route::shard_of;

/// Where a channel's roster lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shard {
    /// The server at this index of [`Config::servers`].
    Server(usize),
    /// Somewhere in the cluster (the cluster connection routes by key).
    Cluster,
}

/// A roster read with its revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roster {
    /// The channel's revision when read.
    pub rev: u64,
    /// `(id, value)` pairs.
    pub members: Vec<(Bytes, Bytes)>,
}

/// What a join answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Joined {
    /// The channel's revision after the join.
    pub rev: u64,
    /// `(id, value)` pairs, when the roster was asked for.
    pub members: Option<Vec<(Bytes, Bytes)>>,
}

/// The module's commands as the shim uses them: [`Store`] runs them on Redis; the unit tests' in-memory
/// store (`crate::memory`) runs the module's own roster logic, with no Redis, so the shim's races can be
/// played under a paused clock.
#[async_trait]
pub trait PresenceStore: Send + Sync + 'static {
    /// `PRESENCE.JOIN channel client id value [TTL ms] [MAXMEMBERS n] [WITHROSTER]`: the revision after
    /// the join, and with `WITHROSTER` the roster. A join over `MAXMEMBERS` is `ShimError::Refused`.
    async fn join(
        &self,
        channel: &str,
        client: &str,
        id: &str,
        value: &[u8],
        options: &JoinOptions,
    ) -> Result<Joined, ShimError>;

    /// `PRESENCE.JOIN` without the roster, to join again a connection the store lost.
    async fn rejoin(
        &self,
        channel: &str,
        client: &str,
        id: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<(), ShimError>;

    /// `PRESENCE.LEAVE channel client [GRACE ms]`.
    async fn leave(&self, channel: &str, client: &str) -> Result<(), ShimError>;

    /// `PRESENCE.ROSTER channel`.
    async fn roster(&self, channel: &str) -> Result<Roster, ShimError>;

    /// `PRESENCE.TOUCH` of each channel's clients; returns, per channel, the clients the store did not
    /// know (to join again).
    async fn touch(
        &self,
        batch: &[(String, Vec<String>)],
        ttl: Duration,
    ) -> Result<Vec<(String, Vec<String>)>, ShimError>;
}

/// Connections to every server (or the cluster), made, driven and timed on the [`RedisRuntime`].
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    runtime: RedisRuntime,
    timeout: Duration,
    keys: Keys,
    leave_grace: Duration,
}

#[derive(Clone)]
enum Backend {
    Servers(Vec<ConnectionManager>),
    Cluster(ClusterConnection),
}

/// One server's connection, or the cluster's: what a command runs on.
enum Connection {
    Server(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Connection {
    async fn query<T: redis::FromRedisValue>(self, cmd: Cmd) -> redis::RedisResult<T> {
        match self {
            Connection::Server(mut server) => cmd.query_async(&mut server).await,
            Connection::Cluster(mut cluster) => cmd.query_async(&mut cluster).await,
        }
    }

    async fn pipeline<T: redis::FromRedisValue>(self, pipe: Pipeline) -> redis::RedisResult<T> {
        match self {
            Connection::Server(mut server) => pipe.query_async(&mut server).await,
            Connection::Cluster(mut cluster) => pipe.query_async(&mut cluster).await,
        }
    }
}

impl Backend {
    async fn connect(config: Config) -> Result<Self, ShimError> {
        if !config.cluster.is_empty() {
            let client = redis::cluster::ClusterClientBuilder::new(config.cluster.clone())
                .tcp_settings(TcpSettings::default().set_nodelay(true))
                .connection_timeout(config.timeout)
                .response_timeout(config.timeout)
                .build()?;
            return Ok(Backend::Cluster(client.get_async_connection().await?));
        }
        let mut connections = Vec::new();
        for url in &config.servers {
            // Commands are small and latency is what matters: no Nagle delay on them.
            let info = url
                .as_str()
                .into_connection_info()?
                .set_tcp_settings(TcpSettings::default().set_nodelay(true));
            let client = redis::Client::open(info)?;
            let manager_config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(config.timeout))
                .set_response_timeout(Some(config.timeout))
                .set_number_of_retries(1);
            let connection = tokio::time::timeout(
                config.timeout * 2,
                ConnectionManager::new_with_config(client, manager_config),
            )
            .await
            .map_err(|_| ShimError::Timeout(config.timeout * 2))??;
            connections.push(connection);
        }
        Ok(Backend::Servers(connections))
    }
}

impl Store {
    /// Connects to the configured servers or cluster on `runtime` and checks that each has the module.
    pub async fn connect(config: &Config, runtime: RedisRuntime) -> Result<Self, ShimError> {
        let backend = runtime.run(Backend::connect(config.clone())).await??;
        let store = Store {
            backend,
            runtime,
            timeout: config.timeout,
            keys: config.keys(),
            leave_grace: config.leave_grace,
        };
        store.check_module().await?;
        Ok(store)
    }

    /// Fails clearly when a server (or any master of the cluster) does not have the presence module
    /// loaded.
    async fn check_module(&self) -> Result<(), ShimError> {
        if let Backend::Cluster(cluster) = &self.backend {
            return self.check_module_on_every_master(cluster.clone()).await;
        }
        // Under the prefix like every key we touch; no channel's key, since channel names start with '/'.
        let probe = command::count(self.keys.key("-startup-check"));
        for shard in self.shards() {
            match self.query::<Value>(shard, &probe).await {
                Ok(_) => {}
                Err(ShimError::Redis(e)) if e.to_string().contains("unknown command") => {
                    return Err(ShimError::Config(format!(
                        "a Redis server does not have the presence module loaded ({e}); start it with --loadmodule libpresence.so"
                    )));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// `COMMAND INFO PRESENCE.JOIN` on every master: each answers the command's description, or nil
    /// if it does not know the command. (A command with a key would be redirected, so it cannot
    /// probe a chosen node.)
    async fn check_module_on_every_master(
        &self,
        mut cluster: ClusterConnection,
    ) -> Result<(), ShimError> {
        use redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo};
        let mut probe = redis::cmd("COMMAND");
        probe.arg("INFO").arg("PRESENCE.JOIN");
        let routing = RoutingInfo::MultiNode((
            MultipleNodeRoutingInfo::AllMasters,
            Some(ResponsePolicy::CombineArrays),
        ));
        let infos = self
            .bounded(async move { cluster.route_command(probe, routing).await })
            .await?;
        let missing = match infos {
            Value::Array(infos) => infos.iter().filter(|i| matches!(i, Value::Nil)).count(),
            other => {
                return Err(ShimError::Config(format!(
                    "unexpected COMMAND INFO reply from the cluster: {other:?}"
                )))
            }
        };
        if missing > 0 {
            return Err(ShimError::Config(format!(
                "{missing} master(s) of the cluster do not have the presence module loaded; start every node with --loadmodule libpresence.so"
            )));
        }
        Ok(())
    }

    fn shards(&self) -> Vec<Shard> {
        match &self.backend {
            Backend::Servers(servers) => (0..servers.len()).map(Shard::Server).collect(),
            Backend::Cluster(_) => vec![Shard::Cluster],
        }
    }

    /// The shard that holds `channel`.
    pub fn shard_of(&self, channel: &str) -> Shard {
        match &self.backend {
            Backend::Servers(servers) => Shard::Server(shard_of(channel, servers.len())),
            Backend::Cluster(_) => Shard::Cluster,
        }
    }

    fn connection(&self, shard: Shard) -> Connection {
        match (&self.backend, shard) {
            (Backend::Servers(servers), Shard::Server(i)) => Connection::Server(servers[i].clone()),
            (Backend::Cluster(cluster), _) => Connection::Cluster(cluster.clone()),
            (Backend::Servers(_), Shard::Cluster) => {
                unreachable!("a server list has no cluster shard")
            }
        }
    }

    async fn query<T: redis::FromRedisValue + Send + 'static>(
        &self,
        shard: Shard,
        cmd: &Cmd,
    ) -> Result<T, ShimError> {
        let (connection, cmd) = (self.connection(shard), cmd.clone());
        self.bounded(connection.query(cmd)).await
    }

    /// Runs `run` on the Redis runtime within the timeout, timed there: the time is Redis', whatever
    /// the host's runtime is busy with.
    async fn bounded<T: Send + 'static>(
        &self,
        run: impl Future<Output = redis::RedisResult<T>> + Send + 'static,
    ) -> Result<T, ShimError> {
        let timeout = self.timeout;
        let result = self
            .runtime
            .run(async move {
                let started = std::time::Instant::now();
                let result = tokio::time::timeout(timeout, run).await;
                metrics::histogram!("redis_command_duration_seconds", "kind" => "presence")
                    .record(started.elapsed());
                result
            })
            .await?;
        match result {
            Ok(Ok(value)) => Ok(value),
            // A reply the client cannot read is the module's or ours to fix, not Redis being away.
            Ok(Err(e)) if e.kind() == redis::ErrorKind::Parse => {
                Err(ShimError::BadReply(e.to_string()))
            }
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(ShimError::Timeout(timeout)),
        }
    }
}

#[async_trait]
impl PresenceStore for Store {
    /// `PRESENCE.JOIN channel client id value [TTL ms] [MAXMEMBERS n] [WITHROSTER]`: the revision after
    /// the join, and with `WITHROSTER` the roster. A join over `MAXMEMBERS` is `ShimError::Refused`.
    async fn join(
        &self,
        channel: &str,
        client: &str,
        id: &str,
        value: &[u8],
        options: &JoinOptions,
    ) -> Result<Joined, ShimError> {
        let with_roster = options.with_roster;
        let cmd = command::join_with(self.keys.key(channel), client, id, value, options);
        let joined: presence_client::Joined = self.query(self.shard_of(channel), &cmd).await?;
        let members = match (with_roster, joined.roster) {
            (true, Some(roster)) => Some(shared(roster)),
            (true, None) => {
                return Err(ShimError::BadReply(
                    "a join WITHROSTER without 'roster'".into(),
                ))
            }
            (false, _) => None,
        };
        Ok(Joined {
            rev: joined.rev,
            members,
        })
    }

    /// `PRESENCE.JOIN` without the roster, to join again a connection Redis lost.
    async fn rejoin(
        &self,
        channel: &str,
        client: &str,
        id: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<(), ShimError> {
        let options = JoinOptions::new().ttl(ttl);
        let cmd = command::join_with(self.keys.key(channel), client, id, value, &options);
        self.query::<Value>(self.shard_of(channel), &cmd)
            .await
            .map(drop)
    }

    /// `PRESENCE.LEAVE channel client [GRACE ms]`, with [`Config::leave_grace`] on every leave
    /// (unsubscribe, disconnect, timeout): the module then holds the member's leave for that long.
    async fn leave(&self, channel: &str, client: &str) -> Result<(), ShimError> {
        let mut cmd = command::leave(self.keys.key(channel), client);
        if !self.leave_grace.is_zero() {
            cmd.arg("GRACE").arg(self.leave_grace.as_millis() as u64);
        }
        self.query::<Value>(self.shard_of(channel), &cmd)
            .await
            .map(drop)
    }

    /// `PRESENCE.ROSTER channel`.
    async fn roster(&self, channel: &str) -> Result<Roster, ShimError> {
        let cmd = command::roster(self.keys.key(channel));
        let roster: presence_client::Roster = self.query(self.shard_of(channel), &cmd).await?;
        Ok(Roster {
            rev: roster.rev,
            members: shared(roster.members),
        })
    }

    /// One `PRESENCE.TOUCH` per channel, pipelined per server, or on a cluster per slot (a cluster
    /// pipeline must not cross slots); every pipeline runs at once, each within the timeout. Returns,
    /// per channel, the clients Redis did not know.
    ///
    /// A shard that fails (down, failing over) does not hold back the others: its failure is logged
    /// and its channels wait for the next touch. Only when every shard failed is it an error.
    async fn touch(
        &self,
        batch: &[(String, Vec<String>)],
        ttl: Duration,
    ) -> Result<Vec<(String, Vec<String>)>, ShimError> {
        let mut groups: HashMap<TouchGroup, Vec<&(String, Vec<String>)>> = HashMap::new();
        for entry in batch {
            let group = match self.shard_of(&entry.0) {
                Shard::Server(i) => TouchGroup::Server(i),
                Shard::Cluster => TouchGroup::Slot(Slot::for_key(self.keys.key(&entry.0))),
            };
            groups.entry(group).or_default().push(entry);
        }
        let runs = groups
            .into_values()
            .map(|entries| self.touch_group(entries, ttl));
        let results = futures_util::future::join_all(runs).await;
        let (mut unknown, mut first_error, mut failed) = (Vec::new(), None, 0);
        let groups = results.len();
        for result in results {
            match result {
                Ok(lost) => unknown.extend(lost),
                Err((channels, error)) => {
                    tracing::warn!(%error, channels, "presence touch failed on one shard; will retry");
                    metrics::counter!("presence_touch_failures_total").increment(1);
                    failed += 1;
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            Some(error) if failed == groups => Err(error),
            _ => Ok(unknown),
        }
    }
}

impl Store {
    /// One pipeline of `PRESENCE.TOUCH`es, all on one server or one cluster slot. On an error, how
    /// many channels it held.
    async fn touch_group(
        &self,
        entries: Vec<&(String, Vec<String>)>,
        ttl: Duration,
    ) -> Result<Vec<(String, Vec<String>)>, (usize, ShimError)> {
        let failed = |error| (entries.len(), error);
        let mut pipe = redis::pipe();
        for (channel, clients) in &entries {
            pipe.add_command(command::touch(self.keys.key(channel), clients, Some(ttl)));
        }
        // One server, or one slot (redis-rs sends it to the slot's master and follows MOVED / failovers).
        let connection = self.connection(self.shard_of(&entries[0].0));
        let replies: Vec<Touched> = self
            .bounded(connection.pipeline(pipe))
            .await
            .map_err(failed)?;
        let mut unknown = Vec::new();
        for ((channel, _), reply) in entries.iter().zip(replies) {
            let lost: Vec<String> = reply
                .unknown
                .iter()
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect();
            if !lost.is_empty() {
                unknown.push((channel.clone(), lost));
            }
        }
        Ok(unknown)
    }
}

/// What one touch pipeline covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum TouchGroup {
    Server(usize),
    Slot(Slot),
}

/// A roster as the shim keeps it: shared byte strings, as the views and the stream hold them.
fn shared(members: Members) -> Vec<(Bytes, Bytes)> {
    members
        .into_iter()
        .map(|(id, data)| (Bytes::from(id), Bytes::from(data)))
        .collect()
}
