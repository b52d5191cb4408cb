//! The crate's one error type and its mapping to Bayeux error strings.

/// Everything that can go wrong while handling a Bayeux message.
///
/// Inside the server an error is a value of this enum; at the edge (the reply that goes back to the
/// client) it becomes a Bayeux error string `code:params:message` through [`Error::to_bayeux`], the
/// format Faye uses, so both Faye and CometD clients show it as they would a Faye server's error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// None of the connection types offered (or the one used) is one this server supports.
    #[error("connection types not supported: {}", .0.join(","))]
    ConnectionTypeMismatch(Vec<String>),
    /// The message could not be understood at all (wrong JSON shape, wrong field types).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The client id is not (or no longer) known: the client must handshake again.
    #[error("unknown client: {0}")]
    ClientUnknown(String),
    /// A required field is missing; holds the field's name.
    #[error("missing required parameter: {0}")]
    ParameterMissing(String),
    /// The channel exists in the grammar but remote clients may not use it this way.
    #[error("forbidden channel: {0}")]
    ChannelForbidden(String),
    /// The channel name does not follow the Bayeux channel grammar.
    #[error("invalid channel: {0}")]
    ChannelInvalid(String),
    /// A bound on what a client controls was crossed (a channel name's length, subscriptions per
    /// client): `field` names what, `why` says by how much and what the bound is.
    #[error("{field}: {why}")]
    OverLimit {
        /// What crossed the bound, e.g. `channel`.
        field: String,
        /// The sentence for the client, e.g. `channel name is 600 bytes, over the 512 allowed`.
        why: String,
    },
    /// An extension rejected the message; the text goes to the client as it is.
    #[error("{0}")]
    Extension(String),
    /// The engine (client and subscription store) failed, e.g. a lost Redis connection.
    #[error("engine failure: {0}")]
    Engine(String),
    /// A bug or a panicking hook: the client sees a generic server error.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The Bayeux error string for the `error` field of a reply, e.g. `401:abc:Unknown client`.
    ///
    /// Codes and texts are Faye's (`faye/src/protocol/error.js`), which CometD clients also accept.
    /// Engine and internal failures hide their details from the client (they are logged instead).
    pub fn to_bayeux(&self) -> String {
        // Parameters that may be client bytes are shown bounded and escaped (see `shown`).
        match self {
            Error::ConnectionTypeMismatch(types) => {
                let types: Vec<String> = types.iter().take(8).map(|t| shown(t)).collect();
                format!("301:{}:Connection types not supported", types.join(","))
            }
            // Our own words (a decoder's message), which quote no client bytes.
            Error::BadRequest(why) => format!("400:{why}:Bad request"),
            // No real client id is longer than 64 bytes (see `message::is_plausible_client_id`).
            Error::ClientUnknown(id) => format!("401:{}:Unknown client", shown_within(id, 64)),
            Error::ParameterMissing(name) => format!("402:{name}:Missing required parameter"),
            Error::ChannelForbidden(ch) => format!("403:{}:Forbidden channel", shown(ch)),
            Error::ChannelInvalid(ch) => format!("405:{}:Invalid channel", shown(ch)),
            Error::OverLimit { field, why } => format!("400:{}:{why}", shown(field)),
            Error::Extension(text) => text.clone(),
            Error::Engine(_) | Error::Internal(_) => "500::Internal server error".to_owned(),
        }
    }

    /// Whether the client must handshake again after this error (reply gets `advice.reconnect = "handshake"`).
    pub fn needs_handshake(&self) -> bool {
        matches!(self, Error::ClientUnknown(_))
    }
}

/// Client bytes as an error string may quote them: at most [`SHOWN_MAX`] bytes, cut with `...`, and
/// anything but printable ASCII escaped as `\xNN`, and so are `:` and `,` (they separate an error's
/// parts) and `\\`.
pub fn shown(text: &str) -> String {
    shown_within(text, SHOWN_MAX)
}

fn shown_within(text: &str, max: usize) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if out.len() >= max {
            out.push_str("...");
            break;
        }
        if (c.is_ascii_graphic() || c == ' ') && !":,\\".contains(c) {
            out.push(c);
        } else {
            let mut utf8 = [0; 4];
            for byte in c.encode_utf8(&mut utf8).bytes() {
                out.push_str(&format!("\\x{byte:02x}"));
            }
        }
    }
    out
}

/// The most bytes of client input [`shown`] quotes: a channel name at the default bound fits whole.
pub const SHOWN_MAX: usize = 512;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bayeux_strings_follow_faye() {
        assert_eq!(
            Error::ClientUnknown("x".into()).to_bayeux(),
            "401:x:Unknown client"
        );
        assert_eq!(
            Error::ParameterMissing("channel".into()).to_bayeux(),
            "402:channel:Missing required parameter"
        );
        assert_eq!(
            Error::ChannelForbidden("/meta/foo".into()).to_bayeux(),
            "403:/meta/foo:Forbidden channel"
        );
        assert_eq!(
            Error::ChannelInvalid("x".into()).to_bayeux(),
            "405:x:Invalid channel"
        );
        assert_eq!(
            Error::ConnectionTypeMismatch(vec!["a".into(), "b".into()]).to_bayeux(),
            "301:a,b:Connection types not supported"
        );
        assert_eq!(
            Error::Engine("redis down".into()).to_bayeux(),
            "500::Internal server error"
        );
        assert_eq!(Error::Extension("nope".into()).to_bayeux(), "nope");
        assert!(Error::ClientUnknown(String::new()).needs_handshake());
        assert_eq!(
            Error::ClientUnknown("a:b c\u{e9}".into()).to_bayeux(),
            "401:a\\x3ab c\\xc3\\xa9:Unknown client"
        );
        let long = Error::ChannelInvalid("/a".repeat(100_000)).to_bayeux();
        assert!(long.len() < SHOWN_MAX + 32, "{}", long.len());
        assert!(long.ends_with("...:Invalid channel"));
    }
}
