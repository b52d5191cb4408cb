//! End-to-end tests with the real Faye 1.4.3 Node client (`tests/js`, run `npm ci --prefix tests/js`).

mod common;

use bayeux::{DisconnectReason, Event, UnsubscribeReason};
use common::{assert_used, read_line_with, run_node, spawn_node, start, unique_prefix};
use std::time::Duration;

/// Runs `faye_client.js` with A and B on the given transports and checks what the server saw.
async fn two_clients(transport_a: &str, transport_b: &str) {
    let t = start(Duration::from_secs(5)).await;
    let prefix = unique_prefix("faye");
    let r = run_node(
        "faye_client.js",
        &[&t.url, transport_a, transport_b, &prefix],
    )
    .await;
    assert_used(&r["aTypes"], transport_a);
    assert_used(&r["bTypes"], transport_b);
    let a = r["a"].as_str().unwrap().to_owned();
    let b = r["b"].as_str().unwrap().to_owned();
    let ext = &t.ext;
    ext.wait_for("both disconnects", |evs| {
        [&a, &b].iter().all(|id| {
            evs.contains(&Event::Disconnect {
                client_id: (*id).clone(),
                reason: DisconnectReason::Explicit,
            })
        })
    })
    .await;
    let events = ext.events();
    for ch in ["exact", "wild/*", "deep/**"] {
        let channel = format!("{prefix}/{ch}");
        let client_id = a.clone();
        assert!(
            events.contains(&Event::Subscribe { client_id, channel }),
            "{ch}"
        );
    }
    assert!(events.contains(&Event::Unsubscribe {
        client_id: a.clone(),
        channel: format!("{prefix}/exact"),
        reason: UnsubscribeReason::Explicit,
    }));
    assert!(
        !events.iter().any(
            |e| matches!(e, Event::Subscribe { channel, .. } if channel.starts_with("/rejected"))
        ),
        "a rejected subscription must not be reported"
    );
    assert!(!t.server.engine().client_exists(&a).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faye_over_long_polling() {
    two_clients("long-polling", "long-polling").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faye_over_websocket() {
    two_clients("websocket", "websocket").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faye_across_transports() {
    two_clients("websocket", "long-polling").await;
}

/// A client that stops polling (its process is killed) is removed and reported as timed out.
async fn idle_client_is_removed(transport: &str) {
    let t = start(Duration::from_secs(1)).await;
    let channel = unique_prefix("idle");
    let mut child = spawn_node("faye_idle.js", &[&t.url, transport, &channel]);
    let id = read_line_with(&mut child, "READY ").await;
    assert!(t.server.engine().client_exists(&id).await.unwrap());
    child.kill().await.unwrap();
    let expected = [
        Event::Unsubscribe {
            client_id: id.clone(),
            channel: channel.clone(),
            reason: UnsubscribeReason::Timeout,
        },
        Event::Disconnect {
            client_id: id.clone(),
            reason: DisconnectReason::Timeout,
        },
    ];
    t.ext
        .wait_for("timeout events", |evs| {
            evs.ends_with(&expected) || evs.windows(2).any(|w| w == expected)
        })
        .await;
    assert!(!t.server.engine().client_exists(&id).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_long_polling_client_is_removed() {
    idle_client_is_removed("long-polling").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_websocket_client_is_removed() {
    idle_client_is_removed("websocket").await;
}

/// The Faye browser bundle in Chromium, on a page from another origin, in each browser transport; a
/// Faye Node client on long-polling exchanges messages with it.
/// One Chromium at a time: three at once on a loaded two-core machine is asking for timeouts.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn browser(mode: &str) {
    let _turn = ONE_BROWSER.lock().await;
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "the browser test needs Debian's Chromium: apt-get install -y chromium"
    );
    let t = start(Duration::from_secs(5)).await;
    let prefix = unique_prefix("browser");
    let r = run_node("browser.js", &[&t.url, mode, &prefix]).await;
    assert_used(&r["types"], mode);
    let id = r["id"].as_str().unwrap().to_owned();
    let gone = Event::Disconnect {
        client_id: id,
        reason: DisconnectReason::Explicit,
    };
    t.ext
        .wait_for("browser disconnect", |evs| evs.contains(&gone))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faye_browser_over_websocket() {
    browser("websocket").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faye_browser_over_cross_origin_long_polling() {
    browser("cross-origin-long-polling").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faye_browser_over_callback_polling() {
    browser("callback-polling").await;
}

/// A client whose session the server dropped (as after a timeout it did not notice) is told to
/// handshake again, does, resubscribes, and receives again.
async fn client_rehandshakes(transport: &str) {
    let t = start(Duration::from_secs(5)).await;
    let channel = unique_prefix("again");
    let mut child = spawn_node("faye_rehandshake.js", &[&t.url, transport, &channel]);
    let old = read_line_with(&mut child, "READY ").await;
    assert!(t
        .server
        .engine()
        .destroy_client(&old)
        .await
        .unwrap()
        .is_some());
    let resubscribed = |evs: &[Event]| {
        evs.iter().any(|e| {
            matches!(e, Event::Subscribe { client_id, channel: ch }
                if *client_id != old && *ch == channel)
        })
    };
    t.ext
        .wait_for("resubscribe under a new id", resubscribed)
        .await;
    let msg = bayeux::Message::publish(channel.as_str(), serde_json::json!("after"));
    t.server.publish(msg).await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("script ends")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("RESULT"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polling_client_rehandshakes() {
    client_rehandshakes("long-polling").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_client_rehandshakes() {
    client_rehandshakes("websocket").await;
}
