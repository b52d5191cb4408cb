//! The Bayeux message, as it travels in JSON.

use std::sync::Arc;

use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// One Bayeux message: a request from a client, a reply to one, or a delivery on a channel.
///
/// The fields the protocol gives meaning to are typed; anything else a client sends stays in
/// [`Message::other`] and is sent back out unchanged, so extensions and clients can use fields this
/// server has never heard of. Absent fields are `None` and are not serialized.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Message {
    /// The channel, e.g. `/meta/connect` or `/chat/room`. Empty when the client sent none.
    #[serde(default)]
    pub channel: String,
    /// The client's message id, echoed in the reply (Faye sends strings, some clients numbers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    /// The client id handed out by the handshake.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The application payload of a publish. `Some(Value::Null)` when the client sent `"data": null`.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub data: Option<Value>,
    /// Extension data, passed through untouched unless an extension changes it.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub ext: Option<Value>,
    /// A part of `ext` serialized already and shared with other messages (see [`SharedExt`]); it is
    /// written into `ext` on the wire, never read from a client.
    #[serde(skip)]
    pub ext_shared: Option<SharedExt>,
    /// In a reply: whether the request succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub successful: Option<bool>,
    /// In a reply: why the request failed, a Bayeux error string (`401:id:Unknown client`). An extension
    /// sets it on an incoming message to reject the message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Reconnect advice (`reconnect`, `interval`, `timeout`); clients send `timeout: 0` to ask for an
    /// immediate answer to their first connect.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advice: Option<Map<String, Value>>,
    /// For `/meta/subscribe` and `/meta/unsubscribe`: one channel name or a list of them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription: Option<Value>,
    /// For `/meta/connect`: the transport in use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_type: Option<String>,
    /// For `/meta/handshake`: transports the client (request) or server (reply) supports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supported_connection_types: Option<Vec<String>>,
    /// For `/meta/handshake`: the protocol version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// For `/meta/handshake`: the oldest protocol version the client accepts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimum_version: Option<String>,
    /// Every other field, kept as it came.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A field of `ext`, `ext.<key>.<field>`, whose JSON was serialized once and is shared, by reference,
/// between many messages: a big room's roster, which every subscribe reply answered at one revision
/// carries. Building that roster as a [`Value`] for each reply would cost an allocation per member per
/// reply; this costs one copy of its bytes, into the reply's own JSON. On the wire the field is inside
/// `ext` like any other (it replaces a field of the same name); hooks that run later see it here, not in
/// [`Message::ext`].
#[derive(Debug, Clone)]
pub struct SharedExt {
    /// The key in `ext` (an extension's own, e.g. `presence`).
    pub key: String,
    /// The field inside it (e.g. `subscribe`).
    pub field: String,
    /// The field's JSON.
    pub json: Arc<RawValue>,
}

impl SharedExt {
    /// `ext.<key>.<field> = json`, from JSON text already checked to be valid (e.g. serialized by
    /// serde_json).
    pub fn new(key: impl Into<String>, field: impl Into<String>, json: Arc<RawValue>) -> Self {
        SharedExt {
            key: key.into(),
            field: field.into(),
            json,
        }
    }
}

impl PartialEq for SharedExt {
    fn eq(&self, other: &Self) -> bool {
        (&self.key, &self.field, self.json.get()) == (&other.key, &other.field, other.json.get())
    }
}

/// The message on the wire: every field as declared, `ext` with its shared part written in.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Wire<'a> {
    channel: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ext: Option<Ext<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    successful: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    advice: Option<&'a Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subscription: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connection_type: Option<&'a String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    supported_connection_types: Option<&'a Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'a String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    minimum_version: Option<&'a String>,
    #[serde(flatten)]
    other: &'a Map<String, Value>,
}

/// `ext` as sent: the value, with the shared field, if any, in its place.
struct Ext<'a> {
    value: Option<&'a Value>,
    shared: Option<&'a SharedExt>,
}

