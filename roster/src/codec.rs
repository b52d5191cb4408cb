//! The small text codec shared by the event message ([`crate::wire`]) and the replicated ops
//! ([`crate::op`]): decimal numbers, words ended by a separator, and length-prefixed byte fields
//! (`<len>:<bytes>`, netstring style) so any bytes, newlines included, pass through.

use crate::error::DecodeError;
use crate::roster::Bytes;
use crate::snapshot::MAX_DEADLINE;

/// Appends `n` in decimal (itoa: this runs for every event and op, and `fmt` costs several times more).
pub fn put_number(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Appends `<len>:<bytes>`.
pub fn put_field(out: &mut Vec<u8>, bytes: &[u8]) {
    put_number(out, bytes.len() as u64);
    out.push(b':');
    out.extend_from_slice(bytes);
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

/// How many bytes of a client's input an error message shows.
const SHOWN_BYTES: usize = 24;

/// `bytes` as they may appear in an error message: at most [`SHOWN_BYTES`] of them, printable ASCII as
/// is (backslash and quotes escaped), anything else (NUL, CR, LF, non-ASCII) as `\xNN`, and `...` when
/// cut. The message may become a Redis error reply or a log line, where a NUL or a newline would break
/// it, and a long one would let a client fill the log.
pub fn shown(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(SHOWN_BYTES + 3);
    for &b in bytes.iter().take(SHOWN_BYTES) {
        match b {
            b'\\' | b'\'' | b'"' => {
                out.push('\\');
                out.push(char::from(b));
            }
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                out.push_str("\\x");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 15)]));
            }
        }
    }
    if bytes.len() > SHOWN_BYTES {
        out.push_str("...");
    }
    out
}

/// Takes the bytes before `separator` and consumes the separator.
pub fn take_until<'a>(input: &mut &'a [u8], separator: u8) -> Result<&'a [u8], DecodeError> {
    let at = input
        .iter()
        .position(|&b| b == separator)
        .ok_or(DecodeError::Truncated)?;
    let (head, tail) = input.split_at(at);
    *input = &tail[1..];
    Ok(head)
}

/// Takes a number ended by `separator`.
pub fn take_number(input: &mut &[u8], separator: u8) -> Result<u64, DecodeError> {
    parse_u64(take_until(input, separator)?)
}

/// Takes a `<len>:<bytes>` field. A field is at most `u32::MAX` bytes, the most a snapshot can hold, so
/// whatever these decoders accept can also be saved.
pub fn take_field(input: &mut &[u8]) -> Result<Bytes, DecodeError> {
    let len = take_number(input, b':')?;
    let len = u32::try_from(len)
        .map(|len| len as usize)
        .map_err(|_| DecodeError::BadNumber)?;
    if input.len() < len {
        return Err(DecodeError::Truncated);
    }
    let (field, tail) = input.split_at(len);
    *input = tail;
    Ok(Bytes::from(field))
}

/// Takes a deadline ended by `separator`: a number no later than [`MAX_DEADLINE`].
pub fn take_deadline(input: &mut &[u8], separator: u8) -> Result<u64, DecodeError> {
    let deadline = take_number(input, separator)?;
    if deadline > MAX_DEADLINE {
        return Err(DecodeError::Malformed("deadline out of range"));
    }
    Ok(deadline)
}

/// Consumes `byte`, or fails.
pub fn expect(input: &mut &[u8], byte: u8) -> Result<(), DecodeError> {
    match input.split_first() {
        Some((&b, tail)) if b == byte => {
            *input = tail;
            Ok(())
        }
        Some(_) => Err(DecodeError::Malformed("unexpected byte")),
        None => Err(DecodeError::Truncated),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn shown_bytes_are_printable_and_bounded() {
        assert_eq!(shown(b"NX"), "NX");
        assert_eq!(shown(b"a\0b\r\n\xff'\\"), "a\\x00b\\x0d\\x0a\\xff\\'\\\\");
        let long = shown(&[0u8; 1000]);
        assert_eq!(long.len(), 24 * 4 + 3);
        assert!(long.ends_with("..."));
    }

    #[test]
    fn fields_carry_any_bytes() {
        let mut out = Vec::new();
        put_field(&mut out, b"a:b\n 3:c");
        put_field(&mut out, b"");
        let mut input = &out[..];
        assert_eq!(&take_field(&mut input).unwrap()[..], b"a:b\n 3:c");
        assert_eq!(&take_field(&mut input).unwrap()[..], b"");
        assert!(input.is_empty());
        assert_eq!(take_field(&mut &b"5:abc"[..]), Err(DecodeError::Truncated));
    }
}
