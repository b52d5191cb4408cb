//! End-to-end harness for the `faye-presence` server: [`PresenceServer`] runs the binary, [`Driver`] runs
//! real Faye clients in Node (`tests/js/presence_driver.js`), [`Json`] reads and writes what they say, and
//! [`Observed`] rebuilds a client's roster from its subscribe reply and roster messages, checking every step.
//!
//! Everything that starts a process returns a guard that kills it on drop, also when a test panics.

mod driver;
pub mod http;
mod json;
mod observed;

pub use driver::{js_dir, messages_in, Driver, Transport};
pub use json::{json, Json};
pub use observed::Observed;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::Duration;

/// The prefix of presence keys when `--key-prefix` is not given: a channel's roster is the key
/// `presence:<channel>` (and so is its shard channel).
pub const KEY_PREFIX: &str = "presence:";

/// The Redis key (and shard channel) of `channel`'s roster under the default prefix.
pub fn key(channel: &str) -> String {
    format!("{KEY_PREFIX}{channel}")
}

/// How long a driver request or a wait for an event may take before the test fails.
pub const LIMIT: Duration = Duration::from_secs(20);

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
}

/// Builds `faye-presence` (crate `faye-presence`) once per test binary, in the profile of this build and
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
            "faye-presence",
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
    /// Starts `faye-presence --listen 127.0.0.1:0 [--batch-ms 0] <args>` and waits (at most 30 s) for
    /// its `listening on ADDR` line. It logs warnings and errors only.
    pub fn start(args: &[&str]) -> Self {
        Self::start_logging(args, "warn")
    }

    /// [`PresenceServer::start`], logging at `level` (`RUST_LOG`), for tests that read its info lines.
    pub fn start_logging(args: &[&str], level: &str) -> Self {
        assert!(
            args.contains(&"--redis") || args.contains(&"--cluster"),
            "give the server a harness Redis with --redis or --cluster"
        );
        // The Redis servers need the module anyway; build both before timing anything.
        crate::module_path();
        // Each roster event its own message, as faye-presence sends them, so tests can expect exact
        // message sequences; the tests of batching give `--batch-ms` themselves.
        let batch: &[&str] = if args.contains(&"--batch-ms") {
            &[]
        } else {
            &["--batch-ms", "0"]
        };
        let mut child = Command::new(binary_path())
            .args(["--listen", "127.0.0.1:0"])
            .args(batch)
            .args(args)
            .env("RUST_LOG", level)
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

    /// Sends it SIGTERM (the clean shutdown a deploy asks for), by its pid.
    pub fn sigterm(&self) {
        let pid = self.child.as_ref().expect("still running").id();
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid}");
    }

    /// Waits at most `within` for it to exit by itself (after [`PresenceServer::sigterm`]); its status.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let started = std::time::Instant::now();
        let child = self.child.as_mut().expect("still running");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            assert!(
                started.elapsed() < within,
                "still running {within:?} after SIGTERM; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
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
