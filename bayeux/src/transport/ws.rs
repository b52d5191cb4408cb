//! The WebSocket transport: each text frame is a message batch, each answer a frame.
//!
//! One task serves one socket ([`Socket`]): it reads frames, answers batches one at a time in
//! arrival order, holds the client's connects meanwhile, writes the answers, and pushes the
//! deliveries queued for the connecting client ([`Push`]) whenever nothing else is being written.
//! An idle client (its connect held) costs that task, its connect's future and its push; the rest is
//! made when a frame comes. Thousands of idle clients are the common case, so every part of a socket
//! that is not always needed is made only when it is.

use crate::{Error, Push, ReplyFence, Server};
use axum::extract::ws::{Message as Frame, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::{FutureExt, Sink, Stream};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Batches read and waiting for the one being answered. Past that, or with [`MAX_UNWRITTEN`] frames
/// not yet written, the socket is not read until there is room: a client that sends faster than it is
/// answered, or does not read its answers, is slowed down by TCP instead of buffered here.
const MAX_WAITING: usize = 256;
/// Frames waiting for the socket; past that no new batch is answered and the socket is not read.
const MAX_UNWRITTEN: usize = 64;

/// Accepts the upgrade from any origin: browser pages on other origins connect here by design, and a
/// client id (not a cookie) is the credential, so there is nothing for a foreign page to ride on.
pub(super) fn upgrade(upgrade: WebSocketUpgrade, server: Server) -> Response {
    let max = server.config().max_body;
    upgrade
        .max_message_size(max)
        .max_frame_size(max)
        // tungstenite allocates its read buffer up front (128 KiB by default) and keeps it: with
        // thousands of mostly idle clients that dominated memory, 4 KiB was an eighth of an idle
        // client and 1 KiB still a ninth. A connect or a subscribe is a few hundred bytes; a bigger
        // frame makes tungstenite reserve its whole length, so it only takes more reads (one per 512
        // bytes). Each send is a whole batch, so nothing is gained by buffering writes either: write
        // every frame at once.
        .read_buffer_size(512)
        .write_buffer_size(0)
        .on_upgrade(move |socket| run(socket, server))
}

/// Serves the socket until the client leaves (or the process drains), then answers what it sent
/// before leaving and closes.
///
/// Not an `async fn`: one would keep room for its arguments, a whole socket, besides the [`Socket`]
/// they are moved into, for as long as the socket is open.
fn run(socket: WebSocket, server: Server) -> impl Future<Output = ()> + Send {
    let mut socket = Socket::new(socket, server);
    async move {
        let server = socket.server.clone();
        metrics::gauge!("bayeux_websockets_open").increment(1.0);
        // Made before the check, so a drain between the two still ends the serving.
        let drained = server.inner.drained.notified();
        tokio::pin!(drained);
        let draining = server.is_draining()
            || poll_fn(|cx| {
                if drained.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(true);
                }
                socket.poll(cx, Phase::Serve).map(|()| false)
            })
            .await;
        metrics::gauge!("bayeux_websockets_open").decrement(1.0);
        if draining {
            // The process is about to exit and its held connects are answered at once: let the
            // answers reach the socket before it closes.
            poll_fn(|cx| socket.poll(cx, Phase::Drain)).await;
        }
        // The client is gone (or going): held connects have no one to answer to, and deliveries go
        // back to queueing. Everything else it sent is answered, so a publish sent just before
        // closing is not lost.
        socket.connects = Vec::new();
        socket.push = None;
        poll_fn(|cx| socket.poll(cx, Phase::Finish)).await;
        let _ = poll_fn(|cx| Pin::new(&mut socket.ws).poll_close(cx)).await;
    }
}

/// What [`Socket::poll`] does, and when it is done.
#[derive(Clone, Copy, PartialEq)]
enum Phase {
    /// Everything, until the client closes the socket or it fails.
    Serve,
    /// No more reading; done when every held connect is answered.
    Drain,
    /// No more reading, no connects, no pushes; done when every batch is answered and written.
    Finish,
}

/// A batch, or why a frame is not one.
type Batch = Result<Value, Error>;

/// A batch being answered: a future of its frame.
type Answering = Pin<Box<dyn Future<Output = Answered> + Send>>;

/// A frame to write, with the fence to lower once it is on the socket.
type Answered = (String, Option<ReplyFence>);

/// One socket and everything its client has in flight on it, driven by the socket's one task.
struct Socket {
    server: Server,
    ws: WebSocket,
    /// Batches other than connects, oldest first, waiting for the one being answered.
    waiting: VecDeque<Batch>,
    /// The batch being answered: one at a time, so a client's publishes keep their order.
    answering: Option<Answering>,
    /// Held connects, apart from the rest: a held `/meta/connect` must not stop the publishes and
    /// subscribes the client sends on the same socket meanwhile.
    connects: Vec<Answering>,
    /// Deliveries for the client that connects on this socket, as soon as they are queued.
    push: Option<Push>,
    /// Frames to write, oldest first.
    unwritten: VecDeque<Answered>,
    /// Fences of the frames handed to the socket, lowered once they are flushed.
    unflushed: Vec<ReplyFence>,
    flushing: bool,
    /// Writing failed: answers are still made (for what they do), not written.
    broken: bool,
}

