//! Key and channel names. Everything of one client shares the hash tag `{<client id>}`, so the scripts
//! that change a client touch one cluster slot; each Bayeux channel's subscriber set is a key of its own.
//!
//! ```text
//! <ns>:client:{<id>}   hash   owner (the process serving its connection), gen (bumped per move)
//! <ns>:subs:{<id>}     set    the channels and patterns it is subscribed to
//! <ns>:queue:{<id>}    list   JSON messages waiting for its next connect
//! <ns>:chan:{<name>}   set    client ids subscribed to the channel or pattern <name>
//! <ns>:clients         zset   client id -> last activity (ms since the epoch), for the inactivity sweep
//! <ns>:notify:{<proc>} pubsub "m <id> <id> ..." messages queued, "x <id> <gen>" client gone or moved
//! ```

/// The key names of one namespace.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    namespace: String,
}

impl Keys {
    pub(crate) fn new(namespace: &str) -> Self {
        Keys {
            namespace: namespace.to_owned(),
        }
    }

    /// The prefix, for scripts that build key names themselves (the same formats as below).
    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }

    pub(crate) fn client(&self, id: &str) -> String {
        format!("{}:client:{{{id}}}", self.namespace)
    }

    pub(crate) fn subs(&self, id: &str) -> String {
        format!("{}:subs:{{{id}}}", self.namespace)
    }

    pub(crate) fn queue(&self, id: &str) -> String {
        format!("{}:queue:{{{id}}}", self.namespace)
    }

    pub(crate) fn channel(&self, name: &str) -> String {
        format!("{}:chan:{{{name}}}", self.namespace)
    }

    pub(crate) fn index(&self) -> String {
        format!("{}:clients", self.namespace)
    }

    pub(crate) fn notify(&self, process: &str) -> String {
        format!("{}:notify:{{{process}}}", self.namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clients_keys_share_its_hash_tag() {
        let k = Keys::new("bx");
        assert_eq!(k.client("abc"), "bx:client:{abc}");
        assert_eq!(k.subs("abc"), "bx:subs:{abc}");
        assert_eq!(k.queue("abc"), "bx:queue:{abc}");
        assert_eq!(k.channel("/a/**"), "bx:chan:{/a/**}");
        assert_eq!(k.notify("p1"), "bx:notify:{p1}");
        assert_eq!(k.index(), "bx:clients");
    }
}
