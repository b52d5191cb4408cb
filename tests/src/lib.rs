//! Test harness: the presence module built once, and real `redis-server` processes on free loopback
//! ports, each stopped by a guard when it goes out of scope (also when a test fails).
//!
//! # Layout
//! - [`module_path`]: builds `presence-module` (once per test binary) and copies the library to a path of
//!   this process's own, because overwriting a loaded `.so` crashes every server using it.
//! - [`RedisServer`]: one `redis-server --loadmodule`, restartable on the same directory and port.
//! - [`Cluster`]: three such servers joined as a Redis Cluster.
//! - [`commands`]: the presence commands through `presence-client` (the decoder the shim uses too),
//!   options left raw for tests to get wrong; [`listener`]: a shard pub/sub subscriber that decodes
//!   roster events.
//! - [`reply`]: `presence-client`'s readers of raw replies (RESP2 flat arrays, RESP3 maps), panicking.
//! - [`load`]: [`CpuHogs`], bounded busy loops that load the CPU during a test, and [`TaskFlood`],
//!   ready tasks that keep a tokio runtime's queues full (as a server busy delivering does).
//! - [`wait_until`]: polls a condition with a deadline instead of sleeping.
//! - [`presence_server`]: the `faye-presence` binary and real Faye clients (Node) driving it end to end.

pub mod cluster;
pub mod commands;
pub mod listener;
pub mod load;
pub mod presence_server;
pub mod reply;
pub mod server;

pub use cluster::Cluster;
pub use listener::Listener;
pub use load::{CpuHogs, TaskFlood};
pub use server::{module_path, RedisServer, ServerOptions};

use std::time::{Duration, Instant};

/// Polls `condition` every few milliseconds until it holds, or panics with `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// A channel name unique to this call, so tests sharing a server never see each other's rosters.
pub fn unique_channel(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "/presence/{prefix}/{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
