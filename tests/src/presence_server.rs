//! End-to-end harness for the `faye-presence` server: [`PresenceServer`] runs the binary, [`Driver`] runs
//! real Faye clients in Node (`tests/js/presence_driver.js`), [`Json`] reads and writes what they say, and
//! [`Observed`] rebuilds a client's roster from its subscribe reply and roster messages, checking every step.
//!
//! Everything that starts a process returns a guard that kills it on drop, also when a test panics.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a driver request or a wait for an event may take before the test fails.
pub const LIMIT: Duration = Duration::from_secs(20);

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
}

/// Builds `faye-presence` (crate `presence-shim`) once per test binary, in the profile of this build and
/// the target directory cargo uses (`CARGO_TARGET_DIR` if set, else `<workspace>/target`).
///
/// `FAYE_PRESENCE_BIN` may name an already built binary instead.
pub fn binary_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(path) = std::env::var_os("FAYE_PRESENCE_BIN") {
            return PathBuf::from(path);
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let release = cfg!(not(debug_assertions));
        let mut build = Command::new(cargo);
        build.current_dir(workspace()).args([
            "build",
            "-q",
            "-p",
            "presence-shim",
            "--bin",
            "faye-presence",
        ]);
        if release {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build for faye-presence");
        assert!(status.success(), "building faye-presence failed");
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace().join("target"))
            .join(if release { "release" } else { "debug" })
            .join("faye-presence")
    })
}

/// A running `faye-presence`, killed (SIGKILL, by its pid) on drop.
///
/// Always give it `--redis`: a server left to start its own redis-server would orphan it when killed.
pub struct PresenceServer {
    child: Option<Child>,
    addr: String,
    log: Arc<Mutex<String>>,
}

impl PresenceServer {
    /// Starts `faye-presence --listen 127.0.0.1:0 <args>` and waits (at most 30 s) for its
    /// `listening on ADDR` line.
    pub fn start(args: &[&str]) -> Self {
        assert!(
            args.contains(&"--redis") || args.contains(&"--cluster"),
            "give the server a harness Redis with --redis or --cluster"
        );
        crate::module_path(); // the Redis servers need it anyway; build both before timing anything
        let mut child = Command::new(binary_path())
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start faye-presence");
        let log = Arc::new(Mutex::new(String::new()));
        drain(child.stderr.take().expect("stderr"), log.clone());
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.trim().to_owned());
                    break;
                }
            }
            for _ in lines {} // keep the pipe open and empty
        });
        let mut server = PresenceServer {
            child: Some(child),
            addr: String::new(),
            log,
        };
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => server.addr = addr,
            Err(_) => panic!(
                "faye-presence {args:?} did not say where it listens within 30 s; log:\n{}",
                server.log()
            ),
        }
        server
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The Bayeux endpoint, `http://127.0.0.1:PORT/faye`.
    pub fn url(&self) -> String {
        format!("http://{}/faye", self.addr)
    }

    /// Its stderr (logs) so far, for assertion messages.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Kills it with SIGKILL (no goodbye to Redis or clients) and waits for it to be gone.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PresenceServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn drain(mut from: impl Read + Send + 'static, into: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut log = into.lock().unwrap();
            if log.len() < 1 << 20 {
                log.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
    });
}

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

/// A client's roster rebuilt from what it was told: its subscribe reply, then each roster message in
/// order. Every step is checked as a legacy client would need it: a join only for an id it does not
/// have (or a change of its data: subscribe is an upsert), a leave only for one it has, one id per
/// message, and `rev` strictly increasing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// The members as told, id -> value.
    pub members: BTreeMap<String, Json>,
    /// The last `rev` seen.
    pub rev: f64,
    /// Every rule broken, in words; empty when all was well.
    pub violations: Vec<String>,
    /// The diffs applied, in order, as `+id` (join), `~id` (data changed), `-id` (leave).
    pub history: Vec<String>,
}

