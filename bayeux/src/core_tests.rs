//! Unit tests of the protocol core: messages in, replies out, no sockets. Time is paused where the
//! connect hold or the inactivity timeout matter.

use crate::extension::{DisconnectReason, Event, UnsubscribeReason};
use crate::{Config, Error, Extension, Message, Server};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

pub(crate) fn server_with(extensions: Vec<Arc<dyn Extension>>) -> Server {
    let config = Config::default().with_timeout(Duration::from_secs(10));
    let mut b = Server::builder().config(config);
    for e in extensions {
        b = b.extension(e);
    }
    b.build().unwrap()
}

pub(crate) fn server() -> Server {
    server_with(Vec::new())
}

/// Sends one JSON message, returns the JSON answers.
pub(crate) async fn send(s: &Server, msg: Value) -> Vec<Value> {
    let replies = s.process_json(msg).await.unwrap();
    replies.iter().map(|o| o.message().to_value()).collect()
}

pub(crate) async fn handshake(s: &Server) -> String {
    let r = send(
        s,
        json!({"channel": "/meta/handshake", "version": "1.0", "id": "1",
        "supportedConnectionTypes": ["long-polling", "websocket"]}),
    )
    .await;
    assert_eq!(r[0]["successful"], json!(true), "{r:?}");
    r[0]["clientId"].as_str().unwrap().to_owned()
}

pub(crate) async fn subscribe(s: &Server, id: &str, sub: Value) -> Value {
    send(
        s,
        json!({"channel": "/meta/subscribe", "clientId": id, "subscription": sub, "id": "s"}),
    )
    .await
    .remove(0)
}

pub(crate) async fn publish(s: &Server, id: &str, channel: &str, data: Value) -> Value {
    send(
        s,
        json!({"channel": channel, "clientId": id, "data": data, "id": "p"}),
    )
    .await
    .remove(0)
}

/// A connect asking for an immediate answer: returns the reply and the deliveries after it.
pub(crate) async fn poll(s: &Server, id: &str) -> (Value, Vec<Value>) {
    let mut r = send(
        s,
        json!({"channel": "/meta/connect", "clientId": id,
        "connectionType": "long-polling", "advice": {"timeout": 0}}),
    )
    .await;
    let reply = r.remove(0);
    (reply, r)
}

pub(crate) fn error_of(reply: &Value) -> &str {
    assert_eq!(reply["successful"], json!(false), "{reply}");
    reply["error"].as_str().unwrap()
}

#[tokio::test]
async fn handshake_reply_has_everything_clients_need() {
    let s = server();
    let r = send(
        &s,
        json!({"channel": "/meta/handshake", "version": "1.0", "id": "7",
        "supportedConnectionTypes": ["websocket"], "ext": {"x": 1}}),
    )
    .await;
    let r = &r[0];
    assert_eq!(r["channel"], "/meta/handshake");
    assert_eq!(r["id"], "7");
    assert_eq!(r["version"], "1.0");
    assert!(r["clientId"].as_str().unwrap().len() > 10);
    assert_eq!(
        r["advice"],
        json!({"reconnect": "retry", "interval": 0, "timeout": 10000})
    );
    assert!(r["supportedConnectionTypes"]
        .as_array()
        .unwrap()
        .contains(&json!("callback-polling")));
}

#[tokio::test]
async fn handshake_errors() {
    let s = server();
    let r = send(
        &s,
        json!({"channel": "/meta/handshake", "supportedConnectionTypes": ["websocket"]}),
    )
    .await;
    assert_eq!(error_of(&r[0]), "402:version:Missing required parameter");
    assert_eq!(r[0]["advice"]["reconnect"], "handshake");
    let r = send(&s, json!({"channel": "/meta/handshake", "version": "1.0"})).await;
    assert_eq!(
        error_of(&r[0]),
        "402:supportedConnectionTypes:Missing required parameter"
    );
    let r = send(
        &s,
        json!({"channel": "/meta/handshake", "version": "1.0",
        "supportedConnectionTypes": ["carrier-pigeon", "smoke"]}),
    )
    .await;
    assert_eq!(
        error_of(&r[0]),
        "301:carrier-pigeon,smoke:Connection types not supported"
    );
}

