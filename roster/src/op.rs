//! [`Op`]: one effect on a roster, with every value explicit, and its encoding for `PRESENCE.APPLY`.
//!
//! `PRESENCE.APPLY <channel> <rev-before> <ops>` carries a command's ops to replicas and the AOF, all ops
//! in one argument (so replicating a command costs three strings, however many ops it applied), one line
//! per op, with the codec of [`crate::codec`]:
//!
//! ```text
//! J <len>:<client> <len>:<id> <len>:<data> <deadline>\n    bind client to id with data (join, refresh)
//! L <len>:<client>\n                                       the client left
//! X <len>:<client>\n                                       the client's deadline passed
//! T <len>:<client> <deadline>\n                            a new deadline for a known client
//! ```
//!
//! Deadlines are microseconds since the Unix epoch, at most [`MAX_DEADLINE`](crate::snapshot::MAX_DEADLINE).

use crate::codec::{expect, put_field, put_number, shown, take_deadline, take_field, take_until};
use crate::error::DecodeError;
use crate::roster::Bytes;

/// One effect on a roster. See the module docs for its encoding.
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
    /// Appends this op's line to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Op::Join {
                client,
                id,
                data,
                deadline,
            } => {
                out.extend_from_slice(b"J ");
                put_field(out, client);
                out.push(b' ');
                put_field(out, id);
                out.push(b' ');
                put_field(out, data);
                out.push(b' ');
                put_number(out, *deadline);
            }
            Op::Leave { client } | Op::Expire { client } => {
                out.extend_from_slice(if matches!(self, Op::Leave { .. }) {
                    b"L "
                } else {
                    b"X "
                });
                put_field(out, client);
            }
            Op::Touch { client, deadline } => {
                out.extend_from_slice(b"T ");
                put_field(out, client);
                out.push(b' ');
                put_number(out, *deadline);
            }
        }
        out.push(b'\n');
    }

    /// Encodes a list of ops.
    pub fn encode_all(ops: &[Op]) -> Vec<u8> {
        let mut out = Vec::with_capacity(ops.iter().map(Op::encoded_size_hint).sum());
        for op in ops {
            op.encode(&mut out);
        }
        out
    }

    fn encoded_size_hint(&self) -> usize {
        match self {
            Op::Join {
                client, id, data, ..
            } => 48 + client.len() + id.len() + data.len(),
            Op::Leave { client } | Op::Expire { client } => 12 + client.len(),
            Op::Touch { client, .. } => 36 + client.len(),
        }
    }

    /// Decodes a list of ops written by [`Op::encode_all`].
    pub fn decode_all(mut input: &[u8]) -> Result<Vec<Op>, DecodeError> {
        let mut ops = Vec::new();
        while !input.is_empty() {
            let kind = take_until(&mut input, b' ')?;
            let op = match kind {
                b"J" => {
                    let client = take_field(&mut input)?;
                    expect(&mut input, b' ')?;
                    let id = take_field(&mut input)?;
                    expect(&mut input, b' ')?;
                    let data = take_field(&mut input)?;
                    expect(&mut input, b' ')?;
                    let deadline = take_deadline(&mut input, b'\n')?;
                    Op::Join {
                        client,
                        id,
                        data,
                        deadline,
                    }
                }
                b"L" | b"X" => {
                    let client = take_field(&mut input)?;
                    expect(&mut input, b'\n')?;
                    if kind == b"L" {
                        Op::Leave { client }
                    } else {
                        Op::Expire { client }
                    }
                }
                b"T" => {
                    let client = take_field(&mut input)?;
                    expect(&mut input, b' ')?;
                    let deadline = take_deadline(&mut input, b'\n')?;
                    Op::Touch { client, deadline }
                }
                other => return Err(DecodeError::UnknownKind(shown(other))),
            };
            ops.push(op);
        }
        Ok(ops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::from(s.as_bytes())
    }

    #[test]
    fn ops_read_as_documented_and_round_trip() {
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
                deadline: crate::snapshot::MAX_DEADLINE,
            },
        ];
        let encoded = Op::encode_all(&ops);
        assert_eq!(
            encoded,
            b"J 2:c1 7:a b:{c} 4:\r\n\0\xff 17\nL 2:c2\nX 0:\nT 2:c1 253402300800000000\n".to_vec()
        );
        assert_eq!(Op::decode_all(&encoded).unwrap(), ops);
    }

    #[test]
    fn broken_ops_are_errors() {
        assert_eq!(Op::decode_all(b"J 1:c 2:id"), Err(DecodeError::Truncated));
        assert_eq!(
            Op::decode_all(b"T 1:c\n"),
            Err(DecodeError::Malformed("unexpected byte"))
        );
        assert_eq!(
            Op::decode_all(b"Q 1:c\n"),
            Err(DecodeError::UnknownKind("Q".into()))
        );
        assert_eq!(Op::decode_all(b"T 1:c -1\n"), Err(DecodeError::BadNumber));
        assert_eq!(Op::decode_all(b"L 1:c"), Err(DecodeError::Truncated));
        assert_eq!(Op::decode_all(b""), Ok(vec![]));
        assert_eq!(
            Op::decode_all(b"T 1:c 253402300800000001\n"),
            Err(DecodeError::Malformed("deadline out of range"))
        );
        assert_eq!(
            Op::decode_all(b"\0\r\n 1:c\n"),
            Err(DecodeError::UnknownKind("\\x00\\x0d\\x0a".into()))
        );
    }
}
