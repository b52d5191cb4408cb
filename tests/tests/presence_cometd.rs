//! The real CometD client on presence channels: a disconnect right after a presence subscribe succeeds
//! on both transports, and a Faye observer is told that the member left, once.

use std::process::Command;

use presence_tests::presence_server::{js_dir, Driver, Json, Observed, PresenceServer, Transport};
use presence_tests::{unique_channel, RedisServer};

/// Clients per transport, one after the other: the race this guards against is lost only sometimes.
const ROUNDS: usize = 8;

#[test]
fn cometd_disconnects_right_after_a_presence_subscribe() {
    let redis = RedisServer::start();
    let server = PresenceServer::start(&["--redis", &redis.url()]);
    for transport in Transport::ALL {
        let channel = unique_channel("cometd");
        let mut d = Driver::start();
        d.client("observer", &server.url(), Transport::WebSocket);
        let reply = d.join("observer", &channel, "observer", Json::Null);
        let mut observed = Observed::from_reply(&reply);
        let prefix = format!("cometd-{}", transport.name());
        let output = Command::new("node")
            .current_dir(js_dir())
            .args([
                "cometd_presence.mjs",
                &server.url(),
                transport.name(),
                &channel,
                &prefix,
                &ROUNDS.to_string(),
            ])
            .output()
            .expect("run node cometd_presence.mjs");
        assert!(
            output.status.success(),
            "{transport:?}: {}{}\nserver log:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            server.log()
        );
        // The observer sees each CometD member come and go, exactly once each, in order.
        let messages = d.wait_messages("observer", &channel, 2 * ROUNDS);
        observed.apply_all(&messages);
        assert!(observed.violations.is_empty(), "{:?}", observed.violations);
        let expected: Vec<String> = (0..ROUNDS)
            .flat_map(|round| [format!("+{prefix}-{round}"), format!("-{prefix}-{round}")])
            .collect();
        assert_eq!(observed.history, expected, "{transport:?}");
        assert_eq!(observed.ids(), ["observer"]);
    }
}
