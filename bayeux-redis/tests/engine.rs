//! The Redis engine against a real redis-server (and a real 3-master cluster): the conformance suite
//! the memory engine passes, the shared-engine suite with two engines as two processes, and the faults
//! the engine must ride out.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bayeux::engine::conformance;
use bayeux::{Engine, Message};
use bayeux_redis::{RedisEngine, RedisEngineConfig};
use presence_tests::cluster::Cluster;
use presence_tests::server::RedisServer;
use serde_json::json;

/// A namespace per engine (or pair), so checks never see each other's keys.
fn namespace() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("t{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

async fn engine(config: RedisEngineConfig) -> RedisEngine {
    RedisEngine::connect(config).await.expect("engine connects")
}

#[tokio::test]
async fn redis_engine_passes_the_conformance_suite() {
    let redis = RedisServer::start();
    let url = redis.url();
    conformance::run(|| engine(RedisEngineConfig::server(&url).with_namespace(namespace()))).await;
}

#[tokio::test]
async fn two_redis_engines_act_as_one() {
    let redis = RedisServer::start();
    let url = redis.url();
    conformance::run_shared(|| async {
        let config = RedisEngineConfig::server(&url).with_namespace(namespace());
        (engine(config.clone()).await, engine(config).await)
    })
    .await;
}

#[tokio::test]
async fn redis_engine_on_a_cluster_passes_both_suites() {
    let cluster = Cluster::start();
    let seeds = cluster.urls();
    conformance::run(|| engine(RedisEngineConfig::cluster(&seeds).with_namespace(namespace())))
        .await;
    conformance::run_shared(|| async {
        let config = RedisEngineConfig::cluster(&seeds).with_namespace(namespace());
        (engine(config.clone()).await, engine(config).await)
    })
    .await;
}

/// Two engines on one namespace; `b` waits in the second for what the first publishes.
async fn publisher_and_waiter(url: &str) -> (RedisEngine, RedisEngine, String) {
    let config = RedisEngineConfig::server(url).with_namespace(namespace());
    let (one, two) = (engine(config.clone()).await, engine(config).await);
    let b = two.create_client().await.unwrap();
    two.subscribe(&b, "/f").await.unwrap();
    (one, two, b)
}

async fn woken_with(
    two: &RedisEngine,
    b: &str,
    signal: &tokio::sync::Notify,
    want: serde_json::Value,
) {
    tokio::time::timeout(Duration::from_secs(10), signal.notified())
        .await
        .expect("the waiting client is woken");
    assert_eq!(conformance::taken_data(two, b).await, vec![want]);
}

#[tokio::test]
async fn a_cut_notification_connection_is_resubscribed_and_waiters_woken() {
    let redis = RedisServer::start();
    let (one, two, b) = publisher_and_waiter(&redis.url()).await;
    let signal = two.queue_signal(&b).await.unwrap().unwrap();
    assert!(redis.kill_pubsub_connections() >= 2, "both engines listen");
    // Published while the second engine's notifications may be down: queued in Redis, so the waiter
    // finds it either from the notification or from the wake-up after resubscribing.
    one.publish(&Message::publish("/f", json!("during")))
        .await
        .unwrap();
    woken_with(&two, &b, &signal, json!("during")).await;
    // And notifications flow again afterwards.
    one.publish(&Message::publish("/f", json!("after")))
        .await
        .unwrap();
    woken_with(&two, &b, &signal, json!("after")).await;
}

#[tokio::test]
async fn a_redis_restart_is_ridden_out() {
    let mut redis = RedisServer::start();
    let (one, two, b) = publisher_and_waiter(&redis.url()).await;
    redis.restart(None);
    // The data is gone with the restart (no persistence configured): the client must handshake again,
    // which the server tells it with a 401, and new clients work on the same engines.
    let mut gone = false;
    for _ in 0..100 {
        match two.client_exists(&b).await {
            Ok(exists) => {
                gone = !exists;
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert!(
        gone,
        "the engine answers again after the restart and the old client is unknown"
    );
    // A request caught by the restart fails (the server answers 500; Faye's client retries): the
    // engine reconnects and the next ones work.
    let mut made = None;
    for _ in 0..100 {
        let attempt = async {
            let id = two.create_client().await?;
            two.subscribe(&id, "/f").await?;
            Ok::<_, bayeux::Error>(id)
        };
        if let Ok(id) = attempt.await {
            made = Some(id);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let c = made.expect("clients can be made again after the restart");
    let signal = two.queue_signal(&c).await.unwrap().unwrap();
    one.publish(&Message::publish("/f", json!("fresh")))
        .await
        .unwrap();
    woken_with(&two, &c, &signal, json!("fresh")).await;
}

#[tokio::test]
async fn full_queues_drop_the_oldest_and_bad_input_is_refused() {
    let redis = RedisServer::start();
    let config = RedisEngineConfig::server(redis.url())
        .with_namespace(namespace())
        .with_max_queue(3);
    let e = engine(config).await;
    let a = e.create_client().await.unwrap();
    e.subscribe(&a, "/q").await.unwrap();
    for n in 0..5 {
        e.publish(&Message::publish("/q", json!(n))).await.unwrap();
    }
    assert_eq!(
        conformance::taken_data(&e, &a).await,
        [json!(2), json!(3), json!(4)]
    );
    assert!(RedisEngine::connect(RedisEngineConfig::server(""))
        .await
        .is_err());
    let down = RedisEngineConfig::server(format!(
        "redis://127.0.0.1:{}",
        presence_tests::server::free_port()
    ));
    assert!(
        RedisEngine::connect(down).await.is_err(),
        "no Redis: a clear error, not a hang"
    );
}

#[tokio::test]
async fn a_publish_drops_subscribers_whose_client_is_gone() {
    let redis = RedisServer::start();
    let ns = namespace();
    let e = engine(RedisEngineConfig::server(redis.url()).with_namespace(&ns)).await;
    let a = e.create_client().await.unwrap();
    e.subscribe(&a, "/stale").await.unwrap();
    // What a subscribe racing with the client's removal can leave behind: the set entry alone.
    let mut con = redis.connect();
    let _: () = redis::cmd("DEL")
        .arg(format!("{ns}:client:{{{a}}}"))
        .query(&mut con)
        .unwrap();
    e.publish(&Message::publish("/stale", json!(1)))
        .await
        .unwrap();
    let left: bool = redis::cmd("SISMEMBER")
        .arg(format!("{ns}:chan:{{/stale}}"))
        .arg(&a)
        .query(&mut con)
        .unwrap();
    assert!(!left, "the stale entry is gone after one publish");
    let queued: i64 = redis::cmd("LLEN")
        .arg(format!("{ns}:queue:{{{a}}}"))
        .query(&mut con)
        .unwrap();
    assert_eq!(queued, 0, "nothing queued for a client that is gone");
}

/// Clients connected to `redis`, the asking connection included.
fn connected(redis: &RedisServer) -> usize {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut redis.connect())
        .expect("CLIENT LIST");
    list.lines().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_engine_closes_its_connections() {
    let redis = RedisServer::start();
    let before = connected(&redis);
    let engine = engine(RedisEngineConfig::server(redis.url()).with_namespace(namespace())).await;
    engine.create_client().await.unwrap();
    assert!(
        connected(&redis) >= before + 2,
        "commands and notifications"
    );
    drop(engine);
    // Its notification listener ends with it, and the thread its connections live on with that.
    tokio::task::spawn_blocking(move || {
        presence_tests::wait_until(
            "the engine's connections to close",
            Duration::from_secs(10),
            || connected(&redis) == before,
        )
    })
    .await
    .unwrap();
}
