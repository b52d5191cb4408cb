//! [`Json`]: the values the Node driver sends and receives, read and written with serde_json.

use std::collections::BTreeMap;
use std::fmt;

/// A JSON value as the tests compare it: objects without regard to key order (JSON semantics), numbers
/// as `f64`. Parsed and written by serde_json.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Json {
    /// `null` (also what [`Json::get`] returns for a missing key)
    #[default]
    Null,
    /// `true` / `false`
    Bool(bool),
    /// a number
    Num(f64),
    /// a string
    Str(String),
    /// an array
    Arr(Vec<Json>),
    /// an object
    Obj(BTreeMap<String, Json>),
}

static NULL: Json = Json::Null;

impl Json {
    /// Parses JSON text.
    pub fn parse(text: &str) -> Result<Json, String> {
        serde_json::from_str::<serde_json::Value>(text)
            .map(Json::from)
            .map_err(|e| e.to_string())
    }

    /// An object from pairs.
    pub fn obj(pairs: Vec<(&str, Json)>) -> Json {
        Json::Obj(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    /// The value at `key` of an object, or `Null`.
    pub fn get(&self, key: &str) -> &Json {
        match self {
            Json::Obj(map) => map.get(key).unwrap_or(&NULL),
            _ => &NULL,
        }
    }

    /// The string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The number, if it is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Num(n) => Some(*n),
            _ => None,
        }
    }

    /// The boolean, if it is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The object's keys, sorted (empty for anything else).
    pub fn keys(&self) -> Vec<String> {
        match self {
            Json::Obj(map) => map.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }
}

/// Parses JSON text written in a test, panicking on a typo.
pub fn json(text: &str) -> Json {
    Json::parse(text).unwrap_or_else(|e| panic!("bad JSON in test ({e}): {text}"))
}

impl From<&str> for Json {
    fn from(s: &str) -> Json {
        Json::Str(s.to_owned())
    }
}

impl From<String> for Json {
    fn from(s: String) -> Json {
        Json::Str(s)
    }
}

impl From<f64> for Json {
    fn from(n: f64) -> Json {
        Json::Num(n)
    }
}

impl From<serde_json::Value> for Json {
    fn from(value: serde_json::Value) -> Json {
        use serde_json::Value;
        match value {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(b),
            Value::Number(n) => Json::Num(n.as_f64().unwrap_or(f64::NAN)),
            Value::String(s) => Json::Str(s),
            Value::Array(items) => Json::Arr(items.into_iter().map(Json::from).collect()),
            Value::Object(map) => {
                Json::Obj(map.into_iter().map(|(k, v)| (k, Json::from(v))).collect())
            }
        }
    }
}

impl From<&Json> for serde_json::Value {
    fn from(json: &Json) -> serde_json::Value {
        use serde_json::Value;
        match json {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            // Whole numbers that f64 holds exactly (revisions, counts) are written as integers.
            Json::Num(n) if n.fract() == 0.0 && n.abs() < (1u64 << 53) as f64 => {
                Value::from(*n as i64)
            }
            Json::Num(n) => serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number),
            Json::Str(s) => Value::String(s.clone()),
            Json::Arr(items) => Value::Array(items.iter().map(Value::from).collect()),
            Json::Obj(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), Value::from(v)))
                    .collect(),
            ),
        }
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&serde_json::Value::from(self).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips() {
        let text = r#"{"a":[1,2.5,-3,true,null],"b":{"é":"\u00e9\ud83d\ude00 \"q\"\n"},"c":""}"#;
        let v = Json::parse(text).unwrap();
        assert_eq!(v.get("b").get("é").as_str(), Some("é😀 \"q\"\n"));
        assert_eq!(Json::parse(&v.to_string()).unwrap(), v);
        assert_eq!(
            json("{\"rev\":1795988030165700}").to_string(),
            "{\"rev\":1795988030165700}"
        );
        assert!(Json::parse("{").is_err());
    }
}
