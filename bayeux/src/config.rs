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
    /// The most messages one request (an HTTP body or a WebSocket frame) may carry; a longer batch is
    /// refused whole (HTTP 400), before any of it is handled. Default: 1000.
    pub max_batch: usize,
    /// The longest channel name (or pattern) a client may name, in bytes. Default: 512.
    pub max_channel_bytes: usize,
    /// The most channels one client may be subscribed to at once. Default: 1000.
    pub max_subscriptions: usize,
    /// How long a request's headers may take to arrive, counted from when the connection is ready for
    /// the request: so also how long a kept-alive connection may sit idle between requests. Served by
    /// [`crate::serve`]. Default: 10 s.
    pub header_timeout: Duration,
    /// A connection must deliver one whole Bayeux request (headers and body, or over a WebSocket its
    /// first bytes) within this of being accepted, or it is closed; and every request body must be
    /// complete within this of its headers. Served by [`crate::serve`]. Default: 10 s.
    pub idle_timeout: Duration,
    /// The most connections served at once by [`crate::serve`]. At the cap, or when the process runs
    /// out of file descriptors, the oldest connection that has not yet delivered a Bayeux request is
    /// closed to make room; with none to close, the new one is answered `503` and closed.
    /// Default: 10,000.
    pub max_connections: usize,
    /// After [`crate::serve`]'s shutdown signal, how long requests in progress may take to finish
    /// (held connects are answered at once, see [`crate::Server::drain`]) before the rest are
    /// dropped. Default: 10 s.
    pub drain: Duration,
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
            max_batch: 1000,
            max_channel_bytes: 512,
            max_subscriptions: 1000,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            drain: Duration::from_secs(10),
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

    /// Sets `max_batch`.
    pub fn with_max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch;
        self
    }

    /// Sets `max_channel_bytes`.
    pub fn with_max_channel_bytes(mut self, max_channel_bytes: usize) -> Self {
        self.max_channel_bytes = max_channel_bytes;
        self
    }

    /// Sets `max_subscriptions`.
    pub fn with_max_subscriptions(mut self, max_subscriptions: usize) -> Self {
        self.max_subscriptions = max_subscriptions;
        self
    }

    /// Sets `drain`.
    pub fn with_drain(mut self, drain: Duration) -> Self {
        self.drain = drain;
        self
    }

    /// Sets `header_timeout`.
    pub fn with_header_timeout(mut self, header_timeout: Duration) -> Self {
        self.header_timeout = header_timeout;
        self
    }

    /// Sets `idle_timeout`.
    pub fn with_idle_timeout(mut self, idle_timeout: Duration) -> Self {
        self.idle_timeout = idle_timeout;
        self
    }

    /// Sets `max_connections`.
    pub fn with_max_connections(mut self, max_connections: usize) -> Self {
        self.max_connections = max_connections;
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
        if self.max_batch == 0 || self.max_subscriptions == 0 || self.max_connections == 0 {
            return bad("max_batch, max_subscriptions and max_connections must be at least 1");
        }
        if self.max_channel_bytes < 2 {
            return bad("max_channel_bytes must be at least 2 (a channel is at least `/x`)");
        }
        if self.header_timeout.is_zero() || self.idle_timeout.is_zero() {
            return bad("header_timeout and idle_timeout must be positive");
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
        assert!(c.clone().with_max_body(10).validate().is_err());
        assert!(c.clone().with_max_batch(0).validate().is_err());
        assert!(c.clone().with_max_channel_bytes(1).validate().is_err());
        assert!(c
            .clone()
            .with_idle_timeout(Duration::ZERO)
            .validate()
            .is_err());
        assert!(c.with_max_connections(0).validate().is_err());
    }
}
