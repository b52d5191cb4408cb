//! The WebSocket transport on a real port, with the benchmark's minimal client: bad frames get Bayeux
//! errors, `[]` pings are answered, deliveries are pushed without waiting for a connect, and a publish
//! sent just before closing the socket is not lost.

mod common;

use bench_support::ws as wsclient;

use serde_json::{json, Value};
use std::time::Duration;

async fn recv(rd: &mut wsclient::Reader) -> Value {
    let text = tokio::time::timeout(Duration::from_secs(10), rd.recv())
        .await
        .expect("a frame within 10 s")
        .unwrap()
        .expect("socket open");
    serde_json::from_str(&text).unwrap()
}

fn addr(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches("/faye")
        .to_owned()
}

async fn handshake(rd: &mut wsclient::Reader, wr: &mut wsclient::Writer) -> String {
    let hs = json!([{"channel": "/meta/handshake", "version": "1.0",
        "supportedConnectionTypes": ["websocket"]}]);
    wr.send(&hs.to_string()).await.unwrap();
    let r = recv(rd).await;
    r[0]["clientId"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_and_pings() {
    let t = common::start(Duration::from_secs(2)).await;
    let (mut rd, mut wr) = wsclient::connect(&addr(&t.url), "/faye").await.unwrap();
    wr.send("{nope").await.unwrap();
    let r = recv(&mut rd).await;
    assert!(r[0]["error"].as_str().unwrap().starts_with("400:"), "{r}");
    wr.send("42").await.unwrap();
    assert!(recv(&mut rd).await[0]["error"]
        .as_str()
        .unwrap()
        .starts_with("400:"));
    wr.send("[]").await.unwrap();
    assert_eq!(recv(&mut rd).await, json!([]));
    wr.send(&json!([{"channel": "/meta/nope"}]).to_string())
        .await
        .unwrap();
    assert_eq!(
        recv(&mut rd).await[0]["error"],
        "403:/meta/nope:Forbidden channel"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_pushed_and_last_publishes_survive_close() {
    let t = common::start(Duration::from_secs(30)).await;
    let (mut rd, mut wr) = wsclient::connect(&addr(&t.url), "/faye").await.unwrap();
    let id = handshake(&mut rd, &mut wr).await;
    let sub = json!([{"channel": "/meta/subscribe", "clientId": id, "subscription": "/pushed"}]);
    wr.send(&sub.to_string()).await.unwrap();
    assert_eq!(recv(&mut rd).await[0]["successful"], true);
    // A connect with the default hold: the delivery must arrive long before it would be answered.
    let connect =
        json!([{"channel": "/meta/connect", "clientId": id, "connectionType": "websocket"}]);
    wr.send(&connect.to_string()).await.unwrap();

    // A second client publishes and closes its socket at once.
    let (mut rd2, mut wr2) = wsclient::connect(&addr(&t.url), "/faye").await.unwrap();
    let id2 = handshake(&mut rd2, &mut wr2).await;
    for n in 0..5 {
        let p = json!([{"channel": "/pushed", "clientId": id2, "data": n}]);
        wr2.send(&p.to_string()).await.unwrap();
    }
    drop((rd2, wr2));

    let mut got = Vec::new();
    while got.len() < 5 {
        for m in recv(&mut rd).await.as_array().unwrap() {
            if m["channel"] == "/pushed" {
                got.push(m["data"].as_i64().unwrap());
            }
        }
    }
    assert_eq!(got, [0, 1, 2, 3, 4]);
}
