//! A plain Bayeux server at `/faye` (no presence) on either engine, so one service can run as several
//! processes on one Redis:
//!
//! ```text
//! cargo run --release -p bayeux-redis --example server -- --engine redis://127.0.0.1:6379 --namespace demo
//! ```
//!
//! Start it several times with the same `--engine` URL and `--namespace` (and `--listen` ports of their
//! own) and a client may handshake on one, subscribe on another and receive what is published on a
//! third. `--engine memory` (the default) is the single-process server of `bayeux`'s own example.
//! Logs go to stderr (`RUST_LOG=bayeux=debug,bayeux_redis=debug` shows more). The line
//! `listening on ADDR` is printed once the socket is bound, so scripts can start it on port 0.

use std::sync::Arc;
use std::time::Duration;

use bayeux::{Config, Engine, MemoryEngine, Server};
use bayeux_redis::{RedisEngine, RedisEngineConfig};
use clap::Parser;

#[derive(Parser)]
#[command(about = "A Bayeux server at /faye on the memory or the Redis engine")]
struct Args {
    /// Where to listen (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// `memory` (this process only) or a `redis://` URL: clients, subscriptions and queues in Redis,
    /// shared by every process given the same URL and namespace.
    #[arg(long, default_value = "memory")]
    engine: String,
    /// Prefix of the Redis engine's keys and channels (processes of one service use the same).
    #[arg(long, default_value = "bayeux")]
    namespace: String,
    /// Seconds a long-poll is held (Faye's `timeout`); a silent client is removed after 1.6 times this.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "bayeux=info,bayeux_redis=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(error) = run(Args::parse()).await {
        eprintln!("engine-server: {error}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let engine: Arc<dyn Engine> = match args.engine.as_str() {
        "memory" => Arc::new(MemoryEngine::new()),
        url if url.starts_with("redis://") || url.starts_with("rediss://") => Arc::new(
            RedisEngine::connect(RedisEngineConfig::server(url).with_namespace(&args.namespace))
                .await?,
        ),
        other => {
            return Err(format!("--engine must be memory or a redis:// URL, not {other:?}").into())
        }
    };
    let config = Config::default().with_timeout(Duration::try_from_secs_f64(args.timeout)?);
    let server = Server::builder().config(config).engine(engine).build()?;
    server.spawn_sweeper();
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(bayeux::without_delay(listener), bayeux::router(server)).await?;
    Ok(())
}
