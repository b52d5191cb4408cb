//! `PRESENCE.COUNT channel`
//!
//! Replies `{rev, members, connections}`: distinct ids and their connections, as of `rev`. O(1).

use redis_module::{raw, Context, RedisResult, RedisString};

use super::dispatch;
use crate::error::PresenceError;
use crate::reply::Reply;
use crate::store::ChannelKey;

/// The Redis entry point.
pub fn command(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    dispatch(ctx, args, run)
}

fn run(ctx: &Context, args: &[RedisString]) -> Result<(), PresenceError> {
    let [_, channel] = args else {
        return Err(PresenceError::WrongArity);
    };
    let key = ChannelKey::open(ctx, channel, raw::REDISMODULE_READ)?;
    let (rev, members, connections) = key.roster().map_or((0, 0, 0), |r| {
        (r.rev(), r.member_count(), r.connection_count())
    });
    Reply::new(ctx)
        .map(3)
        .bytes(b"rev")
        .int(rev)
        .bytes(b"members")
        .int(members as u64)
        .bytes(b"connections")
        .int(connections as u64);
    Ok(())
}
