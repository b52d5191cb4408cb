//! `PRESENCE.LEAVE channel client GRACE ms`: a member's leave is held for a grace window, so a page
//! reload or a network blip (the connection leaves and a new one of the same id joins soon after) shows
//! nobody leaving and coming back. The leaving connection stays with its deadline shortened to now +
//! grace; a join of the same id in time finds the member still there (no event, or one update if its
//! data changed), and otherwise the module's expiry timer publishes the leave when the grace ends.
//! Replicas get the shortened deadline as an explicit op, so they agree to the microsecond.
//!
//! Against a real `redis-server` with the module. Windows are short (1 to 2 s); the waits are for the
//! observable event, bounded, never blind sleeps.

#[path = "support/expiry.rs"]
mod support;

use std::time::{Duration, Instant};

use presence_roster::EventKind;
use presence_tests::commands::{count, join, roster, roster_of};
use presence_tests::reply::{boolean, bytes, fields};
use presence_tests::{unique_channel, wait_until, Listener, RedisServer};
use redis::Value;
use support::*;

/// `PRESENCE.LEAVE channel client GRACE ms` as `(left, id)`.
fn leave_grace(
    con: &mut redis::Connection,
    ch: &str,
    client: &str,
    grace_ms: u64,
) -> (bool, Vec<u8>) {
    let value: Value = redis::cmd("PRESENCE.LEAVE")
        .arg(ch)
        .arg(client)
        .arg("GRACE")
        .arg(grace_ms)
        .query(con)
        .unwrap();
    let f = fields(value);
    (boolean(&f["left"]), bytes(&f["id"]))
}

/// Waits until `ch` has `connections` connections (the timer purged a lingering one).
fn wait_connections(con: &mut redis::Connection, ch: &str, connections: u64, within: Duration) {
    wait_until(
        &format!("{ch} to have {connections} connections"),
        within,
        || count(con, ch).unwrap().2 == connections,
    );
}

#[test]
fn a_rejoin_within_the_grace_window_publishes_nothing() {
    let server = RedisServer::start();
    let mut con = server.connect();
    let ch = unique_channel("grace-rejoin");
    join(&mut con, &ch, "tab-1", "alice", "{}", &["TTL", "60000"]).unwrap();
    let mut events = Listener::subscribe(&server.url(), &ch);

    // The page reloads: its old connection leaves, a new one of the same id joins.
    let t0 = Instant::now();
    assert_eq!(
        leave_grace(&mut con, &ch, "tab-1", 1000),
        (false, b"alice".to_vec())
    );
    events.assert_nothing_published(&mut con, &ch);
    assert_eq!(
        roster(&mut con, &ch).unwrap().1,
        roster_of(&[("alice", "{}")])
    );
    let rejoined = join(&mut con, &ch, "tab-2", "alice", "{}", &["TTL", "60000"]).unwrap();
    assert!(!rejoined.joined && !rejoined.changed, "{rejoined:?}");
    events.assert_nothing_published(&mut con, &ch);

    // The lingering connection goes when its grace ends, silently: alice is still on tab-2.
    wait_connections(&mut con, &ch, 1, Duration::from_secs(1) + BOUND);
    assert!(t0.elapsed() + CLOCK_SLACK >= ms(1000), "{:?}", t0.elapsed());
    events.assert_nothing_published(&mut con, &ch);
    assert_eq!(
        roster(&mut con, &ch).unwrap().1,
        roster_of(&[("alice", "{}")])
    );
}

#[test]
fn a_rejoin_with_new_data_is_one_update() {
    let server = RedisServer::start();
    let mut con = server.connect();
    let ch = unique_channel("grace-update");
    join(&mut con, &ch, "tab-1", "alice", "old", &["TTL", "60000"]).unwrap();
    let mut events = Listener::subscribe(&server.url(), &ch);
    leave_grace(&mut con, &ch, "tab-1", 1000);
    let rejoined = join(&mut con, &ch, "tab-2", "alice", "new", &["TTL", "60000"]).unwrap();
    assert!(!rejoined.joined && rejoined.changed, "{rejoined:?}");
    let got = events.next_events();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].kind, EventKind::Update);
    assert_eq!(got[0].data.as_deref(), Some(&b"new"[..]));
    wait_connections(&mut con, &ch, 1, Duration::from_secs(1) + BOUND);
    events.assert_nothing_published(&mut con, &ch);
}

#[test]
fn without_a_rejoin_the_leave_is_published_when_the_grace_ends() {
    let server = RedisServer::start();
    let mut con = server.connect();
    let ch = unique_channel("grace-ends");
    join(&mut con, &ch, "tab-1", "alice", "", &["TTL", "60000"]).unwrap();
    join(&mut con, &ch, "c-bob", "bob", "", &["TTL", "60000"]).unwrap();
    let mut events = Listener::subscribe(&server.url(), &ch);
    let t0 = Instant::now();
    leave_grace(&mut con, &ch, "tab-1", 1000);
    events.assert_nothing_published(&mut con, &ch);
    // Nobody sends a command on the channel: the module's timer publishes the leave by itself.
    expect_expiries(&mut events, &["alice"], t0 + ms(1000), "alice's grace");
    assert_eq!(roster(&mut con, &ch).unwrap().1, roster_of(&[("bob", "")]));
}

