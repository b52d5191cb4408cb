//! A bare Bayeux-over-HTTP client for what no real client does on purpose: sending each request of one
//! client to a different server process (a load balancer without sticky sessions).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::Json;

/// POSTs a batch of Bayeux messages to `http://addr/faye` and returns the decoded reply array.
pub fn bayeux_post(addr: &str, body: &str) -> Vec<Json> {
    try_bayeux_post(addr, body, Duration::from_secs(30)).unwrap_or_else(|why| panic!("{why}"))
}

/// [`bayeux_post`] for a server that may be going away: `Err` says why there was no answer (the
/// connection refused, or closed before a response). An answer that is not a `200` with a Bayeux reply
/// array still fails the test.
pub fn try_bayeux_post(
    addr: &str,
    body: &str,
    read_timeout: Duration,
) -> Result<Vec<Json>, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect to the server: {e}"))?;
    stream
        .set_read_timeout(Some(read_timeout))
        .expect("set timeout");
    let request = format!(
        "POST /faye HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send request: {e}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("read the response: {e}"))?;
    let response = String::from_utf8_lossy(&response);
    let (head, payload) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP body in {response:?}"))?;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}\n{payload}");
    let payload = &response_body(head, payload);
    match Json::parse(payload) {
        Ok(Json::Arr(items)) => Ok(items),
        other => panic!("not a Bayeux reply array: {other:?} from {payload}"),
    }
}

/// The body of an HTTP/1.1 response: as sent, or put together from its chunks when the server sent it
/// chunked (subscribe replies are: the server lowers their fence only once they are written).
pub fn response_body(head: &str, body: &str) -> String {
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return body.to_owned();
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
        if size == 0 {
            break;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
    out
}

/// The one reply on `channel` in `replies`.
pub fn reply_on<'a>(replies: &'a [Json], channel: &str) -> &'a Json {
    replies
        .iter()
        .find(|m| m.get("channel").as_str() == Some(channel))
        .unwrap_or_else(|| panic!("no {channel} reply in {replies:?}"))
}

/// Handshakes for long-polling on `addr`; returns the client id.
pub fn handshake(addr: &str) -> String {
    let replies = bayeux_post(
        addr,
        r#"[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}]"#,
    );
    let reply = reply_on(&replies, "/meta/handshake");
    assert_eq!(reply.get("successful").as_bool(), Some(true), "{reply}");
    reply.get("clientId").as_str().expect("clientId").to_owned()
}

/// One `/meta/connect` (held by the server until something is queued or its timeout passes); returns
/// the data of every delivery on `channel` that came with it.
pub fn connect(addr: &str, client: &str, channel: &str) -> Vec<Json> {
    let body = format!(
        r#"[{{"channel":"/meta/connect","clientId":"{client}","connectionType":"long-polling"}}]"#
    );
    let replies = bayeux_post(addr, &body);
    let reply = reply_on(&replies, "/meta/connect");
    assert_eq!(reply.get("successful").as_bool(), Some(true), "{reply}");
    replies
        .iter()
        .filter(|m| m.get("channel").as_str() == Some(channel))
        .map(|m| m.get("data").clone())
        .collect()
}

/// Subscribes (`/meta/subscribe`) or unsubscribes the client; panics unless the server agreed.
pub fn subscription(addr: &str, meta: &str, client: &str, channel: &str) {
    let body =
        format!(r#"[{{"channel":"{meta}","clientId":"{client}","subscription":"{channel}"}}]"#);
    let replies = bayeux_post(addr, &body);
    let reply = reply_on(&replies, meta);
    assert_eq!(reply.get("successful").as_bool(), Some(true), "{reply}");
}

/// Publishes `data` (JSON text) on `channel` from `client`; panics unless acknowledged.
pub fn publish(addr: &str, client: &str, channel: &str, data: &str) {
    let body = format!(r#"[{{"channel":"{channel}","clientId":"{client}","data":{data}}}]"#);
    let replies = bayeux_post(addr, &body);
    let reply = reply_on(&replies, channel);
    assert_eq!(reply.get("successful").as_bool(), Some(true), "{reply}");
}

/// Subscribes the client to a presence channel as member `id`; returns the reply's `ext.presence`.
pub fn presence_subscribe(addr: &str, client: &str, channel: &str, id: &str) -> Json {
    let body = format!(
        r#"[{{"channel":"/meta/subscribe","clientId":"{client}","subscription":"{channel}","ext":{{"presence":{{"id":"{id}"}}}}}}]"#
    );
    let replies = bayeux_post(addr, &body);
    let reply = reply_on(&replies, "/meta/subscribe");
    assert_eq!(reply.get("successful").as_bool(), Some(true), "{reply}");
    reply.get("ext").get("presence").clone()
}
