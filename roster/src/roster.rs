//! [`Roster`]: who is on one channel, and the only code that changes it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use foldhash::fast::RandomState;

use crate::op::Op;
use crate::snapshot::MAX_REV;

/// Shared immutable bytes. Ids, client names and data are binary-safe, and one allocation serves the
/// maps, the deadline index and the events that mention it.
pub type Bytes = Arc<[u8]>;

/// What happened to a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    /// The id appeared on the channel (its first connection joined).
    Join,
    /// The id was already there and its data changed (the newest data wins).
    Update,
    /// The id's last connection left.
    Leave,
    /// The id's last connection missed its deadline and was purged.
    Expire,
}

impl EventKind {
    /// The word used for this kind in the published message and in replies.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Join => "join",
            EventKind::Update => "update",
            EventKind::Leave => "leave",
            EventKind::Expire => "expire",
        }
    }

    /// Whether the member is on the channel after this event.
    pub fn is_present(self) -> bool {
        matches!(self, EventKind::Join | EventKind::Update)
    }
}

/// One change of the roster, with the channel revision it produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The channel's revision after this event; strictly increasing per channel.
    pub rev: u64,
    /// What happened.
    pub kind: EventKind,
    /// The member id.
    pub id: Bytes,
    /// The member's data for `Join` and `Update`; `None` for `Leave` and `Expire`.
    pub data: Option<Bytes>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    data: Bytes,
    connections: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Connection {
    id: Bytes,
    deadline: u64,
}

/// The presence state of one channel.
///
/// A member is an id with data; it is present while at least one connection (a Bayeux client id) is bound
/// to it. Every connection has a deadline (microseconds since the Unix epoch); the roster never reads the
/// clock itself, callers pass time in. `rev` counts events: each event gets `rev + 1`.
#[derive(Debug, Clone, Default)]
pub struct Roster {
    rev: u64,
    // foldhash: several times faster than SipHash on short keys, and still seeded per process, so ids
    // chosen by clients cannot be aimed at one bucket.
    members: HashMap<Bytes, Member, RandomState>,
    connections: HashMap<Bytes, Connection, RandomState>,
    /// A min-heap of `(deadline, client)`: who expires next. Entries go stale when a client's deadline
    /// moves or it leaves; they are skipped when they reach the top, and the heap is rebuilt when stale
    /// entries outnumber live ones. That keeps a join, touch or leave at O(log n), with no removal from
    /// the middle of a tree.
    earliest: BinaryHeap<Reverse<(u64, Bytes)>>,
    /// The same as a max-heap: the latest deadline, when the key itself expires.
    latest: BinaryHeap<(u64, Bytes)>,
}

/// Rosters are equal when they hold the same members, connections, deadlines and revision; how many stale
/// entries the deadline heaps carry is not part of the state.
impl PartialEq for Roster {
    fn eq(&self, other: &Self) -> bool {
        self.rev == other.rev
            && self.members == other.members
            && self.connections == other.connections
    }
}

impl Eq for Roster {}

impl Roster {
    /// An empty roster whose next event will get `rev + 1`.
    pub fn new(rev: u64) -> Self {
        Roster {
            rev,
            ..Roster::default()
        }
    }

    /// The revision of the latest event (or the seed of a roster that had none yet).
    pub fn rev(&self) -> u64 {
        self.rev
    }

    /// Moves the revision forward to `rev`; used to start applying replicated ops from the master's value.
    /// Never moves it backwards.
    pub fn advance_rev(&mut self, rev: u64) {
        self.rev = self.rev.max(rev);
    }

    /// Number of members (distinct ids).
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// Number of connections (clients) over all members.
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    /// True when nobody is on the channel.
    pub fn is_empty(&self) -> bool {
        self.connections.is_empty()
    }

    /// Whether `id` is a member.
    pub fn has_member(&self, id: &[u8]) -> bool {
        self.members.contains_key(id)
    }

    /// The data of member `id`.
    pub fn member_data(&self, id: &[u8]) -> Option<&Bytes> {
        self.members.get(id).map(|m| &m.data)
    }

    /// The member id that connection `client` is bound to.
    pub fn member_of(&self, client: &[u8]) -> Option<&Bytes> {
        self.connections.get(client).map(|c| &c.id)
    }

    /// The deadline of connection `client`, if it is connected.
    pub fn deadline_of(&self, client: &[u8]) -> Option<u64> {
        self.connections.get(client).map(|c| c.deadline)
    }

    /// `client` as shared bytes: the stored copy when the client is connected, a new one otherwise. Ops
    /// built from these allocate only for bytes the roster does not hold yet.
    pub fn share_client(&self, client: &[u8]) -> Bytes {
        self.connections
            .get_key_value(client)
            .map_or_else(|| Bytes::from(client), |(stored, _)| stored.clone())
    }

