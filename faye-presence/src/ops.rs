//! What an operator and a load balancer ask of a process: `GET /metrics` (Prometheus text),
//! `GET /healthz` (the process is alive) and `GET /readyz` (it can serve presence right now).
//!
//! Metrics: the other crates record through the `metrics` facade (one-line `counter!` / `gauge!` /
//! `histogram!`, no handle to pass around, nothing recorded until a recorder is installed); this
//! module installs `metrics-exporter-prometheus`'s recorder and renders it at `/metrics`. The names
//! and labels are listed in the README ("Operating it").
//!
//! Readiness: every probe asks each presence shard (each `--redis` server, or each `--cluster` seed)
//! on a fresh connection whether it has the module (`COMMAND INFO PRESENCE.JOIN`), and the engine's
//! Redis, if any, for a `PING`, all at once, each within [`PROBE_TIMEOUT`], so a stopped or stalled
//! Redis turns the answer to 503 within a second.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;

/// How long one probe of one Redis may take before it counts as not answering.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Seconds: Redis round trips on a loopback or a LAN, up to the shim's 2 s default timeout.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Installs the process-wide recorder and names every metric, so `/metrics` lists them from the
/// start (a counter that never moved reads 0, not absent).
pub fn install_metrics() -> Result<PrometheusHandle, Box<dyn std::error::Error + Send + Sync>> {
    let handle = PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS)?
        .install_recorder()?;
    for (name, help) in COUNTERS {
        metrics::describe_counter!(*name, *help);
        metrics::counter!(*name).absolute(0);
    }
    for kind in ["join", "update", "leave", "expire"] {
        metrics::counter!("presence_events_relayed_total", "kind" => kind).absolute(0);
    }
    metrics::describe_counter!(
        "presence_events_relayed_total",
        "Roster events from the module's stream applied to this process's views, by kind"
    );
    metrics::describe_counter!(
        "bayeux_errors_total",
        "Failed replies sent to clients, by Bayeux error code"
    );
    metrics::describe_gauge!(
        "bayeux_connects_held",
        "Clients with a /meta/connect held here, by connectionType"
    );
    for transport in [
        "long-polling",
        "cross-origin-long-polling",
        "callback-polling",
        "websocket",
    ] {
        metrics::gauge!("bayeux_connects_held", "transport" => transport).increment(0.0);
    }
    metrics::describe_gauge!("bayeux_websockets_open", "WebSocket connections open");
    metrics::gauge!("bayeux_websockets_open").increment(0.0);
    metrics::describe_gauge!(
        "presence_local_members",
        "Presence memberships (client, channel) held by this process"
    );
    metrics::gauge!("presence_local_members").increment(0.0);
    metrics::describe_histogram!(
        "redis_command_duration_seconds",
        metrics::Unit::Seconds,
        "Redis round trips, by kind: presence (the module's commands) or engine (the Redis engine)"
    );
    Ok(handle)
}

const COUNTERS: &[(&str, &str)] = &[
    ("bayeux_handshakes_total", "Successful handshakes"),
    ("bayeux_subscriptions_total", "Channels subscribed to"),
    (
        "bayeux_messages_published_total",
        "Messages published by clients",
    ),
    (
        "bayeux_messages_delivered_total",
        "Messages handed to clients' transports",
    ),
    (
        "bayeux_queue_dropped_total",
        "Messages dropped from a full client queue (memory engine)",
    ),
    (
        "bayeux_extension_timeouts_total",
        "Extension hooks that ran past the hook timeout",
    ),
    (
        "presence_roster_messages_sent_total",
        "Roster messages addressed to members, one per receiving member",
    ),
    (
        "presence_resyncs_total",
        "Channel rosters read again after a gap in the stream",
    ),
    (
        "presence_touch_failures_total",
        "Touches of one shard's connections that failed",
    ),
];

