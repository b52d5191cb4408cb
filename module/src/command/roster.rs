//! `PRESENCE.ROSTER channel`
//!
//! Replies `{rev, members}` with `members` a map `{id: data}`. Read-only, so it also works on replicas.
//! It shows the roster exactly as of `rev`: a connection past its deadline is still listed until the next
//! write on the channel purges it (and publishes its leave), so a reader can combine this snapshot with
//! the published events without gaps or repeats.

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
    let reply = Reply::new(ctx);
    reply.map(2);
    match key.roster() {
        Some(roster) => reply
            .bytes(b"rev")
            .int(roster.rev())
            .bytes(b"members")
            .members(roster.member_count(), roster.members()),
        None => reply.bytes(b"rev").int(0).bytes(b"members").map(0),
    };
    Ok(())
}
