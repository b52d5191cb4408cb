//! The roster against a reference model that is too simple to be wrong: random sequences of joins,
//! leaves, touches and time passing must give the same events, revisions and members. Every journal is
//! also replayed on a second roster (a replica) and every state goes through a snapshot, and both must
//! match exactly.

use std::collections::BTreeMap;

use presence_roster::roster::Bytes;
use presence_roster::{snapshot, Event, EventKind, Journal, Op, Roster};
use proptest::prelude::*;

/// An event as plain values: `(rev, kind, id, data)`.
type PlainEvent = (u64, EventKind, Vec<u8>, Option<Vec<u8>>);

/// Connections as a plain map; members and their data derived from it.
#[derive(Default)]
struct Model {
    rev: u64,
    connections: BTreeMap<Vec<u8>, (Vec<u8>, u64)>,
    data: BTreeMap<Vec<u8>, Vec<u8>>,
    events: Vec<PlainEvent>,
}

impl Model {
    fn present(&self, id: &[u8]) -> bool {
        self.connections.values().any(|(i, _)| i == id)
    }

    fn emit(&mut self, kind: EventKind, id: &[u8], data: Option<Vec<u8>>) {
        self.rev += 1;
        self.events.push((self.rev, kind, id.to_vec(), data));
    }

    fn drop_client(&mut self, client: &[u8], kind: EventKind) {
        if let Some((id, _)) = self.connections.remove(client) {
            if !self.present(&id) {
                self.data.remove(&id);
                self.emit(kind, &id, None);
            }
        }
    }

    fn purge(&mut self, now: u64) {
        let mut expired: Vec<(u64, Vec<u8>)> = self
            .connections
            .iter()
            .filter(|(_, (_, deadline))| *deadline <= now)
            .map(|(client, (_, deadline))| (*deadline, client.clone()))
            .collect();
        expired.sort();
        for (_, client) in expired {
            self.drop_client(&client, EventKind::Expire);
        }
    }

    fn join(&mut self, client: &[u8], id: &[u8], data: &[u8], deadline: u64) {
        if let Some((old, _)) = self.connections.get(client) {
            if old != id {
                self.drop_client(client, EventKind::Leave);
            }
        }
        let was_present = self.present(id);
        self.connections
            .insert(client.to_vec(), (id.to_vec(), deadline));
        if !was_present {
            self.data.insert(id.to_vec(), data.to_vec());
            self.emit(EventKind::Join, id, Some(data.to_vec()));
        } else if self.data[id] != data {
            self.data.insert(id.to_vec(), data.to_vec());
            self.emit(EventKind::Update, id, Some(data.to_vec()));
        }
    }

    fn touch(&mut self, client: &[u8], deadline: u64) {
        if let Some(entry) = self.connections.get_mut(client) {
            entry.1 = deadline;
        }
    }
}

#[derive(Debug, Clone)]
enum Step {
    Join {
        client: u8,
        id: u8,
        data: u8,
        ttl: u64,
    },
    Leave {
        client: u8,
    },
    Touch {
        clients: Vec<u8>,
        ttl: u64,
    },
    Wait(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..6u8, 0..4u8, 0..3u8, 1..50u64).prop_map(|(client, id, data, ttl)| Step::Join { client, id, data, ttl }),
        2 => (0..7u8).prop_map(|client| Step::Leave { client }),
        1 => (prop::collection::vec(0..7u8, 0..4), 1..50u64).prop_map(|(clients, ttl)| Step::Touch { clients, ttl }),
        2 => (0..40u64).prop_map(Step::Wait),
    ]
}

fn name(prefix: &str, n: u8) -> Vec<u8> {
    // Odd bytes on purpose: separators, braces, newlines and non-UTF-8 must not matter.
    format!("{prefix}:{{{n}}} \n")
        .into_bytes()
        .into_iter()
        .chain([0xff, n])
        .collect()
}

