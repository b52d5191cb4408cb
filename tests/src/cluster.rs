//! [`Cluster`]: `redis-server`s with the module joined as a Redis Cluster: three masters, and for
//! failover tests a replica of each.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::server::{free_port, RedisServer, ServerOptions};
use crate::wait_until;

/// A running cluster; its servers stop on drop.
pub struct Cluster {
    /// Every node, in start order. Without replicas these are the three masters; with replicas, ask
    /// [`Cluster::role`] which is which (`redis-cli --cluster create` chooses, and failovers change it).
    pub nodes: Vec<RedisServer>,
}

/// What a node of the cluster is right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// It serves slots.
    Master,
    /// It replicates the node at this index of [`Cluster::nodes`].
    Replica(usize),
}

impl Cluster {
    /// Starts three nodes and creates the cluster with `redis-cli --cluster create`.
    pub fn start() -> Self {
        Self::start_with_module_on([true; 3])
    }

    /// Like [`Cluster::start`], with the module loaded only on the nodes marked `true`.
    pub fn start_with_module_on(loaded: [bool; 3]) -> Self {
        Self::create(&loaded, 0, 5000)
    }

    /// Three masters, each with one replica: six nodes. `node_timeout` is `cluster-node-timeout`: a
    /// master silent that long is failed over to its replica, so a small one (about a second) keeps
    /// failover tests short.
    pub fn start_with_replicas(node_timeout: Duration) -> Self {
        let cluster = Self::create(&[true; 6], 1, node_timeout.as_millis() as u64);
        // A replica that has not synced would be promoted empty: wait until each one is linked.
        for (i, node) in cluster.nodes.iter().enumerate() {
            if matches!(cluster.role(i), Role::Replica(_)) {
                let mut con = node.connect();
                wait_until(
                    "every replica linked to its master",
                    Duration::from_secs(20),
                    || {
                        redis::cmd("INFO")
                            .arg("replication")
                            .query::<String>(&mut con)
                            .is_ok_and(|info| info.contains("master_link_status:up"))
                    },
                );
            }
        }
        cluster
    }

    fn create(loaded: &[bool], replicas: usize, node_timeout_ms: u64) -> Self {
        let nodes: Vec<RedisServer> = loaded
            .iter()
            .map(|&loaded| {
                RedisServer::start_with(ServerOptions {
                    module_args: vec![],
                    server_args: vec![
                        "--cluster-enabled".into(),
                        "yes".into(),
                        "--cluster-node-timeout".into(),
                        node_timeout_ms.to_string(),
                        // The bus port defaults to port + 10000, which does not exist for an ephemeral
                        // port above 55535 (Redis then refuses to start): pick one of its own.
                        "--cluster-port".into(),
                        free_port().to_string(),
                    ],
                    without_module: !loaded,
                })
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let output = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            output.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let known = format!("cluster_known_nodes:{}", nodes.len());
        for node in &nodes {
            let mut con = node.connect();
            wait_until(
                "cluster_state:ok on every node, each knowing every other",
                Duration::from_secs(20),
                || {
                    redis::cmd("CLUSTER")
                        .arg("INFO")
                        .query::<String>(&mut con)
                        .is_ok_and(|info| {
                            info.contains("cluster_state:ok") && info.contains(&known)
                        })
                },
            );
        }
        Cluster { nodes }
    }

    /// The node URLs, as seeds for a cluster client.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// A cluster client that follows `MOVED` redirections.
    pub fn client(&self) -> redis::cluster::ClusterClient {
        redis::cluster::ClusterClient::new(self.urls()).expect("cluster client")
    }

    /// What node `index` says it is (`ROLE`). Panics if it does not answer.
    pub fn role(&self, index: usize) -> Role {
        let role: redis::Value = redis::cmd("ROLE")
            .query(&mut self.nodes[index].connect())
            .expect("ROLE");
        let redis::Value::Array(items) = role else {
            panic!("ROLE answered {role:?}");
        };
        let text = |v: &redis::Value| match v {
            redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            redis::Value::SimpleString(s) => s.clone(),
            redis::Value::Int(i) => i.to_string(),
            other => panic!("unexpected ROLE item {other:?}"),
        };
        match text(&items[0]).as_str() {
            "master" => Role::Master,
            "slave" => {
                let port: u16 = text(&items[2]).parse().expect("master port");
                let master = self.nodes.iter().position(|n| n.port() == port);
                Role::Replica(master.expect("the master is one of ours"))
            }
            other => panic!("unexpected role {other}"),
        }
    }

    /// The indexes of the masters, with the index of each one's replica if it has one.
    pub fn masters(&self) -> Vec<(usize, Option<usize>)> {
        let roles: Vec<Role> = (0..self.nodes.len()).map(|i| self.role(i)).collect();
        (0..self.nodes.len())
            .filter(|&i| roles[i] == Role::Master)
            .map(|m| (m, roles.iter().position(|r| *r == Role::Replica(m))))
            .collect()
    }

    /// Kills node `index` with SIGKILL, by the pid of the process the harness started, and waits
    /// until its replica `replica` is master and every other live node agrees the cluster is whole
    /// again. Returns how long the promotion took from the kill.
    pub fn kill9_and_wait_for_failover(&mut self, index: usize, replica: usize) -> Duration {
        let killed_port = self.nodes[index].port();
        let killed = Instant::now();
        self.nodes[index].kill9();
        let survivors: Vec<usize> = (0..self.nodes.len()).filter(|&i| i != index).collect();
        let replica_port = self.nodes[replica].port();
        wait_until(
            "the replica's promotion, seen by every live node",
            Duration::from_secs(30),
            || {
                survivors.iter().all(|&i| {
                    let Ok(mut con) = redis::Client::open(self.nodes[i].url())
                        .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500)))
                    else {
                        return false;
                    };
                    let info: String = redis::cmd("CLUSTER")
                        .arg("INFO")
                        .query(&mut con)
                        .unwrap_or_default();
                    let nodes: String = redis::cmd("CLUSTER")
                        .arg("NODES")
                        .query(&mut con)
                        .unwrap_or_default();
                    let line = |port: u16| {
                        let address = format!("127.0.0.1:{port}@");
                        nodes
                            .lines()
                            .find(|l| l.contains(&address))
                            .map(|l| l.split(' ').nth(2).unwrap_or("").to_owned())
                            .unwrap_or_default()
                    };
                    info.contains("cluster_state:ok")
                        && line(killed_port).contains("fail")
                        && line(replica_port).contains("master")
                })
            },
        );
        killed.elapsed()
    }
}
