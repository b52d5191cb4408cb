//! The engine contract as a test suite, written once and run against every engine.
//!
//! A new engine's tests call [`run`] with a constructor that returns a fresh, empty engine; every
//! failed expectation panics with a message naming the rule broken. Inactivity checks use real
//! (or paused) tokio time, so call it inside a tokio runtime. An engine that several processes share
//! also passes [`run_shared`], with two engines standing for two processes.

use super::Engine;
use crate::Message;
use serde_json::{json, Value};
use std::future::Future;
use std::time::Duration;

/// Runs every conformance check against engines made by `make` (one fresh engine per check).
pub async fn run<E, F, Fut>(make: F)
where
    E: Engine,
    F: Fn() -> Fut,
    Fut: Future<Output = E>,
{
    clients(&make().await).await;
    subscriptions(&make().await).await;
    routing(&make().await).await;
    wildcards(&make().await).await;
    direct(&make().await).await;
    destroy(&make().await).await;
    inactivity(&make().await).await;
}

/// Runs the checks for engines that several processes share. `make` returns two engines over one
/// fresh, empty shared state, as two server processes would see it.
pub async fn run_shared<E, F, Fut>(make: F)
where
    E: Engine,
    F: Fn() -> Fut,
    Fut: Future<Output = (E, E)>,
{
    let (one, two) = make().await;
    shared_clients(&one, &two).await;
    let (one, two) = make().await;
    shared_routing(&one, &two).await;
    let (one, two) = make().await;
    shared_addressed(&one, &two).await;
    let (one, two) = make().await;
    shared_destroy(&one, &two).await;
}

/// Takes the client's queue and returns the `data` of each message in it, oldest first: what most
/// checks compare (public for an engine's own tests).
pub async fn taken_data(e: &dyn Engine, client_id: &str) -> Vec<Value> {
    e.take_queue(client_id)
        .await
        .unwrap()
        .iter()
        .map(|m| m.message().data.clone().unwrap_or(Value::Null))
        .collect()
}

async fn shared_clients(one: &dyn Engine, two: &dyn Engine) {
    let a = one.create_client().await.unwrap();
    assert!(
        two.client_exists(&a).await.unwrap(),
        "a client made in one process exists in the other"
    );
    assert!(
        two.subscribe(&a, "/s").await.unwrap(),
        "the other process may subscribe it"
    );
    assert_eq!(
        one.subscriptions(&a).await.unwrap(),
        vec!["/s"],
        "subscriptions are shared"
    );
    assert!(
        !one.subscribe(&a, "/s").await.unwrap(),
        "a subscription made elsewhere is not new"
    );
    tokio::time::sleep(Duration::from_millis(30)).await;
    two.ping(&a).await.unwrap();
    assert!(
        one.inactive_clients(Duration::from_millis(20))
            .await
            .unwrap()
            .is_empty(),
        "a ping in one process counts in the other"
    );
}

async fn shared_routing(one: &dyn Engine, two: &dyn Engine) {
    let a = one.create_client().await.unwrap();
    let b = two.create_client().await.unwrap();
    one.subscribe(&a, "/r/*").await.unwrap();
    two.subscribe(&b, "/r/x").await.unwrap();
    // `a` moves to the second process (its next connect arrives there) and waits for messages.
    let signal = two.queue_signal(&a).await.unwrap().unwrap();
    for n in 0..20 {
        one.publish(&Message::publish("/r/x", json!(n)))
            .await
            .unwrap();
    }
    tokio::time::timeout(Duration::from_secs(5), signal.notified())
        .await
        .expect("a publish in one process wakes the client waiting in the other");
    let expected: Vec<_> = (0..20).map(|n| json!(n)).collect();
    for id in [&a, &b] {
        assert_eq!(
            taken_data(two, id).await,
            expected,
            "every message, once, in publish order"
        );
    }
    assert!(
        one.take_queue(&a).await.unwrap().is_empty(),
        "a queue taken in one process is empty in the other"
    );
}

async fn shared_addressed(one: &dyn Engine, two: &dyn Engine) {
    let a = one.create_client().await.unwrap();
    // `a` now polls the second process; the first still addresses it.
    let signal = two.queue_signal(&a).await.unwrap().unwrap();
    one.queue_for_many(
        std::slice::from_ref(&a),
        &Message::publish("/m", json!("moved")),
    )
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(5), signal.notified())
        .await
        .expect("an addressed message wakes the client in the process it moved to");
    assert_eq!(two.take_queue(&a).await.unwrap().len(), 1);
}

async fn shared_destroy(one: &dyn Engine, two: &dyn Engine) {
    let a = one.create_client().await.unwrap();
    one.subscribe(&a, "/g").await.unwrap();
    let signal = one.queue_signal(&a).await.unwrap().unwrap();
    let (first, second) = tokio::join!(two.destroy_client(&a), one.destroy_client(&a));
    let reports: Vec<_> = [first.unwrap(), second.unwrap()]
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(
        reports,
        vec![vec!["/g".to_owned()]],
        "two processes removing one client report it once"
    );
    tokio::time::timeout(Duration::from_secs(5), signal.notified())
        .await
        .expect("removal wakes the connect the client holds in the other process");
    assert!(!one.client_exists(&a).await.unwrap());
}

async fn clients(e: &dyn Engine) {
    let a = e.create_client().await.unwrap();
    let b = e.create_client().await.unwrap();
    assert_ne!(a, b, "client ids must be unique");
    assert!(
        e.client_exists(&a).await.unwrap(),
        "a created client exists"
    );
    assert!(
        !e.client_exists("nope").await.unwrap(),
        "unknown ids do not exist"
    );
    assert!(
        e.queue_signal(&a).await.unwrap().is_some(),
        "a live client has a queue signal"
    );
    assert!(
        e.queue_signal("nope").await.unwrap().is_none(),
        "an unknown client has none"
    );
}

