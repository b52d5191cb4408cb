//! `faye-presence --leave-grace` end to end, with real Faye clients in Node on two server processes
//! sharing one Redis: a member that reloads (its client disconnects, a new client of the same id
//! joins, here on the *other* process) within the grace window is never seen leaving by an observer,
//! and one that goes for good is seen leaving once the window has passed. On both engines (memory:
//! each process its own clients; redis: one Bayeux service) and both transports.
//!
//! "Nothing was sent" is checked with a marker, not a silence: after the lingering connection is gone
//! from Redis, a marker member joins, and its join must be the observer's very next message.

use std::time::{Duration, Instant};

use presence_tests::commands::count;
use presence_tests::presence_server::{
    js_dir, json, key, Driver, Json, Observed, PresenceServer, Transport,
};
use presence_tests::{unique_channel, wait_until, RedisServer};

/// The grace the servers run with: short, so the suite stays quick.
const GRACE: Duration = Duration::from_secs(1);
/// The module publishes an expiry within about a second of its deadline; room for a loaded machine.
const BOUND: Duration = Duration::from_millis(2500);

fn servers(redis: &RedisServer, engine: &str) -> (PresenceServer, PresenceServer) {
    let start = || {
        PresenceServer::start(&[
            "--redis",
            &redis.url(),
            "--engine",
            engine,
            "--leave-grace",
            &GRACE.as_secs_f64().to_string(),
        ])
    };
    (start(), start())
}

/// The observer's roster after every message it has so far.
fn observed(d: &Driver, start: &Observed, channel: &str) -> Observed {
    let mut seen = start.clone();
    seen.apply_all(&d.messages("obs", channel));
    seen
}

/// Waits until the observer's history is `want`, then checks it broke no rule.
fn expect_history(
    d: &Driver,
    start: &Observed,
    channel: &str,
    want: &[&str],
    within: Duration,
) -> Observed {
    let what = format!("the observer's history to be {want:?}");
    d.wait_events(&what, within, |events| {
        let mut seen = start.clone();
        seen.apply_all(&presence_tests::presence_server::messages_in(
            events, "obs", channel,
        ));
        (seen.history.len() >= want.len()).then_some(())
    });
    let seen = observed(d, start, channel);
    assert_eq!(seen.history, want, "{:?}", d.messages("obs", channel));
    assert!(seen.violations.is_empty(), "{:?}", seen.violations);
    seen
}

