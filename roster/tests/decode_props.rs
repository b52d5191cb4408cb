//! Property tests of every decoder that reads bytes from outside (the published message, the replicated
//! ops, the snapshot that `RESTORE` and RDB loads hand in): arbitrary and mutated input never panics, an
//! error's message is short printable text (it may end up in a Redis error reply or a log line), what
//! decodes is within the documented bounds, and encode/decode round-trips.

use presence_roster::roster::Bytes;
use presence_roster::snapshot::{self, MAX_DEADLINE, MAX_REV};
use presence_roster::{wire, DecodeError, Event, EventKind, Op, Roster};
use proptest::prelude::*;

/// Error messages end up in replies and logs: short, and nothing but printable ASCII.
fn assert_presentable(error: &DecodeError) {
    let text = error.to_string();
    assert!(text.len() <= 120, "{} bytes: {text:?}", text.len());
    assert!(
        text.bytes().all(|b| (0x20..0x7f).contains(&b)),
        "not printable: {text:?}"
    );
}

fn small_bytes() -> impl Strategy<Value = Bytes> {
    // A few short values, so ids and clients collide and moves, refreshes and leaves happen.
    prop_oneof![
        3 => prop::sample::select(vec![&b"a"[..], b"b", b"c\r\n", b"\0", b""]).prop_map(Bytes::from),
        1 => prop::collection::vec(any::<u8>(), 0..12).prop_map(|v| Bytes::from(&v[..])),
    ]
}

fn deadline() -> impl Strategy<Value = u64> {
    prop_oneof![0..1000u64, Just(MAX_DEADLINE), 0..=MAX_DEADLINE]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (small_bytes(), small_bytes(), small_bytes(), deadline()).prop_map(
            |(client, id, data, deadline)| Op::Join {
                client,
                id,
                data,
                deadline
            }
        ),
        small_bytes().prop_map(|client| Op::Leave { client }),
        small_bytes().prop_map(|client| Op::Expire { client }),
        (small_bytes(), deadline()).prop_map(|(client, deadline)| Op::Touch { client, deadline }),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    (
        any::<u64>(),
        prop::sample::select(vec![
            EventKind::Join,
            EventKind::Update,
            EventKind::Leave,
            EventKind::Expire,
        ]),
        small_bytes(),
        small_bytes(),
    )
        .prop_map(|(rev, kind, id, data)| Event {
            rev,
            kind,
            id,
            data: kind.is_present().then_some(data),
        })
}

/// A roster reached by applying ops to a fresh one, from a revision anywhere up to the ceiling.
fn roster() -> impl Strategy<Value = Roster> {
    (
        prop_oneof![0..1000u64, Just(MAX_REV), 0..=MAX_REV],
        prop::collection::vec(op(), 0..24),
    )
        .prop_map(|(rev, ops)| {
            let mut roster = Roster::new(rev);
            let mut events = Vec::new();
            for op in &ops {
                roster.apply(op, &mut events);
            }
            roster
        })
}

/// A valid encoding, damaged: truncated, a byte changed, or bytes inserted.
fn damaged(valid: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = valid.len();
    (
        0..3u8,
        0..=len,
        any::<u8>(),
        prop::collection::vec(any::<u8>(), 1..6),
    )
        .prop_map(move |(how, at, byte, insert)| {
            let mut out = valid.clone();
            match how {
                0 => out.truncate(at),
                1 if at < len => out[at] ^= byte.max(1),
                _ => {
                    out.splice(at..at, insert);
                }
            }
            out
        })
}

