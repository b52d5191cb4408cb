//! The WebSocket transport: each text frame is a message batch, each answer a frame.

use super::http::decode_and_process;
use crate::Server;
use axum::extract::ws::{Message as Frame, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Accepts the upgrade from any origin: browser pages on other origins connect here by design, and a
/// client id (not a cookie) is the credential, so there is nothing for a foreign page to ride on.
pub(super) fn upgrade(upgrade: WebSocketUpgrade, server: Server) -> Response {
    let max = server.config().max_body;
    upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| run(socket, server))
}

async fn run(socket: WebSocket, server: Server) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<String>(64);
    let writer = tokio::spawn(async move {
        while let Some(text) = rx.recv().await {
            if sink.send(Frame::Text(text.into())).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    // Each batch runs in its own task: a held /meta/connect must not stop the publishes and
    // subscribes the client sends on the same socket meanwhile.
    let mut batches = JoinSet::new();
    while let Some(frame) = stream.next().await {
        let text = match frame {
            Ok(Frame::Text(text)) => text.to_string(),
            Ok(Frame::Binary(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
            Ok(Frame::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        };
        let server = server.clone();
        let tx = tx.clone();
        batches.spawn(async move {
            let answer = match decode_and_process(&server, text.as_bytes()).await {
                Ok(answer) => answer,
                Err(e) => json!([{"successful": false, "error": e.to_bayeux()}]).to_string(),
            };
            let _ = tx.send(answer).await;
        });
        while batches.try_join_next().is_some() {}
    }
    // The socket is gone: held connects have no one to answer to.
    batches.abort_all();
    drop(tx);
    let _ = writer.await;
}
