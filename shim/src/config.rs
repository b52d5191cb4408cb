//! [`Config`]: what the host program decides.

use std::time::Duration;

use crate::error::ShimError;

/// What a member's value is, in rosters and roster messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ValueMode {
    /// The member's `data` (`null` if it sent none). The default.
    #[default]
    Data,
    /// The whole `ext.presence` object the member sent (`{id, data, ...}`, every field), which is what
    /// faye-presence 0.0.3 actually put in its messages: for front ends moving over unchanged. With a
    /// secret, the object is the signed `channel_data`.
    Object,
}

/// The presence configuration. Every field documents its default; [`Config::validate`] checks it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Redis servers with the presence module, as `redis://` URLs. Each channel lives on one of them,
    /// chosen by a jump hash of its name (adding a server moves about 1/n of the channels). Default: none;
    /// exactly one of `servers` and `cluster` must be set.
    pub servers: Vec<String>,
    /// Seed URLs of a Redis Cluster whose nodes all load the module. Default: none.
    pub cluster: Vec<String>,
    /// Channels whose names start with this are presence channels. Default `/presence/`.
    pub prefix: String,
    /// Prefix of every Redis key (and shard channel) the shim uses: a channel's roster is the key
    /// `<key_prefix><channel>`, so presence shares a Redis or cluster with the application and with
    /// other services (each with its own prefix) and never reads or writes a key outside it. It must
    /// not contain `{` or `}`: a hash tag in it would put every channel in one cluster slot. Empty is
    /// the bare-channel layout of versions before prefixes. Default `presence:`.
    pub key_prefix: String,
    /// How long a connection stays present without a touch; the shim touches every `ttl / 3`, so a
    /// crashed server's members are gone within `ttl`. Default 30 s.
    pub ttl: Duration,
    /// The member value in rosters and messages. Default [`ValueMode::Data`].
    pub value: ValueMode,
    /// With a secret, a subscribe must carry a token signed by the app's backend
    /// ([`crate::identity`]); without one, a client's claimed id is trusted, as in faye-presence.
    /// Default: none.
    pub secret: Option<Vec<u8>>,
    /// How long to wait for Redis before failing a subscribe. Default 2 s.
    pub timeout: Duration,
    /// Roster events of one channel within this window go to each member as one message with every
    /// id's net change (`{subscribe: {...}, unsubscribe: {...}}`, the format faye-presence clients
    /// read), built once per channel and window: what keeps a big room's fill O(n) messages per window
    /// instead of one per join per member. Zero sends each event as its own message, exactly as
    /// faye-presence does. Default 50 ms.
    pub batch: Duration,
    /// The longest member id accepted, in bytes: a longer one is refused (`400`) before Redis is
    /// asked. Keep it equal to the module's `presence.max-id-bytes`, which refuses longer ids itself
    /// the same way. Default 256, the module's default.
    pub max_id_bytes: usize,
    /// How long a member's leave is held when its last connection unsubscribes, disconnects or times
    /// out: if a connection of the same id joins the channel within it (a page reload, a network
    /// blip, another tab or process), nobody sees it leave and come back; otherwise the leave is
    /// published when it ends (by the module's expiry timer, within about a second). Passed to Redis
    /// on every leave as `PRESENCE.LEAVE ... GRACE ms`, so it works across processes. Zero leaves at
    /// once. Default 0; 5 to 15 s suits browsers (a reload takes a second or two; Ably holds 15 s).
    pub leave_grace: Duration,
    /// Channels whose names start with this are count-only channels: members are tracked exactly as on
    /// presence channels (same ids, same liveness), but they are told `{count: n}` (in the subscribe
    /// reply, then batched whenever it changes), never the roster: for audiences too big for one.
    /// Default: none.
    pub count_prefix: Option<String>,
    /// A subscribe to a roster channel that has this many members already (its id not among them) is
    /// refused (`400`, nothing stored) instead of making every member pay for one more; the module's
    /// `presence.max-members` stays the hard cap. Sent as the join's `MAXMEMBERS`, so the module checks
    /// it in the join's atomic step and no race through several processes passes it. Count-only
    /// channels have no such limit. Default: no limit.
    pub max_roster: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            servers: Vec::new(),
            cluster: Vec::new(),
            prefix: "/presence/".into(),
            key_prefix: "presence:".into(),
            ttl: Duration::from_secs(30),
            value: ValueMode::Data,
            secret: None,
            timeout: Duration::from_secs(2),
            batch: Duration::from_millis(50),
            count_prefix: None,
            max_roster: None,
            max_id_bytes: 256,
            leave_grace: Duration::ZERO,
        }
    }
}

