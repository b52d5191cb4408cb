//! Reading presence replies: RESP3 maps and RESP2 flat `[key, value, ...]` arrays alike.

use std::collections::BTreeMap;

use redis::Value;

/// The fields of a map reply, by name.
pub fn fields(value: Value) -> BTreeMap<String, Value> {
    let pairs: Vec<(Value, Value)> = match value {
        Value::Map(pairs) => pairs,
        Value::Array(items) => {
            assert!(items.len() % 2 == 0, "odd flat map: {items:?}");
            let mut items = items.into_iter();
            std::iter::from_fn(|| Some((items.next()?, items.next()?))).collect()
        }
        other => panic!("expected a map reply, got {other:?}"),
    };
    pairs
        .into_iter()
        .map(|(k, v)| {
            (
                String::from_utf8(bytes(&k)).expect("field names are text"),
                v,
            )
        })
        .collect()
}

/// A bulk or simple string's bytes.
pub fn bytes(value: &Value) -> Vec<u8> {
    match value {
        Value::BulkString(b) => b.clone(),
        Value::SimpleString(s) => s.clone().into_bytes(),
        other => panic!("expected a string, got {other:?}"),
    }
}

/// An integer.
pub fn int(value: &Value) -> u64 {
    match value {
        Value::Int(i) => u64::try_from(*i).expect("non-negative"),
        other => panic!("expected an integer, got {other:?}"),
    }
}

/// A boolean (RESP3 boolean, or RESP2 integer 0/1).
pub fn boolean(value: &Value) -> bool {
    match value {
        Value::Boolean(b) => *b,
        Value::Int(0) => false,
        Value::Int(1) => true,
        other => panic!("expected a boolean, got {other:?}"),
    }
}

/// An array of strings.
pub fn list(value: &Value) -> Vec<Vec<u8>> {
    match value {
        Value::Array(items) | Value::Set(items) => items.iter().map(bytes).collect(),
        other => panic!("expected an array, got {other:?}"),
    }
}

/// A `{id: data}` map.
pub fn members(value: Value) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let pairs: Vec<(Value, Value)> = match value {
        Value::Map(pairs) => pairs,
        Value::Array(items) => {
            let mut items = items.into_iter();
            std::iter::from_fn(|| Some((items.next()?, items.next()?))).collect()
        }
        other => panic!("expected a roster map, got {other:?}"),
    };
    pairs.iter().map(|(k, v)| (bytes(k), bytes(v))).collect()
}
