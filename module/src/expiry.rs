//! The expiry timer: purges, replicates and publishes the expiries of channels nobody sends a command
//! to.
//!
//! Every command purges its own channel first, but a channel whose server processes are all gone gets
//! no command, and its listeners would never hear that its members left. So the module keeps an
//! [`Index`] of every channel key's earliest deadline and one Redis timer armed for the earliest of all.
//! When it fires on a master, each due channel is purged through [`store::change`], exactly as a command
//! purges it: the same journal, `PRESENCE.APPLY` to replicas and the AOF, the events on the shard
//! channel, the keyspace notification, the key's expiry. Redis propagates what a timer callback
//! replicates when the callback returns (wrapped in `MULTI`/`EXEC` when there are several), so replicas
//! and the AOF see the same effects as after a command; the tests check it with a live replica.
//!
//! Replicas keep the index too (their rosters change only by the master's `PRESENCE.APPLY`, which
//! goes through the same store) but never purge by their own clock, or they would diverge from the
//! master. A replica promoted to master starts purging at once.
//!
//! The index follows every roster the store writes ([`note`], called by
//! [`ChannelKey`](crate::store::ChannelKey)), and keys that appear without a presence command: loaded
//! from an RDB file or a master's full sync (`loaded`), `RESTORE` (which slot migration uses),
//! `RENAME`, `COPY` and `MOVE` targets (keyspace events), and `SWAPDB` (a server event). An entry whose
//! key was deleted, renamed away or overwritten by another type is harmless: when it is due, the timer
//! opens the key, finds no roster there, and forgets it.
//!
//! Each tick purges for at most [`TICK_BUDGET`] and then yields to the event loop, so a wave of
//! thousands of expiries is spread over many short ticks and Redis keeps serving its clients.

use std::collections::{BTreeSet, HashMap};
use std::ffi::CStr;
use std::os::raw::{c_char, c_int, c_void};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use presence_roster::Roster;
use redis_module::{raw, Context, ContextFlags, RedisString};

use crate::guard::guard;
use crate::store::{self, now_us, ChannelKey, KeyName, Origin};

/// How much later than a channel's last deadline its key expires in Redis.
///
/// The timer publishes expiries within about a second of their deadlines; the key's own expiry is
/// only a backstop for when it cannot (a Redis blocked for longer than this, a bug), and Redis deletes
/// a key without telling anyone. Ten seconds is ten times the timer's bound, and costs nothing while
/// the timer works, since it deletes a channel as soon as its last member expires. A constant rather
/// than a setting, so a master, its replicas and an AOF written under another setting can never
/// disagree about a key's expiry.
pub const BACKSTOP_MS: u64 = 10_000;

/// The longest a tick purges before it lets Redis serve clients again (and then goes on).
pub const TICK_BUDGET: Duration = Duration::from_millis(1);

/// The longest the timer sleeps, even when the next deadline is further away, and how often a replica
/// looks whether it became a master: a missed re-arm or a clock step costs at most this much.
const LONGEST_SLEEP_US: u64 = 1_000_000;

/// Every channel key's earliest deadline, per database, and all of them in deadline order.
#[derive(Debug, Default)]
pub struct Index {
    keys: Vec<HashMap<Arc<[u8]>, u64>>,
    due: BTreeSet<(u64, i32, Arc<[u8]>)>,
}

impl Index {
    /// An empty index (`const`, so it can live in a static).
    pub const fn new() -> Self {
        Index {
            keys: Vec::new(),
            due: BTreeSet::new(),
        }
    }

    /// Records that `key` in database `db` is next due at `deadline`, or, with `None`, that it holds no
    /// roster any more.
    pub fn set(&mut self, db: i32, key: &[u8], deadline: Option<u64>) {
        let Ok(slot) = usize::try_from(db) else {
            return;
        };
        if self.keys.len() <= slot {
            if deadline.is_none() {
                return;
            }
            self.keys.resize_with(slot + 1, HashMap::new);
        }
        let keys = &mut self.keys[slot];
        match (keys.get_key_value(key), deadline) {
            (Some((_, &old)), Some(new)) if old == new => {}
            (Some((stored, &old)), new) => {
                let stored = stored.clone();
                self.due.remove(&(old, db, stored.clone()));
                match new {
                    Some(new) => {
                        keys.insert(stored.clone(), new);
                        self.due.insert((new, db, stored));
                    }
                    None => {
                        keys.remove(key);
                    }
                }
            }
            (None, Some(new)) => {
                let stored: Arc<[u8]> = Arc::from(key);
                keys.insert(stored.clone(), new);
                self.due.insert((new, db, stored));
            }
            (None, None) => {}
        }
    }

