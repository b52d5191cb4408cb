//! What `COMMAND INFO` and `COMMAND DOCS` say about our commands: arity, key specs and summaries,
//! registered with `RedisModule_SetCommandInfo` right after each command is created.
//!
//! Redis checks the arity before a command runs (so a wrong count is Redis' own `wrong number of
//! arguments` error), and cluster clients and `COMMAND GETKEYS` find the channel key from the key spec
//! rather than the legacy `1 1 1` range.

use std::ffi::CStr;
use std::os::raw::c_int;

use redis_module::{raw, Context};

/// What one command's key (always its first argument) is used for.
#[derive(Clone, Copy)]
pub enum KeyUse {
    /// Read only (`RO ACCESS`).
    Read,
    /// Changed in place: members join, leave, have their deadlines moved (`RW UPDATE`).
    Update,
    /// Connections removed, and the key with the last (`RW DELETE`).
    Delete,
}

impl KeyUse {
    fn flags(self) -> u64 {
        let flags = match self {
            KeyUse::Read => raw::REDISMODULE_CMD_KEY_RO | raw::REDISMODULE_CMD_KEY_ACCESS,
            KeyUse::Update => raw::REDISMODULE_CMD_KEY_RW | raw::REDISMODULE_CMD_KEY_UPDATE,
            KeyUse::Delete => raw::REDISMODULE_CMD_KEY_RW | raw::REDISMODULE_CMD_KEY_DELETE,
        };
        u64::from(flags)
    }
}

/// One command's documentation.
pub struct Doc {
    /// One line, as `COMMAND DOCS` shows it.
    pub summary: &'static CStr,
    /// Arguments including the command name: `n` exactly, `-n` at least `n`.
    pub arity: c_int,
    /// How the key is used.
    pub key: KeyUse,
}

/// The version of `RedisModuleCommandInfo` this module fills in (the header's
/// `RedisModule_CurrentCommandInfoVersion`, which is a static of the header, not a symbol to link).
fn info_version() -> raw::RedisModuleCommandInfoVersion {
    raw::RedisModuleCommandInfoVersion {
        version: 1,
        sizeof_historyentry: std::mem::size_of::<raw::RedisModuleCommandHistoryEntry>(),
        sizeof_keyspec: std::mem::size_of::<raw::RedisModuleCommandKeySpec>(),
        sizeof_arg: std::mem::size_of::<raw::RedisModuleCommandArg>(),
    }
}

/// Registers `doc` for the command `name`, created already. Redis copies what it keeps; the arrays it
/// reads live until this returns. A Redis without the API (before 7.0) is not an error: the commands
/// work, only undocumented.
pub fn describe(ctx: &Context, name: &CStr, doc: &Doc) -> Result<(), String> {
    // SAFETY: reading function pointers that Redis filled in at module init.
    let (Some(get_command), Some(set_info)) = (unsafe { raw::RedisModule_GetCommand }, unsafe {
        raw::RedisModule_SetCommandInfo
    }) else {
        return Ok(());
    };
    // SAFETY: `name` is a NUL-terminated string; Redis only reads it.
    let command = unsafe { get_command(ctx.get_raw(), name.as_ptr()) };
    if command.is_null() {
        return Err(format!("command {name:?} was not created"));
    }
    let channel_key = raw::RedisModuleCommandKeySpec {
        notes: std::ptr::null(),
        flags: doc.key.flags(),
        begin_search_type: raw::RedisModuleKeySpecBeginSearchType_REDISMODULE_KSPEC_BS_INDEX,
        bs: raw::RedisModuleCommandKeySpec__bindgen_ty_1 {
            index: raw::RedisModuleCommandKeySpec__bindgen_ty_1__bindgen_ty_1 { pos: 1 },
        },
        find_keys_type: raw::RedisModuleKeySpecFindKeysType_REDISMODULE_KSPEC_FK_RANGE,
        fk: raw::RedisModuleCommandKeySpec__bindgen_ty_2 {
            range: raw::RedisModuleCommandKeySpec__bindgen_ty_2__bindgen_ty_1 {
                lastkey: 0,
                keystep: 1,
                limit: 0,
            },
        },
    };
    // SAFETY: the key spec list ends with an all-zero entry (begin search type "invalid"), and every
    // field of the struct (pointers, integers, unions of integers) is valid as zero.
    let end: raw::RedisModuleCommandKeySpec = unsafe { std::mem::zeroed() };
    let mut key_specs = [channel_key, end];
    let version = info_version();
    let info = raw::RedisModuleCommandInfo {
        version: &version,
        summary: doc.summary.as_ptr(),
        complexity: std::ptr::null(),
        since: c"1.0.0".as_ptr(),
        history: std::ptr::null_mut(),
        tips: std::ptr::null(),
        arity: doc.arity,
        key_specs: key_specs.as_mut_ptr(),
        args: std::ptr::null_mut(),
    };
    // SAFETY: `command` is ours, from GetCommand during OnLoad; `info` and everything it points to
    // outlive the call, and Redis copies what it keeps.
    let status = unsafe { set_info(command, &info) };
    if status != raw::Status::Ok as c_int {
        return Err(format!("Redis refused the command info of {name:?}"));
    }
    Ok(())
}
