//! One file per command: `parse` (a plain function over the arguments, unit-tested without Redis), then
//! `run` (apply and reply). [`dispatch`] is the only way in from Redis.

pub mod apply;
pub mod count;
pub mod join;
pub mod leave;
pub mod roster;
pub mod touch;

#[cfg(test)]
mod props;

use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

use redis_module::{raw, Context};

use crate::config::MAX_TTL_MS;
use crate::error::PresenceError;
use crate::store::KeyName;
use crate::{guard, reply, stats};

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
///
/// Everything from Redis' call to the last byte of the reply is guarded: the handler by one
/// `catch_unwind`, the error reply by another (its text is built by [`PresenceError::reply_text`], which
/// cannot fail), with a static error as the last resort.
pub fn dispatch(
    context: &Context,
    argv: &[*mut raw::RedisModuleString],
    handler: Handler,
) -> c_int {
    reply::begin_command();
    let outcome = catch_unwind(AssertUnwindSafe(|| handler(context, &Args::new(argv))));
    let error = match outcome {
        Ok(Ok(())) => return raw::Status::Ok as c_int,
        Ok(Err(error)) => error,
        Err(panic) => {
            guard::report_panic("a command", panic);
            if reply::started() {
                // Part of the reply is out; a second, whole reply would answer the client's next command
                // instead. The connection is beyond repair, Redis is not: the panic is logged and counted.
                return raw::Status::Ok as c_int;
            }
            PresenceError::Internal
        }
    };
    stats::ERRORS.add(1);
    let replied = catch_unwind(AssertUnwindSafe(|| match error {
        // Redis words this one itself, naming the command.
        // SAFETY: reading a function pointer that Redis filled in at module init.
        PresenceError::WrongArity => match unsafe { raw::RedisModule_WrongArity } {
            // SAFETY: the live context of this command.
            Some(wrong_arity) => unsafe { wrong_arity(context.get_raw()) },
            None => guard::reply_error(context, "ERR wrong number of arguments"),
        },
        other => guard::reply_error_c(context, &other.reply_text()),
    }));
    replied.unwrap_or_else(|panic| {
        guard::report_panic("an error reply", panic);
        guard::reply_error_c(context, INTERNAL)
    })
}

/// The reply of last resort, static so that writing it cannot fail.
const INTERNAL: &std::ffi::CStr =
    c"ERR internal error in the presence module (details in the Redis log)";

/// `PRESENCE.DEBUG-PANIC`, registered in debug builds only: panics, so tests can check that
/// [`dispatch`] turns a panic into an error reply and Redis lives on.
pub fn panic_for_tests(_ctx: &Context, _args: &Args) -> Result<(), PresenceError> {
    panic!("PRESENCE.DEBUG-PANIC was called");
}

/// `PRESENCE.DEBUG-FAIL <callback>`, registered in debug builds only: makes the next call of a data-type
/// callback (`rdb_load`, `rdb_save`, `aof_rewrite`, `mem_usage`, `free`, `copy`) panic, so tests can
/// check that the callbacks' guard catches it and Redis lives on.
pub fn fail_next_for_tests(ctx: &Context, args: &Args) -> Result<(), PresenceError> {
    let [_, name] = args.bytes() else {
        return Err(PresenceError::WrongArity);
    };
    let callback = crate::datatype::Callback::from_name(name)
        .ok_or_else(|| PresenceError::unknown_option(name))?;
    crate::datatype::fail_next(callback);
    crate::reply::Reply::new(ctx).ok();
    Ok(())
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
