//! The `presence` data type: one key per channel holding a [`Roster`], and its persistence callbacks.
//!
//! RDB, `DUMP`/`RESTORE`, slot migration and AOF rewrite all carry the roster as one
//! [`snapshot`](presence_roster::snapshot) so they cannot disagree about the format.
//!
//! A payload is outside input (`RESTORE` takes any bytes with a valid CRC): the load checks for an IO
//! error after its one load call and the snapshot decoder checks everything it reads, so a damaged or
//! forged payload is refused, never trusted, and every callback runs under [`guard`].

use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicU64, Ordering};

use presence_roster::{snapshot, Roster};
use redis_module::{native_types::RedisType, raw};

use crate::guard::{guard, log_notice, log_warning};

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

/// The data-type callbacks, for panic injection in tests (see [`fail_next`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callback {
    /// `rdb_load`: RDB load, `RESTORE`, slot migration.
    RdbLoad = 1,
    /// `rdb_save`: RDB save, `DUMP`.
    RdbSave = 2,
    /// `aof_rewrite`: AOF rewrite without an RDB preamble (runs in the forked child).
    AofRewrite = 4,
    /// `mem_usage`: `MEMORY USAGE`.
    MemUsage = 8,
    /// `free`: `DEL`, overwrites, expiry.
    Free = 16,
    /// `copy`: `COPY`.
    Copy = 32,
}

impl Callback {
    /// The callback named `name` (as in `PRESENCE.DEBUG-FAIL <name>`).
    pub fn from_name(name: &[u8]) -> Option<Self> {
        Some(match name {
            b"rdb_load" => Callback::RdbLoad,
            b"rdb_save" => Callback::RdbSave,
            b"aof_rewrite" => Callback::AofRewrite,
            b"mem_usage" => Callback::MemUsage,
            b"free" => Callback::Free,
            b"copy" => Callback::Copy,
            _ => return None,
        })
    }
}

/// Callbacks whose next call panics; set by `PRESENCE.DEBUG-FAIL` in debug builds only.
static ARMED: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Makes the next call of `callback` panic (debug builds only: release builds never read the flag).
pub fn fail_next(callback: Callback) {
    ARMED.fetch_or(callback as u8, Ordering::Relaxed);
}

/// Panics if a test armed `callback`, once.
fn fail_point(callback: Callback) {
    #[cfg(debug_assertions)]
    if ARMED.fetch_and(!(callback as u8), Ordering::Relaxed) & callback as u8 != 0 {
        panic!("injected panic in {callback:?} (PRESENCE.DEBUG-FAIL)");
    }
    #[cfg(not(debug_assertions))]
    let _ = callback;
}

/// How far ahead of the clock a dropped roster may lift [`DROPPED_REV_FLOOR`]: 2^40 events, about 35 years
/// of a million events a second beyond a roster's creation. A real roster runs ahead of the clock only by
/// the events it had, far less; a forged one (a `RESTORE` of a rev near the ceiling, then a `DEL`) would
/// otherwise make every new channel on this server start at the ceiling, where `rev` stops growing.
const MAX_FLOOR_AHEAD_OF_CLOCK: u64 = 1 << 40;

fn note_dropped(roster: &Roster) {
    let cap = crate::store::now_us().saturating_add(MAX_FLOOR_AHEAD_OF_CLOCK);
    DROPPED_REV_FLOOR.fetch_max(roster.rev().min(cap), Ordering::Relaxed);
}

// Every callback below is a thin `extern "C"` shell around a body run by `guard`: a panic in a callback
// would otherwise abort Redis. Each fallback is what Redis copes with: no value (a refused load or copy),
// nothing written, zero bytes.

unsafe extern "C" fn rdb_load(rdb: *mut raw::RedisModuleIO, encver: c_int) -> *mut c_void {
    guard("rdb_load", std::ptr::null_mut(), || {
        // SAFETY: Redis passes a live IO handle for the duration of the call.
        match unsafe { load(rdb, encver) } {
            Ok(roster) => Box::into_raw(Box::new(roster)).cast(),
            // A null value makes Redis refuse the payload: RESTORE answers an error, an RDB or
            // replication load fails (the module is loaded with REDISMODULE_OPTIONS_HANDLE_IO_ERRORS,
            // so a short read is an error here, not a Redis panic).
            Err(why) => {
                log_notice(&format!(
                    "presence: refused a roster that does not load: {why}"
                ));
                std::ptr::null_mut()
            }
        }
    })
}

