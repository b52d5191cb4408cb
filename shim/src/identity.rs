//! Signed identities: with a secret configured, a client may only be present as who the app's backend
//! says it is (the model of Pusher's presence channels).
//!
//! # How a backend makes a token
//! The client handshakes first (so it knows its Bayeux `clientId`), asks the app's backend for a token
//! for a channel, and subscribes with what the backend returns:
//!
//! ```text
//! channel_data = JSON text of {"id": "<member id>", "data": <any JSON>}   (made by the backend)
//! auth         = hex(HMAC-SHA256(secret, clientId + ":" + channel + ":" + channel_data))
//! subscribe ext: {"presence": {"channel_data": channel_data, "auth": auth}}
//! ```
//!
//! In Node: `crypto.createHmac('sha256', secret).update(`${clientId}:${channel}:${channelData}`)
//! .digest('hex')`. The server checks the HMAC in constant time over the exact `channel_data` text, then
//! reads the id and data from it, so nothing the client adds is trusted.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The token for `client_id` on `channel` with `channel_data`, as the backend computes it.
pub fn sign(secret: &[u8], client_id: &str, channel: &str, channel_data: &str) -> String {
    hex::encode(
        mac(secret, client_id, channel, channel_data)
            .finalize()
            .into_bytes(),
    )
}

/// Whether `auth` is the token for `client_id` on `channel` with `channel_data`.
pub fn verify(
    secret: &[u8],
    client_id: &str,
    channel: &str,
    channel_data: &str,
    auth: &str,
) -> bool {
    let Ok(tag) = hex::decode(auth) else {
        return false;
    };
    mac(secret, client_id, channel, channel_data)
        .verify_slice(&tag)
        .is_ok()
}

fn mac(secret: &[u8], client_id: &str, channel: &str, channel_data: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    for part in [client_id, ":", channel, ":", channel_data] {
        mac.update(part.as_bytes());
    }
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_what_a_node_backend_computes() {
        // crypto.createHmac('sha256', 's3cret').update('client1:/presence/room:' + data).digest('hex'),
        // computed with Node 20 and with Python's hmac module.
        let data = r#"{"id":"ann","data":{"name":"Ann"}}"#;
        assert_eq!(
            sign(b"s3cret", "client1", "/presence/room", data),
            "72f73060b75744f205737098d742d40334b04e083cf7d89f5553e78e4292d7fd"
        );
    }

    #[test]
    fn only_the_exact_token_verifies() {
        let data = r#"{"id":"ann","data":{"name":"Ann"}}"#;
        let token = sign(b"s3cret", "client1", "/presence/room", data);
        assert!(verify(b"s3cret", "client1", "/presence/room", data, &token));
        assert!(
            !verify(b"s3cret", "client2", "/presence/room", data, &token),
            "another client"
        );
        assert!(
            !verify(b"s3cret", "client1", "/presence/other", data, &token),
            "another channel"
        );
        assert!(
            !verify(
                b"s3cret",
                "client1",
                "/presence/room",
                r#"{"id":"bob"}"#,
                &token
            ),
            "other data"
        );
        assert!(
            !verify(b"wrong", "client1", "/presence/room", data, &token),
            "another secret"
        );
        assert!(!verify(
            b"s3cret",
            "client1",
            "/presence/room",
            data,
            "not hex"
        ));
        assert!(!verify(b"s3cret", "client1", "/presence/room", data, ""));
    }
}