async fn subscriptions(e: &dyn Engine) {
    let a = e.create_client().await.unwrap();
    assert!(
        e.subscribe(&a, "/b").await.unwrap(),
        "first subscribe is new"
    );
    assert!(
        !e.subscribe(&a, "/b").await.unwrap(),
        "second subscribe is not new"
    );
    assert!(e.subscribe(&a, "/a/**").await.unwrap());
    assert_eq!(
        e.subscriptions(&a).await.unwrap(),
        vec!["/a/**", "/b"],
        "sorted subscriptions"
    );
    assert!(
        e.unsubscribe(&a, "/b").await.unwrap(),
        "unsubscribe removes"
    );
    assert!(
        !e.unsubscribe(&a, "/b").await.unwrap(),
        "unsubscribing twice is a no-op"
    );
    assert!(
        !e.unsubscribe("nope", "/b").await.unwrap(),
        "unknown client unsubscribe is a no-op"
    );
    assert!(
        e.subscribe("nope", "/b").await.is_err(),
        "unknown client cannot subscribe"
    );
}

async fn routing(e: &dyn Engine) {
    let a = e.create_client().await.unwrap();
    let b = e.create_client().await.unwrap();
    e.subscribe(&a, "/x").await.unwrap();
    let signal = e.queue_signal(&a).await.unwrap().unwrap();
    e.publish(&Message::publish("/x", json!(1))).await.unwrap();
    e.publish(&Message::publish("/y", json!(2))).await.unwrap();
    e.publish(&Message::publish("/x", json!(3))).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), signal.notified())
        .await
        .expect("publishing to a subscriber raises its queue signal");
    assert_eq!(
        taken_data(e, &a).await,
        vec![json!(1), json!(3)],
        "deliveries in publish order, others filtered"
    );
    assert!(
        e.take_queue(&a).await.unwrap().is_empty(),
        "take empties the queue"
    );
    assert!(
        e.take_queue(&b).await.unwrap().is_empty(),
        "non-subscribers get nothing"
    );
}

async fn wildcards(e: &dyn Engine) {
    let a = e.create_client().await.unwrap();
    e.subscribe(&a, "/w/*").await.unwrap();
    e.subscribe(&a, "/w/**").await.unwrap();
    e.subscribe(&a, "/w/one").await.unwrap();
    e.publish(&Message::publish("/w/one", json!("once")))
        .await
        .unwrap();
    e.publish(&Message::publish("/w/one/two", json!("deep")))
        .await
        .unwrap();
    e.publish(&Message::publish("/w", json!("parent")))
        .await
        .unwrap();
    assert_eq!(
        taken_data(e, &a).await,
        vec![json!("once"), json!("deep")],
        "each client gets a message once"
    );
}

async fn direct(e: &dyn Engine) {
    let a = e.create_client().await.unwrap();
    let msg = Message::publish("/anything", json!("for a"));
    assert!(
        e.queue_for(&a, &msg).await.unwrap(),
        "queue_for a live client"
    );
    assert!(
        !e.queue_for("nope", &msg).await.unwrap(),
        "queue_for an unknown client"
    );
    let q = e.take_queue(&a).await.unwrap();
    assert_eq!(q.len(), 1, "queued without a subscription");
    assert_eq!(q[0].message(), &msg);
    let b = e.create_client().await.unwrap();
    let c = e.create_client().await.unwrap();
    e.subscribe(&c, "/anything").await.unwrap();
    let addressed = Message::publish("/anything", json!("for a and b"));
    e.queue_for_many(&[a.clone(), "nope".to_owned(), b.clone()], &addressed)
        .await
        .unwrap();
    for id in [&a, &b] {
        let q = e.take_queue(id).await.unwrap();
        assert_eq!(q.len(), 1, "each addressed client gets one copy");
        assert_eq!(q[0].message(), &addressed);
    }
    assert!(
        e.take_queue(&c).await.unwrap().is_empty(),
        "addressed delivery ignores subscriptions"
    );
}

async fn destroy(e: &dyn Engine) {
    let a = e.create_client().await.unwrap();
    e.subscribe(&a, "/d").await.unwrap();
    e.subscribe(&a, "/c").await.unwrap();
    let gone = e.destroy_client(&a).await.unwrap();
    assert_eq!(
        gone,
        Some(vec!["/c".to_owned(), "/d".to_owned()]),
        "destroy reports channels"
    );
    assert_eq!(
        e.destroy_client(&a).await.unwrap(),
        None,
        "destroying twice reports nothing"
    );
    assert!(!e.client_exists(&a).await.unwrap());
    e.publish(&Message::publish("/d", json!(1))).await.unwrap();
    assert!(
        e.take_queue(&a).await.unwrap().is_empty(),
        "destroyed clients get nothing"
    );
}

async fn inactivity(e: &dyn Engine) {
    let a = e.create_client().await.unwrap();
    assert!(e
        .inactive_clients(Duration::from_secs(60))
        .await
        .unwrap()
        .is_empty());
    tokio::time::sleep(Duration::from_millis(30)).await;
    let b = e.create_client().await.unwrap();
    let idle = e.inactive_clients(Duration::from_millis(20)).await.unwrap();
    assert_eq!(idle, vec![a.clone()], "only the idle client is inactive");
    tokio::time::sleep(Duration::from_millis(30)).await;
    e.ping(&a).await.unwrap();
    let idle = e.inactive_clients(Duration::from_millis(20)).await.unwrap();
    assert_eq!(idle, vec![b], "a ping makes a client active again");
}
