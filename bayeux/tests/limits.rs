//! Bounds on what a client controls: messages per request, channel name length, the client id's
//! format, subscriptions per client. Each is refused with a clear error that does not echo the
//! oversized bytes, and a request within the bounds still works. Through the `Router`, no socket.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use bayeux::{Config, Server};
use serde_json::{json, Value};
use std::time::Duration;
use tower::ServiceExt;

fn server(config: Config) -> Server {
    Server::builder().config(config).build().unwrap()
}

fn config() -> Config {
    Config::default().with_timeout(Duration::from_secs(1))
}

/// POSTs `body` to `/faye`; the status and the body as text.
async fn post(server: &Server, body: String) -> (StatusCode, String) {
    let request = Request::post("/faye")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap();
    let response = tokio::time::timeout(
        Duration::from_secs(5),
        bayeux::router(server.clone()).oneshot(request),
    )
    .await
    .expect("request hung")
    .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 16 << 20)
        .await
        .unwrap();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn replies(server: &Server, body: Value) -> Vec<Value> {
    let (status, text) = post(server, body.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    serde_json::from_str(&text).unwrap()
}

async fn handshake(server: &Server) -> String {
    let r = replies(
        server,
        json!([{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"]}]),
    )
    .await;
    r[0]["clientId"].as_str().unwrap().to_owned()
}

fn error_of(reply: &Value) -> &str {
    assert_eq!(reply["successful"], false, "{reply}");
    reply["error"].as_str().unwrap_or_else(|| panic!("{reply}"))
}

#[tokio::test]
async fn a_request_with_too_many_messages_is_refused_whole() {
    let s = server(config().with_max_batch(10));
    let client = handshake(&s).await;
    let publish = |n: usize| {
        let batch: Vec<Value> = (0..n)
            .map(|i| json!({"channel": "/a", "clientId": client, "data": i}))
            .collect();
        Value::Array(batch).to_string()
    };
    let (status, text) = post(&s, publish(10)).await;
    assert_eq!(status, StatusCode::OK, "10 is within the bound: {text}");
    let (status, text) = post(&s, publish(11)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        text.contains("11 messages in one request, over the 10 allowed"),
        "{text}"
    );
    // 100,000 empty messages in 300 kB: refused before any becomes a message and an error reply.
    let flood = format!("[{}{{}}]", "{},".repeat(99_999));
    let (status, text) = post(&s, flood).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.len() < 200, "{text}");
    assert_eq!(Config::default().max_batch, 1000);
}

#[tokio::test]
async fn a_channel_name_over_the_bound_is_refused_without_echo() {
    let s = server(config());
    let client = handshake(&s).await;
    assert_eq!(Config::default().max_channel_bytes, 512);
    let at_bound = format!("/{}", "a".repeat(511));
    let over = format!("/{}", "a".repeat(512));
    let huge = format!("/{}", "a".repeat(100_000));
    let r = replies(
        &s,
        json!([{"channel": "/meta/subscribe", "clientId": client, "subscription": at_bound}]),
    )
    .await;
    assert_eq!(r[0]["successful"], true, "{}", r[0]);
    for (what, message) in [
        (
            "subscribe",
            json!({"channel": "/meta/subscribe", "clientId": client, "subscription": over}),
        ),
        (
            "subscribe list",
            json!({"channel": "/meta/subscribe", "clientId": client, "subscription": ["/ok", huge]}),
        ),
        (
            "publish",
            json!({"channel": huge, "clientId": client, "data": 1}),
        ),
    ] {
        let r = replies(&s, json!([message])).await;
        let text = r[0].to_string();
        assert!(
            text.len() < 1024,
            "{what}: the reply echoes the name: {} bytes",
            text.len()
        );
        let error = error_of(&r[0]);
        assert!(
            error.starts_with("400:")
                && error.contains("channel name is")
                && error.contains("over the 512 allowed"),
            "{what}: {error}"
        );
    }
}

#[tokio::test]
async fn a_malformed_client_id_is_unknown_and_not_echoed() {
    let s = server(config());
    for id in [
        "x".repeat(100_000),
        "a b".into(),
        "évil".into(),
        "a:b".into(),
    ] {
        let r = replies(
            &s,
            json!([{"channel": "/meta/connect", "clientId": id, "connectionType": "long-polling"}]),
        )
        .await;
        let text = r[0].to_string();
        assert!(
            text.len() < 512,
            "the reply echoes the id: {} bytes",
            text.len()
        );
        assert!(error_of(&r[0]).starts_with("401:"), "{}", r[0]);
        assert_eq!(r[0]["advice"]["reconnect"], "handshake");
    }
    // Ids the engine hands out pass the check.
    let client = handshake(&s).await;
    let r = replies(
        &s,
        json!([{"channel": "/meta/subscribe", "clientId": client, "subscription": "/a"}]),
    )
    .await;
    assert_eq!(r[0]["successful"], true, "{}", r[0]);
}

#[tokio::test]
async fn subscriptions_per_client_are_bounded() {
    let s = server(config().with_max_subscriptions(3));
    let client = handshake(&s).await;
    let subscribe = |sub: Value| json!([{"channel": "/meta/subscribe", "clientId": client, "subscription": sub}]);
    let r = replies(&s, subscribe(json!(["/a", "/b"]))).await;
    assert_eq!(r[0]["successful"], true, "{}", r[0]);
    // Subscribing again to what it has costs nothing.
    let r = replies(&s, subscribe(json!(["/a", "/b", "/c"]))).await;
    assert_eq!(r[0]["successful"], true, "{}", r[0]);
    let r = replies(&s, subscribe(json!("/d"))).await;
    let error = error_of(&r[0]);
    assert!(
        error.starts_with("400:") && error.contains("over the 3 subscriptions a client may hold"),
        "{error}"
    );
    assert_eq!(s.engine().subscriptions(&client).await.unwrap().len(), 3);
    // A list that would cross the bound is refused whole.
    let r = replies(
        &s,
        json!([{"channel": "/meta/unsubscribe", "clientId": client, "subscription": "/c"}]),
    )
    .await;
    assert_eq!(r[0]["successful"], true);
    let r = replies(&s, subscribe(json!(["/e", "/f"]))).await;
    assert!(error_of(&r[0]).starts_with("400:"), "{}", r[0]);
    assert_eq!(s.engine().subscriptions(&client).await.unwrap().len(), 2);
    assert_eq!(Config::default().max_subscriptions, 1000);
}
