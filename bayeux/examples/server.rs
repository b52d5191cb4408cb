//! A Bayeux server at `/faye`:
//! `cargo run --release -p bayeux --example server -- --listen 127.0.0.1:8000 [--timeout SECS]`
//!
//! `--timeout` is the long-poll hold (and, times 1.6, the inactivity timeout). Logs go to stderr;
//! `RUST_LOG=bayeux=debug` shows more. The line `listening on ADDR` is printed once the socket is bound,
//! so scripts can start it on port 0 and read the address.

use bayeux::{Config, Server};
use std::time::Duration;

fn usage() -> ! {
    eprintln!("usage: server [--listen ADDR:PORT] [--timeout SECS] [--inactivity SECS]");
    std::process::exit(2)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "bayeux=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut listen = "127.0.0.1:8000".to_owned();
    let mut config = Config::default();
    let mut inactivity = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--listen" => listen = value(),
            "--timeout" => {
                let secs: f64 = value().parse().unwrap_or_else(|_| usage());
                config = config.with_timeout(Duration::from_secs_f64(secs));
            }
            "--inactivity" => {
                inactivity = Some(value().parse::<f64>().unwrap_or_else(|_| usage()));
            }
            _ => usage(),
        }
    }
    if let Some(secs) = inactivity {
        config = config.with_inactivity(Duration::from_secs_f64(secs));
    }
    let server = Server::builder().config(config).build()?;
    server.spawn_sweeper();
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(bayeux::without_delay(listener), bayeux::router(server)).await?;
    Ok(())
}
