//! `PRESENCE.ROSTER channel`
//!
//! Replies `{rev, members}` with `members` a map `{id: data}`. Read-only, so it also works on replicas.
//! It shows the roster exactly as of `rev`: a connection past its deadline is still listed until the next
//! write on the channel purges it (and publishes its leave), so a reader can combine this snapshot with
//! the published events without gaps or repeats.

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
    let reply = Reply::new(ctx);
    reply.map(2);
    match key.roster() {
        Some(roster) => reply
            .bytes(b"rev")
            .int(roster.rev())
            .bytes(b"members")
            .members(roster),
        None => reply.bytes(b"rev").int(0).bytes(b"members").map(0),
    };
    Ok(())
}
