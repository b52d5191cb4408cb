//! End-to-end tests with the real CometD 9 JavaScript client in Node (`cometd-nodejs-client`), which
//! posts to sub-paths of the mount (`/faye/handshake`, ...) and handshakes over the WebSocket itself.

mod common;

use bayeux::{DisconnectReason, Event, UnsubscribeReason};
use common::{run_node, start, unique_prefix};
use serde_json::json;
use std::time::Duration;

async fn cometd(transport: &str) {
    let t = start(Duration::from_secs(5)).await;
    let prefix = unique_prefix("cometd");
    let r = run_node("cometd_client.mjs", &[&t.url, transport, &prefix]).await;
    assert_eq!(r["aTypes"], json!([transport]), "{r}");
    assert_eq!(r["bTypes"], json!([transport]), "{r}");
    let a = r["a"].as_str().unwrap().to_owned();
    let b = r["b"].as_str().unwrap().to_owned();
    let explicit = |id: &String| Event::Disconnect {
        client_id: id.clone(),
        reason: DisconnectReason::Explicit,
    };
    t.ext
        .wait_for("both disconnects", |evs| {
            evs.contains(&explicit(&a)) && evs.contains(&explicit(&b))
        })
        .await;
    let events = t.ext.events();
    assert!(events.contains(&Event::Subscribe {
        client_id: a.clone(),
        channel: format!("{prefix}/wild/*"),
    }));
    assert!(events.contains(&Event::Unsubscribe {
        client_id: a.clone(),
        channel: format!("{prefix}/exact"),
        reason: UnsubscribeReason::Explicit,
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cometd_over_long_polling() {
    cometd("long-polling").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cometd_over_websocket() {
    cometd("websocket").await;
}
