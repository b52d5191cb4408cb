//! [`Roster`]: who is on one channel, and the only code that changes it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::op::Op;

/// Shared immutable bytes. Ids, client names and data are binary-safe, and one allocation serves the
/// maps, the deadline index and the events that mention it.
pub type Bytes = Arc<[u8]>;

/// What happened to a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roster {
    rev: u64,
    members: HashMap<Bytes, Member>,
    connections: HashMap<Bytes, Connection>,
    /// `(deadline, client)`, so expired connections are found in O(k log n) without a scan.
    deadlines: BTreeSet<(u64, Bytes)>,
}

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

    /// Members as `(id, data)`, in no particular order.
    pub fn members(&self) -> impl Iterator<Item = (&Bytes, &Bytes)> {
        self.members.iter().map(|(id, m)| (id, &m.data))
    }

    /// Connections as `(client, id, deadline)`, in deadline order.
    pub fn connections(&self) -> impl Iterator<Item = (&Bytes, &Bytes, u64)> {
        self.deadlines
            .iter()
            .map(|(deadline, client)| (client, &self.connections[client].id, *deadline))
    }

    /// The latest deadline of any connection: when the whole channel is abandoned if nobody touches it.
    pub fn latest_deadline(&self) -> Option<u64> {
        self.deadlines.last().map(|(deadline, _)| *deadline)
    }

    /// Clients whose deadline is at or before `now`, earliest first.
    pub fn expired_clients(&self, now: u64) -> Vec<Bytes> {
        self.deadlines
            .range(..(now.saturating_add(1), Bytes::from(&[][..])))
            .map(|(_, client)| client.clone())
            .collect()
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
        self.deadlines.insert((deadline, client.clone()));
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
        let Some((client, connection)) = self.connections.remove_entry(client) else {
            return;
        };
        self.deadlines.remove(&(connection.deadline, client));
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
            self.deadlines
                .remove(&(connection.deadline, client.clone()));
            connection.deadline = deadline;
            self.deadlines.insert((deadline, client.clone()));
        }
    }

    fn emit(&mut self, kind: EventKind, id: &Bytes, data: Option<&Bytes>, events: &mut Vec<Event>) {
        self.rev += 1;
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
            roster.deadlines.insert((deadline, client));
        }
        if roster.members.values().any(|m| m.connections == 0) {
            return Err("member without connections");
        }
        Ok(roster)
    }
}
