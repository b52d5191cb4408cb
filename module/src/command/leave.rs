//! `PRESENCE.LEAVE channel client [GRACE ms]`
//!
//! Removes one connection, after purging expired ones. Replies `{rev, left, id, expired}`: whether that
//! was the member's last connection (so the member left), the member id the client had (null for an
//! unknown client: leaving twice is a no-op, not an error), and ids that expired on the way.
//!
//! With `GRACE ms` (more than 0) the connection is not removed: its deadline is shortened to now + grace
//! (never lengthened), and it goes like any connection that missed its deadline, through the expiry
//! timer or the next command's purge. A connection of the same id that joins within the window finds
//! the member still there, so a page reload or a network blip publishes nothing (or one update if the
//! data changed); without one, the member's `expire` is published when the grace ends. `left` is then
//! false: nobody has left yet. This is one op on one key, like every change, so it is as atomic and
//! cluster-safe as a join, and replicas get the new deadline explicitly (a `T` op).

use presence_roster::{EventKind, Op};
use redis_module::Context;

use super::{is_option, Args};
use crate::config::MAX_TTL_MS;
use crate::error::PresenceError;
use crate::reply::Reply;
use crate::store::{self, Origin};

/// Parsed arguments.
#[derive(Debug, PartialEq, Eq)]
pub struct LeaveArgs<'a> {
    /// The connection.
    pub client: &'a [u8],
    /// `GRACE`, if given: milliseconds the leave is held; 0 leaves at once.
    pub grace_ms: Option<u64>,
}

/// Parses `PRESENCE.LEAVE` arguments (command name first).
pub fn parse<'a>(argv: &[&'a [u8]]) -> Result<LeaveArgs<'a>, PresenceError> {
    match argv {
        [_, _channel, client] => Ok(LeaveArgs {
            client,
            grace_ms: None,
        }),
        [_, _channel, client, option, ms] if is_option(option, "GRACE") => Ok(LeaveArgs {
            client,
            grace_ms: Some(parse_grace(ms)?),
        }),
        [_, _channel, _client, option] if is_option(option, "GRACE") => {
            Err(PresenceError::WrongArity)
        }
        [_, _channel, _client, option, ..] => Err(PresenceError::unknown_option(option)),
        _ => Err(PresenceError::WrongArity),
    }
}

/// A grace in milliseconds: a whole number from 0 to the longest TTL (a grace never outlives a
/// deadline anyway, since it only shortens one).
fn parse_grace(bytes: &[u8]) -> Result<u64, PresenceError> {
    presence_roster::parse_u64(bytes)
        .ok()
        .filter(|ms| *ms <= MAX_TTL_MS as u64)
        .ok_or(PresenceError::BadGrace { max: MAX_TTL_MS })
}

struct Left {
    id: Option<Vec<u8>>,
    left: bool,
    expired: Vec<Vec<u8>>,
}

/// Runs the command.
pub fn run(ctx: &Context, args: &Args) -> Result<(), PresenceError> {
    let argv = args.bytes();
    let leave = parse(argv)?;
    let grace_us = leave.grace_ms.unwrap_or(0).saturating_mul(1000);
    let outcome = store::change(ctx, args.key()?, Origin::Client, |roster, journal, now| {
        journal.purge(roster, now);
        let id = roster.member_of(leave.client).map(|id| id.to_vec());
        if id.is_some() {
            let client = roster.share_client(leave.client);
            if grace_us == 0 {
                journal.apply(roster, Op::Leave { client });
            } else {
                // Shorten only: a grace must not keep a connection longer than its TTL would, and
                // leaving again within the window must not move the deadline (nor publish anything).
                let deadline = now.saturating_add(grace_us);
                if roster.deadline_of(&client).is_some_and(|d| d > deadline) {
                    journal.apply(roster, Op::Touch { client, deadline });
                }
            }
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
    fn takes_one_client_and_an_optional_grace() {
        let args = |client, grace_ms| LeaveArgs { client, grace_ms };
        assert_eq!(
            parse(&[b"PRESENCE.LEAVE", b"/c", b"cl"]).unwrap(),
            args(b"cl", None)
        );
        assert_eq!(
            parse(&[b"L", b"/c", b"cl", b"grace", b"1500"]).unwrap(),
            args(b"cl", Some(1500))
        );
        assert_eq!(
            parse(&[b"L", b"/c", b"cl", b"GRACE", b"0"]).unwrap(),
            args(b"cl", Some(0))
        );
        assert!(matches!(
            parse(&[b"PRESENCE.LEAVE", b"/c"]),
            Err(PresenceError::WrongArity)
        ));
        assert!(matches!(
            parse(&[b"L", b"/c", b"cl", b"GRACE"]),
            Err(PresenceError::WrongArity)
        ));
        assert!(matches!(
            parse(&[b"L", b"/c", b"a", b"b"]),
            Err(PresenceError::UnknownOption(o)) if o == "b"
        ));
        assert!(matches!(
            parse(&[b"L", b"/c", b"a", b"GRACE", b"1", b"x"]),
            Err(PresenceError::UnknownOption(_))
        ));
        for bad in [&b"-1"[..], b"1.5", b"", b"x", b"2592000001"] {
            assert!(
                matches!(
                    parse(&[b"L", b"/c", b"cl", b"GRACE", bad]),
                    Err(PresenceError::BadGrace { .. })
                ),
                "{bad:?}"
            );
        }
    }
}
