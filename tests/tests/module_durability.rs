//! Rosters survive restarts (AOF, AOF rewrite, RDB) and replicas hold exactly the master's rosters,
//! expiries included, because the master replicates the ops it applied rather than commands that read
//! the clock.

use std::time::Duration;

use presence_tests::commands::{count, join, leave, roster, touch};
use presence_tests::{unique_channel, wait_until, RedisServer, ServerOptions};

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Joins, an update, a leave, a moved client and an expiry on `ch`.
fn churn(con: &mut redis::Connection, ch: &str) {
    join(con, ch, "c1", "alice", "a1", &[]).unwrap();
    join(con, ch, "c2", "alice", "a2", &[]).unwrap();
    join(con, ch, "c3", "bob\r\n", "\0b", &[]).unwrap();
    join(con, ch, "c4", "carol", "", &["TTL", "5"]).unwrap();
    join(con, ch, "c5", "dave", "", &[]).unwrap();
    join(con, ch, "c5", "erin", "moved", &[]).unwrap();
    leave(con, ch, "c1").unwrap();
    // Any write purges carol once her 5 ms are up (on a slow machine, maybe one of the writes above).
    wait_until("carol to expire", Duration::from_secs(5), || {
        touch(con, ch, &["c2"]).unwrap();
        !roster(con, ch).unwrap().1.contains_key(&b"carol"[..])
    });
}

#[test]
fn aof_restart_keeps_rosters_and_revisions() {
    let mut server = RedisServer::start_with(ServerOptions {
        server_args: args(&["--appendonly", "yes", "--appendfsync", "always"]),
        ..Default::default()
    });
    let mut con = server.connect();
    let ch = unique_channel("aof");
    churn(&mut con, &ch);
    let before = roster(&mut con, &ch).unwrap();
    let counts = count(&mut con, &ch).unwrap();
    assert_eq!(before.1.len(), 3, "alice, bob and erin: {before:?}");

    server.restart(None);
    let mut con = server.connect();
    assert_eq!(
        roster(&mut con, &ch).unwrap(),
        before,
        "log:\n{}",
        server.log()
    );
    assert_eq!(count(&mut con, &ch).unwrap(), counts);
    // The revision goes on from where it was.
    let next = join(&mut con, &ch, "c9", "frank", "", &[]).unwrap();
    assert_eq!(next.rev, before.0 + 1);
}

#[test]
fn aof_rewrite_without_rdb_preamble_keeps_rosters() {
    let mut server = RedisServer::start_with(ServerOptions {
        server_args: args(&[
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--aof-use-rdb-preamble",
            "no",
        ]),
        ..Default::default()
    });
    let mut con = server.connect();
    let ch = unique_channel("rewrite");
    churn(&mut con, &ch);
    let before = roster(&mut con, &ch).unwrap();
    redis::cmd("BGREWRITEAOF").query::<()>(&mut con).unwrap();
    wait_until("the AOF rewrite to finish", Duration::from_secs(20), || {
        let info: String = redis::cmd("INFO")
            .arg("persistence")
            .query(&mut con)
            .unwrap();
        info.contains("aof_rewrite_in_progress:0")
            && info.contains("aof_rewrite_scheduled:0")
            && info.contains("aof_last_bgrewrite_status:ok")
    });
    // Changes after the rewrite land in the incremental file, on top of the rewritten base.
    leave(&mut con, &ch, "c3").unwrap();
    let after = roster(&mut con, &ch).unwrap();

    server.restart(None);
    let mut con = server.connect();
    assert_eq!(
        roster(&mut con, &ch).unwrap(),
        after,
        "log:\n{}",
        server.log()
    );
    assert_ne!(after, before);
}

#[test]
fn rdb_restart_keeps_rosters() {
    let mut server = RedisServer::start();
    let mut con = server.connect();
    let ch = unique_channel("rdb");
    churn(&mut con, &ch);
    let before = roster(&mut con, &ch).unwrap();
    redis::cmd("SAVE").query::<()>(&mut con).unwrap();
    server.restart(None);
    let mut con = server.connect();
    assert_eq!(
        roster(&mut con, &ch).unwrap(),
        before,
        "log:\n{}",
        server.log()
    );
}

#[test]
fn a_replica_holds_exactly_the_masters_rosters() {
    let master = RedisServer::start();
    let replica = RedisServer::start_with(ServerOptions {
        server_args: args(&["--replicaof", "127.0.0.1", &master.port().to_string()]),
        ..Default::default()
    });
    let mut replica_con = replica.connect();
    wait_until("the replica to sync", Duration::from_secs(20), || {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut replica_con)
            .unwrap();
        info.contains("master_link_status:up")
    });
    let mut con = master.connect();
    let channels: Vec<String> = (0..3).map(|_| unique_channel("replica")).collect();
    for ch in &channels {
        churn(&mut con, ch);
    }
    let emptied = unique_channel("replica-emptied");
    join(&mut con, &emptied, "c", "x", "", &[]).unwrap();
    leave(&mut con, &emptied, "c").unwrap();

    let acked: i64 = redis::cmd("WAIT").arg(1).arg(5000).query(&mut con).unwrap();
    assert_eq!(acked, 1, "the replica acknowledged the writes");
    for ch in &channels {
        let on_master = roster(&mut con, ch).unwrap();
        assert_eq!(roster(&mut replica_con, ch).unwrap(), on_master, "{ch}");
        assert_eq!(
            count(&mut replica_con, ch).unwrap(),
            count(&mut con, ch).unwrap()
        );
        let master_pttl: i64 = redis::cmd("PEXPIRETIME").arg(ch).query(&mut con).unwrap();
        let replica_pttl: i64 = redis::cmd("PEXPIRETIME")
            .arg(ch)
            .query(&mut replica_con)
            .unwrap();
        assert_eq!(
            master_pttl, replica_pttl,
            "same absolute key expiry on both"
        );
    }
    let exists: bool = redis::cmd("EXISTS")
        .arg(&emptied)
        .query(&mut replica_con)
        .unwrap();
    assert!(!exists, "the emptied channel is gone on the replica too");
    // Replicas refuse writes, and refuse PRESENCE.APPLY from ordinary clients.
    assert!(join(&mut replica_con, &channels[0], "z", "z", "", &[]).is_err());
}
