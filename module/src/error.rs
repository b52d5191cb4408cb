//! [`PresenceError`]: every way a presence command can fail, and its Redis error reply.

use presence_roster::DecodeError;
use redis_module::RedisError;
use thiserror::Error;

/// A command error. Its message starts with a Redis error code (`ERR`, `SYNTAX`, `LIMIT`, ...), so
/// clients can tell the kind of failure from the first word.
#[derive(Debug, Error)]
pub enum PresenceError {
    /// Too few or too many arguments; Redis words the reply itself.
    #[error("ERR wrong number of arguments")]
    WrongArity,
    /// The key holds something that is not a presence roster.
    #[error("WRONGTYPE Operation against a key holding the wrong kind of value")]
    WrongType,
    /// An option this command does not have.
    #[error("SYNTAX unknown option '{0}'")]
    UnknownOption(String),
    /// A TTL that is not a whole number of milliseconds in range.
    #[error("ERR TTL must be a whole number of milliseconds from 1 to {max}")]
    BadTtl {
        /// The largest TTL accepted.
        max: i64,
    },
    /// Member data over `presence.max-data-bytes`.
    #[error("LIMIT data is {len} bytes, over presence.max-data-bytes ({max})")]
    DataTooLarge {
        /// The size sent.
        len: usize,
        /// The configured limit.
        max: i64,
    },
    /// A new member on a channel that is full.
    #[error("LIMIT the channel has {members} members, the most presence.max-members allows")]
    ChannelFull {
        /// Members on the channel.
        members: usize,
    },
    /// `PRESENCE.APPLY` sent by an ordinary client.
    #[error(
        "DENIED PRESENCE.APPLY is internal: it is accepted only from a master or while loading"
    )]
    ApplyDenied,
    /// `PRESENCE.APPLY` arguments that do not decode.
    #[error("ERR malformed PRESENCE.APPLY: {0}")]
    BadApply(#[from] DecodeError),
    /// A bug: the command panicked. The panic was caught before it reached Redis.
    #[error("ERR internal error in the presence module (details in the Redis log)")]
    Internal,
}

impl PresenceError {
    /// The Redis error reply for this error.
    pub fn into_redis(self) -> RedisError {
        match self {
            PresenceError::WrongArity => RedisError::WrongArity,
            other => RedisError::String(other.to_string()),
        }
    }
}
