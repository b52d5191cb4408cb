use thiserror::Error;

/// Why bytes could not be read back as ops, events or a snapshot.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ended before a complete item was read.
    #[error("truncated input")]
    Truncated,
    /// A number was not a plain non-negative decimal, or did not fit.
    #[error("invalid number")]
    BadNumber,
    /// An op or event kind that this version does not know.
    #[error("unknown kind '{0}'")]
    UnknownKind(String),
    /// The input had the wrong shape: a missing separator, a bad version or an inconsistent snapshot.
    #[error("malformed input: {0}")]
    Malformed(&'static str),
}
