//! The module publishes expiries by itself: a channel nobody sends a command to still tells its
//! listeners, within about a second of the deadline, that its members expired, whichever way its roster
//! got there, and the key's own Redis expiry is only a backstop after the last deadline. Replicas, the
//! AOF, failover and the cluster are in `module_expiry_replicas`.
//!
//! Delays are measured from the test's clock before the join that set a deadline, so they are upper
//! bounds of the module's own delay. Each one is printed (`cargo test --test module_expiry --
//! --nocapture`).

#[path = "support/expiry.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use presence_roster::{wire, EventKind};
use presence_tests::commands::{join, roster, roster_of, touch};
use presence_tests::reply::bytes;
use presence_tests::{unique_channel, wait_until, CpuHogs, Listener, RedisServer};
use redis::Value;
use support::*;

#[test]
fn expiries_nobody_touches_are_published_within_a_second() {
    let server = RedisServer::start();
    let mut con = server.connect();
    // One member expires and one stays; one member with two connections (it expires with the later
    // one); one channel that empties.
    let kept = unique_channel("kept");
    let twice = unique_channel("twice");
    let emptied = unique_channel("emptied");
    let mut kept_events = Listener::subscribe(&server.url(), &kept);
    let mut twice_events = Listener::subscribe(&server.url(), &twice);
    let mut emptied_events = Listener::subscribe(&server.url(), &emptied);

    let t0 = Instant::now();
    let wall_before = wall_ms();
    join(&mut con, &kept, "c-short", "short", "", &["TTL", "300"]).unwrap();
    join(&mut con, &kept, "c-long", "long", "", &["TTL", "60000"]).unwrap();
    join(&mut con, &twice, "c1", "both", "", &["TTL", "400"]).unwrap();
    join(&mut con, &twice, "c2", "both", "", &["TTL", "700"]).unwrap();
    join(&mut con, &emptied, "c", "alone", "", &["TTL", "1000"]).unwrap();
    let wall_after = wall_ms();
    kept_events.take(2);
    twice_events.take(1);
    emptied_events.take(1);

    // From here on nobody sends a command to these channels until every expiry has been published.
    let short = expect_expiries(&mut kept_events, &["short"], t0 + ms(300), "kept/short");
    expect_expiries(&mut twice_events, &["both"], t0 + ms(700), "twice/both");
    expect_expiries(
        &mut emptied_events,
        &["alone"],
        t0 + ms(1000),
        "emptied/alone",
    );

    assert_eq!(
        roster(&mut con, &kept).unwrap(),
        (short[0].rev, roster_of(&[("long", "")])),
        "the expiry is the channel's latest change"
    );
    assert!(!exists(&mut con, &twice) && !exists(&mut con, &emptied));
    assert_eq!(info_field(&mut con, "presence_expiries"), 3);
    // The key's own expiry is the backstop after the last deadline, not the deadline itself.
    let expires = pexpiretime(&mut con, &kept);
    assert!(
        (wall_before + 60_000 + BACKSTOP_MS..=wall_after + 60_000 + BACKSTOP_MS + 1)
            .contains(&expires),
        "PEXPIRETIME {expires} is {BACKSTOP_MS} ms after the last deadline \
         (joined between {wall_before} and {wall_after} with TTL 60000)"
    );
    kept_events.assert_nothing_published(&mut con, &kept);
}

#[test]
fn the_bound_holds_on_a_loaded_cpu() {
    let server = RedisServer::start();
    let mut con = server.connect();
    let channels: Vec<(String, u64)> = (0..10)
        .map(|n| (unique_channel("loaded"), 300 + 60 * n))
        .collect();
    let mut listeners: Vec<Listener> = channels
        .iter()
        .map(|(ch, _)| Listener::subscribe(&server.url(), ch))
        .collect();
    // As many busy threads as the test machine has cores: Redis now competes for every one of them.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let _hogs = CpuHogs::start(cores, Duration::from_secs(10));
    let t0 = Instant::now();
    for (ch, ttl) in &channels {
        join(&mut con, ch, "c", "busy", "", &["TTL", &ttl.to_string()]).unwrap();
    }
    for ((ch, ttl), listener) in channels.iter().zip(&mut listeners) {
        listener.take(1);
        expect_expiries(listener, &["busy"], t0 + ms(*ttl), &format!("loaded {ch}"));
    }
}

#[test]
fn a_deadline_moved_later_or_earlier_is_what_counts() {
    let server = RedisServer::start();
    let mut con = server.connect();
    let later = unique_channel("later");
    let earlier = unique_channel("earlier");
    let mut later_events = Listener::subscribe(&server.url(), &later);
    let mut earlier_events = Listener::subscribe(&server.url(), &earlier);
    join(&mut con, &later, "c", "touched", "", &["TTL", "200"]).unwrap();
    join(&mut con, &earlier, "c", "shortened", "", &["TTL", "60000"]).unwrap();
    later_events.take(1);
    earlier_events.take(1);
    let t0 = Instant::now();
    // A touch moves the deadline later: not expired at the old deadline, but at the new one.
    touch(&mut con, &later, &["c", "TTL", "700"]).unwrap();
    // A join again with a short TTL moves it earlier: expired then, not a minute later.
    join(&mut con, &earlier, "c", "shortened", "", &["TTL", "400"]).unwrap();
    expect_expiries(
        &mut earlier_events,
        &["shortened"],
        t0 + ms(400),
        "moved earlier",
    );
    expect_expiries(&mut later_events, &["touched"], t0 + ms(700), "moved later");
}