fn bytes(v: &[u8]) -> Bytes {
    Bytes::from(v)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn roster_matches_the_model(steps in prop::collection::vec(step(), 1..80), seed in 0..1_000_000u64) {
        let mut model = Model { rev: seed, ..Model::default() };
        let mut roster = Roster::new(seed);
        let mut replica = Roster::new(0);
        let mut now = 1_000u64;
        let mut all_events: Vec<Event> = Vec::new();

        for step in steps {
            let mut journal = Journal::begin(&roster);
            journal.purge(&mut roster, now);
            model.purge(now);
            match step {
                Step::Join { client, id, data, ttl } => {
                    let (client, id, data) = (name("c", client), name("i", id), name("d", data));
                    journal.apply(&mut roster, Op::Join { client: bytes(&client), id: bytes(&id), data: bytes(&data), deadline: now + ttl });
                    model.join(&client, &id, &data, now + ttl);
                }
                Step::Leave { client } => {
                    let client = name("c", client);
                    journal.apply(&mut roster, Op::Leave { client: bytes(&client) });
                    model.drop_client(&client, EventKind::Leave);
                }
                Step::Touch { clients, ttl } => {
                    for client in clients {
                        let client = name("c", client);
                        journal.apply(&mut roster, Op::Touch { client: bytes(&client), deadline: now + ttl });
                        model.touch(&client, now + ttl);
                    }
                }
                Step::Wait(dt) => now += dt,
            }

            // The replica applies what the master replicated, through the argument encoding.
            let ops = Op::decode_all(&journal.encoded_ops()).unwrap();
            let replayed = Journal::replay(&mut replica, journal.rev_before(), ops);
            prop_assert_eq!(replayed.events(), journal.events());
            prop_assert_eq!(&replica, &roster);
            all_events.extend_from_slice(journal.events());

            prop_assert_eq!(snapshot::decode(&snapshot::encode(&roster)).unwrap(), roster.clone());
            prop_assert_eq!(roster.latest_deadline(), model.connections.values().map(|(_, d)| *d).max());
        }

        let got: Vec<_> = all_events
            .iter()
            .map(|e| (e.rev, e.kind, e.id.to_vec(), e.data.as_ref().map(|d| d.to_vec())))
            .collect();
        prop_assert_eq!(got, model.events.clone());
        prop_assert_eq!(roster.rev(), model.rev);
        let members: BTreeMap<Vec<u8>, Vec<u8>> = roster.members().map(|(i, d)| (i.to_vec(), d.to_vec())).collect();
        prop_assert_eq!(members, model.data.clone());
        prop_assert_eq!(roster.connection_count(), model.connections.len());
        // Revisions are strictly increasing and without gaps.
        for pair in all_events.windows(2) {
            prop_assert_eq!(pair[1].rev, pair[0].rev + 1);
        }
    }
}

#[test]
fn a_member_with_two_connections_leaves_with_the_last() {
    let mut roster = Roster::new(100);
    let mut journal = Journal::begin(&roster);
    for client in ["tab1", "tab2"] {
        journal.apply(
            &mut roster,
            Op::Join {
                client: bytes(client.as_bytes()),
                id: bytes(b"ann"),
                data: bytes(b"1"),
                deadline: 50,
            },
        );
    }
    assert_eq!(journal.events().len(), 1, "one member, one join");
    assert_eq!(journal.events()[0].rev, 101);
    assert_eq!((roster.member_count(), roster.connection_count()), (1, 2));

    let mut journal = Journal::begin(&roster);
    journal.apply(
        &mut roster,
        Op::Leave {
            client: bytes(b"tab1"),
        },
    );
    assert!(journal.events().is_empty(), "still connected on tab2");
    journal.apply(
        &mut roster,
        Op::Leave {
            client: bytes(b"tab2"),
        },
    );
    journal.apply(
        &mut roster,
        Op::Leave {
            client: bytes(b"tab2"),
        },
    );
    assert_eq!(journal.events().len(), 1, "leaving twice is a no-op");
    assert_eq!(journal.events()[0].kind, EventKind::Leave);
    assert!(roster.is_empty());
    assert_eq!(roster.rev(), 102);
}

#[test]
fn purge_expires_only_what_is_due_and_touch_moves_deadlines() {
    let mut roster = Roster::new(0);
    let mut journal = Journal::begin(&roster);
    journal.apply(
        &mut roster,
        Op::Join {
            client: bytes(b"a"),
            id: bytes(b"a"),
            data: bytes(b""),
            deadline: 10,
        },
    );
    journal.apply(
        &mut roster,
        Op::Join {
            client: bytes(b"b"),
            id: bytes(b"b"),
            data: bytes(b""),
            deadline: 20,
        },
    );
    journal.apply(
        &mut roster,
        Op::Touch {
            client: bytes(b"a"),
            deadline: 30,
        },
    );
    assert_eq!(roster.latest_deadline(), Some(30));

    let mut journal = Journal::begin(&roster);
    journal.purge(&mut roster, 19);
    assert!(journal.is_empty());
    journal.purge(&mut roster, 20);
    assert_eq!(
        journal.ids(EventKind::Expire).collect::<Vec<_>>(),
        vec![&b"b"[..]]
    );
    assert!(roster.has_member(b"a"));
}

#[test]
fn a_client_moving_to_another_id_leaves_the_old_one() {
    let mut roster = Roster::new(0);
    let mut journal = Journal::begin(&roster);
    journal.apply(
        &mut roster,
        Op::Join {
            client: bytes(b"c"),
            id: bytes(b"old"),
            data: bytes(b"x"),
            deadline: 9,
        },
    );
    journal.apply(
        &mut roster,
        Op::Join {
            client: bytes(b"c"),
            id: bytes(b"new"),
            data: bytes(b"x"),
            deadline: 9,
        },
    );
    let kinds: Vec<_> = journal
        .events()
        .iter()
        .map(|e| (e.kind, e.id.to_vec()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (EventKind::Join, b"old".to_vec()),
            (EventKind::Leave, b"old".to_vec()),
            (EventKind::Join, b"new".to_vec())
        ]
    );
    assert_eq!(
        roster.member_of(b"c").map(|i| i.to_vec()),
        Some(b"new".to_vec())
    );
}
