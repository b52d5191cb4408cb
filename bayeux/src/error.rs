//! The crate's one error type and its mapping to Bayeux error strings.

/// Everything that can go wrong while handling a Bayeux message.
///
/// Inside the server an error is a value of this enum; at the edge (the reply that goes back to the
/// client) it becomes a Bayeux error string `code:params:message` through [`Error::to_bayeux`], the
/// format Faye uses, so both Faye and CometD clients show it as they would a Faye server's error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The handshake asked for a protocol version this server does not speak.
    #[error("version mismatch: {0}")]
    VersionMismatch(String),
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
        match self {
            Error::VersionMismatch(v) => format!("300:{v}:Version mismatch"),
            Error::ConnectionTypeMismatch(types) => {
                format!("301:{}:Connection types not supported", types.join(","))
            }
            Error::BadRequest(why) => format!("400:{why}:Bad request"),
            Error::ClientUnknown(id) => format!("401:{id}:Unknown client"),
            Error::ParameterMissing(name) => format!("402:{name}:Missing required parameter"),
            Error::ChannelForbidden(ch) => format!("403:{ch}:Forbidden channel"),
            Error::ChannelInvalid(ch) => format!("405:{ch}:Invalid channel"),
            Error::Extension(text) => text.clone(),
            Error::Engine(_) | Error::Internal(_) => "500::Internal server error".to_owned(),
        }
    }

    /// Whether the client must handshake again after this error (reply gets `advice.reconnect = "handshake"`).
    pub fn needs_handshake(&self) -> bool {
        matches!(self, Error::ClientUnknown(_))
    }
}

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
    }
}
