//! [`Op`]: one effect on a roster, with every value explicit, and its encoding as command arguments.
//!
//! `PRESENCE.APPLY <channel> <rev-before> <op>...` carries a command's ops to replicas and the AOF.
//! Each op is a letter followed by its fields, one argument each (arguments are binary-safe):
//! - `J <client> <id> <data> <deadline>`: bind `client` to member `id` with `data` (join or refresh),
//! - `L <client>`: the client left,
//! - `X <client>`: the client's deadline passed,
//! - `T <client> <deadline>`: a new deadline for a known client.
//!
//! Deadlines are microseconds since the Unix epoch, in decimal.

use crate::error::DecodeError;
use crate::roster::Bytes;

/// One effect on a roster. See the module docs for the argument form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Bind `client` to member `id` with `data` and `deadline`: a new connection, a refresh, a data change,
    /// or a move from another id.
    Join {
        /// The connection (a Bayeux client id).
        client: Bytes,
        /// The member id.
        id: Bytes,
        /// The member's data; the newest wins.
        data: Bytes,
        /// When the connection expires unless touched, in microseconds since the epoch.
        deadline: u64,
    },
    /// The connection left.
    Leave {
        /// The connection.
        client: Bytes,
    },
    /// The connection missed its deadline.
    Expire {
        /// The connection.
        client: Bytes,
    },
    /// A new deadline for a live connection.
    Touch {
        /// The connection.
        client: Bytes,
        /// The new deadline, in microseconds since the epoch.
        deadline: u64,
    },
}

impl Op {
    /// Appends this op's arguments to `args`.
    pub fn encode_args(&self, args: &mut Vec<Vec<u8>>) {
        match self {
            Op::Join {
                client,
                id,
                data,
                deadline,
            } => {
                args.push(b"J".to_vec());
                args.push(client.to_vec());
                args.push(id.to_vec());
                args.push(data.to_vec());
                args.push(deadline.to_string().into_bytes());
            }
            Op::Leave { client } => {
                args.push(b"L".to_vec());
                args.push(client.to_vec());
            }
            Op::Expire { client } => {
                args.push(b"X".to_vec());
                args.push(client.to_vec());
            }
            Op::Touch { client, deadline } => {
                args.push(b"T".to_vec());
                args.push(client.to_vec());
                args.push(deadline.to_string().into_bytes());
            }
        }
    }

    /// Reads a whole list of ops from arguments, as written by [`Op::encode_args`].
    pub fn decode_args(args: &[&[u8]]) -> Result<Vec<Op>, DecodeError> {
        let mut ops = Vec::new();
        let mut rest = args;
        while let Some((kind, tail)) = rest.split_first() {
            let (op, used) = match *kind {
                b"J" => match tail {
                    [client, id, data, deadline, ..] => (
                        Op::Join {
                            client: Bytes::from(*client),
                            id: Bytes::from(*id),
                            data: Bytes::from(*data),
                            deadline: parse_u64(deadline)?,
                        },
                        4,
                    ),
                    _ => return Err(DecodeError::Truncated),
                },
                b"L" | b"X" => match tail {
                    [client, ..] => {
                        let client = Bytes::from(*client);
                        let op = if *kind == b"L" {
                            Op::Leave { client }
                        } else {
                            Op::Expire { client }
                        };
                        (op, 1)
                    }
                    _ => return Err(DecodeError::Truncated),
                },
                b"T" => match tail {
                    [client, deadline, ..] => (
                        Op::Touch {
                            client: Bytes::from(*client),
                            deadline: parse_u64(deadline)?,
                        },
                        2,
                    ),
                    _ => return Err(DecodeError::Truncated),
                },
                other => {
                    return Err(DecodeError::UnknownKind(
                        String::from_utf8_lossy(other).into_owned(),
                    ))
                }
            };
            ops.push(op);
            rest = &tail[used..];
        }
        Ok(ops)
    }
}

/// Parses a plain decimal `u64`: digits only, no sign, no spaces, no overflow.
pub fn parse_u64(bytes: &[u8]) -> Result<u64, DecodeError> {
    if bytes.is_empty() || bytes.len() > 20 || !bytes.iter().all(u8::is_ascii_digit) {
        return Err(DecodeError::BadNumber);
    }
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(DecodeError::BadNumber)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::from(s.as_bytes())
    }

    #[test]
    fn ops_round_trip_through_arguments() {
        let ops = vec![
            Op::Join {
                client: b("c1"),
                id: b("a b:{c}"),
                data: Bytes::from(&b"\r\n\0\xff"[..]),
                deadline: 17,
            },
            Op::Leave { client: b("c2") },
            Op::Expire { client: b("") },
            Op::Touch {
                client: b("c1"),
                deadline: u64::MAX,
            },
        ];
        let mut args = Vec::new();
        for op in &ops {
            op.encode_args(&mut args);
        }
        let slices: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        assert_eq!(Op::decode_args(&slices).unwrap(), ops);
    }

    #[test]
    fn truncated_and_unknown_ops_are_errors() {
        assert_eq!(
            Op::decode_args(&[b"J", b"c", b"id"]),
            Err(DecodeError::Truncated)
        );
        assert_eq!(Op::decode_args(&[b"T", b"c"]), Err(DecodeError::Truncated));
        assert_eq!(
            Op::decode_args(&[b"Q"]),
            Err(DecodeError::UnknownKind("Q".into()))
        );
        assert_eq!(
            Op::decode_args(&[b"T", b"c", b"-1"]),
            Err(DecodeError::BadNumber)
        );
        assert_eq!(Op::decode_args(&[]), Ok(vec![]));
    }

    #[test]
    fn numbers_are_strict() {
        assert_eq!(parse_u64(b"0"), Ok(0));
        assert_eq!(parse_u64(b"18446744073709551615"), Ok(u64::MAX));
        for bad in [
            &b""[..],
            b"+1",
            b" 1",
            b"1.0",
            b"18446744073709551616",
            b"99999999999999999999999",
        ] {
            assert_eq!(parse_u64(bad), Err(DecodeError::BadNumber), "{bad:?}");
        }
    }
}