    /// `id` and `data` as shared bytes, reusing the stored copies where they are equal.
    pub fn share_member(&self, id: &[u8], data: &[u8]) -> (Bytes, Bytes) {
        match self.members.get_key_value(id) {
            Some((stored, member)) if member.data[..] == *data => {
                (stored.clone(), member.data.clone())
            }
            Some((stored, _)) => (stored.clone(), Bytes::from(data)),
            None => (Bytes::from(id), Bytes::from(data)),
        }
    }

    /// Members as `(id, data)`, in no particular order.
    pub fn members(&self) -> impl Iterator<Item = (&Bytes, &Bytes)> {
        self.members.iter().map(|(id, m)| (id, &m.data))
    }

    /// Connections as `(client, id, deadline)`, in no particular order.
    pub fn connections(&self) -> impl Iterator<Item = (&Bytes, &Bytes, u64)> {
        self.connections
            .iter()
            .map(|(client, c)| (client, &c.id, c.deadline))
    }

    /// The latest deadline of any connection: when the whole channel is abandoned if nobody touches it.
    /// `None` when nobody is on the channel.
    pub fn latest_deadline(&self) -> Option<u64> {
        // tidy_deadlines() keeps a live entry on top after every op.
        self.latest.peek().map(|(deadline, _)| *deadline)
    }

    /// The earliest deadline of any connection: when the next purge is due. `None` when nobody is on the
    /// channel. Never later than the true one (a stale top only makes a purge come early and find less).
    pub fn earliest_deadline(&self) -> Option<u64> {
        self.earliest.peek().map(|Reverse((deadline, _))| *deadline)
    }

    /// Clients whose deadline is at or before `now`, earliest first (ties by client bytes), so every node
    /// that purges the same state purges in the same order.
    pub fn expired_clients(&mut self, now: u64) -> Vec<Bytes> {
        let mut expired = Vec::new();
        while let Some(Reverse((deadline, client))) = self.earliest.peek() {
            if *deadline > now {
                break;
            }
            if self.is_live_entry(*deadline, client) {
                expired.push(client.clone());
            }
            self.earliest.pop();
        }
        expired
    }

    fn is_live_entry(&self, deadline: u64, client: &[u8]) -> bool {
        self.connections
            .get(client)
            .is_some_and(|c| c.deadline == deadline)
    }

    /// Drops stale entries from the tops of the heaps, and rebuilds them when stale entries outnumber
    /// live ones, so they stay within about twice the number of connections, on masters and replicas alike.
    fn tidy_deadlines(&mut self) {
        while let Some(Reverse((deadline, client))) = self.earliest.peek() {
            if self.is_live_entry(*deadline, client) {
                break;
            }
            self.earliest.pop();
        }
        while let Some((deadline, client)) = self.latest.peek() {
            if self.is_live_entry(*deadline, client) {
                break;
            }
            self.latest.pop();
        }
        let limit = 2 * self.connections.len() + 16;
        if self.earliest.len() > limit || self.latest.len() > limit {
            let live = || {
                self.connections
                    .iter()
                    .map(|(client, c)| (c.deadline, client.clone()))
            };
            self.earliest = live().map(Reverse).collect();
            self.latest = live().collect();
        }
    }

    /// Applies one op and pushes the events it caused onto `events` (none, one, or two for a client that
    /// moves from one id to another). Ops about unknown clients are no-ops, so applying is total: a
    /// replica can never fail on what its master applied.
    pub fn apply(&mut self, op: &Op, events: &mut Vec<Event>) {
        match op {
            Op::Join {
                client,
                id,
                data,
                deadline,
            } => self.join(client, id, data, *deadline, events),
            Op::Leave { client } => self.remove_connection(client, EventKind::Leave, events),
            Op::Expire { client } => self.remove_connection(client, EventKind::Expire, events),
            Op::Touch { client, deadline } => {
                if let Some((key, _)) = self.connections.get_key_value(&client[..]) {
                    let key = key.clone();
                    self.set_deadline(&key, *deadline);
                }
            }
        }
        self.tidy_deadlines();
    }

    fn join(
        &mut self,
        client: &Bytes,
        id: &Bytes,
        data: &Bytes,
        deadline: u64,
        events: &mut Vec<Event>,
    ) {
        if let Some((key, existing)) = self.connections.get_key_value(&client[..]) {
            if existing.id[..] == id[..] {
                let key = key.clone();
                self.set_deadline(&key, deadline);
                self.upsert_member(id, data, false, events);
                return;
            }
            // The client moves to another id: it leaves the old one first.
            self.remove_connection(client, EventKind::Leave, events);
        }
        let id = self.upsert_member(id, data, true, events);
        self.connections
            .insert(client.clone(), Connection { id, deadline });
        self.push_deadline(deadline, client.clone());
    }