#[test]
fn a_reload_onto_the_other_process_within_the_grace_shows_no_leave() {
    let redis = RedisServer::start();
    let mut con = redis.connect();
    for engine in ["memory", "redis"] {
        let (one, two) = servers(&redis, engine);
        for transport in Transport::ALL {
            let what = format!("{engine}/{transport:?}");
            let channel = unique_channel("grace-reload");
            let mut d = Driver::start();
            d.client("obs", &one.url(), transport);
            let start = Observed::from_reply(&d.join("obs", &channel, "observer", Json::Null));
            d.client("x1", &one.url(), transport);
            d.join("x1", &channel, "x", json(r#"{"tab":1}"#));
            expect_history(&d, &start, &channel, &["+x"], Duration::from_secs(10));

            // The page reloads: its client goes, a new one of the same id comes, on the other process.
            d.disconnect("x1");
            d.client("x2", &two.url(), transport);
            let reply = d.join("x2", &channel, "x", json(r#"{"tab":1}"#));
            assert!(
                reply.get("subscribe").keys().contains(&"x".to_owned()),
                "{what}: {reply}"
            );

            // The old connection lingers until its grace ends, then goes silently: x is still on x2.
            wait_until(&format!("{what}: x1's grace to end"), GRACE + BOUND, || {
                count(&mut con, &key(&channel)).unwrap().2 == 2
            });
            d.client("m", &two.url(), transport);
            d.join("m", &channel, "marker", Json::Null);
            expect_history(
                &d,
                &start,
                &channel,
                &["+x", "+marker"],
                Duration::from_secs(10),
            );

            // A reload that changes the data is one update, and no leave.
            d.unsubscribe("x2", &channel);
            d.client("x3", &one.url(), transport);
            d.join("x3", &channel, "x", json(r#"{"tab":3}"#));
            expect_history(
                &d,
                &start,
                &channel,
                &["+x", "+marker", "~x"],
                Duration::from_secs(10),
            );

            // Gone for good: the observer sees x leave once the grace has passed, not before.
            let left = Instant::now();
            d.disconnect("x3");
            let seen = expect_history(
                &d,
                &start,
                &channel,
                &["+x", "+marker", "~x", "-x"],
                GRACE + BOUND,
            );
            let after = left.elapsed();
            println!("{what}: the leave reached the observer {after:?} after the disconnect");
            assert!(
                after >= GRACE,
                "{what}: the leave came {after:?} after the disconnect"
            );
            assert_eq!(
                seen.members.keys().collect::<Vec<_>>(),
                ["marker", "observer"],
                "{what}"
            );
            assert!(d.faults().is_empty(), "{what}: {:?}", d.faults());
        }
    }
}

/// How many `PRESENCE.LEAVE` commands Redis has run (`INFO commandstats`).
fn leave_calls(con: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query(con).unwrap();
    info.lines()
        // Redis names module commands as registered: upper case.
        .find_map(|l| l.strip_prefix("cmdstat_PRESENCE.LEAVE:calls="))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

#[test]
fn a_client_that_times_out_and_comes_back_within_the_grace_shows_no_leave() {
    // The inactivity timeout is the third way out (after unsubscribe and disconnect): a client that
    // stops dead is removed after 1.6 x --timeout, and its leave is held too. The Redis engine keeps
    // each client in a key, so the test sees the moment the server removed it.
    let redis = RedisServer::start();
    let grace = Duration::from_secs(3);
    let server = PresenceServer::start(&[
        "--redis",
        &redis.url(),
        "--engine",
        "redis",
        "--timeout",
        "1",
        "--leave-grace",
        &grace.as_secs_f64().to_string(),
    ]);
    let mut con = redis.connect();
    let channel = unique_channel("grace-timeout");
    let mut d = Driver::start();
    d.client("obs", &server.url(), Transport::WebSocket);
    let start = Observed::from_reply(&d.join("obs", &channel, "observer", Json::Null));
    d.client("x1", &server.url(), Transport::LongPolling);
    let x1 = d.connect("x1");
    d.join("x1", &channel, "x", Json::Null);
    expect_history(&d, &start, &channel, &["+x"], Duration::from_secs(10));
    let leaves_before = leave_calls(&mut con);
    d.freeze("x1");
    let client_key = format!("bayeux:client:{{{x1}}}");
    // Removed by the server, and its leave in Redis: only then may x come back, or the test would
    // not tell a held leave from one that had not happened yet.
    wait_until("x1 to time out and leave", Duration::from_secs(10), || {
        !redis::cmd("EXISTS")
            .arg(&client_key)
            .query::<bool>(&mut con)
            .unwrap()
            && leave_calls(&mut con) > leaves_before
    });
    let timed_out = Instant::now();
    // x comes back on another client, within the grace of x1's timeout: no leave at all.
    d.client("x2", &server.url(), Transport::LongPolling);
    d.join("x2", &channel, "x", Json::Null);
    assert!(
        timed_out.elapsed() < grace,
        "the test was too slow to rejoin in time"
    );
    wait_until("x1's grace to end", grace + BOUND, || {
        count(&mut con, &key(&channel)).unwrap().2 == 2
    });
    d.client("m", &server.url(), Transport::WebSocket);
    d.join("m", &channel, "marker", Json::Null);
    expect_history(
        &d,
        &start,
        &channel,
        &["+x", "+marker"],
        Duration::from_secs(10),
    );
    assert!(d.faults().is_empty(), "{:?}", d.faults());
}

/// Runs `node <script> <args>` in `tests/js`, killed (by its pid, through `Child::kill`) if it takes
/// longer than `limit`; returns its stdout, failing the test with its output unless it exits 0.
fn run_node(script: &str, args: &[&str], limit: Duration) -> String {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let mut child = Command::new("node")
        .current_dir(js_dir())
        .arg(script)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node must be installed to run the end-to-end tests");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    println!("{script}:\n{out}{err}");
    assert!(
        status.is_some_and(|s| s.success()),
        "{script} failed ({status:?}):\n{out}\n{err}"
    );
    out
}

#[test]
fn the_client_library_drops_duplicates_resyncs_on_a_gap_and_survives_a_stream_cut() {
    // Batching on (the default window), so messages carry `from` and a gap can be seen; a grace, so
    // the library's own resubscribe shows nobody leaving.
    let redis = RedisServer::start();
    let start = || {
        PresenceServer::start(&[
            "--redis",
            &redis.url(),
            "--batch-ms",
            "50",
            "--leave-grace",
            &GRACE.as_secs_f64().to_string(),
        ])
    };
    let (one, two) = (start(), start());
    let channel = unique_channel("client-lib");
    let out = run_node(
        "client_lib.js",
        &[&one.url(), &two.url(), &redis.port().to_string(), &channel],
        Duration::from_secs(90),
    );
    for phase in ["basics: ok", "gap: ok", "stream: ok"] {
        assert!(out.contains(phase), "{phase} missing from:\n{out}");
    }
}

/// `GET path` on `addr` as `(status, content type, body)`, over a plain socket.
fn get(addr: &str, path: &str) -> (u16, String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).expect("read the response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a whole head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head[9..12].parse().expect("a status");
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    (status, content_type, raw[split + 4..].to_vec())
}

fn web_dir() -> String {
    js_dir()
        .join("../../examples/web")
        .canonicalize()
        .unwrap()
        .display()
        .to_string()
}

#[test]
fn the_server_serves_the_browser_scripts_and_the_static_page() {
    let redis = RedisServer::start();
    let server = PresenceServer::start(&["--redis", &redis.url(), "--static", &web_dir()]);
    let faye = get(server.addr(), "/faye/client.js");
    assert_eq!(
        (faye.0, faye.1.as_str()),
        (200, "application/javascript; charset=utf-8")
    );
    let bundle =
        std::fs::read(js_dir().join("node_modules/faye/client/faye-browser-min.js")).unwrap();
    assert!(faye.2 == bundle, "client.js is not Faye's browser bundle");
    let lib = get(server.addr(), "/faye/presence.js");
    assert_eq!(
        (lib.0, lib.1.as_str()),
        (200, "application/javascript; charset=utf-8")
    );
    let source = std::fs::read(js_dir().join("../../clients/faye-presence.js")).unwrap();
    assert!(
        lib.2 == source,
        "presence.js is not clients/faye-presence.js"
    );
    let page = get(server.addr(), "/");
    assert_eq!((page.0, page.1.as_str()), (200, "text/html; charset=utf-8"));
    assert!(String::from_utf8_lossy(&page.2).contains("/faye/presence.js"));
    for outside in [
        "/../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "/.hidden",
        "/missing.html",
    ] {
        assert_eq!(get(server.addr(), outside).0, 404, "{outside}");
    }
    // Bayeux still answers on its mount.
    let replies = presence_tests::presence_server::http::bayeux_post(
        server.addr(),
        r#"[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}]"#,
    );
    assert_eq!(replies[0].get("successful").as_bool(), Some(true));
    // Without --static, nothing but Bayeux and the scripts.
    let bare = PresenceServer::start(&["--redis", &redis.url()]);
    assert_eq!(get(bare.addr(), "/").0, 404);
    assert_eq!(get(bare.addr(), "/faye/presence.js").0, 200);
}

#[test]
fn the_who_is_online_page_in_chromium_shows_no_leave_on_a_reload() {
    // The page, the scripts and Bayeux from one server; a short --timeout so that a disconnect lost
    // in the unload would still end the old client soon (the test then still waits for it).
    let redis = RedisServer::start();
    let grace = "2";
    let server = PresenceServer::start(&[
        "--redis",
        &redis.url(),
        "--static",
        &web_dir(),
        "--leave-grace",
        grace,
        "--timeout",
        "3",
    ]);
    let shot = std::env::temp_dir().join(format!("who-is-online-{}.png", std::process::id()));
    let out = run_node(
        "grace_browser.js",
        &[
            &format!("http://{}", server.addr()),
            grace,
            &redis.port().to_string(),
            &shot.display().to_string(),
        ],
        Duration::from_secs(120),
    );
    assert!(out.contains("RESULT "), "{out}");
    let png = std::fs::read(&shot).expect("the screenshot");
    let _ = std::fs::remove_file(&shot);
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
}

/// Node Faye with faye-presence 0.0.3 (`shim/bench/faye_presence_server.js`) on `redis`, killed (by
/// its pid, through `Child::kill`) on drop.
struct LegacyServer(std::process::Child, String);

impl LegacyServer {
    fn start(redis: &RedisServer) -> Self {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let bench = js_dir().join("../../shim/bench");
        assert!(
            bench.join("node_modules/faye-presence").is_dir(),
            "shim/bench/node_modules is missing: run `npm ci --prefix shim/bench` (scripts/prerequisites.sh does)"
        );
        let mut child = Command::new("node")
            .current_dir(&bench)
            .args(["faye_presence_server.js", &redis.port().to_string(), "10"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the faye-presence 0.0.3 server");
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
        let mut server = LegacyServer(child, String::new());
        server.1 = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the faye-presence 0.0.3 server to listen");
        server
    }
}

impl Drop for LegacyServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_client_library_works_with_a_faye_presence_0_0_3_server() {
    let redis = RedisServer::start();
    let legacy = LegacyServer::start(&redis);
    let out = run_node(
        "client_lib_legacy.js",
        &[
            &format!("http://{}/faye", legacy.1),
            &unique_channel("legacy"),
        ],
        Duration::from_secs(60),
    );
    assert!(out.contains("RESULT "), "{out}");
}

#[test]
fn the_client_library_sends_signed_identities() {
    let redis = RedisServer::start();
    let server = PresenceServer::start(&["--redis", &redis.url(), "--secret", "s3cret"]);
    let out = run_node(
        "client_lib_signed.js",
        &[&server.url(), &unique_channel("signed"), "s3cret"],
        Duration::from_secs(60),
    );
    assert!(out.contains("RESULT "), "{out}");
}
