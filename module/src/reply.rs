//! [`Reply`]: writes replies field by field, in a fixed order, with stored bytes as bulk strings.
//!
//! Maps are RESP3 maps; Redis turns them into flat `[key, value, ...]` arrays for RESP2 clients, and
//! booleans into 1/0.

use std::cell::Cell;
use std::os::raw::{c_char, c_long};

use presence_roster::roster::Bytes;
use redis_module::{raw, Context};

thread_local! {
    /// Whether the current command has written any of its reply: after a caught panic, the dispatcher
    /// must not write a second reply. Commands run on Redis' main thread, one at a time.
    static STARTED: Cell<bool> = const { Cell::new(false) };
}

/// Called by the dispatcher before each command.
pub fn begin_command() {
    STARTED.set(false);
}

/// Whether the current command has written any of its reply.
pub fn started() -> bool {
    STARTED.get()
}

/// A reply under construction.
pub struct Reply<'a>(&'a Context);

impl<'a> Reply<'a> {
    /// Starts replying on `ctx`.
    pub fn new(ctx: &'a Context) -> Self {
        Reply(ctx)
    }

    fn raw(&self) -> *mut raw::RedisModuleCtx {
        STARTED.set(true);
        self.0.get_raw()
    }

    /// A map of `fields` key-value pairs follows.
    pub fn map(&self, fields: usize) -> &Self {
        raw::reply_with_map(self.raw(), fields as c_long);
        self
    }

    /// An array of `len` elements follows.
    pub fn array(&self, len: usize) -> &Self {
        raw::reply_with_array(self.raw(), len as c_long);
        self
    }

    /// A bulk string.
    pub fn bytes(&self, bytes: &[u8]) -> &Self {
        raw::reply_with_string_buffer(self.raw(), bytes.as_ptr().cast::<c_char>(), bytes.len());
        self
    }

    /// An integer (revisions and counts fit in `i64` by a wide margin).
    pub fn int(&self, value: u64) -> &Self {
        raw::reply_with_long_long(self.raw(), i64::try_from(value).unwrap_or(i64::MAX));
        self
    }

    /// A boolean.
    pub fn bool(&self, value: bool) -> &Self {
        raw::reply_with_bool(self.raw(), value.into());
        self
    }

    /// The simple string `OK`.
    pub fn ok(&self) -> &Self {
        raw::reply_with_simple_string(self.raw(), c"OK".as_ptr());
        self
    }

    /// A null.
    pub fn null(&self) -> &Self {
        raw::reply_with_null(self.raw());
        self
    }

    /// An array of byte strings.
    pub fn list<'b>(&self, items: impl ExactSizeIterator<Item = &'b [u8]>) -> &Self {
        self.array(items.len());
        for item in items {
            self.bytes(item);
        }
        self
    }

    /// The roster as a map `{id: data}`.
    pub fn members<'m>(
        &self,
        count: usize,
        members: impl Iterator<Item = (&'m Bytes, &'m Bytes)>,
    ) -> &Self {
        self.map(count);
        for (id, data) in members {
            self.bytes(id).bytes(data);
        }
        self
    }
}
