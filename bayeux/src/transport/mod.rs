//! Transports: thin axum adapters that decode requests into messages for [`Server::process_json`] and
//! encode what comes back.
//!
//! Everything is served on the mount path and its whole subtree (the CometD client posts to
//! `/faye/handshake`, `/faye/connect`, ...):
//! - `POST` with a JSON body (or a form body with `message=`): `long-polling`, and with CORS
//!   `cross-origin-long-polling`;
//! - `GET` with `message=` and `jsonp=`: `callback-polling` (the Faye browser client's choice when the
//!   page is on another origin);
//! - `GET` with a WebSocket upgrade: `websocket`, from any origin (browsers send a foreign `Origin`).
//!
//! Deliveries travel in the answer to the client's `/meta/connect`, whichever transport carried it.

//!
//! [`serve`] is the accept loop with header and idle timeouts and a connection cap; the router works
//! under plain `axum::serve` too, without those.

mod http;
mod serve;
mod ws;

pub use serve::{serve, serve_with};

use crate::Server;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::serve::{Listener, ListenerExt};
use axum::Router;
use std::time::Duration;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

/// The axum router serving `server` at its mount path ([`crate::Config::mount`]) and subtree.
pub fn router(server: Server) -> Router {
    let mount = server.config().mount.clone();
    // Cross-origin long-polling sends credentials and a `Pragma` header, which triggers a preflight:
    // echo the page's origin and the requested headers, and allow credentials.
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::mirror_request())
        .allow_headers(AllowHeaders::mirror_request())
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_credentials(true)
        .expose_headers([header::CONTENT_TYPE])
        .max_age(Duration::from_secs(24 * 3600));
    Router::new()
        .route(&mount, any(http::handle))
        .route(&format!("{mount}/"), any(http::handle))
        .route(&format!("{mount}/{{*rest}}"), any(http::handle))
        .route_layer(axum::middleware::from_fn_with_state(
            server.clone(),
            whole_request,
        ))
        .layer(cors)
        .with_state(server)
}

/// `listener` with `TCP_NODELAY` on every accepted connection: give it to `axum::serve`.
///
/// Deliveries are small writes that must leave at once. With Nagle's algorithm on, a second small write
/// waits for the peer's ACK of the first, which a delayed-ACK peer holds for up to 40 ms: a roster
/// message right after another arrived 40 ms late in the presence benchmark.
pub fn without_delay(
    listener: tokio::net::TcpListener,
) -> impl Listener<Io = tokio::net::TcpStream, Addr = std::net::SocketAddr> {
    listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
    })
}

/// Reads a Bayeux request's whole body (at most [`crate::Config::max_body`] bytes, within
/// [`crate::Config::idle_timeout`]) before it is handled, so a body trickled in byte by byte cannot hold
/// a request open, and tells [`serve`] the connection has proven itself (or is becoming a WebSocket).
async fn whole_request(State(server): State<Server>, request: Request, next: Next) -> Response {
    let conn = request.extensions().get::<serve::ConnHandle>().cloned();
    let upgrade = request
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if upgrade {
        if let Some(conn) = conn {
            conn.0.upgrade();
        }
        return next.run(request).await;
    }
    let config = server.config();
    let (parts, body) = request.into_parts();
    let read = axum::body::to_bytes(body, config.max_body);
    let bytes = match tokio::time::timeout(config.idle_timeout, read).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => {
            let why = format!("body larger than {} bytes or unreadable\n", config.max_body);
            return (StatusCode::PAYLOAD_TOO_LARGE, why).into_response();
        }
        Err(_) => {
            let why = format!(
                "the request body did not arrive within {:?}\n",
                config.idle_timeout
            );
            let mut response = (StatusCode::REQUEST_TIMEOUT, why).into_response();
            response.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            return response;
        }
    };
    if let Some(conn) = conn {
        conn.0.prove();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
