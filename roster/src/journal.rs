//! [`Journal`]: what one command did to one roster.

use crate::op::Op;
use crate::roster::{Event, EventKind, Roster};

/// The record of one command on one roster: the ops it applied, in order, and the events they caused.
///
/// The master replicates `rev_before` and the ops (`PRESENCE.APPLY`); a replica that [`replay`]s them on
/// the same state reaches the same state with the same events and revisions.
///
/// [`replay`]: Journal::replay
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Journal {
    rev_before: u64,
    ops: Vec<Op>,
    events: Vec<Event>,
}

impl Journal {
    /// Starts recording changes to `roster`.
    pub fn begin(roster: &Roster) -> Self {
        Journal {
            rev_before: roster.rev(),
            ops: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Applies `op` to `roster` and records it with its events.
    pub fn apply(&mut self, roster: &mut Roster, op: Op) {
        roster.apply(&op, &mut self.events);
        self.ops.push(op);
    }

    /// Purges every connection whose deadline is at or before `now`, earliest deadline first.
    pub fn purge(&mut self, roster: &mut Roster, now: u64) {
        for client in roster.expired_clients(now) {
            self.apply(roster, Op::Expire { client });
        }
    }

    /// Applies ops recorded by a master's journal that started at `rev_before`.
    pub fn replay(roster: &mut Roster, rev_before: u64, ops: Vec<Op>) -> Self {
        roster.advance_rev(rev_before);
        let mut journal = Journal::begin(roster);
        for op in ops {
            journal.apply(roster, op);
        }
        journal
    }

    /// The roster's revision before the first op.
    pub fn rev_before(&self) -> u64 {
        self.rev_before
    }

    /// The ops applied, in order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// The events caused, in revision order.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// True when nothing was applied: nothing to replicate.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Ids of the events of `kind`, in order.
    pub fn ids(&self, kind: EventKind) -> impl Iterator<Item = &[u8]> {
        self.events
            .iter()
            .filter(move |e| e.kind == kind)
            .map(|e| &e.id[..])
    }

    /// Whether an event of `kind` about `id` was recorded.
    pub fn has(&self, kind: EventKind, id: &[u8]) -> bool {
        self.ids(kind).any(|i| i == id)
    }

    /// The ops in their `PRESENCE.APPLY` encoding.
    pub fn encoded_ops(&self) -> Vec<u8> {
        Op::encode_all(&self.ops)
    }

    /// The ops in their `PRESENCE.APPLY` encoding, appended to `out`.
    pub fn encode_ops_into(&self, out: &mut Vec<u8>) {
        for op in &self.ops {
            op.encode(out);
        }
    }
}
