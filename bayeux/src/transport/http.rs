//! Long-polling (JSON or form POST) and callback-polling (JSONP GET), and the WebSocket upgrade switch.

use crate::{Error, ReplyFence, Server};
use axum::body::Body;
use axum::extract::{FromRequestParts, Query, Request, State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::collections::HashMap;
use std::convert::Infallible;

/// Every request on the mount path and below.
pub(super) async fn handle(State(server): State<Server>, request: Request) -> Response {
    if is_upgrade(request.headers()) {
        let (mut parts, _) = request.into_parts();
        return match WebSocketUpgrade::from_request_parts(&mut parts, &server).await {
            Ok(upgrade) => super::ws::upgrade(upgrade, server),
            Err(rejection) => rejection.into_response(),
        };
    }
    match *request.method() {
        Method::POST => post(server, request).await,
        Method::GET => get(server, request).await,
        // Preflights are answered by the CORS layer; a bare OPTIONS just learns it may go on.
        Method::OPTIONS => StatusCode::OK.into_response(),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            "use GET, POST or a WebSocket\n",
        )
            .into_response(),
    }
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// A plain-text HTTP 400: the body could not even be read as Bayeux messages.
fn bad_request(why: impl std::fmt::Display) -> Response {
    (StatusCode::BAD_REQUEST, format!("Bad request: {why}\n")).into_response()
}

async fn post(server: Server, request: Request) -> Response {
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let limit = server.config().max_body;
    let bytes = match axum::body::to_bytes(request.into_body(), limit).await {
        Ok(bytes) => bytes,
        Err(_) => {
            let why = format!("body larger than {limit} bytes or unreadable\n");
            return (StatusCode::PAYLOAD_TOO_LARGE, why).into_response();
        }
    };
    // Faye's old-browser transports post `message=<json>` as a form; accept that shape too.
    let json = if is_form || bytes.starts_with(b"message=") {
        match form_field(&bytes, "message") {
            Some(m) => m,
            None => return bad_request("form body has no message field"),
        }
    } else {
        bytes.to_vec()
    };
    match decode_and_process(&server, &json).await {
        Ok((replies, fence)) => uncached(replies, "application/json; charset=utf-8", fence),
        Err(e) => bad_request(e),
    }
}

/// The value of `name` in an `application/x-www-form-urlencoded` body (`+` is a space, `%XX` a byte).
fn form_field(body: &[u8], name: &str) -> Option<Vec<u8>> {
    let pair = body
        .split(|&b| b == b'&')
        .find(|pair| pair.starts_with(name.as_bytes()) && pair.get(name.len()) == Some(&b'='))?;
    let raw = &pair[name.len() + 1..];
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = raw.get(i + 1).copied().and_then(hex)?;
                let lo = raw.get(i + 2).copied().and_then(hex)?;
                out.push(hi << 4 | lo);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Some(out)
}

async fn get(server: Server, request: Request) -> Response {
    let Ok(Query(params)) = Query::<HashMap<String, String>>::try_from_uri(request.uri()) else {
        return bad_request("unreadable query string");
    };
    let Some(message) = params.get("message") else {
        return bad_request("GET needs a message parameter (callback-polling)");
    };
    let callback = params.get("jsonp").map_or("jsonpcallback", String::as_str);
    if !valid_callback(callback) {
        return bad_request("invalid jsonp callback name");
    }
    match decode_and_process(&server, message.as_bytes()).await {
        Ok((replies, fence)) => {
            // U+2028 and U+2029 are valid in JSON but end a line in older JavaScript.
            let json = replies
                .replace('\u{2028}', "\\u2028")
                .replace('\u{2029}', "\\u2029");
            let body = format!("/**/{callback}({json});");
            uncached(body, "text/javascript; charset=utf-8", fence)
        }
        Err(e) => bad_request(e),
    }
}

/// A JSONP callback must be a dotted JavaScript identifier (as Faye checks), so a request cannot make us
/// serve arbitrary script.
fn valid_callback(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.split('.').all(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        })
}

/// Parses a JSON body and runs it through the server; the result is the JSON array to send back, with
/// the fence to lower once it is written.
pub(super) async fn decode_and_process(
    server: &Server,
    json: &[u8],
) -> Result<(String, ReplyFence), Error> {
    let value: Value = serde_json::from_slice(json)
        .map_err(|e| Error::BadRequest(format!("invalid JSON: {e}")))?;
    let answer = server.answer_json(value).await?;
    Ok((
        crate::outbound::to_json_array(&answer.replies),
        answer.fence,
    ))
}

/// A response that no cache may keep: every Bayeux answer is for one request only.
fn uncached(body: String, content_type: &'static str, fence: ReplyFence) -> Response {
    let body = if fence.is_up() {
        Body::from_stream(LowerWhenWritten {
            body: Some(body),
            fence: Some(fence),
            flushed: false,
        })
    } else {
        Body::from(body)
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store"),
    );
    response
}

/// A reply body that lowers its fence once hyper has written the reply to the socket, so the deliveries
/// the fence holds back (answered on another request, perhaps another connection) leave after it.
///
/// hyper writes what a body yields into its buffer, polls the body again, and flushes the buffer to the
/// socket in the same turn whether or not the body was ready. So: yield the reply, then be pending once
/// (waking at once, so the next turn comes right after the flush), and only then end and lower the fence.
/// No length is set: with a known length hyper could finish (and drop) the body before flushing.
struct LowerWhenWritten {
    body: Option<String>,
    fence: Option<ReplyFence>,
    flushed: bool,
}

impl futures_util::Stream for LowerWhenWritten {
    type Item = Result<String, Infallible>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        if let Some(body) = self.body.take() {
            return Poll::Ready(Some(Ok(body)));
        }
        if !self.flushed {
            self.flushed = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        drop(self.fence.take());
        Poll::Ready(None)
    }
}

#[cfg(test)]
mod tests {
    use super::{form_field, valid_callback};

    #[test]
    fn form_fields() {
        let body = b"jsonp=x&message=%5B%7B%22a%22%3A+1%7D%5D&z";
        assert_eq!(form_field(body, "message").unwrap(), br#"[{"a": 1}]"#);
        assert_eq!(form_field(body, "jsonp").unwrap(), b"x");
        assert_eq!(form_field(body, "messag"), None);
        assert_eq!(form_field(body, "z"), None);
        assert_eq!(form_field(b"message=%zz", "message"), None);
        assert_eq!(form_field(b"message=%4", "message"), None);
    }

    #[test]
    fn jsonp_callback_names() {
        assert!(valid_callback("jsonpcallback"));
        assert!(valid_callback("__jsonp3__"));
        assert!(valid_callback("a.b.$c"));
        assert!(!valid_callback("alert(1)"));
        assert!(!valid_callback("a..b"));
        assert!(!valid_callback("1a"));
        assert!(!valid_callback(""));
    }
}
