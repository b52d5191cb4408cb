//! One file per command: `parse` (a plain function over the arguments, unit-tested without Redis), then
//! `run` (apply and reply). [`dispatch`] is the only way in from Redis.

pub mod apply;
pub mod count;
pub mod join;
pub mod leave;
pub mod roster;
pub mod touch;

use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

use redis_module::{raw, Context};

use crate::config::MAX_TTL_MS;
use crate::error::PresenceError;
use crate::stats;
use crate::store::KeyName;

/// A command's arguments, the command name first, as Redis passed them: no copies, no retained strings.
pub struct Args<'a> {
    argv: &'a [*mut raw::RedisModuleString],
    bytes: Vec<&'a [u8]>,
}

impl<'a> Args<'a> {
    /// Wraps `argv` for the duration of one command call.
    pub fn new(argv: &'a [*mut raw::RedisModuleString]) -> Self {
        let bytes = argv
            .iter()
            .map(|&arg| {
                let mut len = 0;
                // SAFETY: Redis keeps argv alive for the whole call, and StringPtrLen never returns null.
                unsafe {
                    let ptr = raw::RedisModule_StringPtrLen.expect("StringPtrLen")(arg, &mut len);
                    std::slice::from_raw_parts(ptr.cast::<u8>(), len)
                }
            })
            .collect();
        Args { argv, bytes }
    }

    /// Every argument as bytes, for the pure parsers.
    pub fn bytes(&self) -> &[&'a [u8]] {
        &self.bytes
    }

    /// The key (the channel), which every presence command takes first.
    pub fn key(&self) -> Result<KeyName, PresenceError> {
        self.argv
            .get(1)
            .map(|&name| KeyName(name))
            .ok_or(PresenceError::WrongArity)
    }
}

/// A command body: parses `args`, changes or reads the roster, writes the reply.
pub type Handler = fn(&Context, &Args) -> Result<(), PresenceError>;

/// Runs `handler`, turning errors into Redis error replies and catching panics, so that no panic ever
/// unwinds into Redis. Handlers write their reply last, after every step that could fail.
pub fn dispatch(
    context: &Context,
    argv: &[*mut raw::RedisModuleString],
    handler: Handler,
) -> c_int {
    let outcome = catch_unwind(AssertUnwindSafe(|| handler(context, &Args::new(argv))));
    let error = match outcome {
        Ok(Ok(())) => return raw::Status::Ok as c_int,
        Ok(Err(error)) => error,
        Err(panic) => {
            stats::PANICS.add(1);
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            context.log_warning(&format!(
                "presence: command panicked (a bug, please report it): {what}"
            ));
            PresenceError::Internal
        }
    };
    stats::ERRORS.add(1);
    match error {
        // Redis words this one itself, naming the command.
        PresenceError::WrongArity => unsafe {
            raw::RedisModule_WrongArity.expect("WrongArity")(context.get_raw())
        },
        other => context.reply_error_string(&other.to_string()) as c_int,
    }
}

/// `PRESENCE.DEBUG-PANIC`, registered in debug builds only: panics, so tests can check that
/// [`dispatch`] turns a panic into an error reply and Redis lives on.
pub fn panic_for_tests(_ctx: &Context, _args: &Args) -> Result<(), PresenceError> {
    panic!("PRESENCE.DEBUG-PANIC was called");
}

/// Parses a TTL in milliseconds: a whole number from 1 to [`MAX_TTL_MS`].
pub fn parse_ttl(bytes: &[u8]) -> Result<u64, PresenceError> {
    presence_roster::parse_u64(bytes)
        .ok()
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
