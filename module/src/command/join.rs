//! `PRESENCE.JOIN channel client id data [TTL ms] [MAXMEMBERS n] [WITHROSTER]`
//!
//! Binds connection `client` to member `id` with `data`, after purging expired connections. A new
//! member is refused (`LIMIT`, nothing changed) when the channel already has `n` members, or
//! `presence.max-members`, whichever is lower: the check and the join are one atomic step, so joins
//! racing through many processes cannot pass it. Replies
//! `{rev, joined, changed, left, expired[, roster]}`: whether `id` is new on the channel, whether its
//! data changed, ids that left because this client moved to another id, ids that expired on the way,
//! and with `WITHROSTER` the whole roster after the join.

use presence_roster::roster::Bytes;
use presence_roster::{EventKind, Op};
use redis_module::Context;

use super::{is_option, parse_ttl, Args};
use crate::config;
use crate::error::PresenceError;
use crate::reply::Reply;
use crate::store::{self, Origin};

/// Parsed arguments.
#[derive(Debug, PartialEq, Eq)]
pub struct JoinArgs<'a> {
    /// The connection.
    pub client: &'a [u8],
    /// The member id.
    pub id: &'a [u8],
    /// The member data.
    pub data: &'a [u8],
    /// `TTL`, if given.
    pub ttl_ms: Option<u64>,
    /// `MAXMEMBERS`, if given: the most members this join may find on the channel and still add one.
    pub max_members: Option<u64>,
    /// `WITHROSTER` was given.
    pub with_roster: bool,
}

/// Parses `PRESENCE.JOIN` arguments (command name first).
pub fn parse<'a>(argv: &[&'a [u8]]) -> Result<JoinArgs<'a>, PresenceError> {
    let [_, _channel, client, id, data, options @ ..] = argv else {
        return Err(PresenceError::WrongArity);
    };
    let mut args = JoinArgs {
        client,
        id,
        data,
        ttl_ms: None,
        max_members: None,
        with_roster: false,
    };
    // Snapshots store lengths as u32; refusing longer names here keeps every stored roster saveable.
    // (Data is bounded far lower by presence.max-data-bytes.)
    for (what, field) in [("client", client), ("id", id)] {
        if u32::try_from(field.len()).is_err() {
            return Err(PresenceError::FieldTooLarge {
                what,
                len: field.len(),
            });
        }
    }
    let mut options = options.iter();
    while let Some(option) = options.next() {
        if is_option(option, "TTL") {
            let ms = options.next().ok_or(PresenceError::WrongArity)?;
            args.ttl_ms = Some(parse_ttl(ms)?);
        } else if is_option(option, "MAXMEMBERS") {
            let n = options.next().ok_or(PresenceError::WrongArity)?;
            args.max_members = Some(parse_max_members(n)?);
        } else if is_option(option, "WITHROSTER") {
            args.with_roster = true;
        } else {
            return Err(PresenceError::unknown_option(option));
        }
    }
    Ok(args)
}

/// Parses `MAXMEMBERS n`: a whole number, at least 1.
fn parse_max_members(bytes: &[u8]) -> Result<u64, PresenceError> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|n| *n >= 1)
        .ok_or(PresenceError::BadMaxMembers)
}

