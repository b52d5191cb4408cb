//! Presence keys live under a prefix (`--key-prefix`, default `presence:`), so `faye-presence` shares a
//! Redis with the application and with other services: a key outside its prefix, even one named
//! exactly like a presence channel, is never read or written (checked with `MONITOR` over joins,
//! leaves, touches and an expiry), and two services with their own prefixes never see each other's
//! rosters.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use presence_tests::commands::roster;
use presence_tests::presence_server::{
    binary_path, json, key, Driver, Json, PresenceServer, Transport,
};
use presence_tests::{wait_until, RedisServer};

const ROOM: &str = "/presence/room";

/// Every command Redis runs while this lives, as `MONITOR` reports it, split into arguments.
struct Monitor {
    commands: Arc<Mutex<Vec<Vec<String>>>>,
    stream: TcpStream,
}

impl Monitor {
    fn start(redis: &RedisServer) -> Self {
        let mut stream = TcpStream::connect(("127.0.0.1", redis.port())).expect("connect");
        stream.write_all(b"MONITOR\r\n").expect("MONITOR");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut ok = String::new();
        reader.read_line(&mut ok).expect("MONITOR reply");
        assert_eq!(ok.trim_end(), "+OK");
        let commands = Arc::new(Mutex::new(Vec::new()));
        let into = commands.clone();
        std::thread::spawn(move || {
            for line in reader.lines().map_while(Result::ok) {
                // `+<time> [<db> <client>] "CMD" "arg" ...`
                if let Some((_, args)) = line.split_once("] ") {
                    into.lock().unwrap().push(unquote(args));
                }
            }
        });
        Monitor { commands, stream }
    }

    fn commands(&self) -> Vec<Vec<String>> {
        self.commands.lock().unwrap().clone()
    }

    /// How many commands named `name` on key `key` ran so far.
    fn count(&self, name: &str, key: &str) -> usize {
        self.commands()
            .iter()
            .filter(|c| {
                c[0].eq_ignore_ascii_case(name) && c.get(1).map(String::as_str) == Some(key)
            })
            .count()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// Splits MONITOR's `"a" "b\"c"` into `["a", "b\"c"]` (sdscatrepr escapes; `\xHH` kept as text).
fn unquote(args: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = args.chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut arg = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('n') => arg.push('\n'),
                    Some('r') => arg.push('\r'),
                    Some('t') => arg.push('\t'),
                    Some(other) if other != 'x' => arg.push(other),
                    Some(x) => {
                        arg.push('\\');
                        arg.push(x);
                    }
                    None => break,
                },
                c => arg.push(c),
            }
        }
        out.push(arg);
    }
    out
}

/// The keys (and shard channels) a command names, for the commands faye-presence sends that name any.
fn keys_of(command: &[String]) -> &[String] {
    let name = command[0].to_ascii_uppercase();
    if name.starts_with("PRESENCE.") {
        &command[1..2.min(command.len())]
    } else if ["SSUBSCRIBE", "SUNSUBSCRIBE", "SPUBLISH"].contains(&name.as_str()) {
        &command[1..]
    } else {
        &[]
    }
}

fn all_keys(con: &mut redis::Connection) -> BTreeSet<String> {
    redis::cmd("KEYS").arg("*").query(con).unwrap()
}

fn ids(con: &mut redis::Connection, key: &str) -> Vec<String> {
    roster(con, key)
        .unwrap()
        .1
        .keys()
        .map(|id| String::from_utf8_lossy(id).into_owned())
        .collect()
}