/// Checks what a snapshot decoder accepted: in bounds, canonical, and still growing its rev.
fn check_accepted(mut roster: Roster) {
    assert!(roster.rev() <= MAX_REV);
    assert!(roster.connections().all(|(_, _, d)| d <= MAX_DEADLINE));
    let again = snapshot::decode(&snapshot::encode(&roster)).expect("re-encoding decodes");
    assert_eq!(again, roster);
    let before = roster.rev();
    let mut events = Vec::new();
    roster.apply(
        &Op::Join {
            client: Bytes::from(&b"new-client"[..]),
            id: Bytes::from(&b"new-id"[..]),
            data: Bytes::from(&b""[..]),
            deadline: 1,
        },
        &mut events,
    );
    // It grows, or stays at the ceiling where it saturates (only a forged roster gets there).
    assert!(
        roster.rev() > before || roster.rev() == MAX_REV,
        "rev grows from {before}"
    );
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_any_decoder(input in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Err(e) = wire::decode(&input) {
            assert_presentable(&e);
        }
        if let Err(e) = Op::decode_all(&input) {
            assert_presentable(&e);
        }
        match snapshot::decode(&input) {
            Ok(roster) => check_accepted(roster),
            Err(e) => assert_presentable(&e),
        }
    }

    #[test]
    fn text_like_bytes_never_panic_the_text_decoders(
        input in "([0-9]{1,21}|[A-Za-z]{1,12}|[ :\n]|\\PC){0,24}"
    ) {
        // Mostly the codec's own alphabet, so the decoders get deep into their input.
        let errors = [wire::decode(input.as_bytes()).err(), Op::decode_all(input.as_bytes()).err()];
        for e in errors.iter().flatten() {
            assert_presentable(e);
        }
    }

    #[test]
    fn events_round_trip(events in prop::collection::vec(event(), 0..12)) {
        prop_assert_eq!(wire::decode(&wire::encode(&events)).unwrap(), events);
    }

    #[test]
    fn ops_round_trip(ops in prop::collection::vec(op(), 0..12)) {
        prop_assert_eq!(Op::decode_all(&Op::encode_all(&ops)).unwrap(), ops);
    }

    #[test]
    fn snapshots_round_trip(roster in roster()) {
        let decoded = snapshot::decode(&snapshot::encode(&roster)).unwrap();
        prop_assert_eq!(&decoded, &roster);
        check_accepted(decoded);
    }

    #[test]
    fn damaged_snapshots_never_panic(input in roster().prop_flat_map(|r| damaged(snapshot::encode(&r)))) {
        match snapshot::decode(&input) {
            Ok(roster) => check_accepted(roster),
            Err(e) => assert_presentable(&e),
        }
    }

    #[test]
    fn damaged_ops_and_messages_never_panic(
        ops in prop::collection::vec(op(), 1..6).prop_flat_map(|ops| damaged(Op::encode_all(&ops))),
        events in prop::collection::vec(event(), 1..6).prop_flat_map(|e| damaged(wire::encode(&e))),
    ) {
        if let Err(e) = Op::decode_all(&ops) {
            assert_presentable(&e);
        }
        if let Err(e) = wire::decode(&events) {
            assert_presentable(&e);
        }
    }

    #[test]
    fn a_snapshot_is_accepted_only_with_a_rev_and_deadlines_in_bounds(
        roster in roster(),
        rev in prop_oneof![Just(MAX_REV), Just(MAX_REV + 1), Just(u64::MAX), any::<u64>()],
        deadline in prop_oneof![Just(MAX_DEADLINE), Just(MAX_DEADLINE + 1), Just(u64::MAX), any::<u64>()],
    ) {
        let mut bytes = snapshot::encode(&roster);
        bytes[4..12].copy_from_slice(&rev.to_le_bytes());
        prop_assert_eq!(snapshot::decode(&bytes).is_ok(), rev <= MAX_REV);
        // The last connection's deadline is the last 8 bytes.
        if roster.connection_count() > 0 {
            let mut bytes = snapshot::encode(&roster);
            let at = bytes.len() - 8;
            bytes[at..].copy_from_slice(&deadline.to_le_bytes());
            prop_assert_eq!(snapshot::decode(&bytes).is_ok(), deadline <= MAX_DEADLINE);
        }
    }

    #[test]
    fn replicated_ops_are_accepted_only_with_deadlines_in_bounds(deadline in any::<u64>()) {
        let line = format!("T 1:c {deadline}\n");
        prop_assert_eq!(Op::decode_all(line.as_bytes()).is_ok(), deadline <= MAX_DEADLINE);
    }
}
