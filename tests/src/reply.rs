//! Reading raw presence replies in tests, RESP2 (flat arrays) and RESP3 (maps) alike: `presence-client`'s
//! readers, panicking with their message where a test could only fail anyway.

use std::collections::BTreeMap;

use redis::Value;

use presence_client::reply;

/// The fields of a map reply, by name.
pub fn fields(value: Value) -> BTreeMap<String, Value> {
    reply::fields(value).unwrap_or_else(|e| panic!("expected a map reply: {e}"))
}

/// A bulk or simple string's bytes.
pub fn bytes(value: &Value) -> Vec<u8> {
    reply::bytes(value).unwrap_or_else(|e| panic!("{e}"))
}

/// An integer (never negative in a presence reply).
pub fn int(value: &Value) -> u64 {
    reply::int(value).unwrap_or_else(|e| panic!("{e}"))
}

/// A boolean (RESP3 boolean, or RESP2 integer 0/1).
pub fn boolean(value: &Value) -> bool {
    reply::boolean(value).unwrap_or_else(|e| panic!("{e}"))
}

/// An array of strings.
pub fn list(value: &Value) -> Vec<Vec<u8>> {
    reply::list(value).unwrap_or_else(|e| panic!("{e}"))
}

/// A `{id: data}` map.
pub fn members(value: Value) -> presence_client::Members {
    reply::members(value).unwrap_or_else(|e| panic!("expected a roster map: {e}"))
}