impl Config {
    /// A configuration for these servers, everything else default.
    pub fn with_servers<S: Into<String>>(servers: impl IntoIterator<Item = S>) -> Self {
        Config {
            servers: servers.into_iter().map(Into::into).collect(),
            ..Config::default()
        }
    }

    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), ShimError> {
        let bad = |why: &str| Err(ShimError::Config(why.into()));
        match (self.servers.is_empty(), self.cluster.is_empty()) {
            (true, true) => return bad("give Redis servers or a cluster"),
            (false, false) => return bad("give Redis servers or a cluster, not both"),
            _ => {}
        }
        if !self.prefix.starts_with('/')
            || !self.prefix.ends_with('/')
            || self.prefix.starts_with("/meta/")
        {
            return bad("the prefix must start and end with '/' and not be under /meta/");
        }
        if self.key_prefix.contains(['{', '}']) {
            return bad("the key prefix must not contain '{' or '}': a hash tag in it would put every channel in one cluster slot");
        }
        if self.key_prefix.len() > 256 {
            return bad("the key prefix must be at most 256 bytes");
        }
        if self.ttl < Duration::from_millis(300) || self.ttl > Duration::from_secs(24 * 3600) {
            return bad("the TTL must be from 300 ms to 24 h");
        }
        if self.max_id_bytes == 0 {
            return bad("the id limit must be at least 1 byte");
        }
        if let Some(count) = &self.count_prefix {
            if !count.starts_with('/') || !count.ends_with('/') || count.starts_with("/meta/") {
                return bad("the count prefix must start and end with '/' and not be under /meta/");
            }
            if count.starts_with(&self.prefix) || self.prefix.starts_with(count.as_str()) {
                return bad("the count prefix and the presence prefix must not contain each other");
            }
        }
        if self.max_roster == Some(0) {
            return bad("the most members of a roster channel must be at least 1");
        }
        if self.batch > Duration::from_secs(10) {
            return bad("the batch window must be at most 10 s");
        }
        if self.leave_grace > Duration::from_secs(3600) {
            return bad("the leave grace must be at most 1 h");
        }
        if self.timeout.is_zero() {
            return bad("the Redis timeout must not be zero");
        }
        if self.secret.as_ref().is_some_and(Vec::is_empty) {
            return bad("the secret must not be empty");
        }
        Ok(())
    }

    /// Whether `channel` is a presence channel: one with a roster, or a count-only one.
    pub fn is_presence_channel(&self, channel: &str) -> bool {
        channel.starts_with(&self.prefix) || self.is_count_channel(channel)
    }

    /// Whether `channel` is a count-only presence channel (see [`Config::count_prefix`]).
    pub fn is_count_channel(&self, channel: &str) -> bool {
        self.count_prefix
            .as_deref()
            .is_some_and(|prefix| channel.starts_with(prefix))
    }

    /// Channel names to Redis keys and back, under [`Config::key_prefix`].
    pub fn keys(&self) -> Keys {
        Keys::new(&self.key_prefix)
    }

    /// How often the shim touches its connections.
    pub fn touch_interval(&self) -> Duration {
        self.ttl / 3
    }
}

/// Channel names to Redis keys and back: a channel's roster is the key `<prefix><channel>`, which is
/// also the name of the shard channel the module publishes its changes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys(String);

impl Keys {
    /// The keys under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Keys(prefix.to_owned())
    }

    /// The key (and shard channel) of `channel`.
    pub fn key(&self, channel: &str) -> String {
        format!("{}{channel}", self.0)
    }

    /// The channel whose key (or shard channel) is `key`; `None` if `key` is not under the prefix,
    /// so not ours.
    pub fn channel<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(self.0.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_problem() {
        assert!(Config::with_servers(["redis://127.0.0.1"])
            .validate()
            .is_ok());
        let err = |c: Config| c.validate().unwrap_err().to_string();
        assert!(err(Config::default()).contains("give Redis servers"));
        let both = Config {
            cluster: vec!["redis://127.0.0.1:7000".into()],
            ..Config::with_servers(["redis://127.0.0.1"])
        };
        assert!(err(both).contains("not both"));
        let prefix = Config {
            prefix: "/meta/x/".into(),
            ..Config::with_servers(["redis://127.0.0.1"])
        };
        assert!(err(prefix).contains("prefix"));
        let ttl = Config {
            ttl: Duration::from_millis(10),
            ..Config::with_servers(["redis://127.0.0.1"])
        };
        assert!(err(ttl).contains("TTL"));
        let grace = Config {
            leave_grace: Duration::from_secs(3601),
            ..Config::with_servers(["redis://127.0.0.1"])
        };
        assert!(err(grace).contains("leave grace"));
        for tagged in ["{app}:", "app{", "}"] {
            let key_prefix = Config {
                key_prefix: tagged.into(),
                ..Config::with_servers(["redis://127.0.0.1"])
            };
            assert!(err(key_prefix).contains("hash tag"), "{tagged}");
        }
    }

    #[test]
    fn count_channels_are_their_own_prefix() {
        let with = |count: &str| Config {
            count_prefix: Some(count.into()),
            ..Config::with_servers(["redis://127.0.0.1"])
        };
        let config = with("/presence-count/");
        assert!(config.validate().is_ok());
        assert!(config.is_count_channel("/presence-count/stream"));
        assert!(config.is_presence_channel("/presence-count/stream"));
        assert!(!config.is_count_channel("/presence/room"));
        assert!(config.is_presence_channel("/presence/room"));
        assert!(!Config::with_servers(["redis://127.0.0.1"]).is_count_channel("/presence-count/x"));
        for bad in [
            "/presence/count/",
            "/",
            "presence-count/",
            "/count",
            "/meta/count/",
        ] {
            assert!(with(bad).validate().is_err(), "{bad}");
        }
        let none = Config {
            max_roster: Some(0),
            ..Config::with_servers(["redis://127.0.0.1"])
        };
        assert!(none
            .validate()
            .unwrap_err()
            .to_string()
            .contains("at least 1"));
    }

    #[test]
    fn keys_are_the_channel_under_the_key_prefix() {
        let keys = Config::with_servers(["redis://127.0.0.1"]).keys();
        assert_eq!(keys.key("/presence/room"), "presence:/presence/room");
        assert_eq!(
            keys.channel("presence:/presence/room"),
            Some("/presence/room")
        );
        assert_eq!(keys.channel("/presence/room"), None);
        assert_eq!(keys.channel("chat:/presence/room"), None);
    }
}
