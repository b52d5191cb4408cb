//! The engine's Redis work does not queue behind its server's. A server delivering a flood keeps its
//! runtime's queues full of ready tasks; Redis answers in microseconds meanwhile, and an engine command
//! must not time out because the task reading that answer waited its turn behind the flood.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bayeux::{Engine, Message};
use bayeux_redis::{RedisEngine, RedisEngineConfig};
use presence_tests::server::RedisServer;
use presence_tests::TaskFlood;
use serde_json::json;

#[test]
fn engine_commands_answer_while_the_servers_runtime_is_flooded() {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let redis = RedisServer::start();
    let runtime = TaskFlood::runtime(2);
    runtime.block_on(async {
        let mut config = RedisEngineConfig::server(redis.url())
            .with_namespace(format!("flood{}", NEXT.fetch_add(1, Ordering::Relaxed)));
        config.timeout = Duration::from_millis(250);
        let engine = RedisEngine::connect(config).await.expect("engine connects");
        let subscriber = engine
            .create_client()
            .await
            .expect("a client before the flood");
        engine
            .subscribe(&subscriber, "/f")
            .await
            .expect("subscribed");

        // One pass over the queues takes about a second on two workers, four times the command timeout.
        let flood = TaskFlood::running_a_second_a_pass(2).await;
        let mut failures = Vec::new();
        let mut delivered = Vec::new();
        for i in 0..8 {
            if let Err(error) = engine.publish(&Message::publish("/f", json!(i))).await {
                failures.push(format!("publish {i}: {error}"));
            }
            match engine.take_queue(&subscriber).await {
                Ok(taken) => delivered.extend(taken.iter().map(|m| m.message().data.clone())),
                Err(error) => failures.push(format!("take {i}: {error}")),
            }
            if let Err(error) = engine.ping(&subscriber).await {
                failures.push(format!("ping {i}: {error}"));
            }
        }
        flood.stop().await;
        assert!(
            failures.is_empty(),
            "engine commands failed while Redis idled: {failures:#?}"
        );
        let expected: Vec<_> = (0..8).map(|i| Some(json!(i))).collect();
        assert_eq!(delivered, expected, "every message, in order");
    });
}
