//! Roster messages and subscribe-reply rosters, in faye-presence's format.
//!
//! A roster message is published on the presence channel itself: `data` is what faye-presence sends
//! (`{subscribe: {id: value}}` or `{unsubscribe: {id: null}}`; a batch names several ids, in both
//! parts, as the format allows), and the revisions ride in the message's `ext.presence`, which old
//! clients never look at: `rev`, the last revision it covers, and `from`, the first (a client whose
//! revision is below `from - 1` missed something).

use presence_roster::{Event, EventKind};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// A roster message as the core hands it to its host, which turns it into its server's message (for
/// `bayeux`, the adapter in `extension`): the presence channel, faye-presence's `data`, and the
/// revisions that ride in `ext.presence`.
#[derive(Debug, Clone, PartialEq)]
pub struct RosterMessage {
    /// The presence channel.
    pub channel: String,
    /// `{subscribe: {id: value, ...}, unsubscribe: {id: null, ...}}`, or `{count: n}` on a count-only
    /// channel.
    pub data: Value,
    /// The last revision the message covers.
    pub rev: u64,
    /// The first, when the message covers a run (a batch): a member whose roster is at `r` missed
    /// something only if `from > r + 1`.
    pub from: Option<u64>,
}

impl RosterMessage {
    /// The message's `ext`: `{presence: {rev[, from]}}`.
    pub fn ext(&self) -> Value {
        match self.from {
            Some(from) => json!({ "presence": { "rev": self.rev, "from": from } }),
            None => json!({ "presence": { "rev": self.rev } }),
        }
    }
}

/// A stored member value (JSON text written by the shim) as JSON; bytes that are not JSON (written by
/// hand with `redis-cli`, say) come out as a string rather than being dropped.
pub fn value_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// A member id as a JSON object key.
pub fn id_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The roster message for one event on `channel`: faye-presence's own message, which the tests hold
/// [`net_message`] of one event to (the relay sends only net messages).
#[cfg(test)]
pub fn roster_message(channel: &str, event: &Event) -> RosterMessage {
    let mut entry = Map::new();
    let data = match event.kind {
        EventKind::Join | EventKind::Update => {
            entry.insert(
                id_of(&event.id),
                event.data.as_deref().map_or(Value::Null, value_of),
            );
            json!({ "subscribe": entry })
        }
        EventKind::Leave | EventKind::Expire => {
            entry.insert(id_of(&event.id), Value::Null);
            json!({ "unsubscribe": entry })
        }
    };
    RosterMessage {
        channel: channel.to_owned(),
        data,
        rev: event.rev,
        from: None,
    }
}

/// One message for a run of events (in `rev` order) to members who knew the roster as of `from - 1`:
/// each id's net change over the run. An id that appears and leaves again is not mentioned; one that
/// leaves and comes back is a `subscribe` with its latest value. `None` when nothing changed on the
/// whole (the member is then told nothing, and its next message's `from` still follows what it knew).
pub fn net_message(channel: &str, events: &[Event], from: u64) -> Option<RosterMessage> {
    let last = events.last()?;
    // Per id, in order of first mention: whether it was a member before the run, and its last event.
    let mut order: Vec<&[u8]> = Vec::new();
    let mut net: HashMap<&[u8], (bool, &Event)> = HashMap::new();
    for event in events {
        net.entry(&event.id[..])
            .and_modify(|(_, latest)| *latest = event)
            .or_insert_with(|| {
                order.push(&event.id[..]);
                (event.kind != EventKind::Join, event)
            });
    }
    let (mut subscribe, mut unsubscribe) = (Map::new(), Map::new());
    for id in order {
        let (was_member, latest) = net[id];
        match latest.kind {
            EventKind::Join | EventKind::Update => {
                let value = latest.data.as_deref().map_or(Value::Null, value_of);
                subscribe.insert(id_of(id), value);
            }
            EventKind::Leave | EventKind::Expire if was_member => {
                unsubscribe.insert(id_of(id), Value::Null);
            }
            EventKind::Leave | EventKind::Expire => {}
        }
    }
    let mut data = Map::new();
    if !subscribe.is_empty() {
        data.insert("subscribe".into(), Value::Object(subscribe));
    }
    if !unsubscribe.is_empty() {
        data.insert("unsubscribe".into(), Value::Object(unsubscribe));
    }
    if data.is_empty() {
        return None;
    }
    Some(RosterMessage {
        channel: channel.to_owned(),
        data: Value::Object(data),
        rev: last.rev,
        from: Some(from),
    })
}

