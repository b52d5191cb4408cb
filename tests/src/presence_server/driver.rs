//! [`Driver`]: real Faye clients in Node (`tests/js/presence_driver.js`), driven by JSON lines.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{drain, workspace, Json, LIMIT};

/// The transports a Faye client can be forced onto.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `client.disable('websocket')`
    LongPolling,
    /// Faye's default: handshake over HTTP, then the socket.
    WebSocket,
}

impl Transport {
    /// Both, for tests that run over each.
    pub const ALL: [Transport; 2] = [Transport::LongPolling, Transport::WebSocket];

    /// The name the driver takes.
    pub fn name(self) -> &'static str {
        match self {
            Transport::LongPolling => "long-polling",
            Transport::WebSocket => "websocket",
        }
    }
}

/// `tests/js`, checked to have its `node_modules` installed. Fails (never skips) when they are missing.
pub fn js_dir() -> PathBuf {
    let dir = workspace().join("tests/js");
    assert!(
        dir.join("node_modules/faye").is_dir(),
        "tests/js/node_modules is missing: run `npm ci --prefix tests/js` (needs node and npm)"
    );
    dir
}

#[derive(Default)]
struct Shared {
    events: Vec<Json>,
    closed: bool,
}

/// A `node presence_driver.js` process running named Faye clients; killed on drop.
///
/// Requests block until the driver answers them (at most [`LIMIT`]); everything the clients receive is
/// kept in order and can be waited for with [`Driver::wait_for`].
pub struct Driver {
    child: Child,
    stdin: Option<ChildStdin>,
    shared: Arc<(Mutex<Shared>, Condvar)>,
    log: Arc<Mutex<String>>,
    next: u64,
}