    /// The entry due first: `(deadline, db, key)`.
    pub fn first(&self) -> Option<(u64, i32, Arc<[u8]>)> {
        self.due.first().cloned()
    }

    /// The deadline recorded for `key` in `db`.
    pub fn get(&self, db: i32, key: &[u8]) -> Option<u64> {
        let slot = usize::try_from(db).ok()?;
        self.keys.get(slot)?.get(key).copied()
    }

    /// Number of keys indexed.
    pub fn len(&self) -> usize {
        self.due.len()
    }

    /// True when no key is indexed.
    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }

    /// Follows `SWAPDB a b`: what was in one database is now in the other.
    pub fn swap_dbs(&mut self, a: i32, b: i32) {
        let (Ok(slot_a), Ok(slot_b)) = (usize::try_from(a), usize::try_from(b)) else {
            return;
        };
        if a == b {
            return;
        }
        self.keys
            .resize_with(self.keys.len().max(slot_a.max(slot_b) + 1), HashMap::new);
        self.keys.swap(slot_a, slot_b);
        let moved: Vec<_> = self
            .due
            .iter()
            .filter(|(_, db, _)| *db == a || *db == b)
            .cloned()
            .collect();
        for entry in moved {
            self.due.remove(&entry);
            let (deadline, db, key) = entry;
            self.due
                .insert((deadline, if db == a { b } else { a }, key));
        }
    }
}

/// The one armed Redis timer.
struct Armed {
    id: raw::RedisModuleTimerID,
    /// When it fires, in microseconds since the epoch.
    at_us: u64,
}

struct State {
    index: Index,
    armed: Option<Armed>,
    /// A tick is running: it arms the timer itself when it ends, so changes it makes do not.
    ticking: bool,
}

/// Everything runs on Redis' main thread; the mutex is uncontended and only keeps the static sound.
static STATE: Mutex<State> = Mutex::new(State {
    index: Index::new(),
    armed: None,
    ticking: false,
});

/// The state, even after a panic elsewhere poisoned the mutex: the index is consistent after every
/// call of its own methods, and a panic is caught and counted where it happens.
fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Records `key`'s earliest deadline in the selected database of `ctx` (`None`: it holds no roster
/// any more) and arms the timer if that deadline is the new earliest.
pub fn note(ctx: &Context, key: &[u8], deadline: Option<u64>) {
    // SAFETY: ctx is the live context of the running command or callback.
    let db = unsafe { raw::RedisModule_GetSelectedDb.expect("GetSelectedDb")(ctx.get_raw()) };
    let mut state = state();
    state.index.set(db, key, deadline);
    if let Some(deadline) = deadline {
        if !state.ticking {
            arm(ctx.get_raw(), &mut state, deadline);
        }
    }
}

/// Makes sure the timer fires no later than `at_us` (and no later than [`LONGEST_SLEEP_US`] from now).
fn arm(ctx: *mut raw::RedisModuleCtx, state: &mut State, at_us: u64) {
    let now = now_us();
    let at_us = at_us.min(now.saturating_add(LONGEST_SLEEP_US));
    if let Some(armed) = &state.armed {
        if armed.at_us <= at_us {
            return;
        }
        // SAFETY: a timer this module created; stopping one that already fired is a harmless error.
        unsafe {
            raw::RedisModule_StopTimer.expect("StopTimer")(ctx, armed.id, std::ptr::null_mut())
        };
    }
    // Rounded up, so that when it fires the deadline has passed.
    let delay_ms = at_us.saturating_sub(now).div_ceil(1000);
    // SAFETY: a static callback without data; Redis calls it once on the main thread.
    let id = unsafe {
        raw::RedisModule_CreateTimer.expect("CreateTimer")(
            ctx,
            i64::try_from(delay_ms).unwrap_or(i64::MAX),
            Some(on_timer),
            std::ptr::null_mut(),
        )
    };
    state.armed = Some(Armed {
        id,
        at_us: now.saturating_add(delay_ms * 1000),
    });
}

unsafe extern "C" fn on_timer(ctx: *mut raw::RedisModuleCtx, _data: *mut c_void) {
    {
        let mut state = state();
        state.armed = None;
        state.ticking = true;
    }
    let context = Context::new(ctx);
    // After a panic (a bug, logged and counted by the guard) the entry that caused it is already gone
    // from the index; go on, but not in a hot loop.
    let after_panic = Some(now_us().saturating_add(LONGEST_SLEEP_US));
    let next = guard("the expiry timer", after_panic, || tick(&context));
    let mut state = state();
    state.ticking = false;
    if let Some(at) = next {
        arm(ctx, &mut state, at);
    }
}

