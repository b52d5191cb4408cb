//! A panic in any data-type callback is caught, logged and counted, the callback returns the safe value
//! Redis expects, and Redis lives on. The panics are injected with `PRESENCE.DEBUG-FAIL <callback>`,
//! which debug builds (the ones the tests load) register.

use std::time::Duration;

use presence_tests::commands::{join, roster};
use presence_tests::{unique_channel, wait_until, RedisServer, ServerOptions};
use redis::Value;

fn arm(con: &mut redis::Connection, callback: &str) {
    redis::cmd("PRESENCE.DEBUG-FAIL")
        .arg(callback)
        .query::<()>(con)
        .unwrap_or_else(|e| panic!("arm {callback}: {e}"));
}

fn panics(con: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("presence").query(con).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("presence_panics:"))
        .expect("presence_panics in INFO")
        .trim()
        .parse()
        .unwrap()
}

/// A channel with two members, and its `DUMP`.
fn channel(con: &mut redis::Connection, name: &str) -> (String, Vec<u8>) {
    let ch = unique_channel(name);
    join(con, &ch, "c1", "alice", "a", &["TTL", "600000"]).unwrap();
    join(con, &ch, "c2", "bob", "b", &["TTL", "600000"]).unwrap();
    let dump = redis::cmd("DUMP").arg(&ch).query(con).unwrap();
    (ch, dump)
}

fn alive(server: &RedisServer, con: &mut redis::Connection, after: &str) {
    let pong: Result<String, _> = redis::cmd("PING").query(con);
    assert_eq!(
        pong.as_deref().ok(),
        Some("PONG"),
        "Redis died after a panic in {after}; log:\n{}",
        server
            .log()
            .lines()
            .filter(|l| l.contains("panic") || l.contains("signal"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn panics_in_callbacks_run_in_the_server_are_caught() {
    let server = RedisServer::start();
    let mut con = server.connect();
    let (ch, dump) = channel(&mut con, "guard");
    let before = roster(&mut con, &ch).unwrap();

    // mem_usage: MEMORY USAGE still answers (the fallback is 0 bytes for the value).
    arm(&mut con, "mem_usage");
    let usage: Result<Value, _> = redis::cmd("MEMORY").arg("USAGE").arg(&ch).query(&mut con);
    alive(&server, &mut con, "mem_usage");
    assert!(usage.is_ok(), "{usage:?}");
    assert_eq!(panics(&mut con), 1);

    // copy: COPY fails with Redis' own error, the source is untouched.
    arm(&mut con, "copy");
    let copied: Result<Value, _> = redis::cmd("COPY")
        .arg(&ch)
        .arg(format!("{ch}/copy"))
        .query(&mut con);
    alive(&server, &mut con, "copy");
    assert!(copied.is_err(), "a failed copy is an error: {copied:?}");
    assert_eq!(roster(&mut con, &ch).unwrap(), before);
    assert_eq!(panics(&mut con), 2);

    // rdb_load: RESTORE of a good payload is refused, and leaves no key.
    arm(&mut con, "rdb_load");
    let restored: Result<(), _> = redis::cmd("RESTORE")
        .arg(format!("{ch}/restored"))
        .arg(0)
        .arg(&dump)
        .query(&mut con);
    alive(&server, &mut con, "rdb_load");
    assert!(restored.is_err(), "{restored:?}");
    assert_eq!(panics(&mut con), 3);

    // rdb_save: DUMP still writes a loadable value (an empty roster: its members are lost, and join
    // again when TOUCH reports them unknown), never a broken one that would make a whole RDB unloadable.
    arm(&mut con, "rdb_save");
    let saved: Vec<u8> = redis::cmd("DUMP").arg(&ch).query(&mut con).unwrap();
    alive(&server, &mut con, "rdb_save");
    redis::cmd("RESTORE")
        .arg(format!("{ch}/from-failed-save"))
        .arg(0)
        .arg(saved)
        .query::<()>(&mut con)
        .expect("the fallback value loads");
    let (rev, members) = roster(&mut con, &format!("{ch}/from-failed-save")).unwrap();
    assert!(members.is_empty());
    assert!(rev > 0, "the fallback roster starts from the clock, not 0");
    assert_eq!(panics(&mut con), 4);

    // free: DEL still deletes (the value leaks, which is the safe side).
    arm(&mut con, "free");
    let deleted: i64 = redis::cmd("DEL").arg(&ch).query(&mut con).unwrap();
    alive(&server, &mut con, "free");
    assert_eq!(deleted, 1);
    assert_eq!(panics(&mut con), 5);

    // And the module still serves.
    assert!(join(&mut con, &ch, "c3", "carol", "", &[]).unwrap().joined);
    let log = server.log();
    for callback in ["MemUsage", "Copy", "RdbLoad", "RdbSave", "Free"] {
        assert!(
            log.contains(&format!("injected panic in {callback}")),
            "the {callback} panic is logged:\n{log}"
        );
    }
}

#[test]
fn a_panic_in_aof_rewrite_in_the_forked_child_is_caught() {
    let server = RedisServer::start_with(ServerOptions {
        server_args: ["--appendonly", "yes", "--aof-use-rdb-preamble", "no"]
            .map(String::from)
            .to_vec(),
        ..Default::default()
    });
    let mut con = server.connect();
    let (ch, _) = channel(&mut con, "guard-aof");
    // Armed in the parent, inherited by the child that Redis forks for the rewrite.
    arm(&mut con, "aof_rewrite");
    redis::cmd("BGREWRITEAOF").query::<()>(&mut con).unwrap();
    wait_until("the AOF rewrite to finish", Duration::from_secs(20), || {
        let info: String = redis::cmd("INFO")
            .arg("persistence")
            .query(&mut con)
            .unwrap();
        info.contains("aof_rewrite_in_progress:0") && info.contains("aof_rewrite_scheduled:0")
    });
    alive(&server, &mut con, "aof_rewrite");
    let info: String = redis::cmd("INFO")
        .arg("persistence")
        .query(&mut con)
        .unwrap();
    assert!(
        info.contains("aof_last_bgrewrite_status:ok"),
        "the child survived its panic and finished the rewrite: {info}\n{}",
        server.log()
    );
    assert!(server.log().contains("injected panic in AofRewrite"));
    assert!(join(&mut con, &ch, "c3", "carol", "", &[]).is_ok());
}