impl Observed {
    /// Starts from a subscribe reply's `ext.presence`.
    pub fn from_reply(presence: &Json) -> Self {
        let mut observed = Observed::default();
        match presence.get("subscribe") {
            Json::Obj(members) => observed.members = members.clone(),
            other => observed
                .violations
                .push(format!("reply without a subscribe object: {other}")),
        }
        match presence.get("rev").as_f64() {
            Some(rev) => observed.rev = rev,
            None => observed.violations.push("reply without rev".into()),
        }
        observed
    }

    /// Applies one roster message (`{"data": .., "rev": ..}` as the driver reports it).
    pub fn apply(&mut self, message: &Json) {
        let rev = message.get("rev").as_f64();
        match rev {
            Some(rev) if rev > self.rev => self.rev = rev,
            _ => self
                .violations
                .push(format!("rev {rev:?} not after {} in {message}", self.rev)),
        }
        let data = message.get("data");
        let (joins, leaves) = (data.get("subscribe"), data.get("unsubscribe"));
        match (joins, leaves) {
            (Json::Obj(joins), Json::Null) if joins.len() == 1 => {
                for (id, value) in joins {
                    // Subscribe is an upsert: for a member it already has, only a change of data.
                    match self.members.insert(id.clone(), value.clone()) {
                        Some(old) if old == *value => self.violations.push(format!(
                            "join for {id:?}, already a member with that data: {message}"
                        )),
                        Some(_) => self.history.push(format!("~{id}")),
                        None => self.history.push(format!("+{id}")),
                    }
                }
            }
            (Json::Null, Json::Obj(leaves)) if leaves.len() == 1 => {
                for (id, value) in leaves {
                    if self.members.remove(id).is_none() {
                        self.violations
                            .push(format!("leave for {id:?}, not a member: {message}"));
                    }
                    if *value != Json::Null {
                        self.violations
                            .push(format!("leave with a value {value}: {message}"));
                    }
                    self.history.push(format!("-{id}"));
                }
            }
            _ => self
                .violations
                .push(format!("not a roster message: {message}")),
        }
    }

    /// Applies all of `messages`.
    pub fn apply_all<'a>(&mut self, messages: impl IntoIterator<Item = &'a Json>) {
        for m in messages {
            self.apply(m);
        }
    }

    /// The member ids, sorted.
    pub fn ids(&self) -> Vec<String> {
        self.members.keys().cloned().collect()
    }
}

/// A JSON value, enough to talk to the driver without a JSON crate. Objects compare without regard to
/// key order (JSON semantics); numbers are `f64`.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Json {
    /// `null` (also what [`Json::get`] returns for a missing key)
    #[default]
    Null,
    /// `true` / `false`
    Bool(bool),
    /// a number
    Num(f64),
    /// a string
    Str(String),
    /// an array
    Arr(Vec<Json>),
    /// an object
    Obj(BTreeMap<String, Json>),
}

static NULL: Json = Json::Null;

impl Json {
    /// Parses JSON text.
    pub fn parse(text: &str) -> Result<Json, String> {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("trailing text at byte {}", p.i));
        }
        Ok(v)
    }

    /// An object from pairs.
    pub fn obj(pairs: Vec<(&str, Json)>) -> Json {
        Json::Obj(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    /// The value at `key` of an object, or `Null`.
    pub fn get(&self, key: &str) -> &Json {
        match self {
            Json::Obj(map) => map.get(key).unwrap_or(&NULL),
            _ => &NULL,
        }
    }

    /// The string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The number, if it is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Num(n) => Some(*n),
            _ => None,
        }
    }

    /// The boolean, if it is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The object's keys, sorted (empty for anything else).
    pub fn keys(&self) -> Vec<String> {
        match self {
            Json::Obj(map) => map.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }
}

/// Parses JSON text written in a test, panicking on a typo.
pub fn json(text: &str) -> Json {
    Json::parse(text).unwrap_or_else(|e| panic!("bad JSON in test ({e}): {text}"))
}

impl From<&str> for Json {
    fn from(s: &str) -> Json {
        Json::Str(s.to_owned())
    }
}

impl From<String> for Json {
    fn from(s: String) -> Json {
        Json::Str(s)
    }
}

