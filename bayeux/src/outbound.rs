//! Messages on their way out: shared between receivers and serialized once.
//!
//! A publish to a channel with a thousand subscribers is one message queued a thousand times. Queues
//! hold an [`Outbound`] (a reference-counted message with its JSON cached), so fan-out costs a pointer
//! copy per subscriber and one serialization in all, unless an extension rewrites deliveries per client.

use crate::Message;
use std::sync::{Arc, OnceLock};

/// A message ready to be sent: cheap to clone, immutable, serialized at most once.
#[derive(Clone, Debug)]
pub struct Outbound(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    message: Message,
    json: OnceLock<String>,
}

impl Outbound {
    /// Wraps a message.
    pub fn new(message: Message) -> Self {
        Outbound(Arc::new(Inner {
            message,
            json: OnceLock::new(),
        }))
    }

    /// Wraps a message whose JSON is already known (e.g. read back from a shared queue), so it is
    /// not serialized again. `json` must be `message` serialized.
    pub fn with_json(message: Message, json: String) -> Self {
        Outbound(Arc::new(Inner {
            message,
            json: OnceLock::from(json),
        }))
    }

    /// The message.
    pub fn message(&self) -> &Message {
        &self.0.message
    }

    /// The message as JSON, computed on first use and shared by every clone.
    pub fn json(&self) -> &str {
        self.0.json.get_or_init(|| {
            // Serializing strings and JSON values cannot fail.
            serde_json::to_string(&self.0.message).unwrap_or_else(|_| "{}".into())
        })
    }

    /// The message, owned: moved out when this is the last reference, cloned otherwise.
    pub fn into_message(self) -> Message {
        match Arc::try_unwrap(self.0) {
            Ok(inner) => inner.message,
            Err(shared) => shared.message.clone(),
        }
    }
}

impl From<Message> for Outbound {
    fn from(message: Message) -> Self {
        Outbound::new(message)
    }
}

impl PartialEq for Outbound {
    fn eq(&self, other: &Self) -> bool {
        self.message() == other.message()
    }
}

/// A batch as the JSON array Bayeux transports send.
pub fn to_json_array(batch: &[Outbound]) -> String {
    let mut out =
        String::with_capacity(2 + batch.iter().map(|m| m.json().len() + 1).sum::<usize>());
    out.push('[');
    for (i, m) in batch.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(m.json());
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shared_and_serialized_once() {
        let a = Outbound::new(Message::publish("/a", json!({"x": 1})));
        let b = a.clone();
        assert!(
            std::ptr::eq(a.json(), b.json()),
            "one cached string for both"
        );
        assert_eq!(
            to_json_array(&[a.clone(), b]),
            r#"[{"channel":"/a","data":{"x":1}},{"channel":"/a","data":{"x":1}}]"#
        );
        assert_eq!(to_json_array(&[]), "[]");
        assert_eq!(a.into_message().channel, "/a");
        let raw = r#"{"channel":"/b","data":2}"#;
        let kept = Outbound::with_json(Message::publish("/b", json!(2)), raw.to_owned());
        assert_eq!(kept.json(), raw);
    }
}
