//! `presence`: a Redis module that keeps who is on a Bayeux channel, changes it atomically and
//! publishes every change in order.
//!
//! Load with `redis-server --loadmodule libpresence.so [default-ttl 60000] [max-data-bytes 65536]
//! [max-members 1000000]`. The commands and their replies are documented in the README.
//!
//! # Layout
//! - [`command`]: one file per command, each `parse` (pure, unit-tested) then `run`.
//! - [`store`]: opens a channel key, runs one change on its roster, then sets the key's expiry,
//!   replicates the change as `PRESENCE.APPLY`, and publishes its events on the shard channel.
//! - [`datatype`]: the `presence_` data type and its RDB/AOF/copy/free callbacks.
//! - [`reply`], [`error`], [`config`], [`stats`]: replies, error replies, `CONFIG presence.*`,
//!   `INFO presence`.
//!
//! The roster itself, with its ops, events and formats, is the `presence-roster` crate, which has no
//! Redis in it.

pub mod command;
pub mod config;
pub mod datatype;
pub mod error;
pub mod reply;
pub mod stats;
pub mod store;

#[cfg(not(test))]
mod registration {
    use redis_module::configuration::ConfigurationFlags;
    use redis_module::{raw, redis_module, Context, InfoContext, RedisString, Status};

    use crate::command::{apply, count, join, leave, roster, touch};
    use crate::config::*;
    use crate::datatype::PRESENCE_TYPE;
    use crate::stats;

    fn init(ctx: &Context, _args: &[RedisString]) -> Status {
        // SAFETY: reading a function pointer that Redis filled in at module init.
        if unsafe { raw::RedisModule_PublishMessageShard }.is_none() {
            ctx.log_warning("presence: this Redis has no shard pub/sub (RedisModule_PublishMessageShard); Redis 7.0 or newer is required");
            return Status::Err;
        }
        // Replaces the module's default INFO handler with ours.
        raw::register_info_function(ctx.get_raw(), Some(info));
        Status::Ok
    }

    extern "C" fn info(ctx: *mut raw::RedisModuleInfoCtx, _for_crash_report: i32) {
        let _ = stats::write_info(&InfoContext::new(ctx));
    }

    // ACL categories must stay "": Redis 7.0 aborts on any other value from this macro.
    redis_module! {
        name: "presence",
        version: 1,
        allocator: (redis_module::alloc::RedisAlloc, redis_module::alloc::RedisAlloc),
        data_types: [PRESENCE_TYPE],
        init: init,
        commands: [
            ["PRESENCE.JOIN", join::command, "write deny-oom", 1, 1, 1, ""],
            ["PRESENCE.LEAVE", leave::command, "write", 1, 1, 1, ""],
            ["PRESENCE.TOUCH", touch::command, "write", 1, 1, 1, ""],
            ["PRESENCE.ROSTER", roster::command, "readonly", 1, 1, 1, ""],
            ["PRESENCE.COUNT", count::command, "readonly fast", 1, 1, 1, ""],
            ["PRESENCE.APPLY", apply::command, "write", 1, 1, 1, ""],
        ],
        configurations: [
            i64: [
                ["default-ttl", &DEFAULT_TTL_MS, DEFAULT_TTL_DEFAULT, 1, MAX_TTL_MS, ConfigurationFlags::DEFAULT, None],
                ["max-data-bytes", &MAX_DATA_BYTES, MAX_DATA_BYTES_DEFAULT, 0, 512 * 1024 * 1024, ConfigurationFlags::DEFAULT, None],
                ["max-members", &MAX_MEMBERS, MAX_MEMBERS_DEFAULT, 1, i64::MAX, ConfigurationFlags::DEFAULT, None],
            ],
            string: [],
            bool: [],
            enum: [],
            module_args_as_configuration: true,
        ]
    }
}
