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

    /// The events of the next message (waits up to the read timeout).
    pub fn next(&mut self) -> Vec<Event> {
        let value = self.con.recv_response().expect("a roster message");
        let items = match value {
            Value::Array(items) | Value::Push { data: items, .. } => items,
            other => panic!("unexpected pub/sub frame {other:?}"),
        };
        assert_eq!(crate::reply::bytes(&items[0]), b"smessage", "{items:?}");
        wire::decode(&crate::reply::bytes(&items[2])).expect("a well-formed roster message")
    }

    /// Events until `count` have arrived.
    pub fn take(&mut self, count: usize) -> Vec<Event> {
        let mut events = Vec::new();
        while events.len() < count {
            events.extend(self.next());
        }
        events
    }

    /// Whether a message arrives within `wait` (used to check that nothing was published).
    pub fn has_message_within(&mut self, wait: Duration) -> bool {
        self.con.set_read_timeout(Some(wait)).expect("timeout");
        let got = self.con.recv_response().is_ok();
        self.con
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        got
    }
}
