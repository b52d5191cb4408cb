//! The presence commands' replies, decoded the same way whichever protocol the connection speaks.
//!
//! The module answers a map: a RESP3 map where the client speaks RESP3 (`HELLO 3`), a flat
//! `[name, value, name, value, ...]` array in RESP2, with booleans as RESP3 booleans or RESP2 integers
//! 0 and 1, and lists as arrays (or sets). The typed replies ([`Joined`], [`Left`], [`Touched`],
//! [`Roster`], [`Count`]) read either form, so `query::<Joined>` works on any connection; the functions
//! below are what they are built of, for code that reads a raw [`Value`] (a test checking a reply's
//! shape, say).
//!
//! Fields a reply does not know are ignored, so a newer module that answers more stays readable; a field
//! it needs and does not find is a [`ParsingError`] naming it.

use std::collections::BTreeMap;

use redis::{FromRedisValue, ParsingError, Value};

/// A roster: member id → the data it joined with, both as the bytes Redis holds (binary-safe).
pub type Members = BTreeMap<Vec<u8>, Vec<u8>>;

/// What `PRESENCE.JOIN` answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Joined {
    /// The channel's revision after the join.
    pub rev: u64,
    /// The id is new on the channel (its first connection).
    pub joined: bool,
    /// The id was there and its data changed (the newest data wins).
    pub changed: bool,
    /// Ids this connection left by joining as another id.
    pub left: Vec<Vec<u8>>,
    /// Ids whose last connection expired, purged on the way.
    pub expired: Vec<Vec<u8>>,
    /// The whole roster after the join, with `WITHROSTER`; `None` without.
    pub roster: Option<Members>,
}

/// What `PRESENCE.LEAVE` answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Left {
    /// The channel's revision after the leave.
    pub rev: u64,
    /// The member left (this was its last connection).
    pub left: bool,
    /// The member the connection belonged to; `None` for an unknown connection (a no-op).
    pub id: Option<Vec<u8>>,
    /// Ids whose last connection expired, purged on the way.
    pub expired: Vec<Vec<u8>>,
}

/// What `PRESENCE.TOUCH` answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Touched {
    /// The channel's revision after the touch.
    pub rev: u64,
    /// The connections the channel does not know (lost in a failover or a flush: join them again).
    pub unknown: Vec<Vec<u8>>,
    /// Ids whose last connection expired, purged on the way.
    pub expired: Vec<Vec<u8>>,
}

/// What `PRESENCE.ROSTER` answered: the roster exactly as of `rev`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Roster {
    /// The channel's revision (0 for a channel that does not exist).
    pub rev: u64,
    /// The members and their data.
    pub members: Members,
}

/// What `PRESENCE.COUNT` answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Count {
    /// The channel's revision (0 for a channel that does not exist).
    pub rev: u64,
    /// Distinct member ids.
    pub members: u64,
    /// Connections, over all members.
    pub connections: u64,
}

impl FromRedisValue for Joined {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        let mut f = Fields::of("PRESENCE.JOIN", value)?;
        Ok(Joined {
            rev: int(f.get("rev")?)?,
            joined: boolean(f.get("joined")?)?,
            changed: boolean(f.get("changed")?)?,
            left: list(f.get("left")?)?,
            expired: list(f.get("expired")?)?,
            roster: f.take_optional("roster").map(members).transpose()?,
        })
    }
}

impl FromRedisValue for Left {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        let f = Fields::of("PRESENCE.LEAVE", value)?;
        Ok(Left {
            rev: int(f.get("rev")?)?,
            left: boolean(f.get("left")?)?,
            id: match f.get("id")? {
                Value::Nil => None,
                id => Some(bytes(id)?),
            },
            expired: list(f.get("expired")?)?,
        })
    }
}

impl FromRedisValue for Touched {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        let f = Fields::of("PRESENCE.TOUCH", value)?;
        Ok(Touched {
            rev: int(f.get("rev")?)?,
            unknown: list(f.get("unknown")?)?,
            expired: list(f.get("expired")?)?,
        })
    }
}

impl FromRedisValue for Roster {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        let mut f = Fields::of("PRESENCE.ROSTER", value)?;
        Ok(Roster {
            rev: int(f.get("rev")?)?,
            members: members(f.take("members")?)?,
        })
    }
}

