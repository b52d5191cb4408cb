//! [`Cluster`]: three `redis-server`s with the module, joined as a Redis Cluster with no replicas.

use std::process::Command;
use std::time::Duration;

use crate::server::{RedisServer, ServerOptions};
use crate::wait_until;

/// A running three-master cluster; its servers stop on drop.
pub struct Cluster {
    /// The masters.
    pub nodes: Vec<RedisServer>,
}

impl Cluster {
    /// Starts three nodes and creates the cluster with `redis-cli --cluster create`.
    pub fn start() -> Self {
        Self::start_with_module_on([true; 3])
    }

    /// Like [`Cluster::start`], with the module loaded only on the nodes marked `true`.
    pub fn start_with_module_on(loaded: [bool; 3]) -> Self {
        let nodes: Vec<RedisServer> = loaded
            .iter()
            .map(|&loaded| {
                RedisServer::start_with(ServerOptions {
                    module_args: vec![],
                    server_args: vec![
                        "--cluster-enabled".into(),
                        "yes".into(),
                        "--cluster-node-timeout".into(),
                        "5000".into(),
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
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            output.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        for node in &nodes {
            let mut con = node.connect();
            wait_until(
                "cluster_state:ok on every node",
                Duration::from_secs(20),
                || {
                    redis::cmd("CLUSTER")
                        .arg("INFO")
                        .query::<String>(&mut con)
                        .is_ok_and(|info| info.contains("cluster_state:ok"))
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
}
