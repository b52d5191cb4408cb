//! The WebSocket transport: each text frame is a message batch, each answer a frame.

use crate::{Error, PushGuard, ReplyFence, Server};
use axum::extract::ws::{Message as Frame, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Accepts the upgrade from any origin: browser pages on other origins connect here by design, and a
/// client id (not a cookie) is the credential, so there is nothing for a foreign page to ride on.
pub(super) fn upgrade(upgrade: WebSocketUpgrade, server: Server) -> Response {
    let max = server.config().max_body;
    upgrade
        .max_message_size(max)
        .max_frame_size(max)
        // tungstenite allocates its read buffer up front (128 KiB by default): with thousands of
        // mostly idle clients that dominated memory, and 4 KiB was still an eighth of an idle client.
        // A connect or a subscribe is a few hundred bytes; a bigger frame makes tungstenite reserve
        // its whole length, so it only takes more reads. Each send is a whole batch, so nothing is gained by
        // buffering writes either: write every frame at once.
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .on_upgrade(move |socket| run(socket, server))
}

async fn run(socket: WebSocket, server: Server) {
    let (mut sink, mut stream) = socket.split();
    // A channel allocates a block of 32 slots up front, per socket: boxed answers keep it at 256 bytes.
    let (tx, mut rx) = mpsc::channel::<Box<Answered>>(64);
    let (push_tx, mut push_rx) = mpsc::channel::<Vec<crate::Outbound>>(64);
    let writer = tokio::spawn(async move {
        loop {
            let (text, fence) = tokio::select! {
                Some(answered) = rx.recv() => *answered,
                Some(batch) = push_rx.recv() => (crate::outbound::to_json_array(&batch), None),
                else => break,
            };
            if sink.send(Frame::Text(text.into())).await.is_err() {
                break;
            }
            // The replies are on the socket: deliveries that must follow them may go now.
            drop(fence);
        }
        let _ = sink.close().await;
    });
    // Deliveries go out as soon as they are queued for the client that connects on this socket.
    let mut push: Option<PushGuard> = None;
    // Connects are split off: a held /meta/connect must not stop the publishes and subscribes the
    // client sends on the same socket meanwhile, and they are aborted when the socket closes (nobody is
    // left to answer). Everything else goes, in arrival order, through one worker that runs to
    // completion: a client's publishes keep their order, and one sent just before closing is not lost.
    let (work_tx, mut work_rx) = mpsc::channel::<Box<Value>>(256);
    let worker = {
        let (server, tx) = (server.clone(), tx.clone());
        tokio::spawn(async move {
            while let Some(batch) = work_rx.recv().await {
                let batch = *batch;
                // Boxed: an idle worker then holds a pointer, not the whole answer's state.
                Box::pin(answer(server.clone(), batch, tx.clone())).await;
            }
        })
    };
    let mut connects = JoinSet::new();
    metrics::gauge!("bayeux_websockets_open").increment(1.0);
    let drained = server.inner.drained.notified();
    tokio::pin!(drained);
    let mut draining = server.is_draining();
    while !draining {
        let frame = tokio::select! {
            frame = stream.next() => frame,
            // The process is about to exit: its held connects are being answered; close after them.
            () = &mut drained => {
                draining = true;
                continue;
            }
        };
        let Some(frame) = frame else { break };
        let text = match frame {
            Ok(Frame::Text(text)) => text.to_string(),
            Ok(Frame::Binary(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
            Ok(Frame::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        };
        let value = match serde_json::from_str::<Value>(&text) {
            Ok(value) => value,
            Err(e) => {
                let error = Error::BadRequest(format!("invalid JSON: {e}"));
                let _ = tx.send(Box::new((error_frame(&error), None))).await;
                continue;
            }
        };
        let (held, rest) = split_connects(value);
        if let Some(rest) = rest {
            if work_tx.send(Box::new(rest)).await.is_err() {
                break;
            }
        }
        if let Some(held) = held {
            if let Some(id) = connecting_client(&held) {
                if push.as_ref().is_none_or(|p| p.client_id() != id) {
                    push = Some(server.push_deliveries(id, push_tx.clone()));
                }
            }
            connects.spawn(answer(server.clone(), held, tx.clone()));
        }
        while connects.try_join_next().is_some() {}
    }
    metrics::gauge!("bayeux_websockets_open").decrement(1.0);
    if draining {
        // Drained connects answer at once: let them reach the socket before it closes.
        while connects.join_next().await.is_some() {}
    }
    // The socket is gone: held connects have no one to answer to, and deliveries go back to queueing.
    connects.abort_all();
    drop(push);
    drop((tx, push_tx, work_tx));
    let _ = worker.await;
    let _ = writer.await;
}

/// The client id of the first `/meta/connect` in a batch of connects.
fn connecting_client(connects: &Value) -> Option<&str> {
    let first = match connects {
        Value::Array(items) => items.first()?,
        single => single,
    };
    first.get("clientId")?.as_str()
}

/// A frame for the writer, with the fence to lower once it is written.
type Answered = (String, Option<ReplyFence>);

/// Runs one batch and queues its answer (`[]` for an empty batch: Faye pings with `[]`).
async fn answer(server: Server, batch: Value, tx: mpsc::Sender<Box<Answered>>) {
    let answered = match server.answer_json(batch).await {
        Ok(answer) => (
            crate::outbound::to_json_array(&answer.replies),
            Some(answer.fence),
        ),
        Err(e) => (error_frame(&e), None),
    };
    let _ = tx.send(Box::new(answered)).await;
}

fn error_frame(error: &Error) -> String {
    json!([{"successful": false, "error": error.to_bayeux()}]).to_string()
}

/// Splits a batch into its `/meta/connect` messages and the rest; `None` for an empty part, except that
/// an empty batch (Faye's `[]` ping) stays as the rest so that it is answered.
fn split_connects(batch: Value) -> (Option<Value>, Option<Value>) {
    let is_connect = |m: &Value| m.get("channel").and_then(Value::as_str) == Some("/meta/connect");
    match batch {
        Value::Array(items) if !items.is_empty() => {
            let (held, rest): (Vec<_>, Vec<_>) = items.into_iter().partition(is_connect);
            let part = |v: Vec<Value>| (!v.is_empty()).then_some(Value::Array(v));
            (part(held), part(rest))
        }
        single if is_connect(&single) => (Some(single), None),
        other => (None, Some(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::split_connects;
    use serde_json::json;

    #[test]
    fn connects_are_split_from_the_rest() {
        let c = json!({"channel": "/meta/connect"});
        let p = json!({"channel": "/a"});
        assert_eq!(split_connects(json!([])), (None, Some(json!([]))));
        assert_eq!(
            split_connects(json!([c, p])),
            (Some(json!([c])), Some(json!([p])))
        );
        assert_eq!(split_connects(c.clone()), (Some(c.clone()), None));
        assert_eq!(split_connects(json!([c])), (Some(json!([c])), None));
        assert_eq!(split_connects(json!(5)), (None, Some(json!(5))));
    }
}
