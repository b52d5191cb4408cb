//! Test harness: a real server on a free loopback port, with an extension that rejects subscriptions
//! under `/rejected` and records every lifecycle event, and a runner for the Node scripts in `tests/js`.

#![allow(dead_code)] // each test binary uses a different part of the harness

use async_trait::async_trait;
use bayeux::{Config, Context, Error, Event, Extension, Message, Server};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Rejects any subscription under `/rejected` (the e2e scripts expect this exact text) and records events.
#[derive(Default)]
pub struct TestExtension {
    events: Mutex<Vec<Event>>,
    changed: Notify,
}

#[async_trait]
impl Extension for TestExtension {
    async fn incoming(&self, mut m: Message, _: Context<'_>) -> Result<Option<Message>, Error> {
        if m.channel == "/meta/subscribe" {
            let subs = m.subscriptions().unwrap_or_default();
            if let Some(ch) = subs.iter().find(|c| c.starts_with("/rejected")) {
                m.error = Some(format!("403:{ch}:Rejected by test extension"));
            }
        }
        Ok(Some(m))
    }

    async fn event(&self, event: &Event) {
        self.events.lock().unwrap().push(event.clone());
        self.changed.notify_waiters();
    }
}

impl TestExtension {
    /// Every event so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    /// Waits (at most 20 s) until `pred` holds for the events recorded so far.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&[Event]) -> bool) {
        let wait = async {
            loop {
                let notified = self.changed.notified();
                if pred(&self.events.lock().unwrap()) {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(20), wait)
            .await
            .is_err()
        {
            panic!("timed out waiting for {what}; events: {:#?}", self.events());
        }
    }
}

/// A running server; the serving task stops when this is dropped.
pub struct TestServer {
    pub url: String,
    pub server: Server,
    pub ext: Arc<TestExtension>,
    task: JoinHandle<()>,
    sweeper: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
        self.sweeper.abort();
    }
}

/// Starts a server on `127.0.0.1:0` with the given long-poll timeout.
pub async fn start(timeout: Duration) -> TestServer {
    start_with(Config::default().with_timeout(timeout)).await
}

/// Starts a server on `127.0.0.1:0` with `config`.
pub async fn start_with(config: Config) -> TestServer {
    let ext = Arc::new(TestExtension::default());
    let server = Server::builder()
        .config(config)
        .extension(ext.clone())
        .build()
        .unwrap();
    let sweeper = server.spawn_sweeper();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = bayeux::router(server.clone());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    TestServer {
        url: format!("http://{addr}/faye"),
        server,
        ext,
        task,
        sweeper,
    }
}

/// `tests/js`, checked to have its `node_modules` installed. Fails (never skips) when they are missing.
pub fn js_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/js");
    assert!(
        dir.join("node_modules/faye").is_dir(),
        "tests/js/node_modules is missing: run `npm ci --prefix tests/js` (needs node and npm)"
    );
    dir
}

/// Spawns `node tests/js/<script> args...` with piped output, killed when the handle is dropped.
pub fn spawn_node(script: &str, args: &[&str]) -> Child {
    Command::new("node")
        .current_dir(js_dir())
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node must be installed to run the end-to-end tests")
}

/// Runs a script to completion (at most 90 s), asserts it succeeded, and returns its `RESULT` JSON.
pub async fn run_node(script: &str, args: &[&str]) -> serde_json::Value {
    let child = spawn_node(script, args);
    let out = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("node {script} did not finish within 90 s"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "node {script} {args:?} failed:\n{stdout}\n{stderr}"
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line from {script}:\n{stdout}\n{stderr}"));
    serde_json::from_str(line).unwrap()
}

/// Reads the child's stdout until a line starting with `prefix`; returns the rest of that line.
pub async fn read_line_with(child: &mut Child, prefix: &str) -> String {
    let stdout = child.stdout.as_mut().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.to_owned();
            }
        }
        panic!("script ended before printing {prefix}");
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .unwrap_or_else(|_| panic!("no {prefix} line within 30 s"))
}

/// A channel prefix unique to this test run, so tests sharing a server never see each other's messages.
pub fn unique_prefix(name: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "/t{}/{name}{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Checks the connection types a Faye client's connects used, in order with repeats collapsed. Every
/// connect must use the forced transport, except that in WebSocket mode Faye may send its first
/// connect over HTTP while it is still checking that the socket works.
pub fn assert_used(types: &serde_json::Value, transport: &str) {
    let types: Vec<&str> = types
        .as_array()
        .expect("an array of connection types")
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    assert_eq!(types.last(), Some(&transport), "connection types {types:?}");
    if transport == "websocket" {
        assert!(types.len() <= 2, "connection types {types:?}");
    } else {
        assert_eq!(types, [transport], "connection types");
    }
}