/// Purges due channels for up to [`TICK_BUDGET`]; returns when the timer should fire next.
fn tick(ctx: &Context) -> Option<u64> {
    let flags = ctx.get_flags();
    if !flags.contains(ContextFlags::MASTER) || flags.contains(ContextFlags::LOADING) {
        // A replica applies its master's purges, never its own; look again later in case it is
        // promoted without the role-change event (which arms the timer at once).
        return (!state().index.is_empty()).then(|| now_us().saturating_add(LONGEST_SLEEP_US));
    }
    let started = Instant::now();
    let mut purged = 0usize;
    loop {
        let (deadline, db, key) = state().index.first()?;
        if deadline > now_us() {
            return Some(deadline);
        }
        if purged > 0 && started.elapsed() >= TICK_BUDGET {
            // Due now: the next tick comes as soon as Redis has served the clients that are waiting.
            return Some(deadline);
        }
        // Forgotten first, so that a key that cannot be purged is not tried again and again.
        state().index.set(db, &key, None);
        purge(ctx, db, &key);
        purged += 1;
    }
}

/// Purges one channel as a command would, and re-indexes what is left of it.
fn purge(ctx: &Context, db: i32, key: &[u8]) {
    // SAFETY: a live context; an out-of-range db (the index outlived a config change) is an error.
    if unsafe { raw::RedisModule_SelectDb.expect("SelectDb")(ctx.get_raw(), db) }
        != raw::Status::Ok as c_int
    {
        return;
    }
    let name = RedisString::create_from_slice(ctx.get_raw(), key);
    let outcome = store::change(
        ctx,
        KeyName(name.inner),
        Origin::Client,
        |roster, journal, now| {
            journal.purge(roster, now);
            Ok(roster.earliest_deadline())
        },
    );
    // Also when the purge changed nothing (an entry older than its key's real deadline): the key keeps
    // its place in the index. A key of another type is an error here, and stays forgotten.
    if let Ok(outcome) = outcome {
        note(ctx, key, outcome.value);
    }
}

/// Keyspace events after which a key may hold a roster that no presence command stored.
const ARRIVALS: [&[u8]; 4] = [b"restore", b"rename_to", b"copy_to", b"move_to"];

unsafe extern "C" fn on_keyspace_event(
    ctx: *mut raw::RedisModuleCtx,
    kind: c_int,
    event: *const c_char,
    key: *mut raw::RedisModuleString,
) -> c_int {
    let context = Context::new(ctx);
    guard("a keyspace event handler", (), || {
        // SAFETY: Redis passes a NUL-terminated static event name.
        let event = unsafe { CStr::from_ptr(event) }.to_bytes();
        if kind & raw::NotifyEvent::LOADED.bits() != 0 || ARRIVALS.contains(&event) {
            // The RDB loader passes a key name on its stack, which RM_OpenKey must not retain (Redis
            // aborts): open the key by a copy.
            let name = RedisString::create_from_slice(ctx, store::key_bytes(KeyName(key)));
            index_key(&context, KeyName(name.inner));
        }
    });
    raw::Status::Ok as c_int
}

/// Indexes the roster at `name` in the selected database, if there is one.
fn index_key(ctx: &Context, name: KeyName) {
    let Ok(key) = ChannelKey::open(ctx, name, raw::REDISMODULE_READ) else {
        return; // Not a roster.
    };
    let deadline = key.roster().and_then(Roster::earliest_deadline);
    note(ctx, store::key_bytes(name), deadline);
}

unsafe extern "C" fn on_role_changed(
    ctx: *mut raw::RedisModuleCtx,
    _event: raw::RedisModuleEvent,
    subevent: u64,
    _data: *mut c_void,
) {
    guard("the role-change handler", (), || {
        if subevent == raw::REDISMODULE_EVENT_REPLROLECHANGED_NOW_MASTER {
            // A new master purges what became due while it was a replica, now.
            let mut state = state();
            if !state.index.is_empty() && !state.ticking {
                arm(ctx, &mut state, 0);
            }
        }
    });
}

unsafe extern "C" fn on_swapdb(
    _ctx: *mut raw::RedisModuleCtx,
    _event: raw::RedisModuleEvent,
    _subevent: u64,
    data: *mut c_void,
) {
    guard("the SWAPDB handler", (), || {
        // SAFETY: for this event Redis passes a RedisModuleSwapDbInfo.
        let info = unsafe { &*data.cast::<raw::RedisModuleSwapDbInfo>() };
        state().index.swap_dbs(info.dbnum_first, info.dbnum_second);
    });
}