/// A roster `{id: value}` as JSON (the view keeps its own JSON copy; this is the tests' reference).
#[cfg(test)]
pub fn roster_json<'a>(members: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> Value {
    Value::Object(
        members
            .map(|(id, value)| (id_of(id), value_of(value)))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use presence_roster::roster::Bytes;

    #[test]
    fn messages_are_in_faye_presence_format_with_rev_in_ext() {
        let join = Event {
            rev: 42,
            kind: EventKind::Join,
            id: Bytes::from(&b"ann"[..]),
            data: Some(Bytes::from(&br#"{"name":"Ann \u00e9"}"#[..])),
        };
        let message = roster_message("/presence/r", &join);
        assert_eq!(message.channel, "/presence/r");
        assert_eq!(
            message.data,
            json!({"subscribe": {"ann": {"name": "Ann é"}}})
        );
        assert_eq!(message.ext(), json!({"presence": {"rev": 42}}));

        let leave = Event {
            rev: 43,
            kind: EventKind::Expire,
            id: Bytes::from(&b"ann"[..]),
            data: None,
        };
        assert_eq!(
            roster_message("/presence/r", &leave).data,
            json!({"unsubscribe": {"ann": null}})
        );
    }

    fn event(rev: u64, kind: EventKind, id: &str, data: Option<&str>) -> Event {
        Event {
            rev,
            kind,
            id: Bytes::from(id.as_bytes()),
            data: data.map(|d| Bytes::from(d.as_bytes())),
        }
    }

    #[test]
    fn a_batch_carries_each_ids_net_change() {
        use EventKind::*;
        let events = [
            event(10, Join, "ann", Some("1")),
            event(11, Join, "bob", Some("2")),
            event(12, Leave, "bob", None), // came and went: not mentioned
            event(13, Leave, "cat", None), // was there: leaves
            event(14, Expire, "dan", None), // was there: leaves
            event(15, Join, "dan", Some("4")), // and came back: a subscribe with the latest value
            event(16, Update, "ann", Some("5")),
        ];
        let message = net_message("/presence/r", &events, 10).unwrap();
        assert_eq!(
            message.data,
            json!({"subscribe": {"ann": 5, "dan": 4}, "unsubscribe": {"cat": null}})
        );
        assert_eq!(message.ext(), json!({"presence": {"rev": 16, "from": 10}}));
    }

    #[test]
    fn a_batch_that_changes_nothing_is_no_message() {
        use EventKind::*;
        let events = [event(3, Join, "x", Some("1")), event(4, Expire, "x", None)];
        assert_eq!(net_message("/presence/r", &events, 3), None);
        assert_eq!(net_message("/presence/r", &[], 3), None);
        // One event alone is exactly the faye-presence message.
        let one = net_message("/presence/r", &events[..1], 3).unwrap();
        assert_eq!(one.data, roster_message("/presence/r", &events[0]).data);
    }

    #[test]
    fn values_that_are_not_json_come_out_as_strings() {
        assert_eq!(value_of(b"null"), Value::Null);
        assert_eq!(value_of(b"not json"), json!("not json"));
        assert_eq!(
            roster_json([(&b"a"[..], &b"1"[..])].into_iter()),
            json!({"a": 1})
        );
    }
}
