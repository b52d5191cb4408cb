//! `presence`: a Redis module that keeps who is on a Bayeux channel, changes it atomically and
//! publishes every change in order.
//!
//! Load with `redis-server --loadmodule libpresence.so [default-ttl 60000] [max-data-bytes 65536]
//! [max-id-bytes 256] [max-members 1000000]`. The commands and their replies are documented in the README.
//!
//! # Layout
//! - [`command`]: one file per command, each `parse` (pure, unit-tested) then `run`.
//! - [`store`]: opens a channel key, runs one change on its roster, then sets the key's expiry,
//!   replicates the change as `PRESENCE.APPLY`, and publishes its events on the shard channel.
//! - [`expiry`]: the index of every channel's earliest deadline and the timer that purges and
//!   publishes expiries when no command comes.
//! - [`datatype`]: the `presence_` data type and its RDB/AOF/copy/free callbacks.
//! - [`guard`]: the one panic guard around everything Redis calls, and the text it may hand back
//!   (error replies, log lines: printable, bounded).
//! - [`reply`], [`error`], [`config`], [`stats`]: replies, error replies, `CONFIG presence.*`,
//!   `INFO presence`.
//! - [`docs`]: arity, key specs and summaries for `COMMAND INFO` and `COMMAND DOCS`.
//!
//! The roster itself, with its ops, events and formats, is the `presence-roster` crate, which has no
//! Redis in it.

pub mod command;
pub mod config;
pub mod datatype;
pub mod docs;
pub mod error;
pub mod expiry;
pub mod guard;
pub mod reply;
pub mod stats;
pub mod store;

#[cfg(not(test))]
mod registration {
    use std::os::raw::{c_char, c_int};

    use redis_module::configuration::ConfigurationFlags;
    use redis_module::{raw, redis_module, Context, InfoContext, RedisString, Status};

    use crate::command::{apply, count, dispatch, join, leave, roster, touch, Handler};
    use crate::config::*;
    use crate::datatype::PRESENCE_TYPE;
    use crate::docs::{describe, Doc, KeyUse};
    use crate::stats;

    /// Declares the Redis entry point of each command: Redis' raw argv goes straight to [`dispatch`],
    /// without the copies and retained strings of `redis-module`'s own command macro.
    macro_rules! entry_points {
        ($($name:ident => $handler:path),* $(,)?) => {$(
            extern "C" fn $name(
                ctx: *mut raw::RedisModuleCtx,
                argv: *mut *mut raw::RedisModuleString,
                argc: c_int,
            ) -> c_int {
                // SAFETY: Redis passes argc valid strings that outlive the call.
                let argv = unsafe { std::slice::from_raw_parts(argv, argc.max(0) as usize) };
                dispatch(&Context::new(ctx), argv, $handler as Handler)
            }
        )*};
    }

    entry_points! {
        panic_entry => crate::command::panic_for_tests,
        fail_entry => crate::command::fail_next_for_tests,
        join_entry => join::run,
        leave_entry => leave::run,
        touch_entry => touch::run,
        roster_entry => roster::run,
        count_entry => count::run,
        apply_entry => apply::run,
    }

    type EntryPoint =
        extern "C" fn(*mut raw::RedisModuleCtx, *mut *mut raw::RedisModuleString, c_int) -> c_int;

    /// Name, entry point, flags and documentation; every command's key is its first argument (key spec
    /// index 1, range 0 1 0, and the legacy `1 1 1`), so cluster routing and `MOVED` work.
    const COMMANDS: [(&std::ffi::CStr, EntryPoint, &std::ffi::CStr, Doc); 6] = [
        (c"PRESENCE.JOIN", join_entry, c"write deny-oom", Doc {
            summary: c"Binds a connection to a member id with data; replies with the change (and the roster with WITHROSTER)",
            arity: -5,
            key: KeyUse::Update,
        }),
        (c"PRESENCE.LEAVE", leave_entry, c"write", Doc {
            summary: c"Removes a connection (or holds its leave for GRACE ms); the member leaves with its last",
            arity: -3,
            key: KeyUse::Delete,
        }),
        (c"PRESENCE.TOUCH", touch_entry, c"write", Doc {
            summary: c"Moves live connections' deadlines to now + TTL; reports the ones it does not know",
            arity: -3,
            key: KeyUse::Update,
        }),
        (c"PRESENCE.ROSTER", roster_entry, c"readonly", Doc {
            summary: c"Returns the roster {id: data} and its revision",
            arity: 2,
            key: KeyUse::Read,
        }),
        (c"PRESENCE.COUNT", count_entry, c"readonly fast", Doc {
            summary: c"Returns the number of members and connections, and the revision",
            arity: 2,
            key: KeyUse::Read,
        }),
        (c"PRESENCE.APPLY", apply_entry, c"write", Doc {
            summary: c"Internal: replays a change as the master made it (replication, AOF); refused from clients",
            // At least 4: an ordinary client's call, whatever its shape, gets DENIED from the module.
            arity: -4,
            key: KeyUse::Update,
        }),
    ];

