//! `PRESENCE.APPLY channel rev-before ops` and `PRESENCE.APPLY channel SNAPSHOT bytes` (internal)
//!
//! What a master replicates and the AOF stores instead of the commands clients sent, because those read
//! the clock: the exact ops a command applied (see [`presence_roster::op`]), or a whole roster written by
//! AOF rewrite. Accepted only from this node's master or while loading, never from ordinary clients.

use presence_roster::snapshot::{self, MAX_REV};
use presence_roster::{parse_u64, DecodeError, Journal, Op};
use redis_module::{raw, Context};

use super::{is_option, Args};
use crate::error::PresenceError;
use crate::reply::Reply;
use crate::store::{self, ChannelKey, Origin};

/// Parsed arguments.
#[derive(Debug, PartialEq, Eq)]
pub enum ApplyArgs<'a> {
    /// Ops to apply on top of `rev_before`.
    Ops {
        /// The master's revision before the ops.
        rev_before: u64,
        /// The ops.
        ops: Vec<Op>,
    },
    /// A whole roster replacing the key's value.
    Snapshot(&'a [u8]),
}

/// Parses `PRESENCE.APPLY` arguments (command name first).
pub fn parse<'a>(argv: &[&'a [u8]]) -> Result<ApplyArgs<'a>, PresenceError> {
    match argv {
        [_, _channel, mode, blob] if is_option(mode, "SNAPSHOT") => Ok(ApplyArgs::Snapshot(blob)),
        [_, _channel, rev, ops] => {
            // The same ceiling as a snapshot's: an AOF or a master is outside input too.
            let rev_before = parse_u64(rev)?;
            if rev_before > MAX_REV {
                return Err(DecodeError::Malformed("revision out of range").into());
            }
            Ok(ApplyArgs::Ops {
                rev_before,
                ops: Op::decode_all(ops)?,
            })
        }
        _ => Err(PresenceError::WrongArity),
    }
}

/// Runs the command.
pub fn run(ctx: &Context, args: &Args) -> Result<(), PresenceError> {
    if !store::is_from_master_or_loading(ctx) {
        return Err(PresenceError::ApplyDenied);
    }
    let argv = args.bytes();
    match parse(argv)? {
        ApplyArgs::Ops { rev_before, ops } => {
            // The replay the roster's property test checks against a reference model.
            store::change(ctx, args.key()?, Origin::Master, |roster, journal, _now| {
                *journal = Journal::replay(roster, rev_before, ops);
                Ok(())
            })?;
        }
        ApplyArgs::Snapshot(blob) => {
            let roster = snapshot::decode(blob)?;
            let key = ChannelKey::open(
                ctx,
                args.key()?,
                raw::REDISMODULE_READ | raw::REDISMODULE_WRITE,
            )?;
            match roster.latest_deadline() {
                Some(deadline) => {
                    key.store(roster);
                    key.expire_at(deadline);
                }
                None => key.delete(),
            }
            ctx.replicate_verbatim();
        }
    }
    Reply::new(ctx).ok();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms() {
        assert_eq!(
            parse(&[b"A", b"/c", b"SNAPSHOT", b"xyz"]).unwrap(),
            ApplyArgs::Snapshot(b"xyz")
        );
        assert_eq!(
            parse(&[b"A", b"/c", b"12", b"L 2:cl\n"]).unwrap(),
            ApplyArgs::Ops {
                rev_before: 12,
                ops: vec![Op::Leave {
                    client: b"cl".as_slice().into()
                }]
            }
        );
        assert!(matches!(
            parse(&[b"A", b"/c"]),
            Err(PresenceError::WrongArity)
        ));
        assert!(matches!(
            parse(&[b"A", b"/c", b"x", b""]),
            Err(PresenceError::BadApply(_))
        ));
        assert!(matches!(
            parse(&[b"A", b"/c", b"1", b"L 1:c\n", b"extra"]),
            Err(PresenceError::WrongArity)
        ));
        assert!(matches!(
            parse(&[b"A", b"/c", b"1", b"J 1:c"]),
            Err(PresenceError::BadApply(_))
        ));
        assert!(parse(&[b"A", b"/c", b"4611686018427387904", b""]).is_ok());
        assert!(matches!(
            parse(&[b"A", b"/c", b"4611686018427387905", b""]),
            Err(PresenceError::BadApply(_))
        ));
    }
}
