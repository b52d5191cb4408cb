//! The channel key: opening it, changing its roster in one step, and making that step durable and
//! visible (key expiry, the expiry timer's index, replication, AOF, pub/sub).

use std::os::raw::c_int;
use std::time::{SystemTime, UNIX_EPOCH};

use presence_roster::{wire, Journal, Roster};
use redis_module::{raw, Context, ContextFlags, RedisString};

use crate::datatype::{seed_rev, PRESENCE_TYPE};
use crate::error::PresenceError;
use crate::{expiry, stats};

/// Who is changing the roster, which decides how the change is propagated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// An ordinary client, or the module's own expiry timer: read the clock, replicate the ops as
    /// `PRESENCE.APPLY`, publish the events.
    Client,
    /// The master or the AOF, through `PRESENCE.APPLY`: use only the values given, publish nothing
    /// (the master already did), and feed the command on to this node's own AOF.
    Master,
}

/// A key name as Redis passed it in the command's arguments.
#[derive(Debug, Clone, Copy)]
pub struct KeyName(pub *mut raw::RedisModuleString);

/// The bytes of `name`, valid while the string lives (the command or callback that has it).
pub fn key_bytes<'a>(name: KeyName) -> &'a [u8] {
    let mut len = 0;
    // SAFETY: a live RedisModuleString; StringPtrLen never returns null.
    unsafe {
        let ptr = raw::RedisModule_StringPtrLen.expect("StringPtrLen")(name.0, &mut len);
        std::slice::from_raw_parts(ptr.cast::<u8>(), len)
    }
}

