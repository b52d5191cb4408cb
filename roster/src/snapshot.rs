//! The binary form of a whole [`Roster`], for RDB, AOF rewrite, `DUMP`/`RESTORE` and slot migration.
//!
//! ```text
//! "PRS" version:u8 rev:u64
//! members:u32 { id:bytes data:bytes }*
//! connections:u32 { client:bytes id:bytes deadline:u64 }*
//! ```
//! Integers are little-endian; `bytes` is a `u32` length and the bytes. The decoder checks every count
//! and length against the bytes left before it allocates, `rev` against [`MAX_REV`], every deadline
//! against [`MAX_DEADLINE`], and the consistency of the result, so a corrupt or forged snapshot is an
//! error, never a panic, a huge allocation or a broken roster.

use crate::error::DecodeError;
use crate::roster::{Bytes, Roster};

/// The highest revision a roster may be loaded with (a snapshot, or `rev-before` of replicated ops): 2^62.
///
/// Revisions are replied as signed 64-bit integers and grow by one per event; a roster loaded at this
/// ceiling still has 2^62 events to go before it could reach `i64::MAX` (146,000 years at a million
/// events a second), so `rev` can never wrap or stop growing. Rosters start from the clock in
/// microseconds (about 2^51 today), far below it. Anything above is damage or forgery, and is refused.
pub const MAX_REV: u64 = 1 << 62;

/// The latest deadline a loaded connection may have: the first microsecond of the year 10000.
///
/// Deadlines are now + TTL, and a TTL is at most 30 days, so a real deadline is close to the clock of the
/// node that set it. The bound is loose on purpose (a node's clock may be far off), and only refuses
/// values that no clock will reach.
pub const MAX_DEADLINE: u64 = 253_402_300_800_000_000;

const MAGIC: &[u8; 3] = b"PRS";
const VERSION: u8 = 1;

/// Encodes `roster`.
pub fn encode(roster: &Roster) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 64 * roster.connection_count());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&roster.rev().to_le_bytes());
    put_len(&mut out, roster.member_count());
    for (id, data) in roster.members() {
        put_bytes(&mut out, id);
        put_bytes(&mut out, data);
    }
    put_len(&mut out, roster.connection_count());
    for (client, id, deadline) in roster.connections() {
        put_bytes(&mut out, client);
        put_bytes(&mut out, id);
        out.extend_from_slice(&deadline.to_le_bytes());
    }
    out
}

/// Decodes a snapshot written by [`encode`].
pub fn decode(input: &[u8]) -> Result<Roster, DecodeError> {
    let mut reader = Reader { input };
    if reader.take(3)? != MAGIC {
        return Err(DecodeError::Malformed("not a roster snapshot"));
    }
    if reader.take(1)?[0] != VERSION {
        return Err(DecodeError::Malformed("unknown snapshot version"));
    }
    let rev = reader.u64()?;
    if rev > MAX_REV {
        return Err(DecodeError::Malformed("revision out of range"));
    }
    // Every count is checked against the bytes left (a member takes at least two 4-byte lengths, a
    // connection those and an 8-byte deadline) before anything is allocated for it.
    let member_count = reader.count(8)?;
    let mut members = Vec::with_capacity(member_count);
    for _ in 0..member_count {
        members.push((reader.bytes()?, reader.bytes()?));
    }
    let connection_count = reader.count(16)?;
    let mut connections = Vec::with_capacity(connection_count);
    for _ in 0..connection_count {
        let (client, id, deadline) = (reader.bytes()?, reader.bytes()?, reader.u64()?);
        if deadline > MAX_DEADLINE {
            return Err(DecodeError::Malformed("deadline out of range"));
        }
        connections.push((client, id, deadline));
    }
    if !reader.input.is_empty() {
        return Err(DecodeError::Malformed("trailing bytes after snapshot"));
    }
    Roster::from_parts(rev, members, connections).map_err(DecodeError::Malformed)
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // Holds for everything a roster can contain: JOIN and the decoders refuse a field over u32::MAX
    // bytes, and no server holds 4 billion members or connections in one channel.
    let len = u32::try_from(len).expect("fields and counts fit in u32");
    out.extend_from_slice(&len.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

struct Reader<'a> {
    input: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.input.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.input.split_at(n);
        self.input = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.take(N)?.try_into().map_err(|_| DecodeError::Truncated)
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn len(&mut self) -> Result<usize, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?) as usize)
    }

    /// A count of items that take at least `min_item_bytes` each; more than the input can hold is an
    /// error.
    fn count(&mut self, min_item_bytes: usize) -> Result<usize, DecodeError> {
        let count = self.len()?;
        if count > self.input.len() / min_item_bytes {
            return Err(DecodeError::Truncated);
        }
        Ok(count)
    }

    fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.len()?;
        Ok(Bytes::from(self.take(len)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::Op;

    fn sample() -> Roster {
        let mut roster = Roster::new(41);
        let mut events = Vec::new();
        for (client, id, data, deadline) in [
            ("c1", "alice", "{\"n\":1}", 10),
            ("c2", "alice", "{\"n\":1}", 20),
            ("c3", "b\r\n{}", "\0\u{1F600}", 5),
        ] {
            roster.apply(
                &Op::Join {
                    client: Bytes::from(client.as_bytes()),
                    id: Bytes::from(id.as_bytes()),
                    data: Bytes::from(data.as_bytes()),
                    deadline,
                },
                &mut events,
            );
        }
        roster
    }

    #[test]
    fn round_trip_keeps_everything() {
        let roster = sample();
        assert_eq!(decode(&encode(&roster)).unwrap(), roster);
        assert_eq!(decode(&encode(&Roster::new(9))).unwrap(), Roster::new(9));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = encode(&sample());
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "prefix of {len} bytes");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
    }

    #[test]
    fn inconsistent_snapshots_are_refused() {
        // A connection that names a member that is not there.
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&1u64.to_le_bytes());
        put_len(&mut out, 0);
        put_len(&mut out, 1);
        put_bytes(&mut out, b"c");
        put_bytes(&mut out, b"ghost");
        out.extend_from_slice(&1u64.to_le_bytes());
        assert_eq!(
            decode(&out),
            Err(DecodeError::Malformed("connection of an unknown member"))
        );
        // A huge claimed count must not allocate for it.
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&1u64.to_le_bytes());
        out.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&out), Err(DecodeError::Truncated));
    }

    #[test]
    fn revisions_and_deadlines_out_of_range_are_refused() {
        let mut roster = Roster::new(MAX_REV);
        assert_eq!(decode(&encode(&roster)).unwrap().rev(), MAX_REV);
        let mut bytes = encode(&roster);
        bytes[4..12].copy_from_slice(&(MAX_REV + 1).to_le_bytes());
        assert_eq!(
            decode(&bytes),
            Err(DecodeError::Malformed("revision out of range"))
        );
        // At the ceiling, rev saturates instead of wrapping, and what it saved still loads.
        let mut events = Vec::new();
        roster.apply(
            &Op::Join {
                client: Bytes::from(&b"c"[..]),
                id: Bytes::from(&b"i"[..]),
                data: Bytes::from(&b""[..]),
                deadline: MAX_DEADLINE,
            },
            &mut events,
        );
        assert_eq!(roster.rev(), MAX_REV);
        assert_eq!(decode(&encode(&roster)).unwrap(), roster);
        let mut bytes = encode(&roster);
        let at = bytes.len() - 8;
        bytes[at..].copy_from_slice(&(MAX_DEADLINE + 1).to_le_bytes());
        assert_eq!(
            decode(&bytes),
            Err(DecodeError::Malformed("deadline out of range"))
        );
    }
}
