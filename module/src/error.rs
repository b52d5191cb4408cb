//! [`PresenceError`]: every way a presence command can fail, and its Redis error reply.

use std::ffi::CString;

use presence_roster::{shown, DecodeError};
use thiserror::Error;

use crate::guard::c_text;

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
    /// An option this command does not have, as [`shown`] (escaped and bounded: it is client input).
    #[error("SYNTAX unknown option '{0}'")]
    UnknownOption(String),
    /// A client name or member id longer than a snapshot can store.
    #[error("LIMIT {what} is {len} bytes, over the 4294967295 bytes a roster can store")]
    FieldTooLarge {
        /// `client` or `id`.
        what: &'static str,
        /// The size sent.
        len: usize,
    },
    /// A TTL that is not a whole number of milliseconds in range.
    #[error("ERR TTL must be a whole number of milliseconds from 1 to {max}")]
    BadTtl {
        /// The largest TTL accepted.
        max: i64,
    },
    /// A leave's grace window that is not a whole number of milliseconds in range.
    #[error("ERR GRACE must be a whole number of milliseconds from 0 to {max}")]
    BadGrace {
        /// The longest grace accepted.
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
    /// A member id over `presence.max-id-bytes`.
    #[error("LIMIT id is {len} bytes, over presence.max-id-bytes ({max})")]
    IdTooLarge {
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
    /// A new member on a channel that has as many as the join's `MAXMEMBERS` allows.
    #[error("LIMIT the channel has {members} members, the most MAXMEMBERS allows ({max})")]
    OverMaxMembers {
        /// Members on the channel.
        members: usize,
        /// The join's `MAXMEMBERS`.
        max: u64,
    },
    /// A `MAXMEMBERS` that is not a whole number from 1 up.
    #[error("ERR MAXMEMBERS must be a whole number of at least 1")]
    BadMaxMembers,
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
    /// `UnknownOption` for the option `bytes` a client sent.
    pub fn unknown_option(bytes: &[u8]) -> Self {
        PresenceError::UnknownOption(shown(bytes))
    }

    /// The text of this error's reply, ready for `RedisModule_ReplyWithError`: printable ASCII, bounded,
    /// never failing (see [`c_text`]). Every variant that quotes client bytes already escapes them; this
    /// is the guarantee for all of them.
    pub fn reply_text(&self) -> CString {
        c_text(self.to_string().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_quote_client_bytes_escaped_and_bounded() {
        let error = PresenceError::unknown_option(b"N\0X\r\n\xc4\x80");
        assert_eq!(
            error.reply_text().to_bytes(),
            b"SYNTAX unknown option 'N\\x00X\\x0d\\x0a\\xc4\\x80'"
        );
        let long = PresenceError::unknown_option(&[b'x'; 100_000]).reply_text();
        assert!(long.to_bytes().len() < 100, "{long:?}");
    }
}
