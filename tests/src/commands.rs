//! Typed calls of the presence commands, for tests.

use std::collections::BTreeMap;

use redis::{ConnectionLike, RedisResult, Value};

use crate::reply::{boolean, bytes, fields, int, list, members};

/// A roster as `{id: data}`.
pub type Members = BTreeMap<Vec<u8>, Vec<u8>>;

/// A `PRESENCE.JOIN` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// `rev`
    pub rev: u64,
    /// `joined`
    pub joined: bool,
    /// `changed`
    pub changed: bool,
    /// `left`
    pub left: Vec<Vec<u8>>,
    /// `expired`
    pub expired: Vec<Vec<u8>>,
    /// `roster`, with `WITHROSTER`
    pub roster: Option<BTreeMap<Vec<u8>, Vec<u8>>>,
}

/// `PRESENCE.JOIN channel client id data [options...]`.
pub fn join(
    con: &mut impl ConnectionLike,
    channel: &str,
    client: impl AsRef<[u8]>,
    id: impl AsRef<[u8]>,
    data: impl AsRef<[u8]>,
    options: &[&str],
) -> RedisResult<Joined> {
    let value: Value = redis::cmd("PRESENCE.JOIN")
        .arg(channel)
        .arg(client.as_ref())
        .arg(id.as_ref())
        .arg(data.as_ref())
        .arg(options)
        .query(con)?;
    let mut f = fields(value);
    Ok(Joined {
        rev: int(&f["rev"]),
        joined: boolean(&f["joined"]),
        changed: boolean(&f["changed"]),
        left: list(&f["left"]),
        expired: list(&f["expired"]),
        roster: f.remove("roster").map(members),
    })
}

/// A `PRESENCE.LEAVE` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Left {
    /// `rev`
    pub rev: u64,
    /// `left`
    pub left: bool,
    /// `id`
    pub id: Option<Vec<u8>>,
    /// `expired`
    pub expired: Vec<Vec<u8>>,
}

/// `PRESENCE.LEAVE channel client`.
pub fn leave(
    con: &mut impl ConnectionLike,
    channel: &str,
    client: impl AsRef<[u8]>,
) -> RedisResult<Left> {
    let value: Value = redis::cmd("PRESENCE.LEAVE")
        .arg(channel)
        .arg(client.as_ref())
        .query(con)?;
    let f = fields(value);
    Ok(Left {
        rev: int(&f["rev"]),
        left: boolean(&f["left"]),
        id: match &f["id"] {
            Value::Nil => None,
            v => Some(bytes(v)),
        },
        expired: list(&f["expired"]),
    })
}

/// A `PRESENCE.TOUCH` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touched {
    /// `rev`
    pub rev: u64,
    /// `unknown`
    pub unknown: Vec<Vec<u8>>,
    /// `expired`
    pub expired: Vec<Vec<u8>>,
}

/// `PRESENCE.TOUCH channel client... [TTL ms]` (pass `TTL`, `ms` at the end of `args` for a TTL).
pub fn touch(con: &mut impl ConnectionLike, channel: &str, args: &[&str]) -> RedisResult<Touched> {
    let value: Value = redis::cmd("PRESENCE.TOUCH")
        .arg(channel)
        .arg(args)
        .query(con)?;
    let f = fields(value);
    Ok(Touched {
        rev: int(&f["rev"]),
        unknown: list(&f["unknown"]),
        expired: list(&f["expired"]),
    })
}

/// `PRESENCE.ROSTER channel` as `(rev, {id: data})`.
pub fn roster(con: &mut impl ConnectionLike, channel: &str) -> RedisResult<(u64, Members)> {
    let value: Value = redis::cmd("PRESENCE.ROSTER").arg(channel).query(con)?;
    let mut f = fields(value);
    Ok((
        int(&f["rev"]),
        members(f.remove("members").expect("members field")),
    ))
}

/// `PRESENCE.COUNT channel` as `(rev, members, connections)`.
pub fn count(con: &mut impl ConnectionLike, channel: &str) -> RedisResult<(u64, u64, u64)> {
    let value: Value = redis::cmd("PRESENCE.COUNT").arg(channel).query(con)?;
    let f = fields(value);
    Ok((int(&f["rev"]), int(&f["members"]), int(&f["connections"])))
}

/// `{id: data}` from string pairs, for comparisons.
pub fn roster_of(pairs: &[(&str, &str)]) -> BTreeMap<Vec<u8>, Vec<u8>> {
    pairs
        .iter()
        .map(|(id, data)| (id.as_bytes().to_vec(), data.as_bytes().to_vec()))
        .collect()
}