/// Runs the command.
pub fn run(ctx: &Context, args: &Args) -> Result<(), PresenceError> {
    let argv = args.bytes();
    let join = parse(argv)?;
    let max_data = config::max_data_bytes();
    if join.data.len() as i64 > max_data {
        return Err(PresenceError::DataTooLarge {
            len: join.data.len(),
            max: max_data,
        });
    }
    let max_id = config::max_id_bytes();
    if join.id.len() as i64 > max_id {
        return Err(PresenceError::IdTooLarge {
            len: join.id.len(),
            max: max_id,
        });
    }
    let ttl_us = join.ttl_ms.unwrap_or_else(config::default_ttl_ms) * 1000;
    let hard_cap = u64::try_from(config::max_members()).unwrap_or(0);
    let outcome = store::change(ctx, args.key()?, Origin::Client, |roster, journal, now| {
        journal.purge(roster, now);
        let members = roster.member_count();
        if !roster.has_member(join.id) {
            if members as u64 >= hard_cap {
                return Err(PresenceError::ChannelFull { members });
            }
            if let Some(max) = join.max_members.filter(|max| members as u64 >= *max) {
                return Err(PresenceError::OverMaxMembers { members, max });
            }
        }
        let (id, data) = roster.share_member(join.id, join.data);
        let op = Op::Join {
            client: roster.share_client(join.client),
            id,
            data,
            deadline: now.saturating_add(ttl_us),
        };
        journal.apply(roster, op);
        Ok(Joined {
            joined: journal.has(EventKind::Join, join.id),
            changed: journal.has(EventKind::Update, join.id),
            left: journal.ids(EventKind::Leave).map(<[u8]>::to_vec).collect(),
            expired: journal.ids(EventKind::Expire).map(<[u8]>::to_vec).collect(),
            // Shared bytes: a reference count per member, no copy of ids or data.
            roster: join.with_roster.then(|| {
                roster
                    .members()
                    .map(|(id, data)| (id.clone(), data.clone()))
                    .collect()
            }),
        })
    })?;
    let joined = outcome.value;
    let reply = Reply::new(ctx);
    reply.map(5 + usize::from(joined.roster.is_some()));
    reply.bytes(b"rev").int(outcome.rev);
    reply.bytes(b"joined").bool(joined.joined);
    reply.bytes(b"changed").bool(joined.changed);
    reply
        .bytes(b"left")
        .list(joined.left.iter().map(Vec::as_slice));
    reply
        .bytes(b"expired")
        .list(joined.expired.iter().map(Vec::as_slice));
    if let Some(roster) = &joined.roster {
        reply
            .bytes(b"roster")
            .members(roster.len(), roster.iter().map(|(id, data)| (id, data)));
    }
    Ok(())
}

/// What a join did, for its reply.
struct Joined {
    joined: bool,
    changed: bool,
    left: Vec<Vec<u8>>,
    expired: Vec<Vec<u8>>,
    roster: Option<Vec<(Bytes, Bytes)>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_options_in_any_order_and_case() {
        let args = parse(&[
            b"PRESENCE.JOIN",
            b"/c",
            b"cl",
            b"id",
            b"{}",
            b"withroster",
            b"ttl",
            b"500",
        ])
        .unwrap();
        assert_eq!(
            args,
            JoinArgs {
                client: b"cl",
                id: b"id",
                data: b"{}",
                ttl_ms: Some(500),
                max_members: None,
                with_roster: true
            }
        );
    }

    #[test]
    fn rejects_bad_arguments() {
        assert!(matches!(
            parse(&[b"PRESENCE.JOIN", b"/c", b"cl", b"id"]),
            Err(PresenceError::WrongArity)
        ));
        assert!(matches!(
            parse(&[b"J", b"/c", b"cl", b"id", b"d", b"TTL"]),
            Err(PresenceError::WrongArity)
        ));
        assert!(matches!(
            parse(&[b"J", b"/c", b"cl", b"id", b"d", b"TTL", b"0"]),
            Err(PresenceError::BadTtl { .. })
        ));
        assert_eq!(
            parse(&[b"J", b"/c", b"cl", b"id", b"d", b"MAXMEMBERS", b"7"])
                .unwrap()
                .max_members,
            Some(7)
        );
        for bad in [&b"0"[..], b"-1", b"x", b"1.5", b""] {
            assert!(matches!(
                parse(&[b"J", b"/c", b"cl", b"id", b"d", b"MAXMEMBERS", bad]),
                Err(PresenceError::BadMaxMembers)
            ));
        }
        assert!(matches!(
            parse(&[b"J", b"/c", b"cl", b"id", b"d", b"MAXMEMBERS"]),
            Err(PresenceError::WrongArity)
        ));
        assert!(matches!(
            parse(&[b"J", b"/c", b"cl", b"id", b"d", b"NX"]),
            Err(PresenceError::UnknownOption(o)) if o == "NX"
        ));
        // Client bytes in the message are escaped: this one used to abort Redis while building the reply.
        assert!(matches!(
            parse(&[b"J", b"/c", b"cl", b"id", b"d", "\u{100}".as_bytes()]),
            Err(PresenceError::UnknownOption(o)) if o == "\\xc4\\x80"
        ));
    }
}