impl From<f64> for Json {
    fn from(n: f64) -> Json {
        Json::Num(n)
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Json::Null => f.write_str("null"),
            Json::Bool(b) => write!(f, "{b}"),
            Json::Num(n) if n.fract() == 0.0 && n.abs() < 1e15 => write!(f, "{}", *n as i64),
            Json::Num(n) => write!(f, "{n}"),
            Json::Str(s) => write_str(f, s),
            Json::Arr(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            Json::Obj(map) => {
                f.write_str("{")?;
                for (i, (k, v)) in map.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write_str(f, k)?;
                    write!(f, ":{v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

fn write_str(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                write!(f, "\\u{:04x}", c as u32)?
            }
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn eat(&mut self, b: u8) -> Result<(), String> {
        self.ws();
        if self.s.get(self.i) == Some(&b) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected '{}' at byte {}", b as char, self.i))
        }
    }

    fn literal(&mut self, word: &str, value: Json) -> Result<Json, String> {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(value)
        } else {
            Err(format!("bad literal at byte {}", self.i))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.s.get(self.i) {
            None => Err("unexpected end".into()),
            Some(b'n') => self.literal("null", Json::Null),
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'"') => self.string().map(Json::Str),
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value()?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(items));
                        }
                        _ => return Err(format!("expected ',' or ']' at byte {}", self.i)),
                    }
                }
            }
            Some(b'{') => {
                self.i += 1;
                let mut map = BTreeMap::new();
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(map));
                }
                loop {
                    self.ws();
                    let key = self.string()?;
                    self.eat(b':')?;
                    map.insert(key, self.value()?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(map));
                        }
                        _ => return Err(format!("expected ',' or '}}' at byte {}", self.i)),
                    }
                }
            }
            Some(_) => {
                let start = self.i;
                while self.i < self.s.len()
                    && matches!(
                        self.s[self.i],
                        b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                    )
                {
                    self.i += 1;
                }
                std::str::from_utf8(&self.s[start..self.i])
                    .ok()
                    .and_then(|t| t.parse::<f64>().ok())
                    .map(Json::Num)
                    .ok_or_else(|| format!("bad value at byte {start}"))
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let text = self
            .s
            .get(self.i..self.i + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .ok_or("short \\u escape")?;
        self.i += 4;
        u32::from_str_radix(text, 16).map_err(|e| e.to_string())
    }

    fn string(&mut self) -> Result<String, String> {
        self.eat(b'"')?;
        let mut out = Vec::new();
        loop {
            let b = *self.s.get(self.i).ok_or("unterminated string")?;
            self.i += 1;
            match b {
                b'"' => return String::from_utf8(out).map_err(|e| e.to_string()),
                b'\\' => {
                    let e = *self.s.get(self.i).ok_or("bad escape")?;
                    self.i += 1;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi)
                                && self.s[self.i..].starts_with(b"\\u")
                            {
                                self.i += 2;
                                let lo = self.hex4()?;
                                0x10000 + ((hi - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF)
                            } else {
                                hi
                            };
                            char::from_u32(code).unwrap_or('\u{FFFD}')
                        }
                        _ => return Err(format!("bad escape at byte {}", self.i)),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                b => out.push(b),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips() {
        let text = r#"{"a":[1,2.5,-3,true,null],"b":{"é":"\u00e9\ud83d\ude00 \"q\"\n"},"c":""}"#;
        let v = Json::parse(text).unwrap();
        assert_eq!(v.get("b").get("é").as_str(), Some("é😀 \"q\"\n"));
        assert_eq!(Json::parse(&v.to_string()).unwrap(), v);
        assert!(Json::parse("{").is_err());
    }

    #[test]
    fn observed_checks_each_step() {
        let mut o = Observed::from_reply(&json(r#"{"subscribe":{"a":1},"rev":3}"#));
        o.apply(&json(r#"{"data":{"subscribe":{"b":null}},"rev":4}"#));
        o.apply(&json(r#"{"data":{"unsubscribe":{"a":null}},"rev":5}"#));
        assert!(o.violations.is_empty(), "{:?}", o.violations);
        assert_eq!(o.ids(), ["b"]);
        o.apply(&json(r#"{"data":{"subscribe":{"b":null}},"rev":5}"#));
        assert_eq!(o.violations.len(), 2, "{:?}", o.violations);
    }
}