#[test]
fn a_panic_in_the_timer_is_caught_and_the_timer_goes_on() {
    let server = RedisServer::start();
    let mut con = server.connect();
    // Debug builds of the module panic when the timer purges a channel named like this.
    let poisoned = format!("{}/debug-panic-in-expiry-timer", unique_channel("poisoned"));
    let after = unique_channel("after-panic");
    let mut listener = Listener::subscribe(&server.url(), &after);
    let t0 = Instant::now();
    join(&mut con, &poisoned, "c", "p", "", &["TTL", "100"]).unwrap();
    join(&mut con, &after, "c", "a", "", &["TTL", "1300"]).unwrap();
    listener.take(1);
    expect_expiries(&mut listener, &["a"], t0 + ms(1300), "after a panic");
    assert_eq!(info_field(&mut con, "presence_panics"), 1);
    assert!(
        server.log().contains("the expiry timer panicked"),
        "the panic is logged"
    );
}

#[test]
fn rosters_that_arrive_without_a_command_are_purged_too() {
    let source = RedisServer::start();
    let target = RedisServer::start();
    let mut src = source.connect();
    let mut con = target.connect();
    let restored = unique_channel("restored");
    let renamed_from = unique_channel("renamed-from");
    let renamed = unique_channel("renamed");
    let copied_from = unique_channel("copied-from");
    let copied = unique_channel("copied");
    let moved = unique_channel("moved");
    let mut listeners: Vec<(String, Listener)> =
        [&restored, &renamed, &copied_from, &copied, &moved]
            .iter()
            .map(|ch| (ch.to_string(), Listener::subscribe(&target.url(), ch)))
            .collect();

    let t0 = Instant::now();
    // RESTORE, as slot migration does, on a server that never saw a command for the channel.
    join(&mut src, &restored, "c", "r", "", &["TTL", "800"]).unwrap();
    let payload: Vec<u8> = redis::cmd("DUMP").arg(&restored).query(&mut src).unwrap();
    redis::cmd("RESTORE")
        .arg(&restored)
        .arg(0)
        .arg(payload)
        .query::<()>(&mut con)
        .unwrap();
    // RENAME, COPY and MOVE make keys that no presence command created.
    join(&mut con, &renamed_from, "c", "n", "", &["TTL", "800"]).unwrap();
    redis::cmd("RENAME")
        .arg(&renamed_from)
        .arg(&renamed)
        .query::<()>(&mut con)
        .unwrap();
    join(&mut con, &copied_from, "c", "o", "", &["TTL", "800"]).unwrap();
    let done: bool = redis::cmd("COPY")
        .arg(&copied_from)
        .arg(&copied)
        .query(&mut con)
        .unwrap();
    assert!(done);
    join(&mut con, &moved, "c", "m", "", &["TTL", "800"]).unwrap();
    let done: bool = redis::cmd("MOVE")
        .arg(&moved)
        .arg(1)
        .query(&mut con)
        .unwrap();
    assert!(done);

    for (ch, listener) in &mut listeners {
        // Only the copy's source and the moved key were joined on this server, with listeners on.
        if *ch == copied_from || *ch == moved {
            let joined = listener.take(1);
            assert_eq!(joined[0].kind, EventKind::Join, "{ch}: {joined:?}");
        }
        let id = match ch.as_str() {
            c if c == restored => "r",
            c if c == renamed => "n",
            c if c == moved => "m",
            _ => "o",
        };
        expect_expiries(listener, &[id], t0 + ms(800), ch);
    }
    for ch in [&restored, &renamed, &copied_from, &copied] {
        assert!(!exists(&mut con, ch), "{ch} was deleted when it emptied");
    }
    redis::cmd("SELECT").arg(1).query::<()>(&mut con).unwrap();
    assert!(
        !exists(&mut con, &moved),
        "the moved key was purged in its new db"
    );
}

