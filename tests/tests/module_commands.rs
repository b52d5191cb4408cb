//! Every presence command and every error, against a real `redis-server` with the module loaded.

use std::time::Duration;

use presence_tests::commands::{count, join, leave, roster, roster_of, touch};
use presence_tests::reply::{fields, list};
use presence_tests::{unique_channel, wait_until, RedisServer, ServerOptions};
use redis::Value;

fn error_of<T: std::fmt::Debug>(result: redis::RedisResult<T>) -> String {
    let error = result.expect_err("expected an error reply");
    format!(
        "{} {}",
        error.code().unwrap_or("?"),
        error.detail().unwrap_or("")
    )
}

#[test]
fn join_reports_new_members_data_changes_and_the_roster() {
    let server = RedisServer::start();
    let mut con = server.connect();
    let ch = unique_channel("join");

    let first = join(&mut con, &ch, "c1", "alice", r#"{"n":1}"#, &["WITHROSTER"]).unwrap();
    assert!(first.joined && !first.changed);
    assert_eq!(first.roster, Some(roster_of(&[("alice", r#"{"n":1}"#)])));

    let second = join(&mut con, &ch, "c2", "bob", "b", &[]).unwrap();
    assert!(second.joined);
    assert_eq!(second.rev, first.rev + 1, "one event, one revision");
    assert_eq!(second.roster, None, "no roster without WITHROSTER");

    // Same id on another connection: one member, nothing new to say.
    let tab = join(&mut con, &ch, "c3", "alice", r#"{"n":1}"#, &[]).unwrap();
    assert!(!tab.joined && !tab.changed);
    assert_eq!(tab.rev, second.rev, "no event, no new revision");

    // Same id, new data: an update, and the newest data wins.
    let update = join(&mut con, &ch, "c3", "alice", r#"{"n":2}"#, &["withroster"]).unwrap();
    assert!(!update.joined && update.changed);
    assert_eq!(update.rev, second.rev + 1);
    assert_eq!(
        update.roster,
        Some(roster_of(&[("alice", r#"{"n":2}"#), ("bob", "b")]))
    );
    assert_eq!(count(&mut con, &ch).unwrap(), (update.rev, 2, 3));
    assert_eq!(
        roster(&mut con, &ch).unwrap(),
        (
            update.rev,
            roster_of(&[("alice", r#"{"n":2}"#), ("bob", "b")])
        )
    );
}

#[test]
fn a_member_leaves_with_its_last_connection_and_the_key_goes_with_the_last_member() {
    let server = RedisServer::start();
    let mut con = server.connect();
    let ch = unique_channel("leave");
    join(&mut con, &ch, "tab1", "ann", "", &[]).unwrap();
    let joined = join(&mut con, &ch, "tab2", "ann", "", &[]).unwrap();

    let first = leave(&mut con, &ch, "tab1").unwrap();
    assert!(!first.left);
    assert_eq!(first.id.as_deref(), Some(&b"ann"[..]));
    assert_eq!(first.rev, joined.rev);

    let last = leave(&mut con, &ch, "tab2").unwrap();
    assert!(last.left);
    assert_eq!(last.rev, joined.rev + 1);
    let exists: bool = redis::cmd("EXISTS").arg(&ch).query(&mut con).unwrap();
    assert!(!exists, "an empty channel leaves no key behind");

    let again = leave(&mut con, &ch, "tab2").unwrap();
    assert_eq!(
        (again.left, again.id, again.rev),
        (false, None, 0),
        "leaving twice is a no-op"
    );
    assert_eq!(roster(&mut con, &ch).unwrap(), (0, roster_of(&[])));
}

#[test]
fn rev_never_goes_backwards_when_a_channel_empties_and_fills_again() {
    let server = RedisServer::start();
    let mut con = server.connect();
    let ch = unique_channel("rev");
    let mut last = 0;
    for round in 0..50 {
        let joined = join(&mut con, &ch, "c", format!("id{round}"), "", &[]).unwrap();
        assert!(
            joined.rev > last,
            "round {round}: {} after {last}",
            joined.rev
        );
        let left = leave(&mut con, &ch, "c").unwrap();
        assert!(left.rev > joined.rev);
        last = left.rev;
    }
}

#[test]
fn a_client_moving_to_another_id_leaves_the_old_one() {
    let server = RedisServer::start();
    let mut con = server.connect();
    let ch = unique_channel("move");
    join(&mut con, &ch, "c", "old", "", &[]).unwrap();
    let moved = join(&mut con, &ch, "c", "new", "", &["WITHROSTER"]).unwrap();
    assert!(moved.joined);
    assert_eq!(moved.left, vec![b"old".to_vec()]);
    assert_eq!(moved.roster, Some(roster_of(&[("new", "")])));
}

#[test]
fn expired_connections_are_purged_reported_and_the_key_expires_by_itself() {
    let server = RedisServer::start_with(ServerOptions {
        server_args: vec!["--enable-debug-command".into(), "yes".into()],
        ..Default::default()
    });
    let mut con = server.connect();
    let ch = unique_channel("expiry");
    // The first command after a deadline purges the connection and reports it. DEBUG SLEEP inside one
    // MULTI lets the deadline pass with no chance for the module's expiry timer to get there first.
    let (_, _, _, touched): (Value, Value, Value, Value) = redis::pipe()
        .atomic()
        .cmd("PRESENCE.JOIN")
        .arg(&ch)
        .arg(&["short", "brief", "", "TTL", "1"])
        .cmd("PRESENCE.JOIN")
        .arg(&ch)
        .arg(&["long", "stays", "", "TTL", "60000"])
        .cmd("DEBUG")
        .arg(&["SLEEP", "0.01"])
        .cmd("PRESENCE.TOUCH")
        .arg(&ch)
        .arg("long")
        .query(&mut con)
        .unwrap();
    assert_eq!(list(&fields(touched)["expired"]), vec![b"brief".to_vec()]);
    assert_eq!(
        roster(&mut con, &ch).unwrap().1,
        roster_of(&[("stays", "")])
    );

    // TOUCH says which clients it does not know, so the caller can join them again.
    let touched = touch(&mut con, &ch, &["long", "short", "TTL", "40"]).unwrap();
    assert_eq!(touched.unknown, vec![b"short".to_vec()]);

    // Nobody touches the channel any more: the module's timer purges it at the deadline and deletes
    // the key. Redis' own expiry of the key is only a backstop, 10 s after the last deadline.
    let pttl: i64 = redis::cmd("PTTL").arg(&ch).query(&mut con).unwrap();
    assert!(
        pttl > 10_000 && pttl <= 10_041,
        "key expiry is the backstop after the last deadline (rounded up to the ms), got {pttl}"
    );
    wait_until(
        "the abandoned channel to vanish",
        Duration::from_secs(5),
        || {
            !redis::cmd("EXISTS")
                .arg(&ch)
                .query::<bool>(&mut con)
                .unwrap()
        },
    );
}

#[test]
fn default_ttl_comes_from_the_module_config() {
    let server = RedisServer::start_with(ServerOptions {
        module_args: vec!["default-ttl".into(), "20".into()],
        ..Default::default()
    });
    let mut con = server.connect();
    let ch = unique_channel("default-ttl");
    let ttl: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("presence.default-ttl")
        .query(&mut con)
        .unwrap();
    assert_eq!(ttl, vec!["presence.default-ttl", "20"]);
    join(&mut con, &ch, "c", "id", "", &[]).unwrap();
    // The 20 ms deadline, plus the 10 s backstop after which Redis itself would drop the key.
    let pttl: i64 = redis::cmd("PTTL").arg(&ch).query(&mut con).unwrap();
    assert!((10_001..=10_021).contains(&pttl), "pttl {pttl}");
}

#[test]
fn odd_ids_and_data_round_trip_without_collisions() {
    let server = RedisServer::start();
    let mut con = server.connect();
    let ch = unique_channel("odd");
    let cases: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b"a:b".to_vec(), b"line1\r\nline2".to_vec()),
        (b"a".to_vec(), b":b".to_vec()),
        (b"{a}".to_vec(), b"\0\xff\xfe".to_vec()),
        (b"a b".to_vec(), "\u{1F600} caf\u{e9}".as_bytes().to_vec()),
        (
            "\u{1F600}".as_bytes().to_vec(),
            br#"{"nested":{"list":[1,"two",null]}}"#.to_vec(),
        ),
        (b"".to_vec(), b"".to_vec()),
    ];
    for (n, (id, data)) in cases.iter().enumerate() {
        let joined = join(&mut con, &ch, format!("client{n}"), id, data, &[]).unwrap();
        assert!(joined.joined, "case {n} must be a new member");
    }
    let (_, members) = roster(&mut con, &ch).unwrap();
    assert_eq!(members, cases.iter().cloned().collect());
    // RESP3 returns the same bytes.
    let mut con3 = server.connect_resp3();
    assert_eq!(roster(&mut con3, &ch).unwrap().1, members);
}

#[test]
fn resp3_replies_are_maps_with_booleans() {
    let server = RedisServer::start();
    let mut con = server.connect_resp3();
    let ch = unique_channel("resp3");
    let value: redis::Value = redis::cmd("PRESENCE.JOIN")
        .arg(&ch)
        .arg("c")
        .arg("id")
        .arg("d")
        .query(&mut con)
        .unwrap();
    let redis::Value::Map(pairs) = value else {
        panic!("RESP3 reply must be a map: {value:?}")
    };
    assert!(pairs.iter().any(
        |(k, v)| matches!(k, redis::Value::BulkString(b) if b == b"joined")
            && *v == redis::Value::Boolean(true)
    ));
}

#[test]
fn argument_errors_are_clear_and_change_nothing() {
    let server = RedisServer::start_with(ServerOptions {
        module_args: vec![
            "max-data-bytes".into(),
            "10".into(),
            "max-members".into(),
            "2".into(),
        ],
        ..Default::default()
    });
    let mut con = server.connect();
    let ch = unique_channel("errors");
    join(&mut con, &ch, "c1", "a", "", &[]).unwrap();
    let before = roster(&mut con, &ch).unwrap();

    let q = |con: &mut redis::Connection, args: &[&str]| -> String {
        error_of(
            redis::cmd(args[0])
                .arg(&args[1..])
                .query::<redis::Value>(con),
        )
    };
    assert!(q(&mut con, &["PRESENCE.JOIN", &ch, "c2", "b"]).contains("wrong number of arguments"));
    assert!(q(&mut con, &["PRESENCE.LEAVE", &ch]).contains("wrong number of arguments"));
    assert!(q(&mut con, &["PRESENCE.TOUCH", &ch]).contains("wrong number of arguments"));
    assert!(q(&mut con, &["PRESENCE.ROSTER"]).contains("wrong number of arguments"));
    assert!(q(&mut con, &["PRESENCE.COUNT", &ch, "x"]).contains("wrong number of arguments"));
    assert!(
        q(&mut con, &["PRESENCE.JOIN", &ch, "c2", "b", "", "TTL", "0"])
            .starts_with("ERR TTL must be")
    );
    assert!(q(
        &mut con,
        &["PRESENCE.JOIN", &ch, "c2", "b", "", "TTL", "soon"]
    )
    .starts_with("ERR TTL must be"));
    assert!(q(&mut con, &["PRESENCE.TOUCH", &ch, "c1", "TTL", "-1"]).starts_with("ERR TTL must be"));
    assert_eq!(
        q(&mut con, &["PRESENCE.JOIN", &ch, "c2", "b", "", "NX"]),
        "SYNTAX unknown option 'NX'"
    );
    assert_eq!(
        q(&mut con, &["PRESENCE.JOIN", &ch, "c2", "b", "12345678901"]),
        "LIMIT data is 11 bytes, over presence.max-data-bytes (10)"
    );
    join(&mut con, &ch, "c2", "b", "", &[]).unwrap();
    assert!(q(&mut con, &["PRESENCE.JOIN", &ch, "c3", "c", ""])
        .starts_with("LIMIT the channel has 2 members"));
    // A full channel still accepts another connection of an existing member.
    join(&mut con, &ch, "c3", "a", "", &[]).unwrap();
    assert!(q(&mut con, &["PRESENCE.APPLY", &ch, "1", "L", "c1"]).starts_with("DENIED"));

    redis::cmd("SET")
        .arg("plain")
        .arg("v")
        .query::<()>(&mut con)
        .unwrap();
    for command in [
        "PRESENCE.JOIN plain c i d",
        "PRESENCE.LEAVE plain c",
        "PRESENCE.TOUCH plain c",
        "PRESENCE.ROSTER plain",
        "PRESENCE.COUNT plain",
    ] {
        let args: Vec<&str> = command.split(' ').collect();
        assert!(q(&mut con, &args).starts_with("WRONGTYPE"), "{command}");
    }
    let value: String = redis::cmd("GET").arg("plain").query(&mut con).unwrap();
    assert_eq!(value, "v", "a wrong-type key is left alone");

    let (rev, members) = roster(&mut con, &ch).unwrap();
    assert_eq!(members, roster_of(&[("a", ""), ("b", "")]));
    assert_eq!(
        rev,
        before.0 + 1,
        "only the successful join of b changed the roster"
    );

    let info: String = redis::cmd("INFO").arg("presence").query(&mut con).unwrap();
    let errors: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("presence_errors:"))
        .expect("presence_errors in INFO")
        .trim()
        .parse()
        .unwrap();
    // The five arity errors above are Redis' own now (the commands register their arity), so they
    // never reach the module's count.
    assert!(errors >= 12, "errors counted in INFO presence: {info}");
    assert!(info.contains("presence_panics:0"));
}

#[test]
fn configs_can_be_changed_at_runtime() {
    let server = RedisServer::start();
    let mut con = server.connect();
    let ch = unique_channel("config");
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("presence.max-data-bytes")
        .arg("3")
        .query::<()>(&mut con)
        .unwrap();
    assert!(join(&mut con, &ch, "c", "i", "four", &[]).is_err());
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("presence.max-data-bytes")
        .arg("4")
        .query::<()>(&mut con)
        .unwrap();
    assert!(join(&mut con, &ch, "c", "i", "four", &[]).unwrap().joined);
}

/// Ids are bounded like data: `presence.max-id-bytes` (default 256), settable at load and at runtime;
/// a longer id is refused with `LIMIT` and changes nothing.
#[test]
fn ids_over_max_id_bytes_are_refused() {
    let server = RedisServer::start();
    let mut con = server.connect();
    let ch = unique_channel("max-id");
    let max: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("presence.max-id-bytes")
        .query(&mut con)
        .unwrap();
    assert_eq!(max, ["presence.max-id-bytes", "256"]);
    assert!(
        join(&mut con, &ch, "c1", "i".repeat(256), "", &[])
            .unwrap()
            .joined
    );
    for len in [257, 100 * 1024] {
        let error = error_of(
            redis::cmd("PRESENCE.JOIN")
                .arg(&ch)
                .arg("c2")
                .arg("i".repeat(len))
                .arg("")
                .query::<redis::Value>(&mut con),
        );
        assert_eq!(
            error,
            format!("LIMIT id is {len} bytes, over presence.max-id-bytes (256)")
        );
    }
    assert_eq!(roster(&mut con, &ch).unwrap().1.len(), 1, "nothing stored");
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("presence.max-id-bytes")
        .arg("3")
        .query::<()>(&mut con)
        .unwrap();
    assert!(join(&mut con, &ch, "c3", "four", "", &[]).is_err());
    assert!(join(&mut con, &ch, "c3", "thr", "", &[]).unwrap().joined);

    let loaded = RedisServer::start_with(ServerOptions {
        module_args: vec!["max-id-bytes".into(), "2".into()],
        ..Default::default()
    });
    let mut con = loaded.connect();
    assert!(join(&mut con, &ch, "c", "abc", "", &[]).is_err());
    assert!(join(&mut con, &ch, "c", "ab", "", &[]).unwrap().joined);
}

#[test]
fn info_counts_joins_leaves_and_expiries() {
    let server = RedisServer::start();
    let mut con = server.connect();
    let ch = unique_channel("info");
    join(&mut con, &ch, "c1", "a", "", &[]).unwrap();
    join(&mut con, &ch, "c2", "b", "", &["TTL", "1"]).unwrap();
    // a keeps the key alive, so b is purged on its own (by the module's expiry timer, or by a command
    // if one comes first), and counted.
    wait_until("b to expire", Duration::from_secs(5), || {
        !roster(&mut con, &ch).unwrap().1.contains_key(&b"b"[..])
    });
    join(&mut con, &ch, "c1", "a", "new", &[]).unwrap();
    leave(&mut con, &ch, "c1").unwrap();
    let info: String = redis::cmd("INFO").arg("presence").query(&mut con).unwrap();
    for line in [
        "presence_joins:2",
        "presence_updates:1",
        "presence_leaves:1",
        "presence_expiries:1",
    ] {
        assert!(info.contains(line), "{line} in {info}");
    }
}

#[test]
fn dump_restore_and_copy_carry_the_whole_roster() {
    let server = RedisServer::start();
    let mut con = server.connect();
    let ch = unique_channel("dump");
    join(&mut con, &ch, "c1", "a", "x\r\ny", &[]).unwrap();
    join(&mut con, &ch, "c2", "a", "x\r\ny", &[]).unwrap();
    join(&mut con, &ch, "c3", "b", "", &[]).unwrap();
    let original = roster(&mut con, &ch).unwrap();

    let payload: Vec<u8> = redis::cmd("DUMP").arg(&ch).query(&mut con).unwrap();
    let restored = format!("{ch}/restored");
    redis::cmd("RESTORE")
        .arg(&restored)
        .arg(0)
        .arg(payload)
        .query::<()>(&mut con)
        .unwrap();
    assert_eq!(roster(&mut con, &restored).unwrap(), original);
    assert_eq!(count(&mut con, &restored).unwrap(), (original.0, 2, 3));

    let copied = format!("{ch}/copied");
    let done: bool = redis::cmd("COPY")
        .arg(&ch)
        .arg(&copied)
        .query(&mut con)
        .unwrap();
    assert!(done);
    leave(&mut con, &ch, "c3").unwrap();
    assert_eq!(
        roster(&mut con, &copied).unwrap(),
        original,
        "a copy is independent of its source"
    );
}

#[test]
fn a_panic_is_an_error_reply_and_redis_lives_on() {
    let server = RedisServer::start();
    let mut con = server.connect();
    // Registered in debug builds, which are what the tests load.
    let error = redis::cmd("PRESENCE.DEBUG-PANIC")
        .query::<redis::Value>(&mut con)
        .unwrap_err();
    assert_eq!(error.code(), Some("ERR"));
    assert!(
        error
            .to_string()
            .contains("internal error in the presence module"),
        "{error}"
    );
    let ch = unique_channel("after-panic");
    assert!(
        join(&mut con, &ch, "c", "id", "", &[]).unwrap().joined,
        "Redis still serves"
    );
    let info: String = redis::cmd("INFO").arg("presence").query(&mut con).unwrap();
    assert!(info.contains("presence_panics:1"), "{info}");
    assert!(
        server.log().contains("command panicked"),
        "the panic is logged"
    );
}

#[test]
fn maxmembers_is_checked_in_the_joins_atomic_step() {
    let server = RedisServer::start();
    let ch = unique_channel("maxmembers");
    let mut con = server.connect();
    let first = join(&mut con, &ch, "c0", "m0", "", &["MAXMEMBERS", "5"]).unwrap();
    // 40 joins of distinct ids from 8 connections at once, each allowing 5 members: exactly 4 more
    // get in, whatever the interleaving, and every other one is a LIMIT error that stored nothing.
    let outcomes: Vec<Result<(), String>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..8)
            .map(|w| {
                let server = &server;
                let ch = &ch;
                scope.spawn(move || {
                    let mut con = server.connect();
                    (0..5)
                        .map(|i| {
                            let id = format!("m{w}-{i}");
                            let client = format!("c{w}-{i}");
                            join(&mut con, ch, &client, &id, "", &["MAXMEMBERS", "5"])
                                .map(drop)
                                .map_err(|e| format!("{e}"))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let admitted = outcomes.iter().filter(|o| o.is_ok()).count();
    assert_eq!(admitted, 4, "{outcomes:?}");
    for refused in outcomes.iter().filter_map(|o| o.as_ref().err()) {
        assert!(
            refused.contains("the channel has 5 members, the most MAXMEMBERS allows (5)"),
            "{refused}"
        );
    }
    let (rev, members, connections) = count(&mut con, &ch).unwrap();
    assert_eq!((members, connections), (5, 5));
    assert_eq!(
        rev,
        first.rev + 4,
        "only the admitted joins changed the roster"
    );
    // A full channel takes another connection of a member, and data changes of members.
    join(&mut con, &ch, "c-extra", "m0", "new", &["MAXMEMBERS", "5"]).unwrap();
    assert_eq!(count(&mut con, &ch).unwrap().1, 5);
    // MAXMEMBERS never lifts presence.max-members, and bad values are refused.
    let bad = error_of(join(&mut con, &ch, "c9", "x", "", &["MAXMEMBERS", "0"]));
    assert_eq!(bad, "ERR MAXMEMBERS must be a whole number of at least 1");
    let bad = error_of(join(&mut con, &ch, "c9", "x", "", &["MAXMEMBERS", "many"]));
    assert_eq!(bad, "ERR MAXMEMBERS must be a whole number of at least 1");
}

/// Every string and integer in a reply, depth first, as text.
fn words(value: &Value) -> Vec<String> {
    match value {
        Value::BulkString(b) => vec![String::from_utf8_lossy(b).into_owned()],
        Value::SimpleString(s) => vec![s.clone()],
        Value::Int(n) => vec![n.to_string()],
        Value::Array(items) | Value::Set(items) => items.iter().flat_map(words).collect(),
        Value::Map(pairs) => pairs
            .iter()
            .flat_map(|(k, v)| words(k).into_iter().chain(words(v)))
            .collect(),
        _ => Vec::new(),
    }
}

#[test]
fn command_info_and_docs_describe_every_command() {
    let server = RedisServer::start();
    let mut con = server.connect();
    for (command, arity, key_flags) in [
        ("PRESENCE.JOIN", -5, ["RW", "update"]),
        ("PRESENCE.LEAVE", -3, ["RW", "delete"]),
        ("PRESENCE.TOUCH", -3, ["RW", "update"]),
        ("PRESENCE.ROSTER", 2, ["RO", "access"]),
        ("PRESENCE.COUNT", 2, ["RO", "access"]),
        ("PRESENCE.APPLY", -4, ["RW", "update"]),
    ] {
        let info: Value = redis::cmd("COMMAND")
            .arg("INFO")
            .arg(command)
            .query(&mut con)
            .unwrap();
        let info = words(&info);
        assert_eq!(info.get(1), Some(&arity.to_string()), "{command}: {info:?}");
        for flag in key_flags {
            assert!(info.contains(&flag.to_string()), "{command}: {info:?}");
        }
        let docs: Value = redis::cmd("COMMAND")
            .arg("DOCS")
            .arg(command)
            .query(&mut con)
            .unwrap();
        let docs = words(&docs);
        let summary = docs
            .iter()
            .position(|w| w == "summary")
            .and_then(|i| docs.get(i + 1));
        assert!(summary.is_some_and(|s| s.len() > 20), "{command}: {docs:?}");
        assert!(
            docs.contains(&"presence".to_string()),
            "{command}: {docs:?}"
        );
    }
    // The key spec finds the channel key, as cluster clients do.
    let keys: Vec<String> = redis::cmd("COMMAND")
        .arg("GETKEYS")
        .arg("PRESENCE.JOIN")
        .arg("presence:/presence/r")
        .arg("c")
        .arg("i")
        .arg("d")
        .query(&mut con)
        .unwrap();
    assert_eq!(keys, ["presence:/presence/r"]);
    // Redis checks the arity before the module runs.
    let short = error_of(
        redis::cmd("PRESENCE.JOIN")
            .arg("k")
            .arg("c")
            .query::<Value>(&mut con),
    );
    assert!(
        short.contains("wrong number of arguments for 'PRESENCE.JOIN'"),
        "{short}"
    );
}
