//! The shim's Redis work does not queue behind its host's. A server delivering a roster flood keeps its
//! runtime's queues full of ready tasks; Redis answers in microseconds meanwhile, and a presence
//! command must not time out because the task reading that answer waited its turn behind the flood.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use presence_shim::{Config, Deliver, Presence, RosterMessage};
use presence_tests::presence_server::key;
use presence_tests::{unique_channel, RedisServer, TaskFlood};
use serde_json::json;

/// Short, so that two of them pass while the flood runs.
const TTL: Duration = Duration::from_secs(3);

/// Drops every roster message: this test is about the commands' answers.
struct Nowhere;

#[async_trait]
impl Deliver for Nowhere {
    async fn deliver(&self, _message: RosterMessage, _clients: Vec<String>) {}
}

#[test]
fn presence_commands_answer_while_the_hosts_runtime_is_flooded() {
    let redis = RedisServer::start();
    let runtime = TaskFlood::runtime(2);
    runtime.block_on(async {
        let mut config = Config::with_servers([redis.url()]);
        config.timeout = Duration::from_millis(250);
        config.ttl = TTL;
        let presence = Presence::start(config, Arc::new(Nowhere))
            .await
            .expect("shim starts");
        let channel = unique_channel("flooded");
        let ext = |id: usize| json!({"presence": {"id": format!("member-{id}"), "data": id}});
        presence
            .subscribe("client-0", &channel, Some(&ext(0)))
            .await
            .expect("a join before the flood");

        // One pass over the queues takes about a second on two workers, four times the command timeout.
        let flood = TaskFlood::running_a_second_a_pass(2).await;
        let mut failures = Vec::new();
        for i in 1..=8 {
            let client = format!("client-{i}");
            if let Err(error) = presence.subscribe(&client, &channel, Some(&ext(i))).await {
                failures.push(format!("{client}: {error}"));
            }
        }
        // Members stay only if the touches (every TTL / 3) get through the flood too.
        tokio::time::sleep(TTL * 2).await;
        let members = {
            let mut con = redis.connect();
            presence_tests::commands::roster(&mut con, &key(&channel))
                .expect("roster")
                .1
        };
        flood.stop().await;
        assert!(
            failures.is_empty(),
            "commands failed while Redis idled: {failures:#?}"
        );
        assert_eq!(
            members.len(),
            9,
            "every member is still in Redis two TTLs later: {members:?}"
        );
    });
}