/// One Redis the process needs, and what it needs of it.
#[derive(Clone)]
pub struct Target {
    /// Shown in a 503's reason: `presence shard 0 (host:port)`, never the URL (it may hold a password).
    name: String,
    client: redis::Client,
    /// Whether the presence module must be loaded there.
    module: bool,
}

/// What `/readyz` checks.
#[derive(Clone, Default)]
pub struct Readiness {
    targets: Vec<Target>,
}

impl Readiness {
    /// Checks each of `presence` (servers or cluster seeds) for the module, and `engine` if given.
    pub fn new(
        presence: &[String],
        engine: Option<&str>,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let mut targets = Vec::new();
        for (i, url) in presence.iter().enumerate() {
            targets.push(Target::new(format!("presence shard {i}"), url, true)?);
        }
        if let Some(url) = engine {
            targets.push(Target::new("engine".into(), url, false)?);
        }
        Ok(Readiness { targets })
    }

    /// The first failures, or none: every target probed at once.
    pub async fn failures(&self) -> Vec<String> {
        let mut probes = tokio::task::JoinSet::new();
        for target in self.targets.clone() {
            probes.spawn(async move { target.probe().await });
        }
        let mut failures = Vec::new();
        while let Some(done) = probes.join_next().await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(reason)) => failures.push(reason),
                Err(error) => failures.push(format!("probe failed: {error}")),
            }
        }
        failures.sort();
        failures
    }
}

impl Target {
    fn new(
        role: String,
        url: &str,
        module: bool,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let client = redis::Client::open(url)?;
        let name = format!("{role} ({})", client.get_connection_info().addr());
        Ok(Target {
            name,
            client,
            module,
        })
    }

    async fn probe(&self) -> Result<(), String> {
        let ask = async {
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(PROBE_TIMEOUT))
                .set_response_timeout(Some(PROBE_TIMEOUT));
            let mut con = self
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            if self.module {
                let info: redis::Value = redis::cmd("COMMAND")
                    .arg("INFO")
                    .arg("PRESENCE.JOIN")
                    .query_async(&mut con)
                    .await?;
                Ok(has_command(&info))
            } else {
                redis::cmd("PING").query_async::<String>(&mut con).await?;
                Ok(true)
            }
        };
        match tokio::time::timeout(PROBE_TIMEOUT, ask).await {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err(format!("{}: the presence module is not loaded", self.name)),
            Ok(Err::<_, redis::RedisError>(error)) => Err(format!("{}: {error}", self.name)),
            Err(_) => Err(format!(
                "{}: no answer within {} ms",
                self.name,
                PROBE_TIMEOUT.as_millis()
            )),
        }
    }
}

/// `COMMAND INFO X` answers `[nil]` for a command Redis does not have.
fn has_command(info: &redis::Value) -> bool {
    match info {
        redis::Value::Array(items) => items
            .first()
            .is_some_and(|item| !matches!(item, redis::Value::Nil)),
        _ => false,
    }
}

/// `/healthz` and `/readyz`, served on the Bayeux listener (where a load balancer probes).
pub fn health_routes(readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(readiness)
}

/// `/metrics`, on the Bayeux listener or on `--metrics ADDR`.
pub fn metrics_routes(handle: PrometheusHandle) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .with_state(handle)
}

async fn render(State(handle): State<PrometheusHandle>) -> Response {
    handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}

async fn ready(State(readiness): State<Readiness>) -> Response {
    let failures = readiness.failures().await;
    if failures.is_empty() {
        return (StatusCode::OK, axum::Json(json!({"ready": true}))).into_response();
    }
    let body = json!({"ready": false, "reason": failures.join("; "), "failures": failures});
    (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::has_command;
    use redis::Value;

    #[test]
    fn command_info_says_whether_the_module_is_there() {
        assert!(!has_command(&Value::Array(vec![Value::Nil])));
        assert!(has_command(&Value::Array(vec![Value::Array(vec![])])));
        assert!(!has_command(&Value::Nil));
    }
}
