//! `PRESENCE.COUNT channel`
//!
//! Replies `{rev, members, connections}`: distinct ids and their connections, as of `rev`. O(1).

use redis_module::{raw, Context};

use super::Args;
use crate::error::PresenceError;
use crate::reply::Reply;
use crate::store::ChannelKey;

/// Runs the command.
pub fn run(ctx: &Context, args: &Args) -> Result<(), PresenceError> {
    if args.bytes().len() != 2 {
        return Err(PresenceError::WrongArity);
    }
    let key = ChannelKey::open(ctx, args.key()?, raw::REDISMODULE_READ)?;
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
