//! The expiry timer: purges, replicates and publishes the expiries of channels nobody sends a command
//! to.
//!
//! Every command purges its own channel first, but a channel whose server processes are all gone gets
//! no command, and its listeners would never hear that its members left. So the module keeps an
//! [`Index`] of when each channel key is next due and one Redis timer armed for the earliest of all.
//! When it fires on a master, each due channel is purged through [`store::change`], exactly as a command
//! purges it: the same journal, `PRESENCE.APPLY` to replicas and the AOF, the events on the shard
//! channel, the keyspace notification, the key's expiry. Redis propagates what a timer callback
//! replicates when the callback returns (wrapped in `MULTI`/`EXEC` when there are several), so replicas
//! and the AOF see the same effects as after a command; the tests check it with a live replica.
//!
//! Replicas keep the index too (their rosters change only by the master's `PRESENCE.APPLY`, which
//! goes through the same store) but never purge by their own clock, or they would diverge from the
//! master: their timer only visits due entries to drop those of deleted keys and re-file the others,
//! so the index does not grow, and parks the keys their master has not purged yet, looking at them
//! less and less often while the master stays away. A replica promoted to master makes every parked key
//! due and starts purging at once.
//!
//! The index is lazy, like a roster's own deadline heap: an entry may be earlier than its key's real
//! earliest deadline, never later. A change that only pushes deadlines later (a touch, a refresh, a
//! leave: nearly every command) costs the index nothing; the old entry fires early, the timer finds
//! nothing due and files the key under its real deadline. The store adds an entry when a roster is
//! stored under a key and when a change brings a key's earliest deadline forward ([`note`]), and so do
//! the ways a roster appears without a presence command: loaded from an RDB file or a master's full sync
//! (`loaded`), `RESTORE` (which slot migration uses), `RENAME`, `COPY` and `MOVE` targets (keyspace
//! events), and `SWAPDB` (a server event). An entry whose key was deleted, renamed away or overwritten
//! by another type is just as harmless: the timer opens the key, finds no roster there, and drops it.
//!
//! Each tick purges for at most [`TICK_BUDGET`] and then yields to the event loop, so a wave of
//! thousands of expiries is spread over many short ticks and Redis keeps serving its clients.

use std::collections::BTreeSet;
use std::ffi::CStr;
use std::os::raw::{c_char, c_int, c_void};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use presence_roster::Roster;
use redis_module::{raw, Context, ContextFlags, RedisString};

use crate::guard::guard;
use crate::store::{self, now_us, ChannelKey, KeyName, Origin, Outcome};

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

/// The longest the timer sleeps, even when the next deadline is further away: a missed re-arm or a
/// clock step costs at most this much.
const LONGEST_SLEEP_US: u64 = 1_000_000;

/// The longest a replica waits before it looks again at a key its master has not purged: it looks
/// after as long as the key has been overdue (1 s, 2 s, 4 s, ...) up to this, so a replica whose
/// master is down for long does not spin over every channel once a second.
const LONGEST_PARK_US: u64 = 60_000_000;

/// When channel keys are due, earliest first: `(deadline, db, key)`, never later than the key's real
/// earliest deadline, possibly earlier, and possibly several entries for one key.
///
/// Keys a replica found overdue (its master has not purged them yet) are parked apart, with the time
/// to look again: a promotion makes all of them due at once, and nothing else.
#[derive(Debug, Default)]
pub struct Index {
    due: BTreeSet<(u64, i32, Arc<[u8]>)>,
    parked: BTreeSet<(u64, i32, Arc<[u8]>)>,
}

impl Index {
    /// An empty index (`const`, so it can live in a static).
    pub const fn new() -> Self {
        Index {
            due: BTreeSet::new(),
            parked: BTreeSet::new(),
        }
    }

    /// Records that `key` in database `db` is due at `deadline` at the latest.
    pub fn add(&mut self, db: i32, key: &[u8], deadline: u64) {
        if db >= 0 {
            self.due.insert((deadline, db, Arc::from(key)));
        }
    }

    /// Parks `key`, which is overdue, until `recheck`.
    pub fn park(&mut self, db: i32, key: &[u8], recheck: u64) {
        if db >= 0 {
            self.parked.insert((recheck, db, Arc::from(key)));
        }
    }

