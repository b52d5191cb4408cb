//! [`RedisServer`]: a real `redis-server` with the module loaded, on a free loopback port.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::wait_until;

/// Builds the module once per test binary and returns a private copy of the library.
///
/// `PRESENCE_MODULE` may name an already built library instead (e.g. a release build for benchmarks).
pub fn module_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let built = match std::env::var_os("PRESENCE_MODULE") {
            Some(path) => PathBuf::from(path),
            None => build_module(),
        };
        let dir = std::env::temp_dir().join(format!("presence-module-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create module dir");
        let copy = dir.join("libpresence.so");
        std::fs::copy(&built, &copy)
            .unwrap_or_else(|e| panic!("copy {} failed: {e}", built.display()));
        copy
    })
}

fn build_module() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let release = cfg!(not(debug_assertions));
    let mut build = Command::new(cargo);
    build
        .current_dir(workspace)
        .args(["build", "-q", "-p", "presence-module"]);
    if release {
        build.arg("--release");
    }
    let status = build.status().expect("run cargo build for the module");
    assert!(status.success(), "building presence-module failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    target
        .join(if release { "release" } else { "debug" })
        .join("libpresence.so")
}

/// Options for [`RedisServer::start`].
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Arguments after `--loadmodule <path>`, e.g. `["default-ttl", "100"]`.
    pub module_args: Vec<String>,
    /// Further `redis-server` arguments, e.g. `["--appendonly", "yes"]`.
    pub server_args: Vec<String>,
    /// Start a plain redis-server, without the module (to test what happens when it is missing).
    pub without_module: bool,
}

/// A running `redis-server`, killed (by its pid) and its directory removed on drop.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    options: ServerOptions,
}

impl RedisServer {
    /// Starts a server with the module and default options.
    pub fn start() -> Self {
        Self::start_with(ServerOptions::default())
    }

    /// Starts a server with the module and `options`.
    pub fn start_with(options: ServerOptions) -> Self {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("presence-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create server dir");
        let mut server = RedisServer {
            child: None,
            port,
            dir,
            options,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.dir.join("redis.log"));
        if !self.options.without_module {
            command
                .arg("--loadmodule")
                .arg(module_path())
                .args(&self.options.module_args);
        }
        command
            .args(&self.options.server_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = command
            .spawn()
            .expect("start redis-server (install it with scripts/prerequisites.sh)");
        self.child = Some(child);
        let url = self.url();
        let log = self.dir.join("redis.log");
        wait_until(
            "redis-server to answer PING",
            Duration::from_secs(10),
            || {
                if let Some(child) = self.child.as_mut() {
                    if let Ok(Some(status)) = child.try_wait() {
                        let log = std::fs::read_to_string(&log).unwrap_or_default();
                        panic!("redis-server exited with {status}; log:\n{log}");
                    }
                }
                redis::Client::open(url.as_str())
                    .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
                    .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                    .is_ok()
            },
        );
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A new RESP2 connection.
    pub fn connect(&self) -> redis::Connection {
        self.connect_url(&self.url())
    }

    /// A new RESP3 connection.
    pub fn connect_resp3(&self) -> redis::Connection {
        self.connect_url(&format!("{}/?protocol=resp3", self.url()))
    }

    fn connect_url(&self, url: &str) -> redis::Connection {
        let client = redis::Client::open(url).expect("valid url");
        let con = client
            .get_connection_with_timeout(Duration::from_secs(5))
            .expect("connect to redis-server");
        con.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set timeout");
        con
    }

    /// Cuts every pub/sub connection (`CLIENT KILL TYPE pubsub`), as a network fault would; returns how
    /// many there were.
    pub fn kill_pubsub_connections(&self) -> i64 {
        redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query(&mut self.connect())
            .expect("CLIENT KILL TYPE pubsub")
    }

    /// The server's data directory (RDB and AOF files).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kills the server (SIGKILL: no save on the way out) and starts it again on the same directory and
    /// port, with `server_args` replaced if given.
    pub fn restart(&mut self, server_args: Option<Vec<String>>) {
        self.kill();
        if let Some(args) = server_args {
            self.options.server_args = args;
        }
        self.spawn();
    }

    /// The server's log so far, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }

    /// Kills the server with SIGKILL, by the pid of the process this guard started, and reaps it (a
    /// crash: no save, no goodbye to clients or cluster peers). It stays down; drop still cleans up.
    pub fn kill9(&mut self) {
        self.kill();
    }

    /// Stops the server dead (SIGSTOP, by its pid) until the guard is dropped (SIGCONT): a Redis that
    /// stalls (a long fork, a swapping host, a stuck disk) with every connection left open.
    pub fn stall(&self) -> Stalled<'_> {
        signal(self.child.as_ref().expect("a running server").id(), "-STOP");
        Stalled { server: self }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A stalled server; it goes on when this is dropped.
#[must_use = "the server resumes when the guard is dropped"]
pub struct Stalled<'a> {
    server: &'a RedisServer,
}

impl Drop for Stalled<'_> {
    fn drop(&mut self) {
        if let Some(child) = self.server.child.as_ref() {
            signal(child.id(), "-CONT");
        }
    }
}

fn signal(pid: u32, which: &str) {
    let status = Command::new("kill")
        .args([which, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {which} {pid} failed");
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}
