//! Unit tests of the per-client ordering rules, through the protocol core: an addressed delivery never
//! overtakes the subscribe reply it follows (the fence), and one client's batches are handled in turn.

use crate::core_tests::{handshake, send};
use crate::{Context, Direction, Error, Extension, Message, Server, WeakServer};
use async_trait::async_trait;
use serde_json::json;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Answers every subscribe as the presence shim does: the moment it has the reply, it addresses a
/// message on the channel to the subscriber (the shim's roster messages after the snapshot).
#[derive(Default)]
struct AddressesOnSubscribe(OnceLock<WeakServer>);

#[async_trait]
impl Extension for AddressesOnSubscribe {
    async fn outgoing(&self, m: Message, ctx: Context<'_>) -> Result<Option<Message>, Error> {
        if ctx.direction == Direction::Reply && m.channel == "/meta/subscribe" {
            let server = self.0.get().and_then(WeakServer::upgrade).unwrap();
            let channel = m
                .subscription
                .as_ref()
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned();
            let client = ctx.client_id.unwrap().to_owned();
            server
                .deliver_to_many(
                    &[client],
                    Message::publish(&channel, json!("after the reply")),
                )
                .await?;
        }
        Ok(Some(m))
    }
}

fn addressing_server() -> Server {
    let ext = Arc::new(AddressesOnSubscribe::default());
    let server = crate::core_tests::server_with(vec![ext.clone()]);
    let _ = ext.0.set(server.downgrade());
    server
}

