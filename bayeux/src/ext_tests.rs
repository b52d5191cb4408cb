//! Unit tests of the extension pipeline: order, rejecting, dropping, panics, the subscribe veto,
//! per-client delivery hooks and lifecycle events.

use crate::core_tests::{error_of, handshake, poll, publish, send, server_with, subscribe};
use crate::extension::{Context, Direction, Event};
use crate::{Error, Extension, Message};
use async_trait::async_trait;
use serde_json::json;
use std::sync::{Arc, Mutex};

/// Appends its name to `ext.trail` both ways, so tests can read the order hooks ran in.
struct Tag(&'static str);

#[async_trait]
impl Extension for Tag {
    async fn incoming(&self, mut m: Message, _: Context<'_>) -> Result<Option<Message>, Error> {
        if m.channel == "/order" {
            let trail = m.data.get_or_insert_with(|| json!([]));
            trail
                .as_array_mut()
                .unwrap()
                .push(json!(format!("in:{}", self.0)));
        }
        Ok(Some(m))
    }
    async fn outgoing(&self, mut m: Message, ctx: Context<'_>) -> Result<Option<Message>, Error> {
        if m.channel == "/order" && ctx.direction == Direction::Delivery {
            m.data
                .as_mut()
                .unwrap()
                .as_array_mut()
                .unwrap()
                .push(json!(format!("out:{}", self.0)));
        }
        Ok(Some(m))
    }
}

#[tokio::test]
async fn hooks_run_in_registration_order_both_ways() {
    let s = server_with(vec![Arc::new(Tag("a")), Arc::new(Tag("b"))]);
    let c = handshake(&s).await;
    subscribe(&s, &c, json!("/order")).await;
    send(&s, json!({"channel": "/order", "clientId": c, "data": []})).await;
    let (_, got) = poll(&s, &c).await;
    assert_eq!(got[0]["data"], json!(["in:a", "in:b", "out:a", "out:b"]));
}

/// Rejects, drops or panics on chosen channels.
struct Gate;

#[async_trait]
impl Extension for Gate {
    async fn incoming(&self, mut m: Message, _: Context<'_>) -> Result<Option<Message>, Error> {
        match m.channel.as_str() {
            "/reject" => m.error = Some("403::Nope".into()),
            "/err" => return Err(Error::Extension("custom failure".into())),
            "/drop" => return Ok(None),
            "/panic" => panic!("hook bug"),
            _ => {}
        }
        Ok(Some(m))
    }
}

#[tokio::test]
async fn incoming_hooks_reject_drop_and_survive_panics() {
    let s = server_with(vec![Arc::new(Gate)]);
    let c = handshake(&s).await;
    subscribe(&s, &c, json!("/*")).await;
    assert_eq!(
        error_of(&publish(&s, &c, "/reject", json!(1)).await),
        "403::Nope"
    );
    assert_eq!(
        error_of(&publish(&s, &c, "/err", json!(1)).await),
        "custom failure"
    );
    assert!(
        send(&s, json!({"channel": "/drop", "clientId": c, "data": 1}))
            .await
            .is_empty()
    );
    assert_eq!(
        error_of(&publish(&s, &c, "/panic", json!(1)).await),
        "500::Internal server error"
    );
    assert!(
        poll(&s, &c).await.1.is_empty(),
        "nothing rejected was published"
    );
    assert_eq!(
        publish(&s, &c, "/fine", json!(1)).await["successful"],
        true,
        "server still works"
    );
}

/// A presence-like extension: on a successful subscribe reply it does async work, then either adds
/// data to the reply's ext or vetoes the subscription.
#[derive(Default)]
struct Presence {
    events: Mutex<Vec<Event>>,
}

#[async_trait]
impl Extension for Presence {
    async fn outgoing(&self, mut m: Message, ctx: Context<'_>) -> Result<Option<Message>, Error> {
        if m.channel == "/meta/subscribe" && m.successful == Some(true) {
            tokio::task::yield_now().await; // stands in for a Redis round trip
            let id = ctx
                .request
                .and_then(|r| r.ext.as_ref())
                .and_then(|e| e["presence"]["id"].as_str());
            match id {
                Some(id) => m.ext = Some(json!({"presence": {"subscribe": {id: null}}})),
                None => return Err(Error::Extension("No presence id specified".into())),
            }
        }
        Ok(Some(m))
    }
    async fn event(&self, event: &Event) {
        self.events.lock().unwrap().push(event.clone());
    }
}

#[tokio::test]
async fn outgoing_subscribe_hook_can_amend_or_veto_and_veto_undoes() {
    let p = Arc::new(Presence::default());
    let s = server_with(vec![p.clone()]);
    let c = handshake(&s).await;
    let r = send(
        &s,
        json!({"channel": "/meta/subscribe", "clientId": c, "subscription": "/room",
        "ext": {"presence": {"id": "ann"}}}),
    )
    .await;
    assert_eq!(r[0]["successful"], true);
    assert_eq!(
        r[0]["ext"],
        json!({"presence": {"subscribe": {"ann": null}}})
    );
    let r = subscribe(&s, &c, json!("/other")).await;
    assert_eq!(error_of(&r), "No presence id specified");
    assert_eq!(
        s.engine().subscriptions(&c).await.unwrap(),
        vec!["/room"],
        "veto undid /other"
    );
    let events = p.events.lock().unwrap().clone();
    let subs: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, Event::Subscribe { .. }))
        .collect();
    assert_eq!(
        subs,
        vec![&Event::Subscribe {
            client_id: c.clone(),
            channel: "/room".into()
        }]
    );
}

