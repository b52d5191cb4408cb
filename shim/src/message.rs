//! Roster messages and subscribe-reply rosters, in faye-presence's format.
//!
//! A roster message is published on the presence channel itself: `data` is exactly what faye-presence
//! sends (`{subscribe: {id: value}}` or `{unsubscribe: {id: null}}`), and the revision rides in the
//! message's `ext.presence.rev`, which old clients never look at.

use bayeux::Message;
use presence_roster::{Event, EventKind};
use serde_json::{json, Map, Value};

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

/// The roster message for one event on `channel`.
pub fn roster_message(channel: &str, event: &Event) -> Message {
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
    let mut message = Message::default();
    message.channel = channel.to_owned();
    message.data = Some(data);
    message.ext = Some(json!({ "presence": { "rev": event.rev } }));
    message
}

/// The revision of a roster message, if `message` is one.
pub fn rev_of(message: &Message) -> Option<u64> {
    message.ext.as_ref()?.get("presence")?.get("rev")?.as_u64()
}

/// A roster `{id: value}` as JSON.
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
            Some(json!({"subscribe": {"ann": {"name": "Ann é"}}}))
        );
        assert_eq!(rev_of(&message), Some(42));

        let leave = Event {
            rev: 43,
            kind: EventKind::Expire,
            id: Bytes::from(&b"ann"[..]),
            data: None,
        };
        assert_eq!(
            roster_message("/presence/r", &leave).data,
            Some(json!({"unsubscribe": {"ann": null}}))
        );
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
