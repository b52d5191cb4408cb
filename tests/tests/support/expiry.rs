//! Helpers shared by the expiry tests (`module_expiry`, `module_expiry_replicas`); each uses part.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use presence_roster::{Event, EventKind};
use presence_tests::commands::{count, roster};
use presence_tests::{wait_until, Listener, RedisServer, ServerOptions};

/// The README's promise: within a second of the deadline. The timer is armed for the earliest deadline,
/// so what the tests measure is a few milliseconds (printed), with every core busy too; a second is
/// far from "whenever somebody happens to write".
pub const BOUND: Duration = Duration::from_millis(1000);

/// How much later than a channel's last deadline its key expires in Redis (README, "Liveness and
/// expiry").
pub const BACKSTOP_MS: i64 = 10_000;

/// How early an event may seem to come: the module's clock and this process's are the same clock,
/// read a few microseconds apart.
pub const CLOCK_SLACK: Duration = Duration::from_millis(5);

/// Owned arguments for [`ServerOptions`].
pub fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Milliseconds since the Unix epoch, as `PEXPIRETIME` counts them.
pub fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `n` milliseconds.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Reads `listener` until `ids` have all expired, with no other event on the way; asserts that this
/// was neither before `due` nor more than [`BOUND`] after it, and returns the expire events.
pub fn expect_expiries(
    listener: &mut Listener,
    ids: &[&str],
    due: Instant,
    what: &str,
) -> Vec<Event> {
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

/// One numeric field of `INFO presence`.
pub fn info_field(con: &mut redis::Connection, field: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg("presence").query(con).unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("{field} in {info}"))
        .trim()
        .parse()
        .unwrap()
}

/// `EXISTS key`.
pub fn exists(con: &mut redis::Connection, key: &str) -> bool {
    redis::cmd("EXISTS").arg(key).query(con).unwrap()
}

/// `PEXPIRETIME key`: the key's absolute expiry in milliseconds.
pub fn pexpiretime(con: &mut redis::Connection, key: &str) -> i64 {
    redis::cmd("PEXPIRETIME").arg(key).query(con).unwrap()
}

/// Everything a node says about a channel: roster and rev, counts, absolute key expiry.
pub type State = ((u64, BTreeMap<Vec<u8>, Vec<u8>>), (u64, u64, u64), i64);

/// [`State`] of channel `ch` on the node behind `con`.
pub fn state(con: &mut redis::Connection, ch: &str) -> State {
    (
        roster(con, ch).unwrap(),
        count(con, ch).unwrap(),
        pexpiretime(con, ch),
    )
}

/// A replica of `master`, once its link is up.
pub fn start_replica(master: &RedisServer) -> RedisServer {
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