impl Socket {
    fn new(ws: WebSocket, server: Server) -> Self {
        Socket {
            server,
            ws,
            waiting: VecDeque::new(),
            answering: None,
            connects: Vec::new(),
            push: None,
            unwritten: VecDeque::new(),
            unflushed: Vec::new(),
            flushing: false,
            broken: false,
        }
    }

    /// Moves everything along as far as it goes now; `Ready` once `phase` is done.
    fn poll(&mut self, cx: &mut Context<'_>, phase: Phase) -> Poll<()> {
        loop {
            let mut moved = self.write(cx);
            if phase == Phase::Serve {
                match self.read(cx) {
                    Poll::Ready(()) => return Poll::Ready(()),
                    Poll::Pending => {}
                }
            }
            moved |= self.answer(cx);
            moved |= self.connects(cx);
            moved |= self.push(cx);
            // Each step either moved (and may have made work for another) or registered this task's
            // waker with what it waits for: stop only after a round in which nothing moved.
            if !moved {
                break;
            }
        }
        let done = match phase {
            Phase::Serve => false,
            Phase::Drain => self.connects.is_empty(),
            Phase::Finish => {
                self.waiting.is_empty()
                    && self.answering.is_none()
                    && (self.broken || (self.unwritten.is_empty() && !self.flushing))
            }
        };
        if done {
            Poll::Ready(())
        } else {
            self.shed();
            Poll::Pending
        }
    }

    /// Gives back the room a burst left in the queues: most sockets idle most of the time.
    fn shed(&mut self) {
        self.waiting.shrink_to_fit();
        self.connects.shrink_to_fit();
        self.unwritten.shrink_to_fit();
        self.unflushed.shrink_to_fit();
    }

    /// Reads frames while there is room for their batches; `Ready` once the client has closed the
    /// socket or it failed.
    fn read(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while self.waiting.len() < MAX_WAITING && self.unwritten.len() < MAX_UNWRITTEN {
            let text = match Pin::new(&mut self.ws).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(Frame::Text(text)))) => serde_json::from_str(text.as_str()),
                Poll::Ready(Some(Ok(Frame::Binary(bytes)))) => {
                    serde_json::from_str(&String::from_utf8_lossy(&bytes))
                }
                Poll::Ready(Some(Ok(Frame::Close(_)) | Err(_)) | None) => return Poll::Ready(()),
                Poll::Ready(Some(Ok(_))) => continue,
            };
            self.take(text);
        }
        Poll::Pending
    }

    /// Takes a batch the client sent: connects are held apart, the rest waits its turn.
    fn take(&mut self, batch: Result<Value, serde_json::Error>) {
        let batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                let error = Error::BadRequest(format!("invalid JSON: {e}"));
                self.waiting.push_back(Err(error));
                return;
            }
        };
        let (held, rest) = split_connects(batch);
        if let Some(rest) = rest {
            self.waiting.push_back(Ok(rest));
        }
        if let Some(held) = held {
            if let Some(id) = connecting_client(&held) {
                if self.push.as_ref().is_none_or(|p| p.client_id() != id) {
                    self.push = Some(self.server.push_deliveries(id));
                }
            }
            self.connects.push(answering(self.server.clone(), Ok(held)));
        }
    }

    /// Answers the waiting batches, one at a time; whether any was answered.
    fn answer(&mut self, cx: &mut Context<'_>) -> bool {
        let mut moved = false;
        loop {
            let current = match &mut self.answering {
                Some(current) => current,
                // A client that does not read its answers gets no more until it does.
                None if self.unwritten.len() >= MAX_UNWRITTEN => return moved,
                None => match self.waiting.pop_front() {
                    Some(batch) => self.answering.insert(answering(self.server.clone(), batch)),
                    None => return moved,
                },
            };
            match current.as_mut().poll(cx) {
                Poll::Pending => return moved,
                Poll::Ready(answered) => {
                    self.answering = None;
                    self.queue(answered);
                    moved = true;
                }
            }
        }
    }

    /// Polls the held connects; whether any was answered.
    fn connects(&mut self, cx: &mut Context<'_>) -> bool {
        let mut moved = false;
        let mut i = 0;
        while i < self.connects.len() {
            match self.connects[i].as_mut().poll(cx) {
                Poll::Pending => i += 1,
                Poll::Ready(answered) => {
                    drop(self.connects.swap_remove(i));
                    self.queue(answered);
                    moved = true;
                }
            }
        }
        moved
    }

    /// Takes the client's next deliveries, when nothing else waits for the socket (meanwhile they
    /// wait in its queue, which the engine bounds, and go as one frame); whether any were taken.
    fn push(&mut self, cx: &mut Context<'_>) -> bool {
        if self.broken || self.flushing || !self.unwritten.is_empty() {
            return false;
        }
        let Some(push) = &mut self.push else {
            return false;
        };
        match Pin::new(push).poll_next(cx) {
            Poll::Ready(Some(batch)) => {
                self.queue((crate::outbound::to_json_array(&batch), None));
                true
            }
            // The client is gone: its connect has been told so.
            Poll::Ready(None) | Poll::Pending => false,
        }
    }

    /// Queues a frame for the socket (or drops it, with its fence, if the socket cannot be written).
    fn queue(&mut self, answered: Answered) {
        if !self.broken {
            self.unwritten.push_back(answered);
        }
    }

    /// Writes the waiting frames and flushes them; whether anything was written or flushed.
    fn write(&mut self, cx: &mut Context<'_>) -> bool {
        if self.broken {
            return false;
        }
        let mut moved = false;
        while !self.unwritten.is_empty() {
            match Pin::new(&mut self.ws).poll_ready(cx) {
                Poll::Pending => break,
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return self.fail(),
            }
            let Some((text, fence)) = self.unwritten.pop_front() else {
                break;
            };
            if Pin::new(&mut self.ws)
                .start_send(Frame::Text(text.into()))
                .is_err()
            {
                return self.fail();
            }
            self.unflushed.extend(fence);
            self.flushing = true;
            moved = true;
        }
        if self.flushing {
            match Pin::new(&mut self.ws).poll_flush(cx) {
                Poll::Pending => {}
                Poll::Ready(Ok(())) => {
                    self.flushing = false;
                    // The replies are on the socket: deliveries that must follow them may go now.
                    self.unflushed.clear();
                    moved = true;
                }
                Poll::Ready(Err(_)) => return self.fail(),
            }
        }
        moved
    }

    /// The socket cannot be written any more: what waited for it is dropped (lowering its fences).
    fn fail(&mut self) -> bool {
        self.broken = true;
        self.flushing = false;
        self.unwritten.clear();
        self.unflushed.clear();
        true
    }
}

