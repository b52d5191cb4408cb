//! [`RedisEngineConfig`]: where the engine's Redis is and how it behaves.

use std::time::Duration;

/// Configuration of a [`crate::RedisEngine`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisEngineConfig {
    /// A `redis://` URL of one Redis server (empty when `cluster` is used).
    pub url: Option<String>,
    /// Seed nodes of a Redis Cluster (empty for one server).
    pub cluster: Vec<String>,
    /// Prefix of every key and pub/sub channel, so several services can share one Redis. Processes
    /// that serve one Bayeux service use the same namespace. Default `bayeux`.
    pub namespace: String,
    /// Messages a client's queue holds before the oldest are dropped. Default 10,000 (as the memory
    /// engine).
    pub max_queue: usize,
    /// How long a Redis call may take before it fails. Default 5 s.
    pub timeout: Duration,
}

impl RedisEngineConfig {
    /// One Redis server at `url` (`redis://host:port[/db]`).
    pub fn server(url: impl Into<String>) -> Self {
        RedisEngineConfig {
            url: Some(url.into()),
            cluster: Vec::new(),
            namespace: "bayeux".into(),
            max_queue: bayeux::MemoryEngine::DEFAULT_MAX_QUEUE,
            timeout: Duration::from_secs(5),
        }
    }

    /// A Redis Cluster reached through `seeds` (any of its nodes).
    pub fn cluster<S: Into<String>>(seeds: impl IntoIterator<Item = S>) -> Self {
        RedisEngineConfig {
            url: None,
            cluster: seeds.into_iter().map(Into::into).collect(),
            ..Self::server("")
        }
    }

    /// The same configuration with another namespace.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The same configuration with another queue limit.
    pub fn with_max_queue(mut self, max_queue: usize) -> Self {
        self.max_queue = max_queue;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), crate::EngineError> {
        let bad = |why: &str| Err(crate::EngineError::Config(why.into()));
        match (&self.url, self.cluster.is_empty()) {
            (Some(url), true) if !url.is_empty() => {}
            (None, false) => {}
            _ => return bad("give either one server URL or the seed nodes of a cluster"),
        }
        if self.namespace.is_empty() || self.namespace.contains(['{', '}']) {
            return bad("the namespace must be non-empty and free of braces");
        }
        if self.max_queue == 0 {
            return bad("max_queue must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert!(RedisEngineConfig::server("redis://127.0.0.1")
            .validate()
            .is_ok());
        assert!(RedisEngineConfig::cluster(["redis://127.0.0.1:7000"])
            .validate()
            .is_ok());
        assert!(RedisEngineConfig::server("").validate().is_err());
        assert!(RedisEngineConfig::cluster(Vec::<String>::new())
            .validate()
            .is_err());
        let braces = RedisEngineConfig::server("redis://x").with_namespace("a{b}");
        assert!(braces.validate().is_err());
        let no_queue = RedisEngineConfig::server("redis://x").with_max_queue(0);
        assert!(no_queue.validate().is_err());
    }
}
