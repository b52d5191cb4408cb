//! [`Claim`]: who a subscribing client says it is, read from the subscribe's `ext.presence`.

use serde_json::Value;

use crate::config::{Config, ValueMode};
use crate::error::ShimError;
use crate::identity;

/// A member id and the bytes to store as its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The member id.
    pub id: String,
    /// The member value as JSON text: its `data` or the whole presence object, per [`ValueMode`].
    pub value: Vec<u8>,
}

impl Claim {
    /// Reads the claim of `client_id` subscribing to `channel` from the request's `ext`.
    ///
    /// Without a secret: `ext.presence = {id: <string>, data: <any JSON, optional>}`. With a secret:
    /// `ext.presence = {channel_data: <JSON text of {id, data}>, auth: <token>}`, see [`identity`].
    pub fn from_ext(
        ext: Option<&Value>,
        client_id: &str,
        channel: &str,
        config: &Config,
    ) -> Result<Self, ShimError> {
        let presence = ext.and_then(|ext| ext.get("presence"));
        let object = match &config.secret {
            None => presence
                .and_then(Value::as_object)
                .cloned()
                .ok_or(ShimError::MissingId)?,
            Some(secret) => {
                let presence = presence.ok_or(ShimError::Forbidden("no signed presence"))?;
                let channel_data = presence
                    .get("channel_data")
                    .and_then(Value::as_str)
                    .ok_or(ShimError::Forbidden("no channel_data"))?;
                let auth = presence
                    .get("auth")
                    .and_then(Value::as_str)
                    .ok_or(ShimError::Forbidden("no auth token"))?;
                if !identity::verify(secret, client_id, channel, channel_data, auth) {
                    return Err(ShimError::Forbidden("the token does not match"));
                }
                match serde_json::from_str::<Value>(channel_data) {
                    Ok(Value::Object(object)) => object,
                    _ => return Err(ShimError::Forbidden("channel_data is not a JSON object")),
                }
            }
        };
        // An empty id is no id: faye-presence 0.0.3 refuses it the same way (`if (!presence.id)`).
        let id = object
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .ok_or(ShimError::MissingId)?
            .to_owned();
        // Worded as the module's own refusal, so both read alike whichever refused.
        if id.len() > config.max_id_bytes {
            return Err(ShimError::Refused(format!(
                "LIMIT id is {} bytes, over presence.max-id-bytes ({})",
                id.len(),
                config.max_id_bytes
            )));
        }
        let value = match config.value {
            ValueMode::Data => object.get("data").cloned().unwrap_or(Value::Null),
            ValueMode::Object => Value::Object(object),
        };
        Ok(Claim {
            id,
            value: serde_json::to_vec(&value).expect("a JSON value always serializes"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> Config {
        Config::with_servers(["redis://127.0.0.1"])
    }

    #[test]
    fn reads_id_and_data() {
        let ext = json!({"presence": {"id": "ann", "data": {"name": "Ann", "tags": [1, "x"]}}});
        let claim = Claim::from_ext(Some(&ext), "c1", "/presence/r", &config()).unwrap();
        assert_eq!(claim.id, "ann");
        assert_eq!(
            serde_json::from_slice::<Value>(&claim.value).unwrap(),
            json!({"name": "Ann", "tags": [1, "x"]})
        );
        let bare = json!({"presence": {"id": "bob"}});
        assert_eq!(
            Claim::from_ext(Some(&bare), "c1", "/presence/r", &config())
                .unwrap()
                .value,
            b"null"
        );
    }

    #[test]
    fn object_mode_keeps_the_whole_presence_object() {
        let config = Config {
            value: ValueMode::Object,
            ..config()
        };
        // All of it, as faye-presence 0.0.3 relayed it, extra fields included.
        let ext = json!({"presence": {"id": "ann", "data": 7, "avatar": "a.png"}});
        let claim = Claim::from_ext(Some(&ext), "c1", "/presence/r", &config).unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&claim.value).unwrap(),
            json!({"id": "ann", "data": 7, "avatar": "a.png"})
        );
    }

    #[test]
    fn a_missing_empty_or_non_string_id_is_refused() {
        for ext in [
            json!({}),
            json!({"presence": {}}),
            json!({"presence": {"id": 5}}),
            json!({"presence": {"id": ""}}),
            json!({"presence": "ann"}),
        ] {
            assert!(
                matches!(
                    Claim::from_ext(Some(&ext), "c", "/presence/r", &config()),
                    Err(ShimError::MissingId)
                ),
                "{ext}"
            );
        }
        assert!(matches!(
            Claim::from_ext(None, "c", "/presence/r", &config()),
            Err(ShimError::MissingId)
        ));
    }

    #[test]
    fn an_id_over_the_limit_is_refused_without_echoing_it() {
        let ok = json!({"presence": {"id": "i".repeat(256)}});
        assert!(Claim::from_ext(Some(&ok), "c", "/presence/r", &config()).is_ok());
        let long = json!({"presence": {"id": "i".repeat(100 * 1024)}});
        let error = Claim::from_ext(Some(&long), "c", "/presence/r", &config()).unwrap_err();
        assert_eq!(
            error.to_bayeux("/presence/r"),
            "400:/presence/r:Presence refused (LIMIT id is 102400 bytes, over presence.max-id-bytes (256))"
        );
    }

    #[test]
    fn signed_claims_need_the_backends_token() {
        let config = Config {
            secret: Some(b"s3cret".to_vec()),
            ..config()
        };
        let channel_data = r#"{"id":"ann","data":{"name":"Ann"}}"#;
        let auth = identity::sign(b"s3cret", "c1", "/presence/r", channel_data);
        let ext = json!({"presence": {"channel_data": channel_data, "auth": auth}});
        let claim = Claim::from_ext(Some(&ext), "c1", "/presence/r", &config).unwrap();
        assert_eq!(claim.id, "ann");

        let forged = json!({"presence": {"channel_data": r#"{"id":"admin"}"#, "auth": auth}});
        assert!(matches!(
            Claim::from_ext(Some(&forged), "c1", "/presence/r", &config),
            Err(ShimError::Forbidden(_))
        ));
        let unsigned = json!({"presence": {"id": "ann"}});
        assert!(matches!(
            Claim::from_ext(Some(&unsigned), "c1", "/presence/r", &config),
            Err(ShimError::Forbidden(_))
        ));
        let stolen = Claim::from_ext(Some(&ext), "c2", "/presence/r", &config);
        assert!(
            matches!(stolen, Err(ShimError::Forbidden(_))),
            "a token is bound to its client"
        );
    }
}