/// The future of a batch's answer; a panic while answering is an error reply, not the end of the
/// socket.
fn answering(server: Server, batch: Batch) -> Answering {
    Box::pin(
        AssertUnwindSafe(answer(server, batch))
            .catch_unwind()
            .map(|answered| {
                answered.unwrap_or_else(|_| {
                    tracing::error!("answering a WebSocket batch panicked");
                    let error = Error::Internal("panicked".into());
                    (error_frame(&error), None)
                })
            }),
    )
}

/// Runs one batch (`[]` for an empty batch: Faye pings with `[]`) into its frame.
async fn answer(server: Server, batch: Batch) -> Answered {
    let answer = match batch {
        Ok(batch) => server.answer_json(batch).await,
        Err(e) => Err(e),
    };
    match answer {
        Ok(answer) => (
            crate::outbound::to_json_array(&answer.replies),
            Some(answer.fence),
        ),
        Err(e) => (error_frame(&e), None),
    }
}

/// The client id of the first `/meta/connect` in a batch of connects.
fn connecting_client(connects: &Value) -> Option<&str> {
    let first = match connects {
        Value::Array(items) => items.first()?,
        single => single,
    };
    first.get("clientId")?.as_str()
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
    use super::{answering, run, split_connects};
    use crate::{Message, Server};
    use axum::extract::ws::WebSocket;
    use serde_json::json;

    /// The size of what `f` returns.
    fn returned<A, F>(_: &impl Fn(A) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// What an idle client's socket keeps while its connect is held: the socket's future, the
    /// connect's answer, the message's handling inside it and the connect handler (each boxed, or in
    /// the socket's task). The bounds leave room for compiler changes; what they catch is a big
    /// value held across an await, as the 2.8 KiB future of a message's handling was before.
    #[tokio::test]
    async fn an_idle_clients_futures_stay_small() {
        let server = Server::builder().build().unwrap();
        let connect =
            json!({"channel": "/meta/connect", "clientId": "c", "connectionType": "websocket"});
        let message: Message = serde_json::from_value(connect.clone()).unwrap();
        let sizes = [
            (
                "socket",
                returned(&|ws: WebSocket| run(ws, server.clone())),
                1024,
            ),
            (
                "answer",
                std::mem::size_of_val(&*answering(server.clone(), Ok(connect))),
                768,
            ),
            (
                "handle",
                std::mem::size_of_val(&server.handle(message.clone())),
                128,
            ),
            (
                "connect",
                std::mem::size_of_val(&*server.dispatch(&message)),
                768,
            ),
        ];
        for (what, size, bound) in sizes {
            eprintln!("{what}: {size} bytes");
            assert!(size <= bound, "{what}: {size} bytes, over {bound}");
        }
    }

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