/// Subscribes to the events that bring rosters in without a command. Called once at module load.
pub fn subscribe(ctx: &Context) -> Result<(), &'static str> {
    let events = raw::NotifyEvent::GENERIC | raw::NotifyEvent::LOADED;
    // SAFETY: static callbacks; Redis calls them on the main thread.
    let subscribed = unsafe {
        raw::RedisModule_SubscribeToKeyspaceEvents.expect("SubscribeToKeyspaceEvents")(
            ctx.get_raw(),
            events.bits(),
            Some(on_keyspace_event),
        )
    };
    if subscribed != raw::Status::Ok as c_int {
        return Err("could not subscribe to keyspace events");
    }
    let server_events: [(u64, raw::RedisModuleEventCallback); 2] = [
        (
            raw::REDISMODULE_EVENT_REPLICATION_ROLE_CHANGED,
            Some(on_role_changed),
        ),
        (raw::REDISMODULE_EVENT_SWAPDB, Some(on_swapdb)),
    ];
    for (id, callback) in server_events {
        let event = raw::RedisModuleEvent { id, dataver: 1 };
        // SAFETY: as above.
        let subscribed = unsafe {
            raw::RedisModule_SubscribeToServerEvent.expect("SubscribeToServerEvent")(
                ctx.get_raw(),
                event,
                callback,
            )
        };
        if subscribed != raw::Status::Ok as c_int {
            return Err("could not subscribe to server events");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_keeps_one_deadline_per_key_and_yields_the_earliest() {
        let mut index = Index::new();
        index.set(0, b"b", Some(30));
        index.set(0, b"a", Some(20));
        index.set(1, b"a", Some(10));
        assert_eq!(index.first(), Some((10, 1, Arc::from(&b"a"[..]))));
        // A key's new deadline replaces its old one, earlier or later.
        index.set(1, b"a", Some(40));
        assert_eq!(index.first(), Some((20, 0, Arc::from(&b"a"[..]))));
        index.set(0, b"a", Some(5));
        assert_eq!(index.first(), Some((5, 0, Arc::from(&b"a"[..]))));
        assert_eq!(index.len(), 3);
        index.set(0, b"a", None);
        index.set(0, b"a", None);
        index.set(7, b"never", None);
        index.set(-1, b"bad", Some(1));
        assert_eq!(index.len(), 2);
        assert_eq!(index.first(), Some((30, 0, Arc::from(&b"b"[..]))));
        assert_eq!((index.get(0, b"a"), index.get(1, b"a")), (None, Some(40)));
    }

    #[test]
    fn swapdb_moves_entries_between_databases() {
        let mut index = Index::new();
        index.set(0, b"x", Some(1));
        index.set(2, b"y", Some(2));
        index.set(3, b"z", Some(3));
        index.swap_dbs(0, 2);
        assert_eq!(
            (index.get(0, b"x"), index.get(2, b"x"), index.get(0, b"y")),
            (None, Some(1), Some(2))
        );
        assert_eq!(index.first(), Some((1, 2, Arc::from(&b"x"[..]))));
        // Swapping with a database that was never used empties the other one.
        index.swap_dbs(3, 9);
        assert_eq!((index.get(3, b"z"), index.get(9, b"z")), (None, Some(3)));
        index.set(9, b"z", None);
        index.set(2, b"x", None);
        index.set(0, b"y", None);
        assert!(index.is_empty());
    }

    #[test]
    fn a_rosters_earliest_deadline_follows_its_connections() {
        use presence_roster::{Journal, Op};
        let mut roster = Roster::new(0);
        let mut journal = Journal::begin(&roster);
        let join = |client: &str, deadline| Op::Join {
            client: client.as_bytes().into(),
            id: b"id".as_slice().into(),
            data: b"".as_slice().into(),
            deadline,
        };
        assert_eq!(roster.earliest_deadline(), None);
        journal.apply(&mut roster, join("a", 50));
        journal.apply(&mut roster, join("b", 20));
        assert_eq!(roster.earliest_deadline(), Some(20));
        journal.apply(
            &mut roster,
            Op::Touch {
                client: b"b".as_slice().into(),
                deadline: 90,
            },
        );
        assert_eq!(roster.earliest_deadline(), Some(50));
        journal.purge(&mut roster, 60);
        assert_eq!(
            (roster.earliest_deadline(), roster.latest_deadline()),
            (Some(90), Some(90))
        );
        journal.purge(&mut roster, 90);
        assert_eq!(roster.earliest_deadline(), None);
    }
}