#[test]
fn a_grace_never_keeps_a_connection_past_its_deadline() {
    let server = RedisServer::start();
    let mut con = server.connect();
    let ch = unique_channel("grace-shorter");
    join(&mut con, &ch, "tab-1", "alice", "", &["TTL", "600"]).unwrap();
    let mut events = Listener::subscribe(&server.url(), &ch);
    let t0 = Instant::now();
    leave_grace(&mut con, &ch, "tab-1", 60_000);
    // Shorten only: the TTL's deadline (600 ms) comes first, and holds.
    expect_expiries(&mut events, &["alice"], t0, "alice's deadline");
    assert!(t0.elapsed() < ms(600) + BOUND, "{:?}", t0.elapsed());
}

#[test]
fn the_grace_runs_from_the_last_connection_that_leaves() {
    let server = RedisServer::start();
    let mut con = server.connect();
    let ch = unique_channel("grace-two-tabs");
    join(&mut con, &ch, "tab-1", "alice", "", &["TTL", "60000"]).unwrap();
    join(&mut con, &ch, "tab-2", "alice", "", &["TTL", "60000"]).unwrap();
    let mut events = Listener::subscribe(&server.url(), &ch);
    leave_grace(&mut con, &ch, "tab-1", 500);
    let t_last = Instant::now();
    leave_grace(&mut con, &ch, "tab-2", 1500);
    events.assert_nothing_published(&mut con, &ch);
    // tab-1's short grace ends first and says nothing: tab-2 still holds alice.
    let got = expect_expiries(&mut events, &["alice"], t_last + ms(1500), "the last tab");
    assert_eq!(got.len(), 1);
}

#[test]
fn the_same_connection_joining_again_keeps_the_member_and_its_deadline() {
    let server = RedisServer::start();
    let mut con = server.connect();
    let ch = unique_channel("grace-same-client");
    join(&mut con, &ch, "c", "alice", "", &["TTL", "60000"]).unwrap();
    let mut events = Listener::subscribe(&server.url(), &ch);
    leave_grace(&mut con, &ch, "c", 1000);
    // Leaving again in the window changes nothing and moves no deadline later.
    let before = pexpiretime(&mut con, &ch);
    assert_eq!(
        leave_grace(&mut con, &ch, "c", 5000),
        (false, b"alice".to_vec())
    );
    assert_eq!(pexpiretime(&mut con, &ch), before);
    // A Faye client that unsubscribes and subscribes again keeps its client id.
    let again = join(&mut con, &ch, "c", "alice", "", &["TTL", "60000"]).unwrap();
    assert!(!again.joined && !again.changed, "{again:?}");
    assert!(pexpiretime(&mut con, &ch) > before + 50_000);
    events.assert_nothing_published(&mut con, &ch);
}

#[test]
fn grace_zero_is_an_immediate_leave_and_bad_graces_are_refused() {
    let server = RedisServer::start();
    let mut con = server.connect();
    let ch = unique_channel("grace-zero");
    join(&mut con, &ch, "c", "alice", "", &["TTL", "60000"]).unwrap();
    assert_eq!(
        leave_grace(&mut con, &ch, "c", 0),
        (true, b"alice".to_vec())
    );
    assert_eq!(count(&mut con, &ch).unwrap().1, 0);
    for bad in [
        &["GRACE"][..],
        &["GRACE", "-1"],
        &["GRACE", "1.5"],
        &["GRACE", "2592000001"],
        &["NX"],
    ] {
        let err = redis::cmd("PRESENCE.LEAVE")
            .arg(&ch)
            .arg("c")
            .arg(bad)
            .query::<Value>(&mut con)
            .unwrap_err();
        println!("{bad:?}: {err}");
        assert!(
            ["wrong number", "GRACE must be", "unknown option"]
                .iter()
                .any(|want| err.to_string().contains(want)),
            "{bad:?}: {err}"
        );
    }
}

#[test]
fn a_replica_holds_the_shortened_deadline_and_the_masters_purge() {
    let master = RedisServer::start();
    let replica = start_replica(&master);
    let mut con = master.connect();
    let mut rcon = replica.connect();
    let ch = unique_channel("grace-replica");
    join(&mut con, &ch, "tab-1", "alice", "", &["TTL", "60000"]).unwrap();
    join(&mut con, &ch, "c-bob", "bob", "", &["TTL", "60000"]).unwrap();
    let long_expiry = pexpiretime(&mut con, &ch);
    leave_grace(&mut con, &ch, "tab-1", 1000);
    let _: i64 = redis::cmd("WAIT").arg(1).arg(5000).query(&mut con).unwrap();
    assert_eq!(state(&mut rcon, &ch), state(&mut con, &ch));
    // bob's deadline is still the latest: the key's expiry did not move.
    assert_eq!(pexpiretime(&mut rcon, &ch), long_expiry);

    wait_connections(&mut con, &ch, 1, Duration::from_secs(1) + BOUND);
    let _: i64 = redis::cmd("WAIT").arg(1).arg(5000).query(&mut con).unwrap();
    assert_eq!(state(&mut rcon, &ch), state(&mut con, &ch));
    assert_eq!(roster(&mut rcon, &ch).unwrap().1, roster_of(&[("bob", "")]));
}