/// Hides deliveries on `/secret` from every client except the one named in the data.
struct PerClient;

#[async_trait]
impl Extension for PerClient {
    async fn outgoing(&self, m: Message, ctx: Context<'_>) -> Result<Option<Message>, Error> {
        if ctx.direction == Direction::Delivery && m.channel == "/secret" {
            let to = m.data.as_ref().and_then(|d| d.as_str());
            if to != ctx.client_id {
                return Ok(None);
            }
        }
        Ok(Some(m))
    }
}

#[tokio::test]
async fn outgoing_hooks_see_each_receiving_client() {
    let s = server_with(vec![Arc::new(PerClient)]);
    let a = handshake(&s).await;
    let b = handshake(&s).await;
    subscribe(&s, &a, json!("/secret")).await;
    subscribe(&s, &b, json!("/secret")).await;
    publish(&s, &a, "/secret", json!(b)).await;
    assert!(poll(&s, &a).await.1.is_empty());
    assert_eq!(poll(&s, &b).await.1.len(), 1);
}

struct PanicOnEvent;

#[async_trait]
impl Extension for PanicOnEvent {
    async fn event(&self, _: &Event) {
        panic!("listener bug");
    }
    async fn outgoing(&self, m: Message, ctx: Context<'_>) -> Result<Option<Message>, Error> {
        if ctx.direction == Direction::Delivery && m.channel == "/boom" {
            panic!("delivery hook bug");
        }
        Ok(Some(m))
    }
}

#[tokio::test]
async fn panicking_event_and_delivery_hooks_are_contained() {
    let s = server_with(vec![Arc::new(PanicOnEvent)]);
    let c = handshake(&s).await;
    subscribe(&s, &c, json!(["/boom", "/ok"])).await;
    publish(&s, &c, "/boom", json!(1)).await;
    publish(&s, &c, "/ok", json!(2)).await;
    let (reply, got) = poll(&s, &c).await;
    assert_eq!(reply["successful"], true);
    assert_eq!(
        got,
        vec![json!({"channel": "/ok", "data": 2, "id": "p"})],
        "the panicking delivery is dropped"
    );
}

/// Would drop every delivery, but opts out of seeing them.
struct RepliesOnly;

#[async_trait]
impl Extension for RepliesOnly {
    async fn outgoing(&self, m: Message, ctx: Context<'_>) -> Result<Option<Message>, Error> {
        Ok((ctx.direction != Direction::Delivery).then_some(m))
    }
    fn sees_deliveries(&self, channel: &str) -> bool {
        channel == "/watched"
    }
}

#[tokio::test]
async fn extensions_can_opt_out_of_deliveries() {
    let s = server_with(vec![Arc::new(RepliesOnly)]);
    let c = handshake(&s).await;
    subscribe(&s, &c, json!(["/fast", "/watched"])).await;
    publish(&s, &c, "/fast", json!(1)).await;
    publish(&s, &c, "/watched", json!(2)).await;
    let (_, got) = poll(&s, &c).await;
    assert_eq!(
        got.len(),
        1,
        "only the channel the hook watches is filtered: {got:?}"
    );
    assert_eq!(got[0]["channel"], "/fast");
}

/// Never finishes its hook on `/slow`.
struct Hang;

#[async_trait]
impl Extension for Hang {
    async fn incoming(&self, m: Message, _: Context<'_>) -> Result<Option<Message>, Error> {
        if m.channel == "/slow" {
            std::future::pending::<()>().await;
        }
        Ok(Some(m))
    }
}

#[tokio::test(start_paused = true)]
async fn a_hung_hook_times_out_instead_of_hanging_the_request() {
    let s = server_with(vec![Arc::new(Hang)]);
    let c = handshake(&s).await;
    let start = tokio::time::Instant::now();
    let r = publish(&s, &c, "/slow", json!(1)).await;
    assert_eq!(error_of(&r), "500::Internal server error");
    assert_eq!(start.elapsed(), std::time::Duration::from_secs(10));
}

/// Lets only the client named in `keep` receive deliveries on `/filtered`.
struct OnlyKeep(Arc<Mutex<String>>);

#[async_trait]
impl Extension for OnlyKeep {
    fn sees_deliveries(&self, _channel: &str) -> bool {
        false
    }
    fn admits_delivery(&self, m: &Message, client: Option<&str>) -> bool {
        m.channel != "/filtered" || client == Some(self.0.lock().unwrap().as_str())
    }
}

#[tokio::test]
async fn a_delivery_filter_picks_receivers_without_outgoing_hooks() {
    let keep = Arc::new(Mutex::new(String::new()));
    let s = server_with(vec![Arc::new(OnlyKeep(keep.clone()))]);
    let (kept, dropped) = (handshake(&s).await, handshake(&s).await);
    *keep.lock().unwrap() = kept.clone();
    for c in [&kept, &dropped] {
        subscribe(&s, c, json!(["/filtered", "/open"])).await;
    }
    publish(&s, &kept, "/filtered", json!(1)).await;
    publish(&s, &kept, "/open", json!(2)).await;
    let channels = |got: Vec<serde_json::Value>| -> Vec<String> {
        got.iter()
            .map(|m| m["channel"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(channels(poll(&s, &kept).await.1), ["/filtered", "/open"]);
    assert_eq!(
        channels(poll(&s, &dropped).await.1),
        ["/open"],
        "filtered for this client only"
    );
}
