//! [`ShimError`]: everything that can go wrong in the presence shim, and its Bayeux error string.

use thiserror::Error;

/// A presence failure. At the edge it becomes the `error` of a Bayeux reply ([`ShimError::to_bayeux`]).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ShimError {
    /// The subscribe carried no `ext.presence.id`, or not a string.
    #[error("No presence id specified in presence subscription")]
    MissingId,
    /// A signed identity was required and missing or wrong.
    #[error("presence identity rejected: {0}")]
    Forbidden(&'static str),
    /// A wildcard subscription over presence channels: there is no one channel to be present on.
    #[error("presence channels cannot be subscribed with a wildcard")]
    Wildcard,
    /// A subscribe named a presence channel among others: each reply carries one roster.
    #[error("subscribe to a presence channel on its own, not in a list")]
    SeveralChannels,
    /// A client tried to publish on a presence channel: only the server speaks there.
    #[error("only the server publishes on presence channels")]
    PublishForbidden,
    /// Redis answered with an error or could not be reached.
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer in time.
    #[error("Redis did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The roster stream (shard pub/sub) for the channel is not available.
    #[error("the presence stream is unavailable: {0}")]
    Stream(String),
    /// The configuration is invalid.
    #[error("invalid presence configuration: {0}")]
    Config(String),
}

impl ShimError {
    /// The Bayeux error string for a reply about `channel`.
    ///
    /// A missing id keeps faye-presence's exact words, which existing front ends may match on.
    pub fn to_bayeux(&self, channel: &str) -> String {
        match self {
            ShimError::MissingId => self.to_string(),
            ShimError::Forbidden(_) | ShimError::Wildcard | ShimError::PublishForbidden => {
                format!("403:{channel}:{self}")
            }
            ShimError::SeveralChannels => format!("405:{channel}:{self}"),
            ShimError::Config(_) => format!("500:{channel}:{self}"),
            ShimError::Redis(_) | ShimError::Timeout(_) | ShimError::Stream(_) => {
                format!("503:{channel}:Presence is unavailable, try again ({self})")
            }
        }
    }
}
