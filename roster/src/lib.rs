//! The presence roster of one channel, with no Redis in it.
//!
//! The Redis module (`module/`) is a thin command layer over this crate, and the presence shim (`shim/`)
//! uses its wire decoder; everything that decides *who is on a channel* lives here, where it is unit- and
//! property-tested without a server.
//!
//! # Layout
//! - [`roster`]: [`Roster`], the state of one channel (members, their connections and deadlines, `rev`),
//!   changed only by applying [`Op`]s, each of which yields at most one [`Event`].
//! - [`journal`]: [`Journal`], the record of one command: the ops it applied (replicated to replicas and the
//!   AOF as a deterministic `PRESENCE.APPLY`) and the events they caused (published to listeners).
//! - [`op`]: [`Op`] and its argument encoding for `PRESENCE.APPLY`.
//! - [`wire`]: the event message published on the channel's shard pub/sub channel, encoder and decoder.
//! - [`snapshot`]: the binary form of a whole roster, used for RDB, AOF rewrite, `DUMP`/`RESTORE` and
//!   slot migration.
//!
//! # Why ops and events are separate
//! A command reads the clock (to purge expired connections and set deadlines). Replaying the command on a
//! replica would read another clock and diverge, so the master records the *effects* it applied, as ops
//! that carry every value explicitly, and replicas apply exactly those. Applying the same ops to the same
//! state gives the same state and the same events with the same revisions, on every node.

mod codec;
mod error;
pub mod journal;
pub mod op;
pub mod roster;
pub mod snapshot;
pub mod wire;

pub use codec::{parse_u64, shown};
pub use error::DecodeError;
pub use journal::Journal;
pub use op::Op;
pub use roster::{Event, EventKind, Roster};
