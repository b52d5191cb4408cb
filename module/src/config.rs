//! Module configuration: `CONFIG GET/SET presence.*`, also settable as `--loadmodule` arguments.

use std::sync::atomic::{AtomicI64, Ordering};

/// `presence.default-ttl`: milliseconds a connection lives without a touch when `TTL` is not given.
pub static DEFAULT_TTL_MS: AtomicI64 = AtomicI64::new(DEFAULT_TTL_DEFAULT);
/// `presence.max-data-bytes`: the largest member data accepted.
pub static MAX_DATA_BYTES: AtomicI64 = AtomicI64::new(MAX_DATA_BYTES_DEFAULT);
/// `presence.max-id-bytes`: the longest member id accepted.
pub static MAX_ID_BYTES: AtomicI64 = AtomicI64::new(MAX_ID_BYTES_DEFAULT);
/// `presence.max-members`: the most members one channel may have.
pub static MAX_MEMBERS: AtomicI64 = AtomicI64::new(MAX_MEMBERS_DEFAULT);

/// Default of `presence.default-ttl`: one minute, as a Faye client reconnects well within that.
pub const DEFAULT_TTL_DEFAULT: i64 = 60_000;
/// Default of `presence.max-data-bytes`: 64 KiB, plenty for a user's display data.
pub const MAX_DATA_BYTES_DEFAULT: i64 = 64 * 1024;
/// Default of `presence.max-id-bytes`: a user id, a UUID or an email fits; an id is stored with every
/// connection's binding and sent in every roster, so it is bounded far below data.
pub const MAX_ID_BYTES_DEFAULT: i64 = 256;
/// Default of `presence.max-members`.
pub const MAX_MEMBERS_DEFAULT: i64 = 1_000_000;
/// The longest TTL, 30 days; beyond that a connection is not "present" in any useful sense.
pub const MAX_TTL_MS: i64 = 30 * 24 * 3600 * 1000;

/// The current `presence.default-ttl`, in milliseconds.
pub fn default_ttl_ms() -> u64 {
    DEFAULT_TTL_MS.load(Ordering::Relaxed).max(1) as u64
}

/// The current `presence.max-data-bytes`.
pub fn max_data_bytes() -> i64 {
    MAX_DATA_BYTES.load(Ordering::Relaxed)
}

/// The current `presence.max-id-bytes`.
pub fn max_id_bytes() -> i64 {
    MAX_ID_BYTES.load(Ordering::Relaxed)
}

/// The current `presence.max-members`.
pub fn max_members() -> i64 {
    MAX_MEMBERS.load(Ordering::Relaxed)
}
