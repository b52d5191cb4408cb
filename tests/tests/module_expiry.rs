//! The module publishes expiries by itself: a channel nobody sends a command to still tells its
//! listeners, within about a second of the deadline, that its members expired; replicas and the AOF
//! follow the master, and the key's own Redis expiry is only a backstop after the last deadline.
//!
//! Delays are measured from the test's clock before the join that set a deadline, so they are upper
//! bounds of the module's own delay. Each one is printed (`cargo test --test module_expiry --
//! --nocapture`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use presence_roster::{wire, Event, EventKind};
use presence_tests::commands::{count, join, roster, roster_of, touch};
use presence_tests::reply::bytes;
use presence_tests::{unique_channel, wait_until, Cluster, Listener, RedisServer, ServerOptions};
use redis::Value;

/// The README's promise is "within about a second" of the deadline; half a second more is room for a
/// loaded test machine, and still far from "whenever somebody happens to write".
const BOUND: Duration = Duration::from_millis(1500);
/// How much later than a channel's last deadline its key expires in Redis (README, "Liveness and
/// expiry").
const BACKSTOP_MS: i64 = 10_000;
/// How early an event may seem to come: the module's clock and this process's are the same clock,
/// read a few microseconds apart.
const CLOCK_SLACK: Duration = Duration::from_millis(5);

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Reads `listener` until `ids` have all expired, with no other event on the way; asserts that this
/// was neither before `due` nor more than [`BOUND`] after it, and returns the expire events.
fn expect_expiries(listener: &mut Listener, ids: &[&str], due: Instant, what: &str) -> Vec<Event> {
    let mut missing: BTreeSet<Vec<u8>> = ids.iter().map(|id| id.as_bytes().to_vec()).collect();
    let mut seen = Vec::new();
    while !missing.is_empty() {
        for event in listener.next_events() {
            assert_eq!(event.kind, EventKind::Expire, "{what}: {event:?}");
            assert!(
                missing.remove(&event.id[..]),
                "{what}: unexpected {event:?}"
            );
            seen.push(event);
        }
    }
    let arrived = Instant::now();
    assert!(
        arrived + CLOCK_SLACK >= due,
        "{what}: published {:?} before the deadline",
        due - arrived
    );
    let delay = arrived - due;
    println!("{what}: published {delay:?} after the deadline");
    assert!(
        delay <= BOUND,
        "{what}: published {delay:?} after the deadline"
    );
    seen
}

fn info_field(con: &mut redis::Connection, field: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg("presence").query(con).unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("{field} in {info}"))
        .trim()
        .parse()
        .unwrap()
}

fn exists(con: &mut redis::Connection, key: &str) -> bool {
    redis::cmd("EXISTS").arg(key).query(con).unwrap()
}

fn pexpiretime(con: &mut redis::Connection, key: &str) -> i64 {
    redis::cmd("PEXPIRETIME").arg(key).query(con).unwrap()
}

/// Everything a node says about a channel: roster and rev, counts, absolute key expiry.
type State = ((u64, BTreeMap<Vec<u8>, Vec<u8>>), (u64, u64, u64), i64);

fn state(con: &mut redis::Connection, ch: &str) -> State {
    (
        roster(con, ch).unwrap(),
        count(con, ch).unwrap(),
        pexpiretime(con, ch),
    )
}