/// Reads one roster: one string, checked for IO errors right after the call, then decoded by a decoder
/// that checks every count, length, revision and deadline before trusting it.
unsafe fn load(rdb: *mut raw::RedisModuleIO, encver: c_int) -> Result<Roster, String> {
    fail_point(Callback::RdbLoad);
    if encver != ENCODING_VERSION {
        return Err(format!("unknown encoding version {encver}"));
    }
    // SAFETY: reading function pointers that Redis filled in at module init.
    let (Some(load_buffer), Some(is_io_error), Some(free)) = (unsafe {
        (
            raw::RedisModule_LoadStringBuffer,
            raw::RedisModule_IsIOError,
            raw::RedisModule_Free,
        )
    }) else {
        return Err("this Redis lacks the RDB load API".into());
    };
    let mut len = 0;
    // SAFETY: a live IO handle; Redis returns a buffer we own (freed below) or null.
    let buffer = unsafe { load_buffer(rdb, &mut len) };
    // SAFETY: as above.
    let failed = unsafe { is_io_error(rdb) } != 0;
    if buffer.is_null() || failed {
        if !buffer.is_null() {
            // SAFETY: allocated by Redis for us, not used after this.
            unsafe { free(buffer.cast()) };
        }
        return Err("short read or damaged string".into());
    }
    // SAFETY: Redis returned `len` readable bytes at `buffer`.
    let bytes = unsafe { std::slice::from_raw_parts(buffer.cast::<u8>(), len) };
    let decoded = snapshot::decode(bytes);
    // SAFETY: as above; `bytes` is not used after this.
    unsafe { free(buffer.cast()) };
    decoded.map_err(|e| e.to_string())
}

unsafe extern "C" fn rdb_save(rdb: *mut raw::RedisModuleIO, value: *mut c_void) {
    let saved = guard("rdb_save", false, || {
        fail_point(Callback::RdbSave);
        // SAFETY: Redis passes back a value this module created with `Box<Roster>`.
        let roster = unsafe { &*value.cast::<Roster>() };
        raw::save_slice(rdb, &snapshot::encode(roster));
        true
    });
    if !saved {
        // Nothing was written yet (the save is one call, after the encoding). Writing nothing would make
        // the whole RDB unloadable; an empty roster loads, and its members are told they are unknown by
        // their next TOUCH and join again. Its rev starts from the clock, as a new roster's does.
        guard("rdb_save fallback", (), || {
            let empty = Roster::new(seed_rev(crate::store::now_us()));
            raw::save_slice(rdb, &snapshot::encode(&empty));
        });
    }
}

unsafe extern "C" fn aof_rewrite(
    aof: *mut raw::RedisModuleIO,
    key: *mut raw::RedisModuleString,
    value: *mut c_void,
) {
    // On a panic nothing is emitted for this key: the rewritten AOF loads without it.
    guard("aof_rewrite", (), || {
        fail_point(Callback::AofRewrite);
        // SAFETY: as in `rdb_save`.
        let roster = unsafe { &*value.cast::<Roster>() };
        let bytes = snapshot::encode(roster);
        // SAFETY: reading a function pointer that Redis filled in at module init.
        let Some(emit) = (unsafe { raw::RedisModule_EmitAOF }) else {
            log_warning(
                "presence: this Redis has no RedisModule_EmitAOF; roster left out of the AOF",
            );
            return;
        };
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
    });
}

unsafe extern "C" fn mem_usage(value: *const c_void) -> usize {
    guard("mem_usage", 0, || {
        fail_point(Callback::MemUsage);
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
    })
}

unsafe extern "C" fn free(value: *mut c_void) {
    // On a panic before the box is taken back, the roster leaks: the safe side of a bug.
    guard("free", (), || {
        fail_point(Callback::Free);
        // SAFETY: as in `rdb_save`; Redis frees each value once.
        let roster = unsafe { Box::from_raw(value.cast::<Roster>()) };
        note_dropped(&roster);
    });
}

unsafe extern "C" fn copy(
    _from: *mut raw::RedisModuleString,
    _to: *mut raw::RedisModuleString,
    value: *const c_void,
) -> *mut c_void {
    // A null copy makes COPY answer an error and leaves the source alone.
    guard("copy", std::ptr::null_mut(), || {
        fail_point(Callback::Copy);
        // SAFETY: as in `rdb_save`.
        let roster = unsafe { &*value.cast::<Roster>() };
        Box::into_raw(Box::new(roster.clone())).cast()
    })
}