/// `{..fields, <field>: <shared json>}`: an object of `ext` with the shared field written in.
struct WithShared<'a> {
    fields: Option<&'a Map<String, Value>>,
    shared: &'a SharedExt,
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let ext = (self.ext.is_some() || self.ext_shared.is_some()).then_some(Ext {
            value: self.ext.as_ref(),
            shared: self.ext_shared.as_ref(),
        });
        Wire {
            channel: &self.channel,
            id: self.id.as_ref(),
            client_id: self.client_id.as_ref(),
            data: self.data.as_ref(),
            ext,
            successful: self.successful,
            error: self.error.as_ref(),
            advice: self.advice.as_ref(),
            subscription: self.subscription.as_ref(),
            connection_type: self.connection_type.as_ref(),
            supported_connection_types: self.supported_connection_types.as_ref(),
            version: self.version.as_ref(),
            minimum_version: self.minimum_version.as_ref(),
            other: &self.other,
        }
        .serialize(serializer)
    }
}

impl Serialize for Ext<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Some(shared) = self.shared else {
            return self.value.serialize(serializer);
        };
        // A shared field needs `ext` to be an object; anything else a client sent is replaced.
        let fields = self.value.and_then(Value::as_object);
        let mut map = serializer.serialize_map(None)?;
        let mut placed = false;
        for (key, value) in fields.into_iter().flatten() {
            if *key == shared.key {
                let fields = value.as_object();
                map.serialize_entry(key, &WithShared { fields, shared })?;
                placed = true;
            } else {
                map.serialize_entry(key, value)?;
            }
        }
        if !placed {
            map.serialize_entry(
                &shared.key,
                &WithShared {
                    fields: None,
                    shared,
                },
            )?;
        }
        map.end()
    }
}

impl Serialize for WithShared<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (key, value) in self.fields.into_iter().flatten() {
            if *key != self.shared.field {
                map.serialize_entry(key, value)?;
            }
        }
        map.serialize_entry(&self.shared.field, &*self.shared.json)?;
        map.end()
    }
}

/// Reads a decoded request body (an array of messages or a single message) into messages, after
/// checking its size ([`crate::Config::max_batch`]): an element that is not a well-formed message, or
/// crosses a bound ([`Message::check_bounds`]), gets an error reply of its own (the second list); a
/// body that is neither an array nor an object, or holds too many messages, is an
/// [`crate::Error::BadRequest`] (transports answer HTTP 400).
pub(crate) fn decode_batch(
    body: Value,
    config: &crate::Config,
) -> Result<(Vec<Message>, Vec<crate::Outbound>), crate::Error> {
    use crate::Error;
    let items = match body {
        Value::Array(items) => items,
        obj @ Value::Object(_) => vec![obj],
        _ => {
            return Err(Error::BadRequest(
                "body must be a message or an array".into(),
            ))
        }
    };
    if items.len() > config.max_batch {
        return Err(Error::BadRequest(format!(
            "{} messages in one request, over the {} allowed",
            items.len(),
            config.max_batch
        )));
    }
    let mut bad = Vec::new();
    let mut good = Vec::new();
    for item in items {
        // The reply names the request's channel, unless that is the oversized part.
        let channel = item
            .get("channel")
            .and_then(Value::as_str)
            .filter(|c| c.len() <= config.max_channel_bytes)
            .map(str::to_owned);
        let id = item.get("id").cloned();
        match Message::from_value(item).and_then(|m| m.check_bounds(config).map(|()| m)) {
            Ok(m) => good.push(m),
            Err(e) => {
                let mut reply = Message::new(channel.unwrap_or_default());
                reply.id = id;
                reply.successful = Some(false);
                reply.error = Some(e.to_bayeux());
                if e.needs_handshake() {
                    let mut advice = Map::new();
                    advice.insert("reconnect".into(), Value::from("handshake"));
                    reply.advice = Some(advice);
                }
                bad.push(crate::Outbound::new(reply));
            }
        }
    }
    Ok((good, bad))
}