#[test]
fn an_app_key_named_like_a_channel_is_never_read_or_written() {
    let redis = RedisServer::start();
    let mut con = redis.connect();
    // The application's own keys: one named exactly like the presence channel, of another type.
    let _: () = redis::cmd("SET")
        .arg(ROOM)
        .arg("the app's value")
        .query(&mut con)
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg("app:users")
        .arg("alice")
        .arg("1")
        .query(&mut con)
        .unwrap();
    let monitor = Monitor::start(&redis);
    // TTL 1 s: touches every third of a second, and an expiry within the test.
    let args = ["--redis", &redis.url(), "--ttl", "1"];
    let observer_server = PresenceServer::start(&args);
    let mut doomed_server = PresenceServer::start(&args);
    let mut d = Driver::start();
    d.client("obs", &observer_server.url(), Transport::LongPolling);
    d.client("ann", &doomed_server.url(), Transport::WebSocket);
    let presence = Json::obj(vec![("id", "obs".into()), ("data", Json::Null)]);
    let reply = d
        .subscribe("obs", ROOM, Some(presence))
        .unwrap_or_else(|e| panic!("joining {ROOM} with an app key of that name: {e}"));
    assert_eq!(reply.get("presence").get("subscribe").keys(), ["obs"]);
    d.join("ann", ROOM, "ann", json(r#"{"k":1}"#));
    let got = d.wait_messages("obs", ROOM, 1);
    assert_eq!(
        got[0].get("data"),
        &json(r#"{"subscribe":{"ann":{"k":1}}}"#)
    );
    assert_eq!(ids(&mut con, &key(ROOM)), ["ann", "obs"]);

    wait_until(
        "both processes to touch the channel a few times",
        Duration::from_secs(10),
        || monitor.count("PRESENCE.TOUCH", &key(ROOM)) >= 6,
    );
    // ann's process dies: nobody touches ann, the module expires it and publishes the leave.
    doomed_server.kill9();
    let killed = Instant::now();
    let got = d.wait_messages_for("obs", ROOM, 2, Duration::from_secs(10));
    assert_eq!(got[1].get("data"), &json(r#"{"unsubscribe":{"ann":null}}"#));
    eprintln!("ann expired {:?} after its process died", killed.elapsed());
    d.unsubscribe("obs", ROOM);
    wait_until("the roster to empty", Duration::from_secs(5), || {
        ids(&mut con, &key(ROOM)).is_empty()
    });
    let commands = monitor.commands();
    drop(monitor);

    // Every key faye-presence named (rosters, shard channels, the startup probe) is under the prefix,
    // and nothing, from any client, named an app key while it ran.
    let mut named = BTreeSet::new();
    for command in &commands {
        for k in keys_of(command) {
            assert!(
                k.starts_with("presence:"),
                "{command:?} names a key outside the prefix"
            );
            named.insert(command[0].to_ascii_uppercase());
        }
        for app in [ROOM, "app:users"] {
            assert!(
                !command.iter().any(|a| a == app),
                "{command:?} names the app's {app:?}"
            );
        }
    }
    for seen in [
        "PRESENCE.COUNT",
        "PRESENCE.JOIN",
        "PRESENCE.TOUCH",
        "PRESENCE.LEAVE",
        "SSUBSCRIBE",
    ] {
        assert!(
            named.contains(seen),
            "no {seen} among {named:?}: the check proved nothing"
        );
    }
    // The app's keys are as the app left them, and the only other keys are presence's.
    let value: String = redis::cmd("GET").arg(ROOM).query(&mut con).unwrap();
    assert_eq!(value, "the app's value");
    let ttl: i64 = redis::cmd("TTL").arg(ROOM).query(&mut con).unwrap();
    assert_eq!(ttl, -1, "the app key got an expiry");
    let users: Vec<String> = redis::cmd("HGETALL")
        .arg("app:users")
        .query(&mut con)
        .unwrap();
    assert_eq!(users, ["alice", "1"]);
    for k in all_keys(&mut con) {
        assert!(
            k == ROOM || k == "app:users" || k.starts_with("presence:"),
            "unexpected key {k:?}"
        );
    }
    assert!(d.faults().is_empty(), "{:?}", d.faults());
}

#[test]
fn two_services_with_their_own_prefixes_share_one_redis_without_seeing_each_other() {
    let redis = RedisServer::start();
    let url = redis.url();
    let presence = PresenceServer::start(&["--redis", &url]);
    let chat = PresenceServer::start(&["--redis", &url, "--key-prefix", "chat:"]);
    let mut d = Driver::start();
    for (name, server) in [
        ("a1", &presence),
        ("a2", &presence),
        ("b1", &chat),
        ("b2", &chat),
    ] {
        d.client(name, &server.url(), Transport::ALL[name.len() % 2]);
    }
    assert_eq!(
        d.join("a1", ROOM, "alice", Json::Null)
            .get("subscribe")
            .keys(),
        ["alice"]
    );
    assert_eq!(
        d.join("b1", ROOM, "bob", Json::Null)
            .get("subscribe")
            .keys(),
        ["bob"]
    );
    assert_eq!(
        d.join("a2", ROOM, "al", Json::Null).get("subscribe").keys(),
        ["al", "alice"]
    );
    assert_eq!(
        d.join("b2", ROOM, "bea", Json::Null)
            .get("subscribe")
            .keys(),
        ["bea", "bob"]
    );
    let mut con = redis.connect();
    assert_eq!(ids(&mut con, &key(ROOM)), ["al", "alice"]);
    assert_eq!(ids(&mut con, &format!("chat:{ROOM}")), ["bea", "bob"]);
    let shard_channels: BTreeSet<String> = redis::cmd("PUBSUB")
        .arg("SHARDCHANNELS")
        .query(&mut con)
        .unwrap();
    assert_eq!(
        shard_channels,
        BTreeSet::from([key(ROOM), format!("chat:{ROOM}")])
    );

    // Each service's leaves reach its own observers only.
    d.unsubscribe("b2", ROOM);
    d.unsubscribe("a2", ROOM);
    let chat_got = d.wait_messages("b1", ROOM, 2);
    let presence_got = d.wait_messages("a1", ROOM, 2);
    assert_eq!(
        chat_got[0].get("data"),
        &json(r#"{"subscribe":{"bea":null}}"#)
    );
    assert_eq!(
        chat_got[1].get("data"),
        &json(r#"{"unsubscribe":{"bea":null}}"#)
    );
    assert_eq!(
        presence_got[0].get("data"),
        &json(r#"{"subscribe":{"al":null}}"#)
    );
    assert_eq!(
        presence_got[1].get("data"),
        &json(r#"{"unsubscribe":{"al":null}}"#)
    );
    assert_eq!(ids(&mut con, &key(ROOM)), ["alice"]);
    assert_eq!(ids(&mut con, &format!("chat:{ROOM}")), ["bob"]);
    for k in all_keys(&mut con) {
        assert!(
            k.starts_with("presence:") || k.starts_with("chat:"),
            "unexpected key {k:?}"
        );
    }
    assert_eq!(d.messages("a1", ROOM).len(), 2);
    assert_eq!(d.messages("b1", ROOM).len(), 2);
    assert!(d.faults().is_empty(), "{:?}", d.faults());
}

/// A prefix with a hash tag (`{app}:`) would put every channel in one slot of a cluster; it is refused at
/// startup, also when given through the environment.
#[test]
fn a_prefix_with_a_hash_tag_is_refused() {
    let redis = RedisServer::start();
    let mut child = Command::new(binary_path())
        .args(["--listen", "127.0.0.1:0", "--redis", &redis.url()])
        .env("FAYE_PRESENCE_KEY_PREFIX", "{app}:")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start faye-presence");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("faye-presence started with the key prefix {{app}}:");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut error = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut error).unwrap();
    assert!(!status.success(), "{error}");
    assert!(
        error.contains("key prefix") && error.contains("hash tag"),
        "{error}"
    );
}