fn subscribe_message(client: &str, channel: &str) -> Message {
    Message::from_value(json!({"channel": "/meta/subscribe", "clientId": client, "subscription": channel, "id": "s"}))
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn an_addressed_delivery_waits_until_the_subscribe_reply_is_written() {
    let s = addressing_server();
    let a = handshake(&s).await;
    let answer = s.answer(vec![subscribe_message(&a, "/p")]).await;
    assert_eq!(answer.replies[0].message().successful, Some(true));
    assert!(answer.fence.is_up());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        s.engine().take_queue(&a).await.unwrap().is_empty(),
        "nothing reaches the client's queue while its reply is unwritten"
    );
    drop(answer.fence);
    let mut got = Vec::new();
    for _ in 0..100 {
        got = s.engine().take_queue(&a).await.unwrap();
        if !got.is_empty() {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(got.len(), 1, "queued once the reply is out");
    assert_eq!(got[0].message().data, Some(json!("after the reply")));
}

#[tokio::test(start_paused = true)]
async fn other_clients_and_other_channels_are_not_held() {
    let s = addressing_server();
    let (a, b) = (handshake(&s).await, handshake(&s).await);
    let answer = s.answer(vec![subscribe_message(&a, "/p")]).await;
    let to_both = [a.clone(), b.clone()];
    s.deliver_to_many(&to_both, Message::publish("/q", json!("other channel")))
        .await
        .unwrap();
    s.deliver_to_many(&to_both, Message::publish("/p", json!("fenced for a")))
        .await
        .unwrap();
    let data = |q: Vec<crate::Outbound>| {
        q.iter()
            .map(|o| o.message().data.clone().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        data(s.engine().take_queue(&a).await.unwrap()),
        vec![json!("other channel")]
    );
    assert_eq!(
        data(s.engine().take_queue(&b).await.unwrap()),
        vec![json!("other channel"), json!("fenced for a")]
    );
    drop(answer.fence);
    let mut got = Vec::new();
    for _ in 0..100 {
        got.extend(data(s.engine().take_queue(&a).await.unwrap()));
        if got.len() >= 2 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(
        got,
        vec![json!("after the reply"), json!("fenced for a")],
        "in order"
    );
}

#[tokio::test(start_paused = true)]
async fn a_connect_sent_with_a_subscribe_is_answered_at_once() {
    let s = addressing_server();
    let a = handshake(&s).await;
    let batch = json!([
        {"channel": "/meta/subscribe", "clientId": a, "subscription": "/p", "id": "s"},
        {"channel": "/meta/connect", "clientId": a, "connectionType": "long-polling", "id": "c"},
    ]);
    let started = tokio::time::Instant::now();
    let answer = s.answer_json(batch).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "not held for the timeout: the fenced delivery can only come with the next connect"
    );
    let channels: Vec<_> = answer
        .replies
        .iter()
        .map(|o| o.message().channel.clone())
        .collect();
    assert_eq!(channels, vec!["/meta/subscribe", "/meta/connect"]);
    drop(answer.fence);
    let r = send(
        &s,
        json!({"channel": "/meta/connect", "clientId": a, "connectionType": "long-polling", "id": "c2"}),
    )
    .await;
    assert_eq!(r[1]["data"], json!("after the reply"));
}

/// Holds each publish on `/slow` for a while, as a shared engine's round trip to Redis would.
struct SlowPublish;

#[async_trait]
impl Extension for SlowPublish {
    async fn incoming(&self, m: Message, _: Context<'_>) -> Result<Option<Message>, Error> {
        if m.channel == "/slow" {
            let n = m.data.as_ref().and_then(|d| d.as_u64()).unwrap_or(0);
            // Earlier messages take longer: interleaved batches would finish out of order.
            tokio::time::sleep(Duration::from_millis(100 - n)).await;
        }
        Ok(Some(m))
    }
}

#[tokio::test(start_paused = true)]
async fn one_clients_concurrent_batches_are_handled_in_arrival_order() {
    let s = crate::core_tests::server_with(vec![Arc::new(SlowPublish)]);
    let (publisher, subscriber) = (handshake(&s).await, handshake(&s).await);
    crate::core_tests::subscribe(&s, &subscriber, json!("/slow")).await;
    let mut requests = Vec::new();
    for batch in 0..4u64 {
        let body = json!((0..5u64)
            .map(|i| json!({"channel": "/slow", "clientId": publisher, "data": batch * 5 + i}))
            .collect::<Vec<_>>());
        let s = s.clone();
        requests.push(tokio::spawn(
            async move { s.process_json(body).await.unwrap() },
        ));
        tokio::task::yield_now().await;
    }
    for request in requests {
        request.await.unwrap();
    }
    let got: Vec<u64> = s
        .engine()
        .take_queue(&subscriber)
        .await
        .unwrap()
        .iter()
        .map(|o| o.message().data.as_ref().unwrap().as_u64().unwrap())
        .collect();
    assert_eq!(got, (0..20).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn a_held_connect_ends_successfully_after_the_clients_own_disconnect() {
    let s = crate::core_tests::server();
    let a = handshake(&s).await;
    let connect = json!({"channel": "/meta/connect", "clientId": a, "connectionType": "long-polling", "id": "c"});
    let held = {
        let (s, connect) = (s.clone(), connect.clone());
        tokio::spawn(async move { send(&s, connect).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let r = send(
        &s,
        json!({"channel": "/meta/disconnect", "clientId": a, "id": "d"}),
    )
    .await;
    assert_eq!(r[0]["successful"], json!(true), "{r:?}");
    let r = held.await.unwrap();
    // Not `401 ... reconnect: handshake`, on which CometD aborts its pending disconnect.
    assert_eq!(r[0]["successful"], json!(true), "{r:?}");
    assert_eq!(r[0]["advice"]["reconnect"], json!("none"), "{r:?}");
    // So is one that comes late, after the disconnect was answered (CometD may send it meanwhile).
    let r = send(&s, connect).await;
    assert_eq!(r[0]["successful"], json!(true), "{r:?}");
    assert_eq!(r[0]["advice"]["reconnect"], json!("none"), "{r:?}");
}

#[tokio::test(start_paused = true)]
async fn a_held_connect_of_a_client_removed_otherwise_must_handshake_again() {
    let s = crate::core_tests::server();
    let a = handshake(&s).await;
    let connect = json!({"channel": "/meta/connect", "clientId": a, "connectionType": "long-polling", "id": "c"});
    let held = {
        let s = s.clone();
        tokio::spawn(async move { send(&s, connect).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    s.engine().destroy_client(&a).await.unwrap();
    let r = held.await.unwrap();
    assert_eq!(r[0]["error"], json!(format!("401:{a}:Unknown client")));
    assert_eq!(r[0]["advice"]["reconnect"], json!("handshake"));
    let never =
        json!({"channel": "/meta/connect", "clientId": "nobody", "connectionType": "long-polling"});
    assert_eq!(
        send(&s, never).await[0]["error"],
        json!("401:nobody:Unknown client")
    );
}