    /// When the next entry, due or parked, is to be looked at.
    pub fn next_deadline(&self) -> Option<u64> {
        let first = |set: &BTreeSet<(u64, i32, Arc<[u8]>)>| set.first().map(|(at, _, _)| *at);
        match (first(&self.due), first(&self.parked)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Takes out the earliest entry, due or parked, if it is to be looked at by `now`: `(db, key)`.
    pub fn take_due(&mut self, now: u64) -> Option<(i32, Arc<[u8]>)> {
        let at = self.next_deadline()?;
        if at > now {
            return None;
        }
        let set = if self.due.first().is_some_and(|(due, _, _)| *due == at) {
            &mut self.due
        } else {
            &mut self.parked
        };
        set.pop_first().map(|(_, db, key)| (db, key))
    }

    /// Number of entries, parked ones included.
    pub fn len(&self) -> usize {
        self.due.len() + self.parked.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.due.is_empty() && self.parked.is_empty()
    }

    /// Makes every parked entry due at `at`.
    pub fn unpark(&mut self, at: u64) {
        for (_, db, key) in std::mem::take(&mut self.parked) {
            self.due.insert((at, db, key));
        }
    }

    /// Follows `SWAPDB a b`: what was in one database is now in the other.
    pub fn swap_dbs(&mut self, a: i32, b: i32) {
        if a == b {
            return;
        }
        for set in [&mut self.due, &mut self.parked] {
            let moved: Vec<_> = set
                .iter()
                .filter(|(_, db, _)| *db == a || *db == b)
                .cloned()
                .collect();
            for entry in moved {
                set.remove(&entry);
                let (at, db, key) = entry;
                set.insert((at, if db == a { b } else { a }, key));
            }
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

/// Records that `key`, in the selected database of `ctx`, is due at `deadline` at the latest (a new
/// roster, or an earlier deadline than before), and arms the timer if that is the new earliest.
pub fn note(ctx: &Context, key: &[u8], deadline: u64) {
    // SAFETY: ctx is the live context of the running command or callback.
    let db = unsafe { raw::RedisModule_GetSelectedDb.expect("GetSelectedDb")(ctx.get_raw()) };
    let mut state = state();
    state.index.add(db, key, deadline);
    if !state.ticking {
        arm(ctx.get_raw(), &mut state, deadline);
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

/// Purges (on a master) or visits (on a replica) due channels for up to [`TICK_BUDGET`]; returns when
/// the timer should fire next.
fn tick(ctx: &Context) -> Option<u64> {
    let flags = ctx.get_flags();
    let master = flags.contains(ContextFlags::MASTER) && !flags.contains(ContextFlags::LOADING);
    let started = Instant::now();
    let mut visited = 0usize;
    loop {
        if visited > 0 && started.elapsed() >= TICK_BUDGET {
            // The next tick comes as soon as Redis has served the clients that are waiting.
            return state().index.next_deadline();
        }
        // Taken out first, so that a key that cannot be purged is not tried again and again.
        let due = state().index.take_due(now_us());
        let Some((db, key)) = due else {
            return state().index.next_deadline();
        };
        if select_db(ctx, db) {
            if master {
                purge(ctx, &key);
            } else {
                refile(ctx, &key);
            }
        }
        visited += 1;
    }
}

/// Selects database `db` on `ctx`; false if there is no such database (the index outlived a config
/// change), and the entry is dropped.
fn select_db(ctx: &Context, db: i32) -> bool {
    // SAFETY: a live context.
    let selected = unsafe { raw::RedisModule_SelectDb.expect("SelectDb")(ctx.get_raw(), db) };
    selected == raw::Status::Ok as c_int
}

/// Debug builds (the ones the tests load) panic when the timer purges a channel whose name ends like
/// this, so the tests can prove that a panic in the timer is caught, counted and logged, and that the
/// timer goes on.
pub const DEBUG_PANIC_SUFFIX: &[u8] = b"/debug-panic-in-expiry-timer";

/// Purges one channel as a command would, and files what is left of it under its next deadline.
fn purge(ctx: &Context, key: &[u8]) {
    if cfg!(debug_assertions) && key.ends_with(DEBUG_PANIC_SUFFIX) {
        panic!("injected panic in the expiry timer (a channel named *{DEBUG_PANIC_SUFFIX:?})");
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
    // Also when the purge changed nothing (the entry was earlier than the key's real deadline). An
    // emptied channel is deleted and a key of another type is an error here: both are dropped.
    if let Ok(Outcome {
        value: Some(next), ..
    }) = outcome
    {
        note(ctx, key, next);
    }
}

/// On a replica: files a due channel under its real earliest deadline, without changing it, or drops
/// it if it holds no roster any more. One the master has not purged yet (the link is slow, or the
/// master is gone) is parked, to be looked at again later; a promotion makes it due at once.
fn refile(ctx: &Context, key: &[u8]) {
    let name = RedisString::create_from_slice(ctx.get_raw(), key);
    let Ok(channel) = ChannelKey::open(ctx, KeyName(name.inner), raw::REDISMODULE_READ) else {
        return;
    };
    let Some(deadline) = channel.roster().and_then(Roster::earliest_deadline) else {
        return;
    };
    let now = now_us();
    if deadline > now {
        note(ctx, key, deadline);
    } else {
        let wait = (now - deadline).clamp(LONGEST_SLEEP_US, LONGEST_PARK_US);
        // SAFETY: a live context, its database selected by the tick.
        let db = unsafe { raw::RedisModule_GetSelectedDb.expect("GetSelectedDb")(ctx.get_raw()) };
        state().index.park(db, key, now.saturating_add(wait));
    }
}

/// Number of entries in the index (`INFO presence`).
pub fn index_len() -> usize {
    state().index.len()
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
    if let Some(deadline) = key.roster().and_then(Roster::earliest_deadline) {
        note(ctx, store::key_bytes(name), deadline);
    }
}

unsafe extern "C" fn on_role_changed(
    ctx: *mut raw::RedisModuleCtx,
    _event: raw::RedisModuleEvent,
    subevent: u64,
    _data: *mut c_void,
) {
    guard("the role-change handler", (), || {
        if subevent == raw::REDISMODULE_EVENT_REPLROLECHANGED_NOW_MASTER {
            // A new master purges what became due while it was a replica, now, including what the
            // replica parked (see `refile`).
            let now = now_us();
            let mut state = state();
            state.index.unpark(now);
            if !state.index.is_empty() && !state.ticking {
                arm(ctx, &mut state, now);
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

    fn key(bytes: &[u8]) -> Arc<[u8]> {
        Arc::from(bytes)
    }

    #[test]
    fn the_index_hands_out_due_keys_earliest_first() {
        let mut index = Index::new();
        index.add(0, b"b", 30);
        index.add(0, b"a", 20);
        index.add(1, b"a", 10);
        // A second entry for a key (its deadline came forward); the same entry twice is one.
        index.add(0, b"b", 5);
        index.add(0, b"b", 5);
        index.add(-1, b"bad", 1);
        assert_eq!((index.len(), index.next_deadline()), (4, Some(5)));
        assert_eq!(index.take_due(4), None);
        assert_eq!(index.take_due(25), Some((0, key(b"b"))));
        assert_eq!(index.take_due(25), Some((1, key(b"a"))));
        assert_eq!(index.take_due(25), Some((0, key(b"a"))));
        assert_eq!(index.take_due(25), None);
        assert_eq!(index.next_deadline(), Some(30));
        assert_eq!(index.take_due(u64::MAX), Some((0, key(b"b"))));
        assert!(index.is_empty());
    }

    #[test]
    fn parked_entries_wait_apart_and_a_promotion_makes_them_due() {
        let mut index = Index::new();
        index.add(0, b"due", 10);
        index.park(0, b"parked", 5);
        index.park(0, b"later", 50);
        assert_eq!((index.len(), index.next_deadline()), (3, Some(5)));
        assert_eq!(index.take_due(7), Some((0, key(b"parked"))));
        index.park(0, b"parked", 40);
        index.unpark(8);
        let order: Vec<_> = std::iter::from_fn(|| index.take_due(u64::MAX)).collect();
        assert_eq!(
            order,
            [&b"later"[..], b"parked", b"due"]
                .map(|k| (0, key(k)))
                .to_vec(),
            "both parked entries at 8 (in key order), then the one due at 10"
        );
    }

    #[test]
    fn swapdb_moves_entries_between_databases() {
        let mut index = Index::new();
        index.add(0, b"x", 1);
        index.add(2, b"y", 2);
        index.add(3, b"z", 3);
        index.park(0, b"p", 4);
        index.swap_dbs(0, 2);
        index.swap_dbs(3, 3);
        assert_eq!(index.take_due(9), Some((2, key(b"x"))));
        assert_eq!(index.take_due(9), Some((0, key(b"y"))));
        assert_eq!(index.take_due(9), Some((3, key(b"z"))));
        assert_eq!(index.take_due(9), Some((2, key(b"p"))));
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
