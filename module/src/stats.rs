//! Counters for `INFO presence`.

use std::sync::atomic::{AtomicU64, Ordering};

use presence_roster::{Event, EventKind};
use redis_module::{InfoContext, RedisResult};

/// A monotonically increasing counter.
pub struct Counter(AtomicU64);

impl Counter {
    const fn new() -> Self {
        Counter(AtomicU64::new(0))
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn value(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn get(&self) -> i64 {
        i64::try_from(self.0.load(Ordering::Relaxed)).unwrap_or(i64::MAX)
    }
}

/// Members that appeared.
pub static JOINS: Counter = Counter::new();
/// Members whose data changed.
pub static UPDATES: Counter = Counter::new();
/// Members that left.
pub static LEAVES: Counter = Counter::new();
/// Members whose last connection expired.
pub static EXPIRIES: Counter = Counter::new();
/// Roster messages published.
pub static PUBLISHED: Counter = Counter::new();
/// Commands that returned an error.
pub static ERRORS: Counter = Counter::new();
/// Panics caught before they reached Redis, in commands and in data-type callbacks (each one is a bug;
/// the log says where).
pub static PANICS: Counter = Counter::new();

/// Counts the events of one command.
pub fn count_events(events: &[Event]) {
    for event in events {
        match event.kind {
            EventKind::Join => JOINS.add(1),
            EventKind::Update => UPDATES.add(1),
            EventKind::Leave => LEAVES.add(1),
            EventKind::Expire => EXPIRIES.add(1),
        }
    }
}

/// Writes the `# presence_stats` section of `INFO`.
pub fn write_info(ctx: &InfoContext) -> RedisResult<()> {
    ctx.builder()
        .add_section("stats")
        .field("joins", JOINS.get())?
        .field("updates", UPDATES.get())?
        .field("leaves", LEAVES.get())?
        .field("expiries", EXPIRIES.get())?
        .field("published", PUBLISHED.get())?
        .field("errors", ERRORS.get())?
        .field("panics", PANICS.get())?
        .field("expiry_index", crate::expiry::index_len() as i64)?
        .build_section()?
        .build_info()?;
    Ok(())
}
