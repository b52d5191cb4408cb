//! Unit tests of the server handles and connect bookkeeping: a new connect releases an older one,
//! addressed delivery, weak handles; and the unsubscribe/disconnect error paths.

use crate::core_tests::{error_of, handshake, poll, publish, send, server, subscribe};
use crate::Message;
use serde_json::json;
use std::time::Duration;

#[tokio::test(start_paused = true)]
async fn a_new_connect_releases_the_older_one() {
    let s = server();
    let a = handshake(&s).await;
    let connect =
        json!({"channel": "/meta/connect", "clientId": a, "connectionType": "long-polling"});
    let (s1, c1) = (s.clone(), connect.clone());
    let first = tokio::spawn(async move { send(&s1, c1).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (s2, c2) = (s.clone(), connect.clone());
    let second = tokio::spawn(async move { send(&s2, c2).await });
    let r = tokio::time::timeout(Duration::from_secs(1), first)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.len(), 1, "released without deliveries");
    subscribe(&s, &a, json!("/n")).await;
    publish(&s, &a, "/n", json!(1)).await;
    let r = second.await.unwrap();
    assert_eq!(r[1]["data"], 1, "the newer connect gets the message");
}

#[tokio::test]
async fn deliver_to_addressed_clients_and_weak_handles() {
    let s = server();
    let a = handshake(&s).await;
    let b = handshake(&s).await;
    let msg = Message::publish("/roster/fix", json!({"k": 1}));
    // Unknown clients are skipped: `a` gets the message once, `b` (not addressed) nothing.
    s.deliver_to_many(&[a.clone(), "ghost".to_owned()], msg)
        .await
        .unwrap();
    assert_eq!(
        poll(&s, &a).await.1,
        vec![json!({"channel": "/roster/fix", "data": {"k": 1}})]
    );
    assert!(poll(&s, &b).await.1.is_empty());
    let weak = s.downgrade();
    assert!(weak.upgrade().is_some());
    drop(s);
    assert!(weak.upgrade().is_none());
}

#[tokio::test]
async fn unsubscribe_and_disconnect_errors() {
    let s = server();
    let a = handshake(&s).await;
    let unsub = |client: &str, sub: serde_json::Value| json!({"channel": "/meta/unsubscribe", "clientId": client, "subscription": sub});
    let r = send(&s, unsub("ghost", json!("/a"))).await;
    assert_eq!(error_of(&r[0]), "401:ghost:Unknown client");
    assert_eq!(r[0]["advice"]["reconnect"], "handshake");
    let r = send(&s, json!({"channel": "/meta/unsubscribe", "clientId": a})).await;
    assert_eq!(
        error_of(&r[0]),
        "402:subscription:Missing required parameter"
    );
    let r = send(&s, unsub(&a, json!(["/a", "b/"]))).await;
    assert_eq!(error_of(&r[0]), "405:b/:Invalid channel");
    let r = send(&s, unsub(&a, json!("/never-subscribed"))).await;
    assert_eq!(
        r[0]["successful"], true,
        "unsubscribing from nothing is fine"
    );
    let r = send(&s, json!({"channel": "/meta/disconnect"})).await;
    assert_eq!(error_of(&r[0]), "401::Unknown client");
}

#[tokio::test]
async fn handshake_event_is_reported() {
    let s = server();
    let mut events = s.events();
    let a = handshake(&s).await;
    assert_eq!(
        events.try_recv().unwrap(),
        crate::Event::Handshake { client_id: a }
    );
}