impl FromRedisValue for Count {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        let f = Fields::of("PRESENCE.COUNT", value)?;
        Ok(Count {
            rev: int(f.get("rev")?)?,
            members: int(f.get("members")?)?,
            connections: int(f.get("connections")?)?,
        })
    }
}

/// A reply's fields, with the command's name for the errors.
struct Fields {
    command: &'static str,
    fields: BTreeMap<String, Value>,
}

impl Fields {
    fn of(command: &'static str, value: Value) -> Result<Self, ParsingError> {
        let fields = fields(value).map_err(|e| format!("{command} reply: {e}"))?;
        Ok(Fields { command, fields })
    }

    fn get(&self, name: &str) -> Result<&Value, ParsingError> {
        self.fields.get(name).ok_or_else(|| self.missing(name))
    }

    fn take(&mut self, name: &str) -> Result<Value, ParsingError> {
        self.fields.remove(name).ok_or_else(|| self.missing(name))
    }

    fn take_optional(&mut self, name: &str) -> Option<Value> {
        self.fields.remove(name)
    }

    fn missing(&self, name: &str) -> ParsingError {
        format!("{} reply without '{name}'", self.command).into()
    }
}

/// The fields of a map reply by name: a RESP3 map or a RESP2 flat `[name, value, ...]` array.
pub fn fields(value: Value) -> Result<BTreeMap<String, Value>, ParsingError> {
    pairs(value)?
        .into_iter()
        .map(|(name, value)| {
            let name = String::from_utf8(bytes(&name)?)
                .map_err(|_| ParsingError::from("a field name that is not UTF-8"))?;
            Ok((name, value))
        })
        .collect()
}

/// A roster `{id: data}`: a RESP3 map or a RESP2 flat `[id, data, ...]` array.
pub fn members(value: Value) -> Result<Members, ParsingError> {
    pairs(value)?
        .iter()
        .map(|(id, data)| Ok((bytes(id)?, bytes(data)?)))
        .collect()
}

/// A bulk (or simple) string's bytes.
pub fn bytes(value: &Value) -> Result<Vec<u8>, ParsingError> {
    match value {
        Value::BulkString(b) => Ok(b.clone()),
        Value::SimpleString(s) => Ok(s.clone().into_bytes()),
        other => Err(unexpected("a string", other)),
    }
}

/// A non-negative integer (revisions and counts are never negative).
pub fn int(value: &Value) -> Result<u64, ParsingError> {
    match value {
        Value::Int(i) => u64::try_from(*i).map_err(|_| unexpected("a non-negative integer", value)),
        other => Err(unexpected("an integer", other)),
    }
}

/// A boolean: RESP3's, or RESP2's integer 0 or 1.
pub fn boolean(value: &Value) -> Result<bool, ParsingError> {
    match value {
        Value::Boolean(b) => Ok(*b),
        Value::Int(0) => Ok(false),
        Value::Int(1) => Ok(true),
        other => Err(unexpected("a boolean", other)),
    }
}

/// A list of strings (an array, or a RESP3 set).
pub fn list(value: &Value) -> Result<Vec<Vec<u8>>, ParsingError> {
    match value {
        Value::Array(items) | Value::Set(items) => items.iter().map(bytes).collect(),
        other => Err(unexpected("an array", other)),
    }
}

/// The `(key, value)` pairs of a RESP3 map or a RESP2 flat array, which must then have even length.
fn pairs(value: Value) -> Result<Vec<(Value, Value)>, ParsingError> {
    match value {
        Value::Map(pairs) => Ok(pairs),
        Value::Array(items) if items.len() % 2 == 0 => {
            let mut items = items.into_iter();
            Ok(std::iter::from_fn(|| Some((items.next()?, items.next()?))).collect())
        }
        other => Err(unexpected("a map (or a flat array of pairs)", &other)),
    }
}

