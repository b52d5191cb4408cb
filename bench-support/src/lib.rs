//! What the benchmarks share, so every server is driven and measured alike: bayeux's (against Node
//! Faye), bayeux-redis' (one or three processes over Redis) and the presence benchmark (against Node
//! Faye + faye-presence); bayeux's WebSocket tests use the same client.
//!
//! # Layout
//! - [`ws`]: a minimal WebSocket client (RFC 6455), enough to speak Bayeux to any server without
//!   pulling a client library into the workspace.
//! - [`procs`]: the processes a benchmark measures, each killed by pid when its guard drops; a fresh
//!   `redis-server` (with the module, or plain); `INFO commandstats`; median [min–max] summaries.
//! - [`procstat`]: a process's CPU time from `/proc`.

pub mod procs;
pub mod procstat;
pub mod ws;
