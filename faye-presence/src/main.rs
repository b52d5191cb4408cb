//! `faye-presence`: a Bayeux server at `/faye` with presence channels kept in Redis, the program over the
//! `presence-shim` library (which a host embeds instead).
//!
//! With no `--redis` and no `--cluster`, it starts its own `redis-server` with the presence module (a
//! temporary directory, a free loopback port), and stops it on exit. Every flag is also an environment
//! variable (`FAYE_PRESENCE_*`). `RUST_LOG` sets the log filter (default `info`).
//!
//! # Layout
//! - this file: the flags ([`Args`]), turning them into the shim's and the server's configs, the engine
//!   `--engine` names, serving until Ctrl-C or SIGTERM.
//! - [`ops`]: `/metrics`, `/healthz` and `/readyz`.
//! - [`local_redis`]: the `redis-server` it starts for itself when given no Redis, with the module found
//!   beside this program (`libpresence.so`, where cargo builds both) unless `--module` says otherwise.

mod assets;
mod local_redis;
mod ops;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bayeux_redis::{RedisEngine, RedisEngineConfig};
use clap::{Parser, ValueEnum};
use presence_shim::{Config, ValueMode};

/// The command line; every flag is also a `FAYE_PRESENCE_*` environment variable.
#[derive(Parser, Debug)]
#[command(
    version,
    about = "A Bayeux (Faye/CometD) server with presence channels kept in Redis"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "FAYE_PRESENCE_LISTEN", default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// Path the Bayeux endpoint is mounted at (its whole subtree is served).
    #[arg(long, env = "FAYE_PRESENCE_MOUNT", default_value = "/faye")]
    mount: String,
    /// A Redis server with the presence module (repeat, or separate with commas, for several: channels
    /// are spread over them by a jump hash of the name).
    #[arg(long = "redis", env = "FAYE_PRESENCE_REDIS", value_delimiter = ',')]
    servers: Vec<String>,
    /// Seed nodes of a Redis Cluster whose nodes all load the presence module.
    #[arg(
        long,
        env = "FAYE_PRESENCE_CLUSTER",
        value_delimiter = ',',
        conflicts_with = "servers"
    )]
    cluster: Vec<String>,
    /// Channels under this prefix are presence channels.
    #[arg(long, env = "FAYE_PRESENCE_PREFIX", default_value = "/presence/")]
    prefix: String,
    /// Prefix of every presence key and shard channel in Redis (a channel's roster is the key
    /// `<key-prefix><channel>`): services sharing a Redis or cluster each use their own, and nothing
    /// outside it is read or written. No `{` or `}` (a hash tag would put every channel in one slot).
    #[arg(long, env = "FAYE_PRESENCE_KEY_PREFIX", default_value = "presence:")]
    key_prefix: String,
    /// Seconds a long-poll is held (Faye's `timeout`); a silent client is removed after 1.6 times this.
    #[arg(long, env = "FAYE_PRESENCE_TIMEOUT", default_value_t = 30.0)]
    timeout: f64,
    /// Seconds a connection stays present without a touch; a crashed server's members leave within it.
    #[arg(long, env = "FAYE_PRESENCE_TTL", default_value_t = 30.0)]
    ttl: f64,
    /// Milliseconds of roster events sent to each member as one message (every id's net change);
    /// 0 sends each event on its own, exactly as faye-presence does.
    #[arg(long, env = "FAYE_PRESENCE_BATCH_MS", default_value_t = 50)]
    batch_ms: u64,
    /// Seconds to wait for Redis before a presence subscribe fails with `503 ... try again`.
    #[arg(long, env = "FAYE_PRESENCE_REDIS_TIMEOUT", default_value_t = 2.0)]
    redis_timeout: f64,
    /// Channels under this prefix are count-only presence channels: members are told `{count: n}`,
    /// never the roster (e.g. `/presence-count/`).
    #[arg(long, env = "FAYE_PRESENCE_COUNT_PREFIX")]
    count_prefix: Option<String>,
    /// Refuse a subscribe to a roster channel that already has this many members (default: no limit).
    #[arg(long, env = "FAYE_PRESENCE_MAX_ROSTER")]
    max_roster: Option<usize>,
    /// Seconds a member's leave is held after its last connection goes (unsubscribe, disconnect,
    /// timeout): a connection of the same id joining within it (a page reload, a network blip) shows
    /// nobody leaving; 0 leaves at once. 5 to 15 suits browsers.
    #[arg(long, env = "FAYE_PRESENCE_LEAVE_GRACE", default_value_t = 0.0)]
    leave_grace: f64,
    /// The member value in rosters: its `data`, or the whole presence object (faye-presence 0.0.3).
    #[arg(long, env = "FAYE_PRESENCE_VALUE", value_enum, default_value = "data")]
    value: Value,
    /// Require subscribes to carry a token signed with this secret by the app's backend.
    #[arg(long, env = "FAYE_PRESENCE_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Where clients, subscriptions and message queues live: `memory` (this process only), `redis`
    /// (the presence Redis or cluster), or a `redis://` URL. Processes that share a Redis engine serve
    /// one Bayeux service: a client may connect to any of them.
    #[arg(long, env = "FAYE_PRESENCE_ENGINE", default_value = "memory")]
    engine: String,
    /// Prefix of the Redis engine's keys and channels (processes of one service use the same).
    #[arg(long, env = "FAYE_PRESENCE_ENGINE_NAMESPACE", default_value = "bayeux")]
    engine_namespace: String,
    /// The most connections served at once; over it the oldest that has not yet made a Bayeux
    /// request is closed to make room, or, with none, the new one is answered 503.
    #[arg(long, env = "FAYE_PRESENCE_MAX_CONNECTIONS", default_value_t = 10_000)]
    max_connections: usize,
    /// Seconds a request's headers may take, also the longest a kept-alive connection idles.
    #[arg(long, env = "FAYE_PRESENCE_HEADER_TIMEOUT", default_value_t = 10.0)]
    header_timeout: f64,
    /// Seconds a new connection has to deliver a whole Bayeux request (and any request its body).
    #[arg(long, env = "FAYE_PRESENCE_IDLE_TIMEOUT", default_value_t = 10.0)]
    idle_timeout: f64,
    /// The longest presence id accepted, in bytes; keep it equal to the module's
    /// presence.max-id-bytes.
    #[arg(long, env = "FAYE_PRESENCE_MAX_ID_BYTES", default_value_t = 256)]
    max_id_bytes: usize,
    /// Serve the files of this directory at `/` (e.g. `examples/web`, the "who is online" page);
    /// `<mount>/client.js` (Faye's browser client) and `<mount>/presence.js` (the presence client
    /// library) are always served.
    #[arg(long = "static", env = "FAYE_PRESENCE_STATIC")]
    static_dir: Option<PathBuf>,
    /// The module for the local redis-server (default: libpresence.so next to this program).
    #[arg(long, env = "FAYE_PRESENCE_MODULE")]
    module: Option<PathBuf>,
    /// Serve `/metrics` on this address instead of the listen address (`/healthz` and `/readyz`
    /// stay on the listen address, where a load balancer probes).
    #[arg(long, env = "FAYE_PRESENCE_METRICS")]
    metrics: Option<SocketAddr>,
    /// Seconds requests in progress get to finish after SIGTERM (held connects are answered at once)
    /// before the process exits anyway.
    #[arg(long, env = "FAYE_PRESENCE_DRAIN", default_value_t = 10.0)]
    drain: f64,
    /// On SIGTERM, leave every presence membership of this process at once instead of leaving them to
    /// their TTL (which lets a client that reconnects to another process stay a member throughout).
    #[arg(long, env = "FAYE_PRESENCE_LEAVE_ON_SHUTDOWN")]
    leave_on_shutdown: bool,
    /// Log lines as text (for people) or JSON objects (for log shippers).
    #[arg(
        long,
        env = "FAYE_PRESENCE_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Value {
    Data,
    Object,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    if let Err(error) = run(args).await {
        eprintln!("faye-presence: {error}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let metrics = ops::install_metrics()?;
    let mut local = None;
    let mut servers = args.servers;
    if servers.is_empty() && args.cluster.is_empty() {
        let redis = local_redis::LocalRedis::start(args.module).await?;
        servers.push(redis.url());
        local = Some(redis);
    }
    let mut config = Config::with_servers(servers);
    config.cluster = args.cluster;
    config.prefix = args.prefix;
    config.key_prefix = args.key_prefix;
    config.ttl = seconds(args.ttl)?;
    config.batch = std::time::Duration::from_millis(args.batch_ms);
    config.timeout = seconds(args.redis_timeout)?;
    config.count_prefix = args.count_prefix;
    config.max_roster = args.max_roster;
    config.leave_grace = seconds(args.leave_grace)?;
    config.value = match args.value {
        Value::Data => ValueMode::Data,
        Value::Object => ValueMode::Object,
    };
    config.secret = args.secret.map(String::into_bytes);
    config.max_id_bytes = args.max_id_bytes;
    let bayeux_config = bayeux::Config::default()
        .with_timeout(seconds(args.timeout)?)
        .with_max_connections(args.max_connections)
        .with_header_timeout(seconds(args.header_timeout)?)
        .with_idle_timeout(seconds(args.idle_timeout)?)
        .with_drain(seconds(args.drain)?)
        .with_mount(args.mount.clone());

    let presence_targets = if config.cluster.is_empty() {
        config.servers.clone()
    } else {
        config.cluster.clone()
    };
    let engine_url = engine_url(&args.engine, &config);
    let readiness = ops::Readiness::new(&presence_targets, engine_url.as_deref())?;
    let engine = engine(&args.engine, &args.engine_namespace, &config).await?;
    let (server, presence) = presence_shim::serve_on(config, bayeux_config, engine).await?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let address = listener.local_addr()?;
    let mut app = assets::routes(&args.mount, args.static_dir)
        .merge(ops::health_routes(readiness))
        .merge(bayeux::router(server.clone()));
    match args.metrics {
        Some(at) => {
            let metrics_listener = tokio::net::TcpListener::bind(at).await?;
            let bound = metrics_listener.local_addr()?;
            println!("metrics on {bound}");
            tokio::spawn(async move {
                let routes = ops::metrics_routes(metrics);
                if let Err(error) = axum::serve(metrics_listener, routes).await {
                    tracing::error!(%error, "the metrics listener failed");
                }
            });
        }
        None => app = app.merge(ops::metrics_routes(metrics)),
    }
    // Scripts and tests wait for this line.
    println!("listening on {address}");
    tracing::info!("Bayeux with presence at http://{address}{}", args.mount);
    let drain = server.config().drain;
    bayeux::serve_with(listener, &server, app, shutdown_signal()).await?;
    if args.leave_on_shutdown {
        // Bounded like the rest of the drain: a Redis that does not answer costs the TTL, not a hang.
        if tokio::time::timeout(drain, presence.leave_all())
            .await
            .is_err()
        {
            tracing::warn!("leaving the members at shutdown took too long; the rest expire");
        }
    }
    tracing::info!("shut down");
    drop(local);
    Ok(())
}

/// The Redis URL `--engine` names, if it names one.
fn engine_url(name: &str, presence: &Config) -> Option<String> {
    match name {
        "redis" if !presence.cluster.is_empty() => presence.cluster.first().cloned(),
        "redis" => presence.servers.first().cloned(),
        url if url.starts_with("redis://") || url.starts_with("rediss://") => Some(url.to_owned()),
        _ => None,
    }
}

/// The engine `--engine` names.
async fn engine(
    name: &str,
    namespace: &str,
    presence: &Config,
) -> Result<Arc<dyn bayeux::Engine>, Box<dyn std::error::Error + Send + Sync>> {
    let redis = match name {
        "memory" => return Ok(Arc::new(bayeux::MemoryEngine::new())),
        "redis" if !presence.cluster.is_empty() => RedisEngineConfig::cluster(&presence.cluster),
        "redis" => RedisEngineConfig::server(&presence.servers[0]),
        url if url.starts_with("redis://") || url.starts_with("rediss://") => {
            RedisEngineConfig::server(url)
        }
        other => {
            return Err(
                format!("--engine must be memory, redis or a redis:// URL, not {other:?}").into(),
            )
        }
    };
    let engine = RedisEngine::connect(redis.with_namespace(namespace)).await?;
    tracing::info!(
        engine = name,
        namespace,
        "clients and queues shared in Redis"
    );
    Ok(Arc::new(engine))
}

/// Ctrl-C or SIGTERM: stop serving, then drop the local redis-server (killed and reaped by its guard).
async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

fn seconds(value: f64) -> Result<Duration, Box<dyn std::error::Error + Send + Sync>> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| format!("not a number of seconds: {value}").into())
}