fn unexpected(wanted: &str, got: &Value) -> ParsingError {
    format!("expected {wanted}, got {got:?}").into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    /// The same reply in both protocols.
    fn both(pairs: Vec<(&str, Value)>, resp2: impl Fn(Value) -> Value) -> [Value; 2] {
        let resp3 = Value::Map(pairs.iter().map(|(k, v)| (s(k), v.clone())).collect());
        let flat = pairs
            .into_iter()
            .flat_map(|(k, v)| [s(k), resp2(v)])
            .collect();
        [resp3, Value::Array(flat)]
    }

    /// RESP3 booleans are RESP2 integers; maps are flat arrays.
    fn resp2(value: Value) -> Value {
        match value {
            Value::Boolean(b) => Value::Int(b as i64),
            Value::Map(pairs) => {
                Value::Array(pairs.into_iter().flat_map(|(k, v)| [k, v]).collect())
            }
            other => other,
        }
    }

    #[test]
    fn join_reads_either_protocol() {
        let roster = Value::Map(vec![(s("alice"), s("{\"n\":1}")), (s("bob"), s("null"))]);
        for reply in both(
            vec![
                ("rev", Value::Int(7)),
                ("joined", Value::Boolean(true)),
                ("changed", Value::Boolean(false)),
                ("left", Value::Array(vec![s("old")])),
                ("expired", Value::Set(vec![s("gone")])),
                ("roster", roster.clone()),
                ("a-newer-field", Value::Int(1)),
            ],
            resp2,
        ) {
            let joined = Joined::from_redis_value(reply).unwrap();
            assert_eq!(joined.rev, 7);
            assert!(joined.joined && !joined.changed);
            assert_eq!(joined.left, vec![b"old".to_vec()]);
            assert_eq!(joined.expired, vec![b"gone".to_vec()]);
            let members = joined.roster.unwrap();
            assert_eq!(members[&b"alice"[..]], b"{\"n\":1}");
            assert_eq!(members.len(), 2);
        }
    }

    #[test]
    fn join_without_roster_and_leave_of_an_unknown_client() {
        for reply in both(
            vec![
                ("rev", Value::Int(1)),
                ("joined", Value::Boolean(false)),
                ("changed", Value::Boolean(true)),
                ("left", Value::Array(vec![])),
                ("expired", Value::Array(vec![])),
            ],
            resp2,
        ) {
            assert_eq!(Joined::from_redis_value(reply).unwrap().roster, None);
        }
        for reply in both(
            vec![
                ("rev", Value::Int(0)),
                ("left", Value::Boolean(false)),
                ("id", Value::Nil),
                ("expired", Value::Array(vec![])),
            ],
            resp2,
        ) {
            let left = Left::from_redis_value(reply).unwrap();
            assert_eq!((left.left, left.id), (false, None));
        }
    }

    #[test]
    fn touch_roster_and_count() {
        let touched = Touched::from_redis_value(Value::Array(vec![
            s("rev"),
            Value::Int(3),
            s("unknown"),
            Value::Array(vec![s("c9")]),
            s("expired"),
            Value::Array(vec![]),
        ]))
        .unwrap();
        assert_eq!(touched.unknown, vec![b"c9".to_vec()]);
        let roster = Roster::from_redis_value(Value::Array(vec![
            s("rev"),
            Value::Int(0),
            s("members"),
            Value::Array(vec![]),
        ]))
        .unwrap();
        assert_eq!(roster, Roster::default());
        for reply in both(
            vec![
                ("rev", Value::Int(9)),
                ("members", Value::Int(2)),
                ("connections", Value::Int(3)),
            ],
            resp2,
        ) {
            let count = Count::from_redis_value(reply).unwrap();
            assert_eq!((count.rev, count.members, count.connections), (9, 2, 3));
        }
    }

    #[test]
    fn malformed_replies_are_errors_that_say_what() {
        let odd = Value::Array(vec![s("rev")]);
        assert!(Joined::from_redis_value(odd).is_err());
        let missing = Count::from_redis_value(Value::Map(vec![(s("rev"), Value::Int(1))]));
        let error = missing.unwrap_err().to_string();
        assert!(
            error.contains("PRESENCE.COUNT reply without 'members'"),
            "{error}"
        );
        let negative = Value::Map(vec![
            (s("rev"), Value::Int(-1)),
            (s("members"), Value::Map(vec![])),
        ]);
        assert!(Roster::from_redis_value(negative).is_err());
        assert!(boolean(&Value::Int(2)).is_err());
        assert!(list(&s("not a list")).is_err());
        assert!(bytes(&Value::Int(1)).is_err());
    }
}
