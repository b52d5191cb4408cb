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
    /// The module refused the command for what it is (over a limit, a key of another type, ...): the
    /// same subscribe fails the same way every time, so it is final. Holds the reason, `LIMIT data is
    /// 70002 bytes, over presence.max-data-bytes (65536)`; the shim's own checks word theirs the same way.
    #[error("{0}")]
    Refused(String),
    /// Redis could not be reached, or answered with an error that may pass (loading, failing over, out
    /// of memory, ...).
    #[error("Redis: {0}")]
    Redis(redis::RedisError),
    /// Redis did not answer in time.
    #[error("Redis did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The roster stream (shard pub/sub) for the channel is not available.
    #[error("the presence stream is unavailable: {0}")]
    Stream(String),
    /// The module answered something this shim cannot read: a version mismatch or a bug, not an
    /// outage.
    #[error("unexpected reply from the presence module: {0}")]
    BadReply(String),
    /// The subscribe was overtaken by the client's own end (it unsubscribed, disconnected or timed out
    /// while it was joining); nothing is left behind.
    #[error("the subscribe was interrupted: {0}")]
    Interrupted(&'static str),
    /// A bug in the shim, caught: details in the log.
    #[error("internal presence error: {0}")]
    Internal(String),
    /// The configuration is invalid.
    #[error("invalid presence configuration: {0}")]
    Config(String),
}

/// Error codes with which the module refuses a command for what it is (see `module/src/error.rs`).
/// `ERR` is not among them: Redis itself uses it for conditions that pass, like `max number of clients
/// reached`, and the module only for arity (a shim bug) and caught panics.
const REFUSALS: [&str; 4] = ["LIMIT", "SYNTAX", "WRONGTYPE", "DENIED"];

impl From<redis_runtime::RuntimeError> for ShimError {
    fn from(error: redis_runtime::RuntimeError) -> Self {
        match error {
            redis_runtime::RuntimeError::ShutDown => ShimError::Stream(error.to_string()),
            other => ShimError::Internal(other.to_string()),
        }
    }
}

impl From<redis::RedisError> for ShimError {
    fn from(error: redis::RedisError) -> Self {
        match error.code() {
            Some(code) if REFUSALS.contains(&code) => {
                let detail = error.detail().unwrap_or_default();
                ShimError::Refused(format!("{code} {detail}"))
            }
            _ => ShimError::Redis(error),
        }
    }
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
            // 400, not 503: retrying cannot help, and clients retry what says "try again".
            ShimError::Refused(why) => format!("400:{channel}:Presence refused ({why})"),
            ShimError::Config(_) | ShimError::BadReply(_) | ShimError::Internal(_) => {
                format!("500:{channel}:{self}")
            }
            ShimError::Redis(_)
            | ShimError::Timeout(_)
            | ShimError::Stream(_)
            | ShimError::Interrupted(_) => {
                format!("503:{channel}:Presence is unavailable, try again ({self})")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::ErrorKind;

    fn server_error(code: &str, detail: &str) -> redis::RedisError {
        // What redis-rs makes of an error reply `-<code> <detail>`.
        let reply = format!("-{code} {detail}\r\n");
        match redis::parse_redis_value(reply.as_bytes()) {
            Ok(redis::Value::ServerError(e)) => e.into(),
            other => panic!("not a server error: {other:?}"),
        }
    }

    #[test]
    fn the_modules_refusals_are_final_and_outages_say_try_again() {
        let limit = ShimError::from(server_error(
            "LIMIT",
            "data is 70002 bytes, over presence.max-data-bytes (65536)",
        ));
        assert_eq!(
            limit.to_bayeux("/presence/a"),
            "400:/presence/a:Presence refused (LIMIT data is 70002 bytes, over presence.max-data-bytes (65536))"
        );
        for code in ["SYNTAX", "WRONGTYPE", "DENIED"] {
            let error = ShimError::from(server_error(code, "x"));
            assert!(error.to_bayeux("/p/a").starts_with("400:/p/a:"), "{code}");
        }
        for code in ["LOADING", "OOM", "BUSY", "TRYAGAIN", "MASTERDOWN", "ERR"] {
            let error = ShimError::from(server_error(code, "x"));
            assert!(matches!(error, ShimError::Redis(_)), "{code}");
            assert!(
                error
                    .to_bayeux("/p/a")
                    .starts_with("503:/p/a:Presence is unavailable, try again"),
                "{code}"
            );
        }
        let io = ShimError::from(redis::RedisError::from((
            ErrorKind::Io,
            "connection refused",
        )));
        assert!(io.to_bayeux("/p/a").starts_with("503:"));
        assert!(ShimError::Timeout(std::time::Duration::from_secs(2))
            .to_bayeux("/p/a")
            .starts_with("503:"));
    }
}
