//! `PRESENCE.TOUCH channel client [client ...] [TTL ms]`
//!
//! Moves the deadlines of live connections to now + TTL, after purging expired ones. Replies
//! `{rev, unknown, expired}`: the clients it did not know (expired, or lost in a failover: the caller
//! joins them again) and ids that expired on the way. `TTL ms`, when given, is the last two arguments.

use presence_roster::{EventKind, Op};
use redis_module::Context;

use super::{is_option, parse_ttl, Args};
use crate::config;
use crate::error::PresenceError;
use crate::reply::Reply;
use crate::store::{self, Origin};

/// Parsed arguments.
#[derive(Debug, PartialEq, Eq)]
pub struct TouchArgs<'a> {
    /// The connections to refresh.
    pub clients: Vec<&'a [u8]>,
    /// `TTL`, if given.
    pub ttl_ms: Option<u64>,
}

/// Parses `PRESENCE.TOUCH` arguments (command name first).
pub fn parse<'a>(argv: &[&'a [u8]]) -> Result<TouchArgs<'a>, PresenceError> {
    let [_, _channel, rest @ ..] = argv else {
        return Err(PresenceError::WrongArity);
    };
    let (clients, ttl_ms) = match rest {
        [clients @ .., option, ms] if is_option(option, "TTL") => (clients, Some(parse_ttl(ms)?)),
        clients => (clients, None),
    };
    if clients.is_empty() {
        return Err(PresenceError::WrongArity);
    }
    Ok(TouchArgs {
        clients: clients.to_vec(),
        ttl_ms,
    })
}

struct Touched {
    unknown: Vec<Vec<u8>>,
    expired: Vec<Vec<u8>>,
}

/// Runs the command.
pub fn run(ctx: &Context, args: &Args) -> Result<(), PresenceError> {
    let argv = args.bytes();
    let touch = parse(argv)?;
    let ttl_us = touch.ttl_ms.unwrap_or_else(config::default_ttl_ms) * 1000;
    let outcome = store::change(ctx, args.key()?, Origin::Client, |roster, journal, now| {
        journal.purge(roster, now);
        let deadline = now.saturating_add(ttl_us);
        let mut unknown = Vec::new();
        for client in &touch.clients {
            if roster.member_of(client).is_some() {
                let client = roster.share_client(client);
                journal.apply(roster, Op::Touch { client, deadline });
            } else {
                unknown.push(client.to_vec());
            }
        }
        Ok(Touched {
            unknown,
            expired: journal.ids(EventKind::Expire).map(<[u8]>::to_vec).collect(),
        })
    })?;
    let reply = Reply::new(ctx);
    reply.map(3);
    reply.bytes(b"rev").int(outcome.rev);
    reply
        .bytes(b"unknown")
        .list(outcome.value.unknown.iter().map(Vec::as_slice));
    reply
        .bytes(b"expired")
        .list(outcome.value.expired.iter().map(Vec::as_slice));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_is_taken_from_the_end_only() {
        let args = parse(&[b"T", b"/c", b"a", b"b", b"TTL", b"900"]).unwrap();
        assert_eq!(args.clients, vec![&b"a"[..], b"b"]);
        assert_eq!(args.ttl_ms, Some(900));
        assert!(matches!(
            parse(&[b"T", b"/c", b"x", b"TTL", b"soon"]),
            Err(PresenceError::BadTtl { .. })
        ));
    }

    #[test]
    fn needs_a_client() {
        assert!(matches!(
            parse(&[b"T", b"/c"]),
            Err(PresenceError::WrongArity)
        ));
        assert!(matches!(
            parse(&[b"T", b"/c", b"TTL", b"5"]),
            Err(PresenceError::WrongArity)
        ));
    }
}