impl Driver {
    /// Starts the driver.
    pub fn start() -> Self {
        let mut child = Command::new("node")
            .current_dir(js_dir())
            .arg("presence_driver.js")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("node must be installed to run the end-to-end tests");
        let log = Arc::new(Mutex::new(String::new()));
        drain(child.stderr.take().expect("stderr"), log.clone());
        let shared = Arc::new((Mutex::new(Shared::default()), Condvar::new()));
        let stdout = child.stdout.take().expect("stdout");
        let reader = shared.clone();
        let bad = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                match Json::parse(&line) {
                    Ok(event) => reader.0.lock().unwrap().events.push(event),
                    Err(e) => bad
                        .lock()
                        .unwrap()
                        .push_str(&format!("unreadable driver line ({e}): {line}\n")),
                }
                reader.1.notify_all();
            }
            reader.0.lock().unwrap().closed = true;
            reader.1.notify_all();
        });
        let stdin = child.stdin.take();
        Driver {
            child,
            stdin,
            shared,
            log,
            next: 0,
        }
    }

    /// Sends `{"op": op, ...fields}` and returns the driver's answer (`ok` may be false).
    pub fn request(&mut self, op: &str, fields: Vec<(&str, Json)>) -> Json {
        let req = self.send(op, fields);
        self.answer(req)
    }

    /// Sends `{"op": op, ...fields}` without waiting: the driver runs commands concurrently. Returns
    /// the request number for [`Driver::answer`].
    pub fn send(&mut self, op: &str, fields: Vec<(&str, Json)>) -> u64 {
        self.next += 1;
        let req = self.next;
        let mut command = BTreeMap::new();
        command.insert("op".to_owned(), Json::from(op));
        command.insert("req".to_owned(), Json::Num(req as f64));
        for (k, v) in fields {
            command.insert(k.to_owned(), v);
        }
        let line = format!("{}\n", Json::Obj(command));
        let stdin = self.stdin.as_mut().expect("driver stdin");
        stdin
            .write_all(line.as_bytes())
            .and_then(|_| stdin.flush())
            .expect("write to the driver");
        req
    }

    /// Waits for the driver's answer to request `req`.
    pub fn answer(&self, req: u64) -> Json {
        let what = format!("the driver's answer to request {req}");
        // Longer than the driver's own limit, so its timeouts are reported as answers.
        self.wait_events(&what, LIMIT + Duration::from_secs(10), |events| {
            events
                .iter()
                .rev()
                .find(|e| {
                    e.get("ev").as_str() == Some("done")
                        && e.get("req").as_f64() == Some(req as f64)
                })
                .cloned()
        })
    }

    /// Like [`Driver::request`], failing the test unless the answer is `ok`.
    pub fn call(&mut self, op: &str, fields: Vec<(&str, Json)>) -> Json {
        let answer = self.request(op, fields);
        assert!(
            answer.get("ok").as_bool() == Some(true),
            "driver {op} failed: {answer}\ndriver log:\n{}",
            self.log()
        );
        answer
    }

    /// Creates client `name` on `url`, forced onto `transport`.
    pub fn client(&mut self, name: &str, url: &str, transport: Transport) {
        self.call(
            "create",
            vec![
                ("name", name.into()),
                ("url", url.into()),
                ("transport", transport.name().into()),
            ],
        );
    }

    /// Handshakes client `name`; returns its clientId.
    pub fn connect(&mut self, name: &str) -> String {
        let answer = self.call("connect", vec![("name", name.into())]);
        answer
            .get("clientId")
            .as_str()
            .expect("clientId")
            .to_owned()
    }

    /// Subscribes `name` to `channel` sending `presence` as `ext.presence` (none if `None`).
    /// Returns the reply's `ext` or Faye's error message.
    pub fn subscribe(
        &mut self,
        name: &str,
        channel: &str,
        presence: Option<Json>,
    ) -> Result<Json, String> {
        let mut fields = vec![("name", name.into()), ("channel", channel.into())];
        if let Some(p) = presence {
            fields.push(("presence", p));
        }
        Self::subscribe_answer(self.request("subscribe", fields))
    }

    /// Subscribes with `ext.presence = {id, data}`, failing the test unless it succeeds; returns the
    /// reply's `ext.presence`.
    pub fn join(&mut self, name: &str, channel: &str, id: &str, data: Json) -> Json {
        let presence = Json::obj(vec![("id", id.into()), ("data", data)]);
        match self.subscribe(name, channel, Some(presence)) {
            Ok(ext) => ext.get("presence").clone(),
            Err(e) => panic!(
                "{name} joining {channel} as {id:?} failed: {e}\ndriver log:\n{}",
                self.log()
            ),
        }
    }

    /// Like [`Driver::join`] for several clients at once: every subscribe is sent before any answer is
    /// awaited, so they reach the servers at about the same time (the window in which a member's
    /// snapshot and the others' joins cross). Returns each reply's `ext.presence`, in order.
    pub fn join_all(&mut self, joins: &[(&str, &str, &str, Json)]) -> Vec<Json> {
        let sent: Vec<u64> = joins
            .iter()
            .map(|(name, channel, id, data)| {
                let presence = Json::obj(vec![("id", (*id).into()), ("data", data.clone())]);
                let fields = vec![
                    ("name", (*name).into()),
                    ("channel", (*channel).into()),
                    ("presence", presence),
                ];
                self.send("subscribe", fields)
            })
            .collect();
        sent.into_iter()
            .zip(joins)
            .map(
                |(req, (name, channel, ..))| match Self::subscribe_answer(self.answer(req)) {
                    Ok(ext) => ext.get("presence").clone(),
                    Err(e) => panic!(
                        "{name} joining {channel} failed: {e}\ndriver log:\n{}",
                        self.log()
                    ),
                },
            )
            .collect()
    }

    /// Subscribes with a signed identity (see `shim/src/identity.rs`); `signed` holds `secret`,
    /// `channel_data` and optionally `client_id`, `channel`, `tamper`.
    pub fn subscribe_signed(
        &mut self,
        name: &str,
        channel: &str,
        signed: Json,
    ) -> Result<Json, String> {
        Self::subscribe_answer(self.request(
            "subscribe",
            vec![
                ("name", name.into()),
                ("channel", channel.into()),
                ("signed", signed),
            ],
        ))
    }

    fn subscribe_answer(answer: Json) -> Result<Json, String> {
        if answer.get("ok").as_bool() == Some(true) {
            Ok(answer.get("ext").clone())
        } else {
            Err(answer.get("error").as_str().unwrap_or("?").to_owned())
        }
    }

    /// Unsubscribes `name` from `channel` and waits for the server's confirmation.
    pub fn unsubscribe(&mut self, name: &str, channel: &str) {
        self.call(
            "unsubscribe",
            vec![("name", name.into()), ("channel", channel.into())],
        );
    }

    /// Publishes `data` on `channel` from `name`; `Err` with Faye's message if the server refused.
    pub fn publish(&mut self, name: &str, channel: &str, data: Json) -> Result<(), String> {
        let answer = self.request(
            "publish",
            vec![
                ("name", name.into()),
                ("channel", channel.into()),
                ("data", data),
            ],
        );
        if answer.get("ok").as_bool() == Some(true) {
            Ok(())
        } else {
            Err(answer.get("error").as_str().unwrap_or("?").to_owned())
        }
    }

    /// Client `name` publishes `{seq, from}` for seq 0..count to `channel` back to back, then waits for
    /// every acknowledgement.
    pub fn burst(&mut self, name: &str, channel: &str, count: usize) -> Result<(), String> {
        let answer = self.request(
            "burst",
            vec![
                ("name", name.into()),
                ("channel", channel.into()),
                ("count", Json::Num(count as f64)),
            ],
        );
        match answer.get("ok").as_bool() {
            Some(true) => Ok(()),
            _ => Err(answer.to_string()),
        }
    }

    /// `client.disconnect()`, confirmed by the server.
    pub fn disconnect(&mut self, name: &str) {
        self.call("disconnect", vec![("name", name.into())]);
    }

    /// Stops client `name` dead: it sends nothing more (no disconnect) and drops its transport.
    pub fn freeze(&mut self, name: &str) {
        self.call("freeze", vec![("name", name.into())]);
    }

    /// Every event so far (answers, messages, faults), in the order the driver printed them.
    pub fn events(&self) -> Vec<Json> {
        self.shared.0.lock().unwrap().events.clone()
    }

    /// The messages client `name` received on `channel`, in order.
    pub fn messages(&self, name: &str, channel: &str) -> Vec<Json> {
        messages_in(&self.events(), name, channel)
    }

    /// Waits until client `name` has received at least `n` messages on `channel`; returns them all.
    pub fn wait_messages(&self, name: &str, channel: &str, n: usize) -> Vec<Json> {
        self.wait_messages_for(name, channel, n, LIMIT)
    }

    /// [`Driver::wait_messages`] with its own timeout.
    pub fn wait_messages_for(
        &self,
        name: &str,
        channel: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<Json> {
        self.wait_events(
            &format!("{n} messages to {name} on {channel}"),
            timeout,
            |events| {
                let got = messages_in(events, name, channel);
                (got.len() >= n).then_some(got)
            },
        )
    }

    /// Waits until some event satisfies `pred`; returns its index in [`Driver::events`].
    pub fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&Json) -> bool) -> usize {
        let mut seen = 0;
        self.wait_until(what, timeout, |events| {
            let found = events[seen..].iter().position(&pred).map(|i| seen + i);
            seen = events.len();
            found
        })
    }

    /// Waits until `cond` holds over the events so far (`cond` must not call back into the driver).
    pub fn wait_events<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut cond: impl FnMut(&[Json]) -> Option<T>,
    ) -> T {
        self.wait_until(what, timeout, |events| cond(events))
    }

    fn wait_until<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut cond: impl FnMut(&[Json]) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        let (lock, changed) = &*self.shared;
        let mut shared = lock.lock().unwrap();
        loop {
            if let Some(found) = cond(&shared.events) {
                return found;
            }
            let now = Instant::now();
            if now >= deadline || shared.closed {
                let events: Vec<String> = shared.events.iter().map(|e| e.to_string()).collect();
                drop(shared);
                panic!(
                    "{} waiting for {what}; driver events:\n{}\ndriver log:\n{}",
                    if now >= deadline {
                        format!("timed out after {timeout:?}")
                    } else {
                        "the driver exited".to_owned()
                    },
                    events.join("\n"),
                    self.log()
                );
            }
            shared = changed.wait_timeout(shared, deadline - now).unwrap().0;
        }
    }

    /// Faults the driver reported (exceptions inside clients); tests assert there are none.
    pub fn faults(&self) -> Vec<Json> {
        self.events()
            .into_iter()
            .filter(|e| e.get("ev").as_str() == Some("fault"))
            .collect()
    }

    /// The driver's stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.stdin.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The messages client `name` received on `channel` among `events`, in order.
pub fn messages_in(events: &[Json], name: &str, channel: &str) -> Vec<Json> {
    events
        .iter()
        .filter(|e| {
            e.get("ev").as_str() == Some("msg")
                && e.get("client").as_str() == Some(name)
                && e.get("channel").as_str() == Some(channel)
        })
        .cloned()
        .collect()
}
