//! [`Listener`]: a shard pub/sub subscriber to a channel's roster events, as the shim will be.

use std::time::Duration;

use presence_roster::{wire, Event};
use redis::Value;

/// An `SSUBSCRIBE`d connection that decodes each message into roster events.
pub struct Listener {
    con: redis::Connection,
}

impl Listener {
    /// Subscribes to `channel`'s events on the server at `url` and waits for the confirmation.
    pub fn subscribe(url: &str, channel: &str) -> Self {
        let mut con = redis::Client::open(url)
            .expect("url")
            .get_connection_with_timeout(Duration::from_secs(5))
            .expect("connect listener");
        con.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        con.send_packed_command(&redis::cmd("SSUBSCRIBE").arg(channel).get_packed_command())
            .expect("send SSUBSCRIBE");
        match con.recv_response().expect("SSUBSCRIBE confirmation") {
            Value::Array(items) | Value::Push { data: items, .. } => {
                assert_eq!(crate::reply::bytes(&items[0]), b"ssubscribe");
            }
            other => panic!("unexpected SSUBSCRIBE reply {other:?}"),
        }
        Listener { con }
    }

    /// The payload of the next message (waits up to the read timeout).
    pub fn next_raw(&mut self) -> Vec<u8> {
        let value = self.con.recv_response().expect("a roster message");
        let items = match value {
            Value::Array(items) | Value::Push { data: items, .. } => items,
            other => panic!("unexpected pub/sub frame {other:?}"),
        };
        assert_eq!(crate::reply::bytes(&items[0]), b"smessage", "{items:?}");
        crate::reply::bytes(&items[2])
    }

    /// The events of the next message.
    pub fn next_events(&mut self) -> Vec<Event> {
        wire::decode(&self.next_raw()).expect("a well-formed roster message")
    }

    /// Events until `count` have arrived.
    pub fn take(&mut self, count: usize) -> Vec<Event> {
        let mut events = Vec::new();
        while events.len() < count {
            events.extend(self.next_events());
        }
        events
    }

    /// Asserts that nothing was published on `channel` since the last message read: publishes a marker
    /// through `con` and checks that it is the very next message. No waiting for a silence that might
    /// just be slow.
    pub fn assert_nothing_published(&mut self, con: &mut redis::Connection, channel: &str) {
        let marker = b"-- marker --".to_vec();
        redis::cmd("SPUBLISH")
            .arg(channel)
            .arg(&marker)
            .query::<i64>(con)
            .expect("SPUBLISH");
        let next = self.next_raw();
        assert_eq!(
            String::from_utf8_lossy(&next),
            String::from_utf8_lossy(&marker),
            "something was published before the marker"
        );
    }
}
