//! The shim's Redis work does not queue behind its host's. A server delivering a roster flood keeps its
//! runtime's queues full of ready tasks; Redis answers in microseconds meanwhile, and a presence
//! command must not time out because the task reading that answer waited its turn behind the flood.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use presence_shim::{Config, Deliver, Presence, RosterMessage};
use presence_tests::presence_server::key;
use presence_tests::{unique_channel, RedisServer};
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
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

        // 2,000 tasks of 1 ms each: one pass over the queues takes about a second on two workers,
        // four times the command timeout.
        let flood = TaskFlood::start(2_000, Duration::from_millis(1), Duration::from_secs(60));
        let started = Instant::now();
        while flood.polls() < 4_000 {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the flood never ran"
            );
            tokio::task::yield_now().await;
        }
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

/// Ready tasks that keep a tokio runtime's queues full, as a server delivering a flood of messages
/// does: each task computes for `work`, wakes the next task of the flood (so the worker's next-task
/// slot keeps changing hands, as a delivery waking a socket writer does) and yields. Every task stops
/// when told to, or by itself after its time bound.
struct TaskFlood {
    stop: Arc<AtomicBool>,
    polls: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl TaskFlood {
    /// Spawns `n` tasks on the current runtime.
    fn start(n: usize, work: Duration, bound: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let polls = Arc::new(AtomicU64::new(0));
        let bells: Vec<Arc<tokio::sync::Notify>> = (0..n)
            .map(|_| Arc::new(tokio::sync::Notify::new()))
            .collect();
        let tasks = (0..n)
            .map(|i| {
                let (stop, polls) = (stop.clone(), polls.clone());
                let (mine, next) = (bells[i].clone(), bells[(i + 1) % n].clone());
                tokio::spawn(async move {
                    let until = Instant::now() + bound;
                    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                        let busy = Instant::now() + work;
                        while Instant::now() < busy {
                            std::hint::spin_loop();
                        }
                        polls.fetch_add(1, Ordering::Relaxed);
                        next.notify_one();
                        // Woken by the previous task or by the yield, whichever comes first.
                        tokio::select! {
                            _ = mine.notified() => {}
                            _ = tokio::task::yield_now() => {}
                        }
                    }
                })
            })
            .collect();
        TaskFlood { stop, polls, tasks }
    }

    /// How many times the flood's tasks have run.
    fn polls(&self) -> u64 {
        self.polls.load(Ordering::Relaxed)
    }

    /// Stops every task and waits until each has.
    async fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for TaskFlood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
