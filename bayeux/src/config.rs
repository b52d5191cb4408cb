//! Server configuration.

use crate::Error;
use std::time::Duration;

/// Connection types this server speaks, as advertised in the handshake reply.
pub const CONNECTION_TYPES: [&str; 4] = [
    "long-polling",
    "cross-origin-long-polling",
    "callback-polling",
    "websocket",
];

/// Settings for a [`crate::Server`] and its transports. Build with [`Config::default`] and the `with_`
/// methods; [`Config::validate`] (called by the server builder) rejects inconsistent values.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// How long a `/meta/connect` is held when nothing is queued for the client; advised to clients as
    /// `advice.timeout`. Default: 30 s.
    pub timeout: Duration,
    /// Advised pause between a connect reply and the next connect (`advice.interval`). Default: 0.
    pub interval: Duration,
    /// A client that has sent nothing for this long (and holds no connect) is removed. Must exceed
    /// `timeout`. Default: 1.6 × `timeout`, Faye's factor.
    pub inactivity: Duration,
    /// Largest request body (HTTP) or frame (WebSocket) accepted, in bytes. Default: 1 MiB.
    pub max_body: usize,
    /// Where the transports are mounted; the whole subtree is served. Default: `/faye`.
    pub mount: String,
    /// Longest one extension hook may run; past it the hook counts as failed (a `500` error on the
    /// message) so that a hung hook cannot hang requests. Default: 10 s.
    pub hook_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            timeout: Duration::ZERO,
            interval: Duration::ZERO,
            inactivity: Duration::ZERO,
            max_body: 1 << 20,
            mount: "/faye".into(),
            hook_timeout: Duration::from_secs(10),
        }
        .with_timeout(Duration::from_secs(30))
    }
}

impl Config {
    /// Sets `timeout` and, with it, `inactivity` to 1.6 × `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self.inactivity = timeout.mul_f64(1.6);
        self
    }

    /// Sets `inactivity` (call after [`Config::with_timeout`], which resets it).
    pub fn with_inactivity(mut self, inactivity: Duration) -> Self {
        self.inactivity = inactivity;
        self
    }

    /// Sets `interval`.
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Sets `max_body`.
    pub fn with_max_body(mut self, max_body: usize) -> Self {
        self.max_body = max_body;
        self
    }

    /// Sets `hook_timeout`.
    pub fn with_hook_timeout(mut self, hook_timeout: Duration) -> Self {
        self.hook_timeout = hook_timeout;
        self
    }

    /// Sets `mount`.
    pub fn with_mount(mut self, mount: impl Into<String>) -> Self {
        self.mount = mount.into();
        self
    }

    /// Checks the settings fit together.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |why: &str| Err(Error::Internal(format!("invalid config: {why}")));
        if self.timeout.is_zero() {
            return bad("timeout must be positive");
        }
        if self.inactivity <= self.timeout {
            // A client holding a connect is pinged only when the connect starts and ends, so a
            // shorter inactivity would remove clients in the middle of a long poll.
            return bad("inactivity must exceed timeout");
        }
        if self.hook_timeout.is_zero() {
            return bad("hook_timeout must be positive");
        }
        if self.max_body < 1024 {
            return bad("max_body must be at least 1024 bytes");
        }
        if !self.mount.starts_with('/') || self.mount.len() < 2 || self.mount.ends_with('/') {
            return bad("mount must look like /faye");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let c = Config::default();
        assert_eq!(c.timeout, Duration::from_secs(30));
        assert_eq!(c.inactivity, Duration::from_secs(48));
        assert!(c.validate().is_ok());
        let short = c.clone().with_inactivity(Duration::from_secs(5));
        assert!(short.validate().is_err());
        assert!(c.clone().with_mount("faye").validate().is_err());
        assert!(c.clone().with_mount("/faye/").validate().is_err());
        assert!(c.with_max_body(10).validate().is_err());
    }
}
