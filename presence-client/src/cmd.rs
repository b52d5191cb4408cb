//! One function per presence command, each building the [`Cmd`] with the channel key first (the
//! module's key spec, so cluster clients route it by slot). Query the typed reply from [`crate::reply`]:
//!
//! ```no_run
//! use presence_client::{cmd, Touched};
//!
//! # fn run(con: &mut redis::Connection) -> redis::RedisResult<()> {
//! // Touch several channels of one server in one round trip.
//! let mut pipe = redis::pipe();
//! for key in ["presence:/presence/a", "presence:/presence/b"] {
//!     pipe.add_command(cmd::touch(key, &["client-1"], None));
//! }
//! let touched: Vec<Touched> = pipe.query(con)?;
//! # Ok(()) }
//! ```

use std::time::Duration;

use redis::{Cmd, ToRedisArgs};

/// The options of `PRESENCE.JOIN`. `JoinOptions::new()` is the command with neither.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JoinOptions {
    /// `TTL ms`: the connection's deadline is now + this; without it the module's
    /// `presence.default-ttl` (60 s unless configured).
    pub ttl: Option<Duration>,
    /// `MAXMEMBERS n`: a new member is refused (`LIMIT`, nothing stored) if the channel already has
    /// `n`, checked in the same atomic step as the join.
    pub max_members: Option<u64>,
    /// `WITHROSTER`: the reply carries the whole roster, taken in the same atomic step as the join.
    pub with_roster: bool,
}

impl JoinOptions {
    /// Neither option.
    pub fn new() -> Self {
        Self::default()
    }

    /// With `TTL ms` (whole milliseconds; the module accepts 1 ms to 30 days).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// With `MAXMEMBERS n` (at least 1).
    pub fn max_members(mut self, n: u64) -> Self {
        self.max_members = Some(n);
        self
    }

    /// With `WITHROSTER`.
    pub fn with_roster(mut self) -> Self {
        self.with_roster = true;
        self
    }
}

/// `PRESENCE.JOIN key client id data`, options left to the caller (`.arg("TTL").arg(ms)`).
pub fn join<K: ToRedisArgs, C: ToRedisArgs, I: ToRedisArgs, D: ToRedisArgs>(
    key: K,
    client: C,
    id: I,
    data: D,
) -> Cmd {
    let mut cmd = redis::cmd("PRESENCE.JOIN");
    cmd.arg(key).arg(client).arg(id).arg(data);
    cmd
}

/// `PRESENCE.JOIN key client id data [TTL ms] [MAXMEMBERS n] [WITHROSTER]`.
pub fn join_with<K: ToRedisArgs, C: ToRedisArgs, I: ToRedisArgs, D: ToRedisArgs>(
    key: K,
    client: C,
    id: I,
    data: D,
    options: &JoinOptions,
) -> Cmd {
    let mut cmd = join(key, client, id, data);
    if let Some(ttl) = options.ttl {
        cmd.arg("TTL").arg(millis(ttl));
    }
    if let Some(n) = options.max_members {
        cmd.arg("MAXMEMBERS").arg(n);
    }
    if options.with_roster {
        cmd.arg("WITHROSTER");
    }
    cmd
}

/// `PRESENCE.LEAVE key client`.
pub fn leave<K: ToRedisArgs, C: ToRedisArgs>(key: K, client: C) -> Cmd {
    let mut cmd = redis::cmd("PRESENCE.LEAVE");
    cmd.arg(key).arg(client);
    cmd
}

/// `PRESENCE.TOUCH key client [client ...] [TTL ms]`; `clients` is one or several (a slice, a `Vec`).
pub fn touch<K: ToRedisArgs, C: ToRedisArgs>(key: K, clients: C, ttl: Option<Duration>) -> Cmd {
    let mut cmd = redis::cmd("PRESENCE.TOUCH");
    cmd.arg(key).arg(clients);
    if let Some(ttl) = ttl {
        cmd.arg("TTL").arg(millis(ttl));
    }
    cmd
}

/// `PRESENCE.ROSTER key`.
pub fn roster<K: ToRedisArgs>(key: K) -> Cmd {
    let mut cmd = redis::cmd("PRESENCE.ROSTER");
    cmd.arg(key);
    cmd
}

/// `PRESENCE.COUNT key`.
pub fn count<K: ToRedisArgs>(key: K) -> Cmd {
    let mut cmd = redis::cmd("PRESENCE.COUNT");
    cmd.arg(key);
    cmd
}

/// A TTL in whole milliseconds, as the module takes it; a TTL too long for `u64` is sent as the
/// largest, which the module then refuses with its own words.
fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(cmd: &Cmd) -> Vec<String> {
        cmd.args_iter()
            .map(|arg| match arg {
                redis::Arg::Simple(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                _ => "<not a plain argument>".into(),
            })
            .collect()
    }

    #[test]
    fn commands_name_the_key_first() {
        let options = JoinOptions::new()
            .ttl(Duration::from_millis(1500))
            .with_roster();
        assert_eq!(
            args(&join_with("k", "c", "id", b"data", &options)),
            [
                "PRESENCE.JOIN",
                "k",
                "c",
                "id",
                "data",
                "TTL",
                "1500",
                "WITHROSTER"
            ]
        );
        assert_eq!(
            args(&join_with("k", "c", "id", "d", &JoinOptions::new())),
            ["PRESENCE.JOIN", "k", "c", "id", "d"]
        );
        assert_eq!(args(&leave("k", "c")), ["PRESENCE.LEAVE", "k", "c"]);
        assert_eq!(
            args(&touch("k", &["a", "b"], Some(Duration::from_secs(1)))),
            ["PRESENCE.TOUCH", "k", "a", "b", "TTL", "1000"]
        );
        assert_eq!(args(&touch("k", "a", None)), ["PRESENCE.TOUCH", "k", "a"]);
        assert_eq!(args(&roster("k")), ["PRESENCE.ROSTER", "k"]);
        assert_eq!(args(&count("k")), ["PRESENCE.COUNT", "k"]);
    }
}
