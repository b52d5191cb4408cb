//! Operating `faye-presence`: `/readyz` follows the presence Redis (503 within a second of it
//! stopping, 200 again when it is back), `/metrics` is Prometheus text whose counters move as a real
//! Faye client joins, publishes and leaves, and SIGTERM with 200 clients holding connects answers
//! every one of them and exits within the drain time, without a panic; with `--leave-on-shutdown` its
//! WebSocket members leave at once.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use presence_tests::presence_server::{http, Driver, Json, PresenceServer, Transport};
use presence_tests::{unique_channel, RedisServer};

/// A GET on the server; the status and the body.
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the server");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set timeout");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send request");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .expect("read the response");
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP body in {response:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, http::response_body(head, body))
}

/// Waits until `/readyz` answers `status`; how long it took.
fn await_ready(addr: &str, status: u16, within: Duration) -> Duration {
    let started = Instant::now();
    let mut last = (0, String::new());
    while started.elapsed() < within {
        last = get(addr, "/readyz");
        if last.0 == status {
            return started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("/readyz did not answer {status} within {within:?}; last {last:?}")
}

#[test]
fn readyz_follows_the_presence_redis() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let server = PresenceServer::start(&["--redis", url.as_str(), "--redis-timeout", "1"]);
    assert_eq!(get(server.addr(), "/healthz").0, 200);
    let (status, body) = get(server.addr(), "/readyz");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        Json::parse(&body).unwrap().get("ready").as_bool(),
        Some(true)
    );

    // Stalled: connections open, no answers.
    {
        let _stalled = redis.stall();
        let took = await_ready(server.addr(), 503, Duration::from_secs(5));
        assert!(took < Duration::from_secs(1), "503 only after {took:?}");
        let (_, body) = get(server.addr(), "/readyz");
        let reason = Json::parse(&body).unwrap();
        let reason = reason.get("reason").as_str().unwrap_or_default().to_owned();
        assert!(reason.contains("presence shard 0"), "{body}");
        assert!(
            get(server.addr(), "/healthz").0 == 200,
            "alive while not ready"
        );
    }
    await_ready(server.addr(), 200, Duration::from_secs(5));

    // Killed, then back on the same port.
    redis.kill9();
    let took = await_ready(server.addr(), 503, Duration::from_secs(5));
    assert!(took < Duration::from_secs(1), "503 only after {took:?}");
    redis.restart(None);
    await_ready(server.addr(), 200, Duration::from_secs(5));
}

/// The samples of `/metrics`, parsed as Prometheus text, by name and sorted labels.
fn scrape(addr: &str) -> HashMap<String, f64> {
    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("/metrics is Prometheus text");
    let mut samples = HashMap::new();
    for sample in scrape.samples {
        let mut labels: Vec<String> = sample
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        labels.sort();
        let value = match sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(buckets) => {
                buckets.iter().map(|b| b.count).fold(0.0, f64::max)
            }
            prometheus_parse::Value::Summary(_) => continue,
        };
        samples.insert(format!("{}{{{}}}", sample.metric, labels.join(",")), value);
    }
    samples
}

fn value(samples: &HashMap<String, f64>, key: &str) -> f64 {
    *samples
        .get(key)
        .unwrap_or_else(|| panic!("no {key} in /metrics: {samples:?}"))
}

