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

mod http;
mod ws;

use crate::Server;
use axum::http::{header, Method};
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