    fn push_deadline(&mut self, deadline: u64, client: Bytes) {
        self.earliest.push(Reverse((deadline, client.clone())));
        self.latest.push((deadline, client));
    }

    /// Adds or refreshes member `id` and returns the shared id bytes to store in its connection.
    fn upsert_member(
        &mut self,
        id: &Bytes,
        data: &Bytes,
        new_connection: bool,
        events: &mut Vec<Event>,
    ) -> Bytes {
        if let Some((key, member)) = self.members.get_key_value(&id[..]) {
            let key = key.clone();
            let changed = member.data[..] != data[..];
            let member = self.members.get_mut(&id[..]).expect("member present");
            if new_connection {
                member.connections += 1;
            }
            if changed {
                member.data = data.clone();
                self.emit(EventKind::Update, &key, Some(data), events);
            }
            key
        } else {
            self.members.insert(
                id.clone(),
                Member {
                    data: data.clone(),
                    connections: u32::from(new_connection),
                },
            );
            self.emit(EventKind::Join, id, Some(data), events);
            id.clone()
        }
    }

    fn remove_connection(&mut self, client: &[u8], kind: EventKind, events: &mut Vec<Event>) {
        let Some(connection) = self.connections.remove(client) else {
            return;
        };
        let member = self
            .members
            .get_mut(&connection.id[..])
            .expect("every connection's member is present");
        member.connections -= 1;
        if member.connections == 0 {
            self.members.remove(&connection.id[..]);
            self.emit(kind, &connection.id, None, events);
        }
    }

    fn set_deadline(&mut self, client: &Bytes, deadline: u64) {
        let connection = self
            .connections
            .get_mut(&client[..])
            .expect("connection present");
        if connection.deadline != deadline {
            connection.deadline = deadline;
            self.push_deadline(deadline, client.clone());
        }
    }

    fn emit(&mut self, kind: EventKind, id: &Bytes, data: Option<&Bytes>, events: &mut Vec<Event>) {
        // Saturates at the ceiling, which only a forged snapshot gets near: never wraps, never goes back,
        // and whatever it saves loads again.
        if self.rev < MAX_REV {
            self.rev += 1;
        }
        events.push(Event {
            rev: self.rev,
            kind,
            id: id.clone(),
            data: data.cloned(),
        });
    }

    /// Rebuilds a roster from stored parts, checking that they are consistent. Used by the snapshot
    /// decoder, which must never trust its input.
    pub(crate) fn from_parts(
        rev: u64,
        members: Vec<(Bytes, Bytes)>,
        connections: Vec<(Bytes, Bytes, u64)>,
    ) -> Result<Self, &'static str> {
        let mut roster = Roster::new(rev);
        for (id, data) in members {
            if roster
                .members
                .insert(
                    id,
                    Member {
                        data,
                        connections: 0,
                    },
                )
                .is_some()
            {
                return Err("duplicate member");
            }
        }
        for (client, id, deadline) in connections {
            let Some(member) = roster.members.get_mut(&id[..]) else {
                return Err("connection of an unknown member");
            };
            member.connections += 1;
            let (id, _) = roster
                .members
                .get_key_value(&id[..])
                .expect("member present");
            let id = id.clone();
            if roster
                .connections
                .insert(client.clone(), Connection { id, deadline })
                .is_some()
            {
                return Err("duplicate connection");
            }
            roster.push_deadline(deadline, client);
        }

        if roster.members.values().any(|m| m.connections == 0) {
            return Err("member without connections");
        }
        Ok(roster)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::from(s.as_bytes())
    }

    /// What `PRESENCE.LEAVE ... GRACE` applies: a touch that moves a deadline *earlier*. The heaps must
    /// then put the connection first for purging and drop it from the latest deadline.
    #[test]
    fn a_deadline_moved_earlier_is_purged_then_and_no_longer_the_latest() {
        let mut roster = Roster::new(0);
        let mut events = Vec::new();
        for (client, deadline) in [("tab-1", 9_000), ("other", 5_000)] {
            let op = Op::Join {
                client: b(client),
                id: b(client),
                data: b(""),
                deadline,
            };
            roster.apply(&op, &mut events);
        }
        assert_eq!(roster.latest_deadline(), Some(9_000));
        let grace = Op::Touch {
            client: b("tab-1"),
            deadline: 1_000,
        };
        roster.apply(&grace, &mut events);
        assert_eq!(roster.deadline_of(b"tab-1"), Some(1_000));
        assert_eq!(roster.deadline_of(b"nobody"), None);
        assert_eq!(roster.earliest_deadline(), Some(1_000));
        assert_eq!(roster.latest_deadline(), Some(5_000));
        assert!(roster.expired_clients(999).is_empty());
        assert_eq!(roster.expired_clients(1_000), vec![b("tab-1")]);
        assert_eq!(events.len(), 2, "a touch is no event: {events:?}");
    }
}