/// What a change left behind.
pub struct Outcome<T> {
    /// The closure's result.
    pub value: T,
    /// The channel's revision afterwards; 0 for a channel that does not exist and was not changed.
    pub rev: u64,
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Runs `change` on the roster at key `name`, all in one step: Redis runs one command at a time, so
/// nothing else sees or changes the roster between the first op and the last.
///
/// Every op `change` records in the journal is made durable and visible even when it returns an error
/// (e.g. expired connections purged before a limit refused a join). A missing key is an empty roster;
/// it is stored only if something joins, and deleted when the last member goes.
pub fn change<T>(
    ctx: &Context,
    name: KeyName,
    origin: Origin,
    change: impl FnOnce(&mut Roster, &mut Journal, u64) -> Result<T, PresenceError>,
) -> Result<Outcome<T>, PresenceError> {
    let key = ChannelKey::open(ctx, name, raw::REDISMODULE_READ | raw::REDISMODULE_WRITE)?;
    let now = now_us();
    let mut fresh = None;
    let existed = key.roster_ptr().is_some();
    let roster: &mut Roster = match key.roster_ptr() {
        // SAFETY: the value was created by this module as a `Box<Roster>` and the key stays open.
        Some(ptr) => unsafe { &mut *ptr },
        None => fresh.insert(Roster::new(match origin {
            Origin::Client => seed_rev(now),
            Origin::Master => 0,
        })),
    };
    let earliest_before = roster.earliest_deadline();
    let mut journal = Journal::begin(roster);
    let result = change(roster, &mut journal, now);

    let rev = if !existed && journal.is_empty() {
        0
    } else {
        roster.rev()
    };
    if !journal.is_empty() {
        let latest_deadline = roster.latest_deadline();
        let earliest = roster.earliest_deadline();
        match (latest_deadline, fresh) {
            (None, _) if existed => key.delete(),
            (None, _) => {}
            (Some(deadline), fresh) => {
                match (fresh, earliest, earliest_before) {
                    (Some(roster), _, _) => key.store(roster),
                    // The expiry index needs to hear only of a deadline that came forward: a later one
                    // is found when the old entry is due (see `expiry`).
                    (None, Some(now), Some(before)) if now < before => key.index(now),
                    _ => {}
                }
                key.expire_at(deadline);
            }
        }
        propagate(ctx, name, origin, &journal);
    }
    result.map(|value| Outcome { value, rev })
}

thread_local! {
    /// One buffer for encoding ops and events, reused by every command (they all run on Redis' main
    /// thread), so a change allocates nothing for its messages.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Replicates, publishes and counts a change.
fn propagate(ctx: &Context, name: KeyName, origin: Origin, journal: &Journal) {
    match origin {
        Origin::Client => {
            SCRATCH.with_borrow_mut(|ops| {
                ops.clear();
                journal.encode_ops_into(ops);
                // SAFETY: "slb" takes a RedisModuleString, a long long and a (pointer, length) buffer, as
                // passed; Redis copies them before returning.
                unsafe {
                    raw::RedisModule_Replicate.expect("Replicate")(
                        ctx.get_raw(),
                        c"PRESENCE.APPLY".as_ptr(),
                        c"slb".as_ptr(),
                        name.0,
                        i64::try_from(journal.rev_before()).unwrap_or(i64::MAX),
                        ops.as_ptr(),
                        ops.len(),
                    )
                };
                if !journal.events().is_empty() {
                    ops.clear();
                    wire::encode_into(journal.events(), ops);
                    publish(ctx, name, ops);
                }
            });
        }
        Origin::Master => ctx.replicate_verbatim(),
    }
    stats::count_events(journal.events());
    // SAFETY: a static event name and a live key name.
    unsafe {
        raw::RedisModule_NotifyKeyspaceEvent.expect("NotifyKeyspaceEvent")(
            ctx.get_raw(),
            raw::NotifyEvent::MODULE.bits(),
            c"presence".as_ptr(),
            name.0,
        )
    };
}

/// Publishes on the shard channel named like the key, which is in the key's slot by construction.
fn publish(ctx: &Context, channel: KeyName, message: &[u8]) {
    // SAFETY: reading a function pointer that Redis filled in at module init.
    let Some(publish_shard) = (unsafe { raw::RedisModule_PublishMessageShard }) else {
        return; // Checked at load: this Redis has it.
    };
    let message = RedisString::create_from_slice(ctx.get_raw(), message);
    // SAFETY: both strings are live RedisModuleStrings for the duration of the call.
    unsafe { publish_shard(ctx.get_raw(), channel.0, message.inner) };
    stats::PUBLISHED.add(1);
}

/// Whether the command comes from this node's master or from the AOF being loaded.
pub fn is_from_master_or_loading(ctx: &Context) -> bool {
    ctx.get_flags()
        .intersects(ContextFlags::REPLICATED | ContextFlags::LOADING)
}

/// An open channel key. Closed on drop.
///
/// The safe key wrappers of `redis-module` do not expose absolute expiry, which replicas and the AOF need
/// to agree with the master, so this small wrapper talks to the key API directly.
pub struct ChannelKey {
    key: *mut raw::RedisModuleKey,
    ctx: *mut raw::RedisModuleCtx,
    name: KeyName,
}

impl ChannelKey {
    /// Opens `name`; an error if it holds anything other than a roster.
    pub fn open(ctx: &Context, name: KeyName, mode: u32) -> Result<Self, PresenceError> {
        // SAFETY: ctx and name are live; the key is closed in Drop.
        let key = unsafe {
            raw::RedisModule_OpenKey.expect("OpenKey")(ctx.get_raw(), name.0, mode as c_int)
        };
        let key = ChannelKey {
            key: key.cast(),
            ctx: ctx.get_raw(),
            name,
        };
        // SAFETY: `key` was just opened and is closed by its guard's drop; KeyType only reads it.
        let key_type = unsafe { raw::RedisModule_KeyType.expect("KeyType")(key.key) } as isize;
        match key_type {
            raw::REDISMODULE_KEYTYPE_EMPTY => Ok(key),
            raw::REDISMODULE_KEYTYPE_MODULE
                // SAFETY: an open key holding a module value; GetType only reads it.
                if unsafe { raw::RedisModule_ModuleTypeGetType.expect("GetType")(key.key) }
                    == *PRESENCE_TYPE.raw_type.borrow() =>
            {
                Ok(key)
            }
            _ => Err(PresenceError::WrongType),
        }
    }

    /// The stored roster, if the key exists.
    pub fn roster_ptr(&self) -> Option<*mut Roster> {
        // SAFETY: open() checked the type; an empty key yields null.
        let value = unsafe { raw::RedisModule_ModuleTypeGetValue.expect("GetValue")(self.key) };
        (!value.is_null()).then_some(value.cast())
    }

    /// The stored roster, for reading.
    pub fn roster(&self) -> Option<&Roster> {
        // SAFETY: see `change`.
        self.roster_ptr().map(|ptr| unsafe { &*ptr })
    }

    /// Stores `roster` as the key's value, replacing (and freeing) any previous one, and files it in the
    /// expiry index under its earliest deadline.
    pub fn store(&self, roster: Roster) {
        let earliest = roster.earliest_deadline();
        let value = Box::into_raw(Box::new(roster));
        // SAFETY: the key is open for writing and the type is registered; Redis owns the box from now on.
        unsafe {
            raw::RedisModule_ModuleTypeSetValue.expect("SetValue")(
                self.key,
                *PRESENCE_TYPE.raw_type.borrow(),
                value.cast(),
            )
        };
        if let Some(deadline) = earliest {
            self.index(deadline);
        }
    }

    /// Tells the expiry timer that this key is due at `deadline_us`.
    fn index(&self, deadline_us: u64) {
        expiry::note(&Context::new(self.ctx), key_bytes(self.name), deadline_us);
    }

    /// Makes the key expire in Redis [`expiry::BACKSTOP_MS`] after `deadline_us`, its roster's latest
    /// deadline (rounded up to the millisecond): the expiry timer purges and publishes first, and this
    /// is only a backstop for when it cannot, since Redis deletes the key without telling anyone.
    ///
    /// Every node computes the expiry from the same deadline, so a master, its replicas and the AOF
    /// agree on it to the millisecond.
    pub fn expire_at(&self, deadline_us: u64) {
        let ms = deadline_us
            .div_ceil(1000)
            .saturating_add(expiry::BACKSTOP_MS);
        // SAFETY: reading a function pointer that Redis filled in at module init.
        if let Some(set_abs_expire) = unsafe { raw::RedisModule_SetAbsExpire } {
            // SAFETY: the key is open for writing and not empty.
            unsafe { set_abs_expire(self.key, i64::try_from(ms).unwrap_or(i64::MAX)) };
        }
    }

    /// Deletes the key (its roster is freed by Redis).
    pub fn delete(&self) {
        // SAFETY: the key is open for writing.
        unsafe { raw::RedisModule_DeleteKey.expect("DeleteKey")(self.key) };
    }
}

impl Drop for ChannelKey {
    fn drop(&mut self) {
        // SAFETY: opened in `open`, closed once here.
        unsafe { raw::RedisModule_CloseKey.expect("CloseKey")(self.key) };
    }
}