/// Scrapes until `key` reaches `at_least` (counters move as the server gets to them).
fn await_metric(addr: &str, key: &str, at_least: f64) -> HashMap<String, f64> {
    let started = Instant::now();
    loop {
        let samples = scrape(addr);
        if samples.get(key).is_some_and(|v| *v >= at_least) {
            return samples;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{key} did not reach {at_least}: {samples:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn metrics_move_as_a_faye_client_joins_publishes_and_leaves() {
    let redis = RedisServer::start();
    let url = redis.url();
    let server = PresenceServer::start(&["--redis", url.as_str()]);
    let addr = server.addr();
    let before = scrape(addr);
    for name in [
        "bayeux_handshakes_total{}",
        "bayeux_messages_published_total{}",
        "presence_local_members{}",
        "presence_events_relayed_total{kind=join}",
        "presence_resyncs_total{}",
        "presence_touch_failures_total{}",
        "bayeux_connects_held{transport=websocket}",
    ] {
        assert_eq!(value(&before, name), 0.0, "{name} before any client");
    }

    let channel = unique_channel("metrics");
    let plain = format!("/plain{}", unique_channel("metrics"));
    let mut d = Driver::start();
    d.client("a", &server.url(), Transport::WebSocket);
    d.client("b", &server.url(), Transport::LongPolling);
    d.join("a", &channel, "alice", Json::Null);
    d.join("b", &channel, "bob", Json::Null);
    d.subscribe("a", &plain, None).expect("a subscribes");
    d.publish("b", &plain, "hello".into()).expect("b publishes");
    d.wait_messages("a", &plain, 1);
    d.wait_messages("a", &channel, 1); // bob's join
    let joined = await_metric(addr, "presence_local_members{}", 2.0);
    assert!(value(&joined, "bayeux_handshakes_total{}") >= 2.0);
    assert!(value(&joined, "bayeux_subscriptions_total{}") >= 3.0);
    assert!(value(&joined, "bayeux_messages_published_total{}") >= 1.0);
    assert!(value(&joined, "bayeux_messages_delivered_total{}") >= 2.0);
    assert!(value(&joined, "presence_events_relayed_total{kind=join}") >= 1.0);
    assert!(value(&joined, "presence_roster_messages_sent_total{}") >= 1.0);
    assert!(
        value(
            &joined,
            "redis_command_duration_seconds_count{kind=presence}"
        ) >= 2.0
    );
    assert!(value(&joined, "bayeux_connects_held{transport=websocket}") >= 1.0);

    // A refused subscribe is counted by its code (faye-presence's "No presence id" has none).
    let refused = d.subscribe("b", &format!("{channel}-x"), None);
    assert!(refused.is_err(), "{refused:?}");
    await_metric(addr, "bayeux_errors_total{code=other}", 1.0);

    d.unsubscribe("b", &channel);
    d.wait_messages("a", &channel, 2); // bob's leave
    let left = await_metric(addr, "presence_events_relayed_total{kind=leave}", 1.0);
    assert_eq!(value(&left, "presence_local_members{}"), 1.0);
    // The last local member's leave: nobody here listens to the channel any more, so the leave is
    // not relayed, but the membership is gone and the leave was a Redis command.
    let commands = value(&left, "redis_command_duration_seconds_count{kind=presence}");
    d.disconnect("a");
    let started = Instant::now();
    loop {
        let gone = scrape(addr);
        if value(&gone, "presence_local_members{}") == 0.0 {
            assert!(value(&gone, "redis_command_duration_seconds_count{kind=presence}") > commands);
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{gone:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (at most `within`) for a server told to stop to exit, with status 0 and no panic; its log.
fn exits_cleanly(server: &mut PresenceServer, within: Duration) -> String {
    let status = server.wait_exit(within);
    let log = server.log();
    assert!(status.success(), "exit {status:?}; log:\n{log}");
    assert!(!log.contains("panicked"), "{log}");
    log
}

#[test]
fn sigterm_answers_every_held_connect_and_exits_within_the_drain() {
    const CLIENTS: usize = 200;
    const DRAIN_SECS: u64 = 3;
    let redis = RedisServer::start();
    let url = redis.url();
    let drain = DRAIN_SECS.to_string();
    let mut server = PresenceServer::start_logging(
        &[
            "--redis",
            url.as_str(),
            "--drain",
            drain.as_str(),
            "--timeout",
            "30",
            "--batch-ms",
            "0",
        ],
        "info",
    );
    let addr = server.addr().to_owned();
    let channel = unique_channel("drain");

    // 200 long-polling clients, each a presence member, each connecting again whenever its connect
    // is answered (the others' joins answer it with roster messages), until the server is told to
    // stop: then the answer to the connect it was holding is what this test checks.
    let terminated = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let mut threads = Vec::new();
    for i in 0..CLIENTS {
        let (addr, channel, tx) = (addr.clone(), channel.clone(), tx.clone());
        let terminated = terminated.clone();
        threads.push(std::thread::spawn(move || {
            let client = http::handshake(&addr);
            http::presence_subscribe(&addr, &client, &channel, &format!("m{i}"));
            let body = format!(
                r#"[{{"channel":"/meta/connect","clientId":"{client}","connectionType":"long-polling"}}]"#
            );
            for _ in 0..10_000 {
                let replies = http::try_bayeux_post(&addr, &body, Duration::from_secs(60)).ok();
                if terminated.load(Ordering::SeqCst) || replies.is_none() {
                    let _ = tx.send((Instant::now(), replies));
                    return;
                }
            }
        }));
    }
    drop(tx);
    let started = Instant::now();
    loop {
        let held = scrape(&addr)
            .get("bayeux_connects_held{transport=long-polling}")
            .copied()
            .unwrap_or(0.0);
        if held as usize == CLIENTS {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "only {held} of {CLIENTS} connects held; log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let terminated_at = Instant::now();
    terminated.store(true, Ordering::SeqCst);
    server.sigterm();
    let mut answered = 0;
    for _ in 0..CLIENTS {
        let (at, replies) = rx
            .recv_timeout(Duration::from_secs(DRAIN_SECS + 5))
            .expect("every held connect is answered");
        let replies = replies.expect("the held connect was answered, not dropped");
        let reply = http::reply_on(&replies, "/meta/connect");
        assert_eq!(reply.get("successful").as_bool(), Some(true), "{reply}");
        assert_eq!(
            reply.get("advice").get("reconnect").as_str(),
            Some("retry"),
            "{reply}"
        );
        assert!(
            at.duration_since(terminated_at) < Duration::from_secs(DRAIN_SECS),
            "a connect answered {:?} after SIGTERM",
            at.duration_since(terminated_at)
        );
        answered += 1;
    }
    assert_eq!(answered, CLIENTS);
    let log = exits_cleanly(&mut server, Duration::from_secs(DRAIN_SECS + 1));
    assert!(log.contains("shut down"), "{log}");
    for thread in threads {
        thread.join().expect("client thread");
    }
    // Left to their TTL (no --leave-on-shutdown): every member is still in the roster.
    let (_, members) =
        presence_tests::commands::roster(&mut redis.connect(), &format!("presence:{channel}"))
            .expect("the roster");
    assert_eq!(members.len(), CLIENTS);
}

/// With `--leave-on-shutdown`, SIGTERM leaves every member this process holds before it exits: 20 real
/// Faye clients on WebSocket (the Faye default) are gone from Redis at once, not after their TTL, and a
/// member on another process hears each one leave. The drain closes their sockets; the process exits
/// within the drain time without a panic.
#[test]
fn sigterm_with_leave_on_shutdown_leaves_the_websocket_members_at_once() {
    const CLIENTS: usize = 20;
    const DRAIN_SECS: u64 = 3;
    let redis = RedisServer::start();
    let url = redis.url();
    let drain = DRAIN_SECS.to_string();
    let mut server = PresenceServer::start_logging(
        &[
            "--redis",
            url.as_str(),
            "--drain",
            drain.as_str(),
            "--leave-on-shutdown",
            "--ttl",
            "30",
        ],
        "info",
    );
    let other = PresenceServer::start(&["--redis", url.as_str()]);
    let channel = unique_channel("leave-on-shutdown");
    let mut observer = Driver::start();
    observer.client("obs", &other.url(), Transport::LongPolling);
    observer.join("obs", &channel, "observer", Json::Null);
    let mut members = Driver::start();
    let url = server.url();
    for i in 0..CLIENTS {
        let name = format!("m{i}");
        members.client(&name, &url, Transport::WebSocket);
        members.join(&name, &channel, &name, Json::Null);
    }
    let key = format!("presence:{channel}");
    let (_, before) =
        presence_tests::commands::roster(&mut redis.connect(), &key).expect("the roster");
    assert_eq!(before.len(), CLIENTS + 1);

    server.sigterm();
    let log = exits_cleanly(&mut server, Duration::from_secs(DRAIN_SECS + 2));
    // Gone before the process was: no TTL to wait for.
    let (_, after) =
        presence_tests::commands::roster(&mut redis.connect(), &key).expect("the roster");
    let left: Vec<String> = after
        .keys()
        .map(|id| String::from_utf8_lossy(id).into_owned())
        .collect();
    assert_eq!(left, ["observer"], "log:\n{log}");
    // And the member on the other process heard each of them leave.
    observer.wait_events(
        "20 leaves told to the observer",
        Duration::from_secs(20),
        |events| {
            let mut gone = std::collections::BTreeSet::new();
            for m in presence_tests::presence_server::messages_in(events, "obs", &channel) {
                gone.extend(m.get("data").get("unsubscribe").keys());
            }
            (gone.len() == CLIENTS).then_some(())
        },
    );
    assert!(observer.faults().is_empty(), "{:?}", observer.faults());
}

/// The container setup without a Docker engine: `scripts/container-test.sh` builds what the
/// Dockerfile's build stage builds, runs the Redis stage's command and the server stage's entrypoint
/// twice with docker-compose.yml's environment, waits on the compose healthcheck (`/readyz`), drives
/// them with the real Faye client, and stops them as `docker stop` does.
#[test]
fn the_container_setup_serves_faye_clients() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .join("scripts/container-test.sh");
    let output = Command::new("bash")
        .arg(&script)
        .output()
        .expect("run scripts/container-test.sh");
    assert!(
        output.status.success(),
        "container-test.sh failed ({:?}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
