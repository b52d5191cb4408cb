//! The message a roster change publishes on its channel's shard pub/sub channel.
//!
//! One message per command, one line per event, in revision order:
//!
//! ```text
//! <rev> join <len>:<id> <len>:<data>\n
//! <rev> update <len>:<id> <len>:<data>\n
//! <rev> leave <len>:<id>\n
//! <rev> expire <len>:<id>\n
//! ```
//!
//! Ids and data are length-prefixed (netstring style), so they may hold any bytes, newlines included,
//! while a message of ordinary text stays readable in `redis-cli SSUBSCRIBE`.

use crate::codec::{expect, put_field, put_number, shown, take_field, take_number, take_until};
use crate::error::DecodeError;
use crate::roster::{Event, EventKind};

/// Encodes events as one message.
pub fn encode(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(events, &mut out);
    out
}

/// Encodes events as one message, appended to `out` (so a caller can reuse one buffer).
pub fn encode_into(events: &[Event], out: &mut Vec<u8>) {
    for event in events {
        put_number(out, event.rev);
        out.push(b' ');
        out.extend_from_slice(event.kind.as_str().as_bytes());
        out.push(b' ');
        put_field(out, &event.id);
        if let Some(data) = &event.data {
            out.push(b' ');
            put_field(out, data);
        }
        out.push(b'\n');
    }
}

/// Decodes a message written by [`encode`].
pub fn decode(mut input: &[u8]) -> Result<Vec<Event>, DecodeError> {
    let mut events = Vec::new();
    while !input.is_empty() {
        let rev = take_number(&mut input, b' ')?;
        let kind = match take_until(&mut input, b' ')? {
            b"join" => EventKind::Join,
            b"update" => EventKind::Update,
            b"leave" => EventKind::Leave,
            b"expire" => EventKind::Expire,
            other => return Err(DecodeError::UnknownKind(shown(other))),
        };
        let id = take_field(&mut input)?;
        let data = if kind.is_present() {
            expect(&mut input, b' ')?;
            Some(take_field(&mut input)?)
        } else {
            None
        };
        expect(&mut input, b'\n')?;
        events.push(Event {
            rev,
            kind,
            id,
            data,
        });
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roster::Bytes;

    fn event(rev: u64, kind: EventKind, id: &[u8], data: Option<&[u8]>) -> Event {
        Event {
            rev,
            kind,
            id: Bytes::from(id),
            data: data.map(Bytes::from),
        }
    }

    #[test]
    fn a_message_reads_as_documented() {
        let events = [
            event(7, EventKind::Join, b"alice", Some(br#"{"n":1}"#)),
            event(8, EventKind::Leave, b"bob", None),
        ];
        assert_eq!(
            encode(&events),
            b"7 join 5:alice 7:{\"n\":1}\n8 leave 3:bob\n".to_vec()
        );
    }

    #[test]
    fn odd_bytes_round_trip() {
        let events = [
            event(1, EventKind::Update, b"a b\n:{}", Some(b"\r\n\0\xff 3:x")),
            event(2, EventKind::Expire, b"", None),
            event(u64::MAX, EventKind::Join, "\u{1F600}".as_bytes(), Some(b"")),
        ];
        assert_eq!(decode(&encode(&events)).unwrap(), events);
    }

    #[test]
    fn broken_messages_are_errors_not_panics() {
        for bad in [
            &b"1 join 5:alice"[..],
            b"1 join 5:alice 9:xx\n",
            b"x join 1:a 1:b\n",
            b"1 dance 1:a\n",
            b"1 leave 1:ab\n",
            b"1 leave 99999999999999999999:a\n",
            b"1 leave 1:a",
        ] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(decode(b""), Ok(vec![]));
    }
}