fn start_replica(master: &RedisServer) -> RedisServer {
    let replica = RedisServer::start_with(ServerOptions {
        server_args: args(&["--replicaof", "127.0.0.1", &master.port().to_string()]),
        ..Default::default()
    });
    let mut con = replica.connect();
    wait_until("the replica to sync", Duration::from_secs(20), || {
        redis::cmd("INFO")
            .arg("replication")
            .query::<String>(&mut con)
            .unwrap()
            .contains("master_link_status:up")
    });
    replica
}

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
fn replica_and_aof_hold_exactly_what_the_timer_purged() {
    let mut master = RedisServer::start_with(ServerOptions {
        server_args: args(&["--appendonly", "yes", "--appendfsync", "always"]),
        ..Default::default()
    });
    let replica = start_replica(&master);
    let mut con = master.connect();
    let kept = unique_channel("repl-kept");
    let emptied = unique_channel("repl-emptied");
    // Copies of one roster have the very same deadlines, so one tick purges them all, and Redis wraps
    // what the tick replicates in MULTI/EXEC.
    let copies: Vec<String> = (0..5).map(|_| unique_channel("repl-copy")).collect();
    // In deadline order, so that reading one does not delay the next.
    let mut listeners: Vec<(String, Listener)> = std::iter::once(&kept)
        .chain(&copies)
        .chain([&emptied])
        .map(|ch| (ch.clone(), Listener::subscribe(&master.url(), ch)))
        .collect();

    let t0 = Instant::now();
    join(&mut con, &kept, "c1", "gone", "g", &["TTL", "300"]).unwrap();
    join(&mut con, &kept, "c2", "stays", "s", &["TTL", "60000"]).unwrap();
    join(&mut con, &emptied, "c3", "last", "", &["TTL", "500"]).unwrap();
    let payload: Vec<u8> = redis::cmd("DUMP").arg(&kept).query(&mut con).unwrap();
    for ch in &copies {
        redis::cmd("RESTORE")
            .arg(ch)
            .arg(0)
            .arg(&payload)
            .query::<()>(&mut con)
            .unwrap();
    }
    for (ch, listener) in &mut listeners {
        let (id, due) = if *ch == emptied {
            listener.take(1);
            ("last", ms(500))
        } else {
            if *ch == kept {
                listener.take(2);
            }
            ("gone", ms(300))
        };
        expect_expiries(listener, &[id], t0 + due, &format!("master {ch}"));
    }

    let acked: i64 = redis::cmd("WAIT").arg(1).arg(5000).query(&mut con).unwrap();
    assert_eq!(acked, 1, "the replica acknowledged the timer's writes");
    let mut replica_con = replica.connect();
    let mut on_master = Vec::new();
    for ch in std::iter::once(&kept).chain(&copies) {
        let state_on_master = state(&mut con, ch);
        assert_eq!(state_on_master.0 .1, roster_of(&[("stays", "s")]), "{ch}");
        assert_eq!(
            state(&mut replica_con, ch),
            state_on_master,
            "{ch}: roster, rev, counts and key expiry"
        );
        on_master.push((ch.clone(), state_on_master));
    }
    assert!(
        !exists(&mut con, &emptied),
        "the emptied channel is deleted"
    );
    assert!(
        !exists(&mut replica_con, &emptied),
        "and deleted on the replica too"
    );

    let aof: String = std::fs::read_dir(master.dir().join("appendonlydir"))
        .unwrap()
        .map(|entry| {
            String::from_utf8_lossy(&std::fs::read(entry.unwrap().path()).unwrap()).into_owned()
        })
        .collect();
    assert!(
        aof.contains("MULTI") && aof.matches("PRESENCE.APPLY").count() >= 9,
        "the tick that purged six channels is one transaction in the AOF:\n{aof}"
    );

    // The AOF holds the same: kill -9 and start again from it.
    master.restart(None);
    let mut con = master.connect();
    for (ch, state_on_master) in &on_master {
        assert_eq!(
            &state(&mut con, ch),
            state_on_master,
            "{ch} after an AOF restart; log:\n{}",
            master.log()
        );
    }
    assert!(!exists(&mut con, &emptied));
}

#[test]
fn the_index_forgets_channels_that_are_gone_on_masters_and_replicas() {
    let master = RedisServer::start();
    let replica = start_replica(&master);
    let mut con = master.connect();
    // Channels that come and go: each one filed in the index when created, on both nodes, then left.
    let t0 = Instant::now();
    for _ in 0..200 {
        let ch = unique_channel("came-and-went");
        join(&mut con, &ch, "c", "id", "", &["TTL", "2000"]).unwrap();
        presence_tests::commands::leave(&mut con, &ch, "c").unwrap();
    }
    let stays = unique_channel("stays");
    join(&mut con, &stays, "c", "id", "", &["TTL", "60000"]).unwrap();
    let acked: i64 = redis::cmd("WAIT").arg(1).arg(5000).query(&mut con).unwrap();
    assert_eq!(acked, 1);
    let mut replica_con = replica.connect();
    for (node, con) in [("master", &mut con), ("replica", &mut replica_con)] {
        assert_eq!(info_field(con, "presence_expiry_index"), 201, "{node}");
    }
    // When the entries of the deleted channels come due, each node drops them: a replica too, though
    // it never purges, or its index would grow with every channel ever created.
    for (node, con) in [("master", &mut con), ("replica", &mut replica_con)] {
        wait_until(
            &format!("the {node}'s index to keep only the live channel"),
            (t0 + ms(2000) + BOUND).saturating_duration_since(Instant::now()),
            || info_field(con, "presence_expiry_index") == 1,
        );
    }
}

