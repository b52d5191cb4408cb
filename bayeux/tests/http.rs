//! The HTTP edge without a socket (through the axum `Router`), plus one held connect on a real port:
//! bad input gets a clear Bayeux error or an HTTP 4xx, never a panic or a hung request.

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use bayeux::{Config, Server};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

fn app() -> axum::Router {
    let config = Config::default()
        .with_timeout(Duration::from_secs(1))
        .with_max_body(4096);
    bayeux::router(Server::builder().config(config).build().unwrap())
}

/// Sends a request (bounded to 5 s) and returns the status, content type and body.
async fn call(req: Request<Body>) -> (StatusCode, String, String) {
    let res = tokio::time::timeout(Duration::from_secs(5), app().oneshot(req))
        .await
        .expect("request hung")
        .unwrap();
    let status = res.status();
    let ctype = res
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, ctype, String::from_utf8(body.to_vec()).unwrap())
}

fn post(path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap()
}

fn handshake_json() -> String {
    json!([{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"]}])
        .to_string()
}

#[tokio::test]
async fn handshake_on_mount_and_subpaths() {
    for path in ["/faye", "/faye/", "/faye/handshake", "/faye/a/b"] {
        let (status, ctype, body) = call(post(path, handshake_json())).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(ctype.starts_with("application/json"));
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v[0]["successful"], true, "{path}: {body}");
    }
    let (status, _, _) = call(post("/elsewhere", handshake_json())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn malformed_bodies_are_http_400() {
    for body in ["{not json", "", "42", "\"str\"", "null", "[1,"] {
        let (status, _, text) = call(post("/faye", body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");
        assert!(text.starts_with("Bad request"), "{text}");
    }
}

#[tokio::test]
async fn bad_messages_get_bayeux_errors() {
    let body = json!([
        {"channel": "/meta/foo", "id": "1"},
        {"channel": "/meta/subscribe", "id": "2", "clientId": "nobody", "subscription": "/a"},
        {"channel": "/meta/handshake", "id": "3"},
        {"id": "4", "clientId": "x", "data": 1},
        {"channel": ["not", "a", "string"], "id": "5"},
        7
    ]);
    let (status, _, text) = call(post("/faye", body.to_string())).await;
    assert_eq!(status, StatusCode::OK);
    let v: Vec<Value> = serde_json::from_str(&text).unwrap();
    let errors: Vec<&str> = v.iter().map(|m| m["error"].as_str().unwrap()).collect();
    assert_eq!(errors[0], "403:/meta/foo:Forbidden channel");
    assert_eq!(errors[1], "401:nobody:Unknown client");
    assert_eq!(errors[2], "402:version:Missing required parameter");
    assert_eq!(errors[3], "402:channel:Missing required parameter");
    assert!(
        errors[4].starts_with("400:") && errors[5].starts_with("400:"),
        "{errors:?}"
    );
    assert!(v.iter().all(|m| m["successful"] == false));
}

#[tokio::test]
async fn huge_bodies_are_refused() {
    let big = format!(
        "[{{\"channel\":\"/a\",\"data\":\"{}\"}}]",
        "x".repeat(10_000)
    );
    let (status, _, _) = call(post("/faye", big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn form_posts_and_jsonp() {
    let form = format!("message={}", urlencode(&handshake_json()));
    let req = Request::post("/faye")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form))
        .unwrap();
    let (status, _, body) = call(req).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("\"successful\":true"), "{body}");

    let uri = format!("/faye?message={}&jsonp=__cb3", urlencode(&handshake_json()));
    let (status, ctype, body) = call(Request::get(uri).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(ctype.starts_with("text/javascript"));
    assert!(
        body.starts_with("/**/__cb3([") && body.ends_with("]);"),
        "{body}"
    );

    let uri = format!(
        "/faye?message={}&jsonp=alert(1)",
        urlencode(&handshake_json())
    );
    let (status, _, _) = call(Request::get(uri).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = call(Request::get("/faye").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = call(
        Request::get("/faye?message=%7Bbad")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn cors_preflight_echoes_origin_and_allows_pragma() {
    let req = Request::options("/faye")
        .header(header::ORIGIN, "http://page.test:9")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "content-type,pragma",
        )
        .body(Body::empty())
        .unwrap();
    let res = app().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let h = res.headers();
    assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "http://page.test:9");
    assert_eq!(h[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    assert!(h[header::ACCESS_CONTROL_ALLOW_HEADERS]
        .to_str()
        .unwrap()
        .contains("pragma"));
    let req = Request::post("/faye")
        .header(header::ORIGIN, "http://page.test:9")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(handshake_json()))
        .unwrap();
    let res = app().oneshot(req).await.unwrap();
    assert_eq!(
        res.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "http://page.test:9"
    );
}

/// A held connect over a real socket answers at the advised timeout, and a publish sent on another
/// connection meanwhile wakes it early.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_connect_on_a_real_port() {
    let t = common::start(Duration::from_secs(1)).await;
    let (addr, id) = subscribed_over_raw_http(&t.url, "/r").await;
    let connect =
        json!([{"channel": "/meta/connect", "clientId": id, "connectionType": "long-polling"}]);
    let started = std::time::Instant::now();
    let r = raw_post(&addr, &connect.to_string()).await;
    assert_eq!(r[0]["successful"], true);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "held for the timeout"
    );
    let (addr2, c2) = (addr.clone(), connect.to_string());
    let held = tokio::spawn(async move { raw_post(&addr2, &c2).await });
    let publish = json!([{"channel": "/r", "clientId": id, "data": "wake"}]);
    raw_post(&addr, &publish.to_string()).await;
    let r = tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r[1]["data"], "wake");
}

/// One HTTP/1.1 POST over a plain TCP socket, to test the real listener without an HTTP client crate.
/// Handshakes and subscribes to `channel` with raw HTTP posts; returns the server's `host:port` and the
/// client id.
async fn subscribed_over_raw_http(url: &str, channel: &str) -> (String, String) {
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches("/faye")
        .to_owned();
    let hs = raw_post(&addr, &handshake_json()).await;
    let id = hs[0]["clientId"].as_str().unwrap().to_owned();
    let sub = json!([{"channel": "/meta/subscribe", "clientId": id, "subscription": channel}]);
    assert_eq!(
        raw_post(&addr, &sub.to_string()).await[0]["successful"],
        true
    );
    (addr, id)
}

async fn raw_post(addr: &str, body: &str) -> Vec<Value> {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST /faye HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .expect("response within 10 s")
        .unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let body = response_body(head, body);
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// The body of an HTTP/1.1 response: as sent, or put together from its chunks when the server sent it
/// chunked (subscribe replies are: the server lowers their fence only once they are written).
fn response_body(head: &str, body: &str) -> String {
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

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A long-poll whose client went away must not swallow messages: they wait for the next connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_long_poll_does_not_take_messages() {
    let t = common::start(Duration::from_secs(5)).await;
    let (addr, id) = subscribed_over_raw_http(&t.url, "/gone").await;
    // Send a connect and hang up without reading the answer.
    let connect =
        json!([{"channel": "/meta/connect", "clientId": id, "connectionType": "long-polling"}]);
    let body = connect.to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let req = format!(
        "POST /faye HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    // Nothing observable says "the connect is now held" or "the server saw the hang-up", so these
    // two pauses are the one place timing is assumed; if they were too short the test would fail
    // (the message would go to the abandoned connect), never pass wrongly.
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(s);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let publish = json!([{"channel": "/gone", "clientId": id, "data": "kept"}]);
    raw_post(&addr, &publish.to_string()).await;
    let again = json!([{"channel": "/meta/connect", "clientId": id, "connectionType": "long-polling",
        "advice": {"timeout": 0}}]);
    let r = raw_post(&addr, &again.to_string()).await;
    assert_eq!(r.get(1).map(|m| &m["data"]), Some(&json!("kept")), "{r:?}");
}
