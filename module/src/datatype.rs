//! The `presence` data type: one key per channel holding a [`Roster`], and its persistence callbacks.
//!
//! RDB, `DUMP`/`RESTORE`, slot migration and AOF rewrite all carry the roster as one
//! [`snapshot`](presence_roster::snapshot) so they cannot disagree about the format.

use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicU64, Ordering};

use presence_roster::{snapshot, Roster};
use redis_module::{native_types::RedisType, raw};

/// Encoding version of the RDB form; bump it (and keep reading the old one) when the snapshot changes.
const ENCODING_VERSION: i32 = 0;

/// The registered type. Its name must be exactly nine characters.
pub static PRESENCE_TYPE: RedisType = RedisType::new(
    "presence_",
    ENCODING_VERSION,
    raw::RedisModuleTypeMethods {
        version: raw::REDISMODULE_TYPE_METHOD_VERSION as u64,
        rdb_load: Some(rdb_load),
        rdb_save: Some(rdb_save),
        aof_rewrite: Some(aof_rewrite),
        mem_usage: Some(mem_usage),
        digest: None,
        free: Some(free),
        aux_load: None,
        aux_save: None,
        aux_save2: None,
        aux_save_triggers: 0,
        free_effort: None,
        unlink: None,
        copy: Some(copy),
        defrag: None,
        mem_usage2: None,
        free_effort2: None,
        unlink2: None,
        copy2: None,
    },
);

/// The highest revision of any roster this process has dropped.
///
/// A channel whose last member left is deleted, and a later join creates it again. Its revision must
/// still not go backwards, so a new roster starts above both the clock (in microseconds, which covers
/// restarts) and this floor (which covers a roster that ran ahead of the clock, e.g. after a mass expiry,
/// and was deleted and created again within the same microseconds).
static DROPPED_REV_FLOOR: AtomicU64 = AtomicU64::new(0);

/// The revision a new roster starts from at time `now_us`.
pub fn seed_rev(now_us: u64) -> u64 {
    now_us.max(DROPPED_REV_FLOOR.load(Ordering::Relaxed))
}

fn note_dropped(roster: &Roster) {
    DROPPED_REV_FLOOR.fetch_max(roster.rev(), Ordering::Relaxed);
}

unsafe extern "C" fn rdb_load(rdb: *mut raw::RedisModuleIO, encver: c_int) -> *mut c_void {
    if encver != ENCODING_VERSION {
        return std::ptr::null_mut();
    }
    let Ok(buffer) = raw::load_string_buffer(rdb) else {
        return std::ptr::null_mut();
    };
    match snapshot::decode(buffer.as_ref()) {
        Ok(roster) => Box::into_raw(Box::new(roster)).cast(),
        // A null value makes Redis refuse the file instead of loading a broken roster.
        Err(_) => std::ptr::null_mut(),
    }
}

unsafe extern "C" fn rdb_save(rdb: *mut raw::RedisModuleIO, value: *mut c_void) {
    // SAFETY: Redis passes back a value this module created with `Box<Roster>`.
    let roster = unsafe { &*value.cast::<Roster>() };
    raw::save_slice(rdb, &snapshot::encode(roster));
}

unsafe extern "C" fn aof_rewrite(
    aof: *mut raw::RedisModuleIO,
    key: *mut raw::RedisModuleString,
    value: *mut c_void,
) {
    // SAFETY: as in `rdb_save`.
    let roster = unsafe { &*value.cast::<Roster>() };
    let bytes = snapshot::encode(roster);
    // SAFETY: reading a function pointer that Redis filled in at module init.
    let emit = unsafe { raw::RedisModule_EmitAOF }.expect("EmitAOF is in every Redis with modules");
    // SAFETY: "sc" + "b" take a RedisModuleString and a (pointer, length) buffer, as passed here.
    unsafe {
        emit(
            aof,
            c"PRESENCE.APPLY".as_ptr(),
            c"scb".as_ptr(),
            key,
            c"SNAPSHOT".as_ptr(),
            bytes.as_ptr(),
            bytes.len(),
        );
    }
}

unsafe extern "C" fn mem_usage(value: *const c_void) -> usize {
    // SAFETY: as in `rdb_save`.
    let roster = unsafe { &*value.cast::<Roster>() };
    // Bytes held plus a per-entry overhead for the hash maps, the deadline index and the allocations.
    let bytes: usize = roster
        .members()
        .map(|(id, data)| id.len() + data.len())
        .sum::<usize>()
        + roster
            .connections()
            .map(|(client, _, _)| client.len())
            .sum::<usize>();
    std::mem::size_of::<Roster>()
        + bytes
        + 96 * roster.member_count()
        + 128 * roster.connection_count()
}

unsafe extern "C" fn free(value: *mut c_void) {
    // SAFETY: as in `rdb_save`; Redis frees each value once.
    let roster = unsafe { Box::from_raw(value.cast::<Roster>()) };
    note_dropped(&roster);
}

unsafe extern "C" fn copy(
    _from: *mut raw::RedisModuleString,
    _to: *mut raw::RedisModuleString,
    value: *const c_void,
) -> *mut c_void {
    // SAFETY: as in `rdb_save`.
    let roster = unsafe { &*value.cast::<Roster>() };
    Box::into_raw(Box::new(roster.clone())).cast()
}