#[test]
fn a_replica_never_purges_by_clock_and_purges_once_promoted() {
    let master = RedisServer::start();
    let replica = start_replica(&master);
    let mut con = master.connect();
    let ch = unique_channel("promoted");
    let t0 = Instant::now();
    join(&mut con, &ch, "c1", "x", "", &["TTL", "300"]).unwrap();
    join(&mut con, &ch, "c2", "keep", "", &["TTL", "60000"]).unwrap();
    let acked: i64 = redis::cmd("WAIT").arg(1).arg(5000).query(&mut con).unwrap();
    assert_eq!(acked, 1);
    let mut listener = Listener::subscribe(&replica.url(), &ch);
    let mut replica_con = replica.connect();
    let before = roster(&mut replica_con, &ch).unwrap();
    // The master is gone, so only the replica's own clock could purge now: give it the deadline and
    // the whole bound to do what it must not.
    drop(master);
    std::thread::sleep((t0 + ms(300) + BOUND).saturating_duration_since(Instant::now()));
    assert_eq!(
        roster(&mut replica_con, &ch).unwrap(),
        before,
        "a replica only applies what its master sends"
    );
    listener.assert_nothing_published(&mut replica_con, &ch);

    redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query::<()>(&mut replica_con)
        .unwrap();
    let promoted = Instant::now();
    let expired = expect_expiries(&mut listener, &["x"], promoted, "promoted replica");
    assert_eq!(expired[0].rev, before.0 + 1);
    assert_eq!(
        roster(&mut replica_con, &ch).unwrap().1,
        roster_of(&[("keep", "")])
    );
}

#[test]
fn a_roster_a_replica_got_by_full_sync_is_purged_once_it_is_promoted() {
    // No waiting for more replicas before the full sync starts.
    let master = RedisServer::start_with(ServerOptions {
        server_args: args(&["--repl-diskless-sync-delay", "0"]),
        ..Default::default()
    });
    let mut con = master.connect();
    let ch = unique_channel("full-sync");
    let t0 = Instant::now();
    join(&mut con, &ch, "c1", "x", "", &["TTL", "1500"]).unwrap();
    join(&mut con, &ch, "c2", "keep", "", &["TTL", "60000"]).unwrap();
    // The replica gets the roster only in the RDB of its full sync. Asked to load it into a temporary
    // database swapped in at the end, Redis 7.0 declines for a module that does not declare it can take
    // that (ours does not) and loads into the main one; should the module ever declare it, this test
    // covers the other path too.
    let replica = RedisServer::start_with(ServerOptions {
        server_args: args(&[
            "--repl-diskless-load",
            "swapdb",
            "--replicaof",
            "127.0.0.1",
            &master.port().to_string(),
        ]),
        ..Default::default()
    });
    let mut replica_con = replica.connect();
    wait_until("the replica to sync", Duration::from_secs(20), || {
        redis::cmd("INFO")
            .arg("replication")
            .query::<String>(&mut replica_con)
            .unwrap()
            .contains("master_link_status:up")
    });
    assert_eq!(roster(&mut replica_con, &ch).unwrap().1.len(), 2);
    let mut listener = Listener::subscribe(&replica.url(), &ch);
    drop(master);
    redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query::<()>(&mut replica_con)
        .unwrap();
    let due = (t0 + ms(1500)).max(Instant::now());
    expect_expiries(&mut listener, &["x"], due, "promoted after a full sync");
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

#[test]
fn in_a_cluster_each_master_purges_the_channels_of_its_own_slots() {
    let cluster = Cluster::start();
    // Two channels owned by each master: a node that does not own a channel's slot answers MOVED.
    let mut owned: Vec<(usize, String)> = Vec::new();
    for node in 0..cluster.nodes.len() {
        let mut con = cluster.nodes[node].connect();
        for n in 0.. {
            if owned.iter().filter(|(owner, _)| *owner == node).count() == 2 {
                break;
            }
            assert!(n < 1000, "no channel found for node {node}");
            let ch = unique_channel("cluster");
            if count(&mut con, &ch).is_ok() {
                owned.push((node, ch));
            }
        }
    }
    let mut listeners: Vec<Listener> = owned
        .iter()
        .map(|(node, ch)| Listener::subscribe(&cluster.nodes[*node].url(), ch))
        .collect();
    let t0 = Instant::now();
    for (node, ch) in &owned {
        let mut con = cluster.nodes[*node].connect();
        join(&mut con, ch, "c", "member", "", &["TTL", "500"]).unwrap();
    }
    for ((node, ch), listener) in owned.iter().zip(&mut listeners) {
        listener.take(1);
        expect_expiries(
            listener,
            &["member"],
            t0 + ms(500),
            &format!("node {node}: {ch}"),
        );
        assert!(!exists(&mut cluster.nodes[*node].connect(), ch));
    }
}
