//! The WebSocket transport on a real port, with the benchmark's minimal client: bad frames get Bayeux
//! errors, `[]` pings are answered, deliveries are pushed without waiting for a connect, and a publish
//! sent just before closing the socket is not lost. One task serves a socket: a held connect is
//! answered on it while pushes and other batches go on, an addressed delivery never overtakes the
//! subscribe reply, a close while a connect is held ends it all, an oversized frame closes the
//! socket before its payload is read, and a frame many times the read buffer arrives whole.

mod common;

use bench_support::ws as wsclient;

use async_trait::async_trait;
use bayeux::{Config, Context, Direction, Error, Extension, Message, Server, WeakServer};
use serde_json::{json, Value};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_connect_is_answered_on_the_socket_while_the_rest_goes_on() {
    let t = common::start(Duration::from_secs(1)).await;
    let (mut rd, mut wr) = wsclient::connect(&addr(&t.url), "/faye").await.unwrap();
    let id = handshake(&mut rd, &mut wr).await;
    let connect = json!([{"channel": "/meta/connect", "clientId": id, "connectionType": "websocket",
        "id": "c1"}]);
    let started = Instant::now();
    wr.send(&connect.to_string()).await.unwrap();
    // While it is held: a subscribe is answered, and a publish to it is pushed.
    let sub = json!([{"channel": "/meta/subscribe", "clientId": id, "subscription": "/held"}]);
    wr.send(&sub.to_string()).await.unwrap();
    assert_eq!(recv(&mut rd).await[0]["channel"], "/meta/subscribe");
    t.server
        .publish(Message::publish("/held", json!("pushed")))
        .await
        .unwrap();
    let pushed = recv(&mut rd).await;
    assert_eq!(pushed[0]["data"], "pushed", "{pushed}");
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "pushed at once"
    );
    // Then the connect is answered at its timeout, and the next one is held again.
    let answered = recv(&mut rd).await;
    assert_eq!(answered[0]["id"], "c1", "{answered}");
    assert_eq!(answered[0]["successful"], true);
    assert!(started.elapsed() >= Duration::from_millis(900));
    let again = json!([{"channel": "/meta/connect", "clientId": id, "connectionType": "websocket",
        "id": "c2"}]);
    wr.send(&again.to_string()).await.unwrap();
    assert_eq!(recv(&mut rd).await[0]["id"], "c2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_socket_while_a_connect_is_held_gives_the_queue_back() {
    let t = common::start(Duration::from_secs(30)).await;
    let (mut rd, mut wr) = wsclient::connect(&addr(&t.url), "/faye").await.unwrap();
    let id = handshake(&mut rd, &mut wr).await;
    let sub = json!([{"channel": "/meta/subscribe", "clientId": id, "subscription": "/gone"}]);
    wr.send(&sub.to_string()).await.unwrap();
    assert_eq!(recv(&mut rd).await[0]["successful"], true);
    let connect =
        json!([{"channel": "/meta/connect", "clientId": id, "connectionType": "websocket"}]);
    wr.send(&connect.to_string()).await.unwrap();
    drop((rd, wr));
    // Once the socket's task has ended, nothing pushes to the client: its next connect (here a
    // long-polling one) takes what was published. A push left behind would take it and lose it.
    let poll: Message = serde_json::from_value(json!({"channel": "/meta/connect", "clientId": id,
        "connectionType": "long-polling", "advice": {"timeout": 0}}))
    .unwrap();
    let started = Instant::now();
    for n in 0.. {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still pushed to a closed socket"
        );
        t.server
            .publish(Message::publish("/gone", json!(n)))
            .await
            .unwrap();
        let replies = t.server.process(vec![poll.clone()]).await;
        assert_eq!(replies[0].message().successful, Some(true));
        if replies.len() > 1 {
            assert_eq!(replies[1].message().channel, "/gone");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Addresses a message on the channel to each subscriber from its subscribe reply's hook, as the
/// presence shim sends roster changes after the snapshot in the reply.
#[derive(Default)]
struct AddressesOnSubscribe(OnceLock<WeakServer>);

#[async_trait]
impl Extension for AddressesOnSubscribe {
    async fn outgoing(&self, m: Message, ctx: Context<'_>) -> Result<Option<Message>, Error> {
        if ctx.direction == Direction::Reply && m.channel == "/meta/subscribe" {
            let server = self.0.get().and_then(WeakServer::upgrade).unwrap();
            let channel = m.subscriptions().unwrap().remove(0);
            let client = ctx.client_id.unwrap().to_owned();
            let after = Message::publish(&channel, json!("after the reply"));
            server.deliver_to_many(&[client], after).await?;
        }
        Ok(Some(m))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_addressed_delivery_never_overtakes_the_subscribe_reply() {
    let ext = Arc::new(AddressesOnSubscribe::default());
    let server = Server::builder().extension(ext.clone()).build().unwrap();
    let _ = ext.0.set(server.downgrade());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let app = bayeux::router(server);
    let serving = tokio::spawn(async move { axum::serve(listener, app).await });
    let (mut rd, mut wr) = wsclient::connect(&addr, "/faye").await.unwrap();
    let id = handshake(&mut rd, &mut wr).await;
    // A held connect first, so the socket pushes: the delivery could go the moment it is queued.
    let connect =
        json!([{"channel": "/meta/connect", "clientId": id, "connectionType": "websocket"}]);
    wr.send(&connect.to_string()).await.unwrap();
    for n in 0..20 {
        let channel = format!("/room/{n}");
        let sub = json!([{"channel": "/meta/subscribe", "clientId": id, "subscription": channel}]);
        wr.send(&sub.to_string()).await.unwrap();
        let first = recv(&mut rd).await;
        assert_eq!(first[0]["channel"], "/meta/subscribe", "overtaken: {first}");
        assert_eq!(first[0]["successful"], true);
        let then = recv(&mut rd).await;
        assert_eq!(then[0]["channel"], channel, "{then}");
        assert_eq!(then[0]["data"], "after the reply");
    }
    serving.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_closes_the_socket_before_its_payload() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = common::start_with(Config::default().with_max_body(4096)).await;
    let mut tcp = tokio::net::TcpStream::connect(addr(&t.url)).await.unwrap();
    tcp.write_all(
        b"GET /faye HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        tcp.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    // Only the header of a 1 MiB masked text frame: the server must not wait for the rest.
    let mut header = vec![0x81, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 20).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    tcp.write_all(&header).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 512];
        while matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await;
    assert!(closed.is_ok(), "the socket stayed open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_many_times_the_read_buffer_arrives_whole() {
    let t = common::start(Duration::from_secs(30)).await;
    let (mut rd, mut wr) = wsclient::connect(&addr(&t.url), "/faye").await.unwrap();
    let id = handshake(&mut rd, &mut wr).await;
    let sub = json!([{"channel": "/meta/subscribe", "clientId": id, "subscription": "/big"}]);
    wr.send(&sub.to_string()).await.unwrap();
    assert_eq!(recv(&mut rd).await[0]["successful"], true);
    // 100 KiB in one frame: the socket reads it 512 bytes at a time.
    let big = "x".repeat(100 * 1024);
    let publish = json!([{"channel": "/big", "clientId": id, "data": big, "id": "p"},
        {"channel": "/meta/connect", "clientId": id, "connectionType": "websocket"}]);
    wr.send(&publish.to_string()).await.unwrap();
    let (mut replied, mut delivered) = (false, false);
    while !(replied && delivered) {
        for m in recv(&mut rd).await.as_array().unwrap() {
            replied |= m["id"] == "p" && m["successful"] == true;
            delivered |= m["channel"] == "/big" && m["data"] == big.as_str();
        }
    }
}
