//! The crate's one error type; the server sees it as [`bayeux::Error::Engine`].

/// What can go wrong in the Redis engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// Redis answered with an error or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer within the configured timeout.
    #[error("redis did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The configuration cannot work (e.g. no address).
    #[error("engine configuration: {0}")]
    Config(String),
    /// The thread the engine's connections live on failed the work (a panic) or is ending.
    #[error("engine's redis thread: {0}")]
    Runtime(#[from] redis_runtime::RuntimeError),
    /// Redis answered something no script or command of ours returns.
    #[error("unexpected reply from redis: {0}")]
    Reply(String),
}

impl From<EngineError> for bayeux::Error {
    fn from(error: EngineError) -> Self {
        bayeux::Error::Engine(error.to_string())
    }
}
