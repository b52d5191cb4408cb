//! The presence commands for tests, through `presence-client` (the one decoder of the module's replies,
//! which the shim uses too). Options stay raw strings, so tests can send what no builder would
//! (`withroster` in lower case, a TTL of 0) and see how the module answers.

use redis::{ConnectionLike, RedisResult};

pub use presence_client::{Joined, Left, Members, Touched};

/// `PRESENCE.JOIN channel client id data [options...]`.
pub fn join(
    con: &mut impl ConnectionLike,
    channel: &str,
    client: impl AsRef<[u8]>,
    id: impl AsRef<[u8]>,
    data: impl AsRef<[u8]>,
    options: &[&str],
) -> RedisResult<Joined> {
    presence_client::cmd::join(channel, client.as_ref(), id.as_ref(), data.as_ref())
        .arg(options)
        .query(con)
}

/// `PRESENCE.LEAVE channel client`.
pub fn leave(
    con: &mut impl ConnectionLike,
    channel: &str,
    client: impl AsRef<[u8]>,
) -> RedisResult<Left> {
    presence_client::cmd::leave(channel, client.as_ref()).query(con)
}

/// `PRESENCE.TOUCH channel client... [TTL ms]` (pass `TTL`, `ms` at the end of `args` for a TTL).
pub fn touch(con: &mut impl ConnectionLike, channel: &str, args: &[&str]) -> RedisResult<Touched> {
    // The arguments as given (no TTL of the builder's): clients and TTL are the test's to get wrong.
    presence_client::cmd::touch(channel, args, None).query(con)
}

/// `PRESENCE.ROSTER channel` as `(rev, {id: data})`.
pub fn roster(con: &mut impl ConnectionLike, channel: &str) -> RedisResult<(u64, Members)> {
    let roster: presence_client::Roster = presence_client::cmd::roster(channel).query(con)?;
    Ok((roster.rev, roster.members))
}

/// `PRESENCE.COUNT channel` as `(rev, members, connections)`.
pub fn count(con: &mut impl ConnectionLike, channel: &str) -> RedisResult<(u64, u64, u64)> {
    let count: presence_client::Count = presence_client::cmd::count(channel).query(con)?;
    Ok((count.rev, count.members, count.connections))
}

/// `{id: data}` from string pairs, for comparisons.
pub fn roster_of(pairs: &[(&str, &str)]) -> Members {
    pairs
        .iter()
        .map(|(id, data)| (id.as_bytes().to_vec(), data.as_bytes().to_vec()))
        .collect()
}