    fn init(ctx: &Context, _args: &[RedisString]) -> Status {
        // SAFETY: reading function pointers that Redis filled in at module init.
        if unsafe { raw::RedisModule_PublishMessageShard }.is_none() {
            crate::guard::log_warning("presence: this Redis has no shard pub/sub (RedisModule_PublishMessageShard); Redis 7.0 or newer is required");
            return Status::Err;
        }
        // A damaged RESTORE payload or RDB makes the data type's loads fail, and without this option
        // Redis panics on the first short read instead of letting `rdb_load` refuse the value.
        // SAFETY: as above; Redis keeps the option on the module for its lifetime.
        if let Some(set_options) = unsafe { raw::RedisModule_SetModuleOptions } {
            // SAFETY: the live context of OnLoad and a valid option flag.
            unsafe {
                set_options(
                    ctx.get_raw(),
                    raw::REDISMODULE_OPTIONS_HANDLE_IO_ERRORS as c_int,
                )
            };
        }
        for (name, entry, flags, doc) in &COMMANDS {
            if let Err(why) = create(ctx, name, *entry, flags) {
                crate::guard::log_warning(&why);
                return Status::Err;
            }
            if let Err(why) = describe(ctx, name, doc) {
                crate::guard::log_warning(&format!("presence: {why}"));
                return Status::Err;
            }
        }
        // Debug builds (the ones the tests load) also have commands that panic, in a command or in the
        // next call of a data-type callback, to prove that a panic is caught before it reaches Redis.
        if cfg!(debug_assertions) {
            for (name, entry) in [
                (c"PRESENCE.DEBUG-PANIC", panic_entry as EntryPoint),
                (c"PRESENCE.DEBUG-FAIL", fail_entry),
            ] {
                if let Err(why) = create(ctx, name, entry, c"readonly") {
                    crate::guard::log_warning(&why);
                    return Status::Err;
                }
            }
        }
        // Replaces the module's default INFO handler with ours.
        raw::register_info_function(ctx.get_raw(), Some(info));
        if let Err(why) = crate::expiry::subscribe(ctx) {
            crate::guard::log_warning(&format!("presence: {why}"));
            return Status::Err;
        }
        Status::Ok
    }

    /// `RedisModule_CreateCommand` with the channel key as first argument.
    fn create(
        ctx: &Context,
        name: &std::ffi::CStr,
        entry: EntryPoint,
        flags: &std::ffi::CStr,
    ) -> Result<(), String> {
        // SAFETY: static names and flags; Redis copies them.
        let created = unsafe {
            raw::RedisModule_CreateCommand.expect("CreateCommand")(
                ctx.get_raw(),
                name.as_ptr(),
                Some(entry),
                flags.as_ptr().cast::<c_char>(),
                1,
                1,
                1,
            )
        };
        if created != raw::Status::Ok as c_int {
            return Err(format!("presence: could not create command {name:?}"));
        }
        Ok(())
    }

    extern "C" fn info(ctx: *mut raw::RedisModuleInfoCtx, _for_crash_report: i32) {
        crate::guard::guard("INFO", (), || {
            let _ = stats::write_info(&InfoContext::new(ctx));
        });
    }

    redis_module! {
        name: "presence",
        version: 1,
        allocator: (redis_module::alloc::RedisAlloc, redis_module::alloc::RedisAlloc),
        data_types: [PRESENCE_TYPE],
        init: init,
        configurations: [
            i64: [
                ["default-ttl", &DEFAULT_TTL_MS, DEFAULT_TTL_DEFAULT, 1, MAX_TTL_MS, ConfigurationFlags::DEFAULT, None],
                ["max-data-bytes", &MAX_DATA_BYTES, MAX_DATA_BYTES_DEFAULT, 0, 512 * 1024 * 1024, ConfigurationFlags::DEFAULT, None],
                ["max-id-bytes", &MAX_ID_BYTES, MAX_ID_BYTES_DEFAULT, 1, u32::MAX as i64, ConfigurationFlags::DEFAULT, None],
                ["max-members", &MAX_MEMBERS, MAX_MEMBERS_DEFAULT, 1, i64::MAX, ConfigurationFlags::DEFAULT, None],
            ],
            string: [],
            bool: [],
            enum: [],
            module_args_as_configuration: true,
        ]
    }
}