#[tokio::test]
async fn connect_errors_and_advice() {
    let s = server();
    let r = send(
        &s,
        json!({"channel": "/meta/connect", "clientId": "ghost", "connectionType": "long-polling"}),
    )
    .await;
    assert_eq!(error_of(&r[0]), "401:ghost:Unknown client");
    assert_eq!(r[0]["advice"]["reconnect"], "handshake");
    assert!(r[0].get("clientId").is_none());
    let id = handshake(&s).await;
    let r = send(&s, json!({"channel": "/meta/connect", "clientId": id})).await;
    assert_eq!(
        error_of(&r[0]),
        "402:connectionType:Missing required parameter"
    );
    let r = send(
        &s,
        json!({"channel": "/meta/connect", "clientId": id, "connectionType": "smoke"}),
    )
    .await;
    assert_eq!(error_of(&r[0]), "301:smoke:Connection types not supported");
    let r = send(
        &s,
        json!({"channel": "/meta/connect", "connectionType": "long-polling"}),
    )
    .await;
    assert_eq!(error_of(&r[0]), "401::Unknown client");
}

#[tokio::test(start_paused = true)]
async fn connect_is_held_until_timeout_then_answers_empty() {
    let s = server();
    let id = handshake(&s).await;
    let start = tokio::time::Instant::now();
    let r = send(
        &s,
        json!({"channel": "/meta/connect", "clientId": id, "connectionType": "websocket"}),
    )
    .await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["successful"], true);
    assert_eq!(r[0]["advice"]["reconnect"], "retry");
    assert_eq!(start.elapsed(), Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn held_connect_returns_when_a_message_arrives() {
    let s = server();
    let a = handshake(&s).await;
    let b = handshake(&s).await;
    subscribe(&s, &a, json!("/chat")).await;
    let s2 = s.clone();
    let a2 = a.clone();
    let held = tokio::spawn(async move {
        send(
            &s2,
            json!({"channel": "/meta/connect", "clientId": a2, "connectionType": "long-polling"}),
        )
        .await
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!held.is_finished());
    let r = publish(&s, &b, "/chat", json!({"text": "hi"})).await;
    assert_eq!(
        r,
        json!({"channel": "/chat", "id": "p", "clientId": b, "successful": true})
    );
    let r = held.await.unwrap();
    assert_eq!(r[0]["channel"], "/meta/connect");
    assert_eq!(
        r[1],
        json!({"channel": "/chat", "data": {"text": "hi"}, "id": "p"})
    );
}

#[tokio::test]
async fn publish_and_receive_with_ext_passed_through() {
    let s = server();
    let a = handshake(&s).await;
    subscribe(&s, &a, json!(["/x", "/y"])).await;
    send(
        &s,
        json!({"channel": "/y", "clientId": a, "data": null, "ext": {"k": [1]}}),
    )
    .await;
    let (_, got) = poll(&s, &a).await;
    assert_eq!(
        got,
        vec![json!({"channel": "/y", "data": null, "ext": {"k": [1]}})]
    );
}

#[tokio::test]
async fn publish_errors() {
    let s = server();
    let a = handshake(&s).await;
    assert_eq!(
        error_of(&publish(&s, &a, "/a b", json!(1)).await),
        "405:/a b:Invalid channel"
    );
    assert_eq!(
        error_of(&publish(&s, &a, "/a/*", json!(1)).await),
        "405:/a/*:Invalid channel"
    );
    assert_eq!(
        error_of(&publish(&s, &a, "/meta/foo", json!(1)).await),
        "403:/meta/foo:Forbidden channel"
    );
    assert_eq!(
        error_of(&publish(&s, "ghost", "/a", json!(1)).await),
        "401:ghost:Unknown client"
    );
    let r = send(&s, json!({"channel": "/a", "clientId": a})).await;
    assert_eq!(error_of(&r[0]), "402:data:Missing required parameter");
    let r = send(&s, json!({"clientId": a, "data": 1})).await;
    assert_eq!(error_of(&r[0]), "402:channel:Missing required parameter");
}

#[tokio::test]
async fn service_channels_reach_the_server_only() {
    let s = server();
    let a = handshake(&s).await;
    subscribe(&s, &a, json!("/**")).await;
    assert_eq!(
        publish(&s, &a, "/service/echo", json!(1)).await["successful"],
        true
    );
    assert!(poll(&s, &a).await.1.is_empty());
}

#[tokio::test]
async fn subscribe_errors() {
    let s = server();
    let a = handshake(&s).await;
    assert_eq!(
        error_of(&subscribe(&s, "ghost", json!("/a")).await),
        "401:ghost:Unknown client"
    );
    assert_eq!(
        subscribe(&s, "ghost", json!("/a")).await["advice"]["reconnect"],
        "handshake"
    );
    let r = send(&s, json!({"channel": "/meta/subscribe", "clientId": a})).await;
    assert_eq!(
        error_of(&r[0]),
        "402:subscription:Missing required parameter"
    );
    assert_eq!(
        error_of(&subscribe(&s, &a, json!("/meta/connect")).await),
        "403:/meta/connect:Forbidden channel"
    );
    assert_eq!(
        error_of(&subscribe(&s, &a, json!("/meta/*")).await),
        "403:/meta/*:Forbidden channel"
    );
    assert_eq!(
        error_of(&subscribe(&s, &a, json!("/service/x")).await),
        "403:/service/x:Forbidden channel"
    );
    assert_eq!(
        error_of(&subscribe(&s, &a, json!(["/ok", "bad"])).await),
        "405:bad:Invalid channel"
    );
    // A rejected list subscribes nothing.
    assert!(s.engine().subscriptions(&a).await.unwrap().is_empty());
    let r = subscribe(&s, &a, json!(["/ok", "/ok2"])).await;
    assert_eq!(r["subscription"], json!(["/ok", "/ok2"]));
    assert_eq!(r["successful"], true);
}

#[tokio::test]
async fn wildcards_and_unsubscribe() {
    let s = server();
    let a = handshake(&s).await;
    let b = handshake(&s).await;
    subscribe(&s, &a, json!("/w/*")).await;
    subscribe(&s, &b, json!("/w/**")).await;
    publish(&s, &a, "/w/one", json!(1)).await;
    publish(&s, &a, "/w/one/two", json!(2)).await;
    assert_eq!(poll(&s, &a).await.1.len(), 1);
    assert_eq!(poll(&s, &b).await.1.len(), 2);
    let r = send(
        &s,
        json!({"channel": "/meta/unsubscribe", "clientId": b, "subscription": "/w/**"}),
    )
    .await;
    assert_eq!(r[0]["successful"], true);
    assert_eq!(r[0]["subscription"], "/w/**");
    publish(&s, &a, "/w/three", json!(3)).await;
    assert!(poll(&s, &b).await.1.is_empty());
    let r = send(
        &s,
        json!({"channel": "/meta/unsubscribe", "clientId": b, "subscription": "/meta/x"}),
    )
    .await;
    assert_eq!(error_of(&r[0]), "403:/meta/x:Forbidden channel");
}

#[tokio::test]
async fn after_a_disconnect_the_client_is_gone_and_its_connects_end() {
    let s = server();
    let mut events = s.events();
    let a = handshake(&s).await;
    subscribe(&s, &a, json!(["/p", "/q"])).await;
    let r = send(
        &s,
        json!({"channel": "/meta/disconnect", "clientId": a, "id": "d"}),
    )
    .await;
    assert_eq!(
        r[0],
        json!({"channel": "/meta/disconnect", "clientId": a, "id": "d", "successful": true})
    );
    // A connect still on its way is the end of the connection, not a lost client: answered
    // `reconnect: none` (a 401 would make CometD abort its disconnect); see order_tests.
    let (r, _) = poll(&s, &a).await;
    assert_eq!(r["successful"], json!(true), "{r}");
    assert_eq!(r["advice"]["reconnect"], "none");
    let r = send(&s, json!({"channel": "/meta/disconnect", "clientId": a})).await;
    assert_eq!(error_of(&r[0]), format!("401:{a}:Unknown client"));
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push(e);
    }
    let unsub = |ch: &str| Event::Unsubscribe {
        client_id: a.clone(),
        channel: ch.into(),
        reason: UnsubscribeReason::Disconnect,
    };
    assert_eq!(
        &seen[3..],
        &[
            unsub("/p"),
            unsub("/q"),
            Event::Disconnect {
                client_id: a.clone(),
                reason: DisconnectReason::Explicit
            }
        ]
    );
}

#[tokio::test]
async fn unknown_meta_channels_and_bad_messages() {
    let s = server();
    let r = send(&s, json!({"channel": "/meta/foo", "id": "1"})).await;
    assert_eq!(error_of(&r[0]), "403:/meta/foo:Forbidden channel");
    let r = send(&s, json!([{"channel": 5, "id": "x"}, "nope"])).await;
    assert_eq!(r.len(), 2);
    assert!(error_of(&r[0]).starts_with("400:"));
    assert_eq!(r[0]["id"], "x");
    assert!(s.process_json(json!(3)).await.is_err());
    assert!(s.process_json(json!([])).await.unwrap().is_empty());
    let r = send(&s, json!([{"channel": "/x", "id": 1, "clientId": 2}])).await;
    assert_eq!(r[0]["channel"], "/x");
    assert_eq!(r[0]["id"], 1);
}

#[tokio::test(start_paused = true)]
async fn idle_clients_are_removed_with_events() {
    let s = server();
    let mut events = s.events();
    let a = handshake(&s).await;
    let b = handshake(&s).await;
    subscribe(&s, &a, json!("/t")).await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    poll(&s, &b).await;
    assert!(
        s.sweep().await.is_empty(),
        "16 s inactivity not reached yet"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(s.sweep().await, vec![a.clone()]);
    let (r, _) = poll(&s, &a).await;
    assert_eq!(r["advice"]["reconnect"], "handshake");
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push(e);
    }
    assert_eq!(
        &seen[seen.len() - 2..],
        &[
            Event::Unsubscribe {
                client_id: a.clone(),
                channel: "/t".into(),
                reason: UnsubscribeReason::Timeout
            },
            Event::Disconnect {
                client_id: a.clone(),
                reason: DisconnectReason::Timeout
            },
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn sweeper_task_removes_idle_clients() {
    let s = server();
    let _sweeper = s.spawn_sweeper();
    let a = handshake(&s).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(!s.engine().client_exists(&a).await.unwrap());
}

#[tokio::test]
async fn server_publish_and_addressed_delivery() {
    let s = server();
    let a = handshake(&s).await;
    subscribe(&s, &a, json!("/news")).await;
    s.publish(Message::publish("/news", json!(1)))
        .await
        .unwrap();
    s.deliver_to_many(
        std::slice::from_ref(&a),
        Message::publish("/news", json!(2)),
    )
    .await
    .unwrap();
    assert_eq!(
        s.publish(Message::publish("/meta/x", json!(1))).await,
        Err(Error::ChannelForbidden("/meta/x".into()))
    );
    assert!(s
        .deliver_to_many(std::slice::from_ref(&a), Message::new("/news"))
        .await
        .is_err());
    let (_, got) = poll(&s, &a).await;
    assert_eq!(
        got,
        vec![
            json!({"channel": "/news", "data": 1}),
            json!({"channel": "/news", "data": 2})
        ]
    );
}

#[tokio::test]
async fn batches_answer_in_order_with_connect_last() {
    let s = server();
    let a = handshake(&s).await;
    let r = send(&s, json!([
        {"channel": "/meta/connect", "clientId": a, "connectionType": "long-polling", "advice": {"timeout": 0}},
        {"channel": "/meta/subscribe", "clientId": a, "subscription": "/b"},
        {"channel": "/b", "clientId": a, "data": "x"},
    ]))
    .await;
    let channels: Vec<_> = r.iter().map(|m| m["channel"].as_str().unwrap()).collect();
    assert_eq!(channels, ["/meta/subscribe", "/b", "/meta/connect", "/b"]);
}
