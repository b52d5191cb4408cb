//! `PRESENCE.LEAVE channel client`
//!
//! Removes one connection, after purging expired ones. Replies `{rev, left, id, expired}`: whether that
//! was the member's last connection (so the member left), the member id the client had (null for an
//! unknown client: leaving twice is a no-op, not an error), and ids that expired on the way.

use presence_roster::{EventKind, Op};
use redis_module::Context;

use super::Args;
use crate::error::PresenceError;
use crate::reply::Reply;
use crate::store::{self, Origin};

/// Parses `PRESENCE.LEAVE` arguments (command name first) and returns the client.
pub fn parse<'a>(argv: &[&'a [u8]]) -> Result<&'a [u8], PresenceError> {
    match argv {
        [_, _channel, client] => Ok(client),
        _ => Err(PresenceError::WrongArity),
    }
}

struct Left {
    id: Option<Vec<u8>>,
    left: bool,
    expired: Vec<Vec<u8>>,
}

/// Runs the command.
pub fn run(ctx: &Context, args: &Args) -> Result<(), PresenceError> {
    let argv = args.bytes();
    let client = parse(argv)?;
    let outcome = store::change(ctx, args.key()?, Origin::Client, |roster, journal, now| {
        journal.purge(roster, now);
        let id = roster.member_of(client).map(|id| id.to_vec());
        if id.is_some() {
            let client = roster.share_client(client);
            journal.apply(roster, Op::Leave { client });
        }
        Ok(Left {
            left: id
                .as_deref()
                .is_some_and(|id| journal.has(EventKind::Leave, id)),
            id,
            expired: journal.ids(EventKind::Expire).map(<[u8]>::to_vec).collect(),
        })
    })?;
    let reply = Reply::new(ctx);
    reply.map(4);
    reply.bytes(b"rev").int(outcome.rev);
    reply.bytes(b"left").bool(outcome.value.left);
    reply.bytes(b"id");
    match &outcome.value.id {
        Some(id) => reply.bytes(id),
        None => reply.null(),
    };
    reply
        .bytes(b"expired")
        .list(outcome.value.expired.iter().map(Vec::as_slice));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_exactly_one_client() {
        assert_eq!(parse(&[b"PRESENCE.LEAVE", b"/c", b"cl"]).unwrap(), b"cl");
        assert!(matches!(
            parse(&[b"PRESENCE.LEAVE", b"/c"]),
            Err(PresenceError::WrongArity)
        ));
        assert!(matches!(
            parse(&[b"PRESENCE.LEAVE", b"/c", b"a", b"b"]),
            Err(PresenceError::WrongArity)
        ));
    }
}
