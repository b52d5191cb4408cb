//! One file per command: `parse` (a plain function over the arguments, unit-tested without Redis), then
//! `run` (apply and reply). [`dispatch`] is the only way in from Redis.

pub mod apply;
pub mod count;
pub mod join;
pub mod leave;
pub mod roster;
pub mod touch;

use std::panic::{catch_unwind, AssertUnwindSafe};

use redis_module::{Context, RedisResult, RedisString, RedisValue};

use crate::config::MAX_TTL_MS;
use crate::error::PresenceError;
use crate::stats;

/// A command body: parses `args` (the command name first), changes or reads the roster, writes the reply.
pub type Handler = fn(&Context, &[RedisString]) -> Result<(), PresenceError>;

/// Runs `handler`, turning errors into Redis error replies and catching panics, so that no panic ever
/// unwinds into Redis. Handlers write their reply last, after every step that could fail.
pub fn dispatch(ctx: &Context, args: Vec<RedisString>, handler: Handler) -> RedisResult {
    match catch_unwind(AssertUnwindSafe(|| handler(ctx, &args))) {
        Ok(Ok(())) => Ok(RedisValue::NoReply),
        Ok(Err(error)) => {
            stats::ERRORS.add(1);
            Err(error.into_redis())
        }
        Err(panic) => {
            stats::PANICS.add(1);
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            ctx.log_warning(&format!(
                "presence: command panicked (a bug, please report it): {what}"
            ));
            Err(PresenceError::Internal.into_redis())
        }
    }
}

/// The arguments as byte slices, for the pure parsers.
pub fn slices(args: &[RedisString]) -> Vec<&[u8]> {
    args.iter().map(RedisString::as_slice).collect()
}

/// Parses a TTL in milliseconds: a whole number from 1 to [`MAX_TTL_MS`].
pub fn parse_ttl(bytes: &[u8]) -> Result<u64, PresenceError> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|ms| (1..=MAX_TTL_MS as u64).contains(ms))
        .ok_or(PresenceError::BadTtl { max: MAX_TTL_MS })
}

/// Whether `arg` is the option `name`, in any case.
pub fn is_option(arg: &[u8], name: &str) -> bool {
    arg.eq_ignore_ascii_case(name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_is_a_whole_number_in_range() {
        assert_eq!(parse_ttl(b"1").unwrap(), 1);
        assert_eq!(parse_ttl(b"60000").unwrap(), 60_000);
        for bad in [
            &b"0"[..],
            b"-5",
            b"1.5",
            b"",
            b"abc",
            b"99999999999999999999",
            b"2592000001",
        ] {
            assert!(
                matches!(parse_ttl(bad), Err(PresenceError::BadTtl { .. })),
                "{bad:?}"
            );
        }
    }
}