#[test]
fn a_roster_loaded_from_rdb_is_purged_by_the_timer() {
    let mut server = RedisServer::start();
    let mut con = server.connect();
    let ch = unique_channel("rdb");
    let t0 = Instant::now();
    join(&mut con, &ch, "c1", "short", "", &["TTL", "1200"]).unwrap();
    join(&mut con, &ch, "c2", "long", "", &["TTL", "60000"]).unwrap();
    redis::cmd("SAVE").query::<()>(&mut con).unwrap();
    server.restart(None);
    let mut con = server.connect();
    // The expiry may come before a listener could subscribe after the restart, so watch the roster
    // (a read, which purges nothing) and the counter, which started at 0 with this process.
    wait_until(
        "the loaded roster to lose its expired member",
        (t0 + ms(1200) + BOUND).saturating_duration_since(Instant::now()),
        || roster(&mut con, &ch).unwrap().1 == roster_of(&[("long", "")]),
    );
    println!(
        "rdb: purged {:?} after the deadline",
        Instant::now().saturating_duration_since(t0 + ms(1200))
    );
    assert_eq!(info_field(&mut con, "presence_expiries"), 1);
}

/// A raw connection shard-subscribed to many channels at once.
fn subscribe_all(url: &str, channels: &[String]) -> redis::Connection {
    let mut con = redis::Client::open(url)
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap();
    con.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    con.send_packed_command(&redis::cmd("SSUBSCRIBE").arg(channels).get_packed_command())
        .unwrap();
    for _ in channels {
        match con.recv_response().unwrap() {
            Value::Array(items) => assert_eq!(bytes(&items[0]), b"ssubscribe"),
            other => panic!("unexpected SSUBSCRIBE reply {other:?}"),
        }
    }
    con
}

#[test]
fn a_mass_expiry_is_all_published_and_redis_keeps_answering() {
    const CHANNELS: usize = 2000;
    const MEMBERS: u64 = 1;
    let server = RedisServer::start();
    let mut con = server.connect();
    let channels: Vec<String> = (0..CHANNELS).map(|_| unique_channel("mass")).collect();
    let mut subscriber = subscribe_all(&server.url(), &channels);

    // One roster restored into every key: all of them have the very same deadlines, so the whole
    // wave is due at once.
    let template = unique_channel("mass-template");
    let t0 = Instant::now();
    for n in 0..MEMBERS {
        join(
            &mut con,
            &template,
            format!("c{n}"),
            format!("m{n}"),
            "",
            &["TTL", "1000"],
        )
        .unwrap();
    }
    let payload: Vec<u8> = redis::cmd("DUMP").arg(&template).query(&mut con).unwrap();
    redis::cmd("DEL")
        .arg(&template)
        .query::<()>(&mut con)
        .unwrap();
    let mut restore = redis::pipe();
    for ch in &channels {
        restore.cmd("RESTORE").arg(ch).arg(0).arg(&payload).ignore();
    }
    restore.query::<()>(&mut con).unwrap();
    let due = t0 + ms(1000);
    assert!(
        Instant::now() < due,
        "the restores took longer than the TTL"
    );

    // Meanwhile another client keeps asking; a reply that shows some but not all expiries proves
    // Redis answered in the middle of the wave.
    let url = server.url();
    let limit = due + Duration::from_secs(5);
    let poller = std::thread::spawn(move || {
        let mut con = redis::Client::open(url.as_str())
            .unwrap()
            .get_connection()
            .unwrap();
        let (mut slowest, mut partial) = (Duration::ZERO, 0);
        while Instant::now() < limit {
            let asked = Instant::now();
            let expired = info_field(&mut con, "presence_expiries");
            slowest = slowest.max(asked.elapsed());
            if expired == CHANNELS as u64 * MEMBERS {
                break;
            }
            if expired > 0 {
                partial += 1;
            }
        }
        (slowest, partial)
    });

    // Per channel, how many of its members expired (more than one member would join microseconds
    // apart, and then a channel could publish them in several messages).
    let mut expired: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    let mut complete = 0;
    let mut first = None;
    while complete < CHANNELS {
        let items = match subscriber.recv_response().expect("an expiry message") {
            Value::Array(items) => items,
            other => panic!("unexpected frame {other:?}"),
        };
        first.get_or_insert_with(Instant::now);
        assert_eq!(bytes(&items[0]), b"smessage");
        let events = wire::decode(&bytes(&items[2])).unwrap();
        assert!(
            events.iter().all(|e| e.kind == EventKind::Expire),
            "{events:?}"
        );
        let count = expired.entry(bytes(&items[1])).or_default();
        *count += events.len() as u64;
        assert!(*count <= MEMBERS, "each member expires once");
        if *count == MEMBERS {
            complete += 1;
        }
    }
    let last = Instant::now();
    let (slowest, partial) = poller.join().unwrap();
    let first = first.unwrap();
    println!(
        "mass: {CHANNELS} channels, first {:?} and last {:?} after the deadline; \
         slowest INFO reply {slowest:?}, {partial} replies in mid-wave",
        first.saturating_duration_since(due),
        last.saturating_duration_since(due)
    );
    assert!(
        last.saturating_duration_since(due) <= BOUND * 2,
        "a wave of {CHANNELS} channels takes a moment, not more"
    );
    assert!(partial > 0, "Redis answered other clients during the wave");
    assert!(
        slowest < ms(500),
        "no reply waited long for the wave: {slowest:?}"
    );
    let keys: i64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(keys, 0, "every emptied channel was deleted");
}