/// Whether `id` could be a client id an engine handed out: 1 to 64 ASCII letters, digits, `-` or `_`
/// (the memory and Redis engines hand out 25 base-36 digits). Anything else is unknown without a
/// lookup, so a megabyte of "client id" never reaches an engine or an error text.
pub fn is_plausible_client_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Deserializes a field that is present, even as `null`, into `Some`, so that `"data": null` (a valid
/// publish) is told apart from a missing `data` (an error).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

impl Message {
    /// A message on `channel` with no other field set.
    pub fn new(channel: impl Into<String>) -> Self {
        Message {
            channel: channel.into(),
            ..Message::default()
        }
    }

    /// A publish (or delivery) of `data` on `channel`.
    pub fn publish(channel: impl Into<String>, data: Value) -> Self {
        Message {
            data: Some(data),
            ..Message::new(channel)
        }
    }

    /// The channel names of a `subscription` field: a string or an array of strings; `None` when the
    /// field is missing, empty or holds something else.
    pub fn subscriptions(&self) -> Option<Vec<String>> {
        let list: Vec<String> = match self.subscription.as_ref()? {
            Value::String(s) => vec![s.clone()],
            Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<_>>()?,
            _ => return None,
        };
        (!list.is_empty()).then_some(list)
    }

    /// Reads one message out of a JSON value; the error says what was wrong, for a `400` reply.
    pub fn from_value(value: Value) -> Result<Self, crate::Error> {
        if !value.is_object() {
            return Err(crate::Error::BadRequest("message is not an object".into()));
        }
        serde_json::from_value(value).map_err(|e| crate::Error::BadRequest(e.to_string()))
    }

    /// Checks the bounds on what a client controls, before the message reaches extensions or
    /// handlers: every channel it names within [`crate::Config::max_channel_bytes`], no longer a
    /// subscription list than [`crate::Config::max_subscriptions`], and a client id of the form
    /// [`is_plausible_client_id`]. The errors quote no oversized bytes.
    pub fn check_bounds(&self, config: &crate::Config) -> Result<(), crate::Error> {
        use crate::Error;
        if let Some(id) = &self.client_id {
            // The handshake ignores any client id; the other channels look it up.
            if self.channel != "/meta/handshake" && !id.is_empty() && !is_plausible_client_id(id) {
                return Err(Error::ClientUnknown(id.clone()));
            }
        }
        let max = config.max_channel_bytes;
        let over = |name: &str| Error::OverLimit {
            field: "channel".into(),
            why: format!(
                "channel name is {} bytes, over the {max} allowed",
                name.len()
            ),
        };
        if self.channel.len() > max {
            return Err(over(&self.channel));
        }
        if let Some(Value::Array(list)) = &self.subscription {
            if list.len() > config.max_subscriptions {
                return Err(Error::OverLimit {
                    field: "subscription".into(),
                    why: format!(
                        "{} channels in one subscribe, over the {} subscriptions a client may hold",
                        list.len(),
                        config.max_subscriptions
                    ),
                });
            }
        }
        let names: Vec<&str> = match &self.subscription {
            Some(Value::String(one)) => vec![one.as_str()],
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if let Some(name) = names.into_iter().find(|c| c.len() > max) {
            return Err(over(name));
        }
        Ok(())
    }

    /// The message as a JSON value.
    pub fn to_value(&self) -> Value {
        // Serializing a struct of JSON values and strings cannot fail.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_shared_ext_field_is_written_into_ext_in_its_place() {
        let roster: Arc<RawValue> =
            Arc::from(RawValue::from_string(r#"{"ann":{"n":1},"bob":null}"#.into()).unwrap());
        let mut m = Message::new("/meta/subscribe");
        m.ext = Some(json!({"presence": {"rev": 7, "subscribe": "stale"}, "auth": "t"}));
        m.ext_shared = Some(SharedExt::new("presence", "subscribe", roster.clone()));
        let sent: Value = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(
            sent["ext"],
            json!({"presence": {"rev": 7, "subscribe": {"ann": {"n": 1}, "bob": null}}, "auth": "t"})
        );
        assert_eq!(m.to_value()["ext"], sent["ext"]);
        // Without an ext of its own, or with its key holding something else, the field makes one.
        for ext in [None, Some(json!({"presence": 3}))] {
            m.ext = ext;
            let sent: Value = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
            assert_eq!(
                sent["ext"],
                json!({"presence": {"subscribe": {"ann": {"n": 1}, "bob": null}}})
            );
        }
        // Never read from a client.
        let read = Message::from_value(json!({"channel": "/a", "ext_shared": 1})).unwrap();
        assert_eq!(read.ext_shared, None);
    }

    #[test]
    fn the_wire_form_is_every_field_as_declared() {
        let m = Message::from_value(json!({
            "channel": "/meta/connect", "id": "1", "clientId": "c", "data": null, "ext": {"a": 1},
            "successful": true, "error": "e", "advice": {"reconnect": "retry"}, "subscription": "/x",
            "connectionType": "websocket", "supportedConnectionTypes": ["websocket"], "version": "1.0",
            "minimumVersion": "1.0", "zz": [1]
        }))
        .unwrap();
        let round: Value = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(Message::from_value(round).unwrap(), m);
        assert_eq!(
            serde_json::to_string(&Message::new("/a")).unwrap(),
            r#"{"channel":"/a"}"#
        );
    }

    #[test]
    fn null_data_is_present_and_unknown_fields_survive() {
        let m = Message::from_value(json!({"channel": "/a", "data": null, "zz": 1})).unwrap();
        assert_eq!(m.data, Some(Value::Null));
        assert_eq!(m.other.get("zz"), Some(&json!(1)));
        let back = m.to_value();
        assert_eq!(back, json!({"channel": "/a", "data": null, "zz": 1}));
        let m = Message::from_value(json!({"channel": "/a"})).unwrap();
        assert_eq!(m.data, None);
    }

    #[test]
    fn camel_case_fields() {
        let m = Message::from_value(json!({
            "channel": "/meta/handshake", "clientId": "c", "supportedConnectionTypes": ["long-polling"],
            "connectionType": "websocket", "minimumVersion": "1.0"
        }))
        .unwrap();
        assert_eq!(m.client_id.as_deref(), Some("c"));
        assert_eq!(m.connection_type.as_deref(), Some("websocket"));
        assert_eq!(m.supported_connection_types.unwrap(), vec!["long-polling"]);
    }

    #[test]
    fn subscription_forms() {
        let mut m = Message::new("/meta/subscribe");
        assert_eq!(m.subscriptions(), None);
        m.subscription = Some(json!("/a"));
        assert_eq!(m.subscriptions().unwrap(), vec!["/a"]);
        m.subscription = Some(json!(["/a", "/b"]));
        assert_eq!(m.subscriptions().unwrap(), vec!["/a", "/b"]);
        m.subscription = Some(json!(["/a", 1]));
        assert_eq!(m.subscriptions(), None);
        m.subscription = Some(json!([]));
        assert_eq!(m.subscriptions(), None);
    }

    #[test]
    fn plausible_client_ids() {
        assert!(is_plausible_client_id(&crate::engine::new_client_id()));
        assert!(is_plausible_client_id("a-b_C9"));
        for bad in ["", "a b", "a:b", "é", &"x".repeat(65)] {
            assert!(!is_plausible_client_id(bad), "{bad}");
        }
    }

    #[test]
    fn wrong_shapes_are_bad_requests() {
        assert!(Message::from_value(json!([1])).is_err());
        assert!(Message::from_value(json!({"channel": 5})).is_err());
        assert!(Message::from_value(json!({"channel": "/a", "clientId": {}})).is_err());
    }
}
