//! `faye-presence` against slow and greedy connections (raw TCP from this process, all on 127.0.0.1,
//! bounded in count and time): headers or bodies trickled a byte at a time, silent WebSockets and idle
//! kept-alive connections are closed within their timeouts; with the server's open-file limit lowered
//! (`prlimit`) below the number of slow connections, a real Faye client still gets in at once; and
//! `--max-connections` refuses clearly with `503`.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use presence_tests::presence_server::http::{bayeux_post, handshake};
use presence_tests::presence_server::{binary_path, Driver, Json, Transport};
use presence_tests::{module_path, unique_channel, wait_until, RedisServer};

/// `faye-presence` under `prlimit --nofile=N:N` (when given), killed on drop.
struct Limited {
    child: Child,
    addr: String,
    log: Arc<Mutex<String>>,
}

impl Limited {
    fn start(redis: &RedisServer, nofile: Option<u32>, flags: &[&str]) -> Self {
        module_path();
        let mut command = match nofile {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}"))
                    .arg("--")
                    .arg(binary_path());
                c
            }
            None => Command::new(binary_path()),
        };
        let mut child = command
            .args(["--listen", "127.0.0.1:0", "--redis", &redis.url()])
            .args(flags)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start faye-presence under prlimit");
        let log = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.trim().to_owned());
                    break;
                }
            }
            for _ in lines {}
        });
        let mut server = Limited {
            child,
            addr: String::new(),
            log,
        };
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => server.addr = addr,
            Err(_) => panic!("faye-presence did not start; log:\n{}", server.log()),
        }
        server
    }

    fn url(&self) -> String {
        format!("http://{}/faye", self.addr)
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Limited {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the server has closed `tcp` (EOF or reset), without blocking.
fn closed(tcp: &mut TcpStream) -> bool {
    tcp.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 512];
    let closed = loop {
        match tcp.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => continue, // a 408 or 503 on its way out: read on to the end
            Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
            Err(_) => break true,
        }
    };
    tcp.set_nonblocking(false).unwrap();
    closed
}

/// Waits (at most `within`) until the server closes `tcp`; how long that took.
fn wait_closed(tcp: &mut TcpStream, within: Duration, what: &str) -> Duration {
    let started = Instant::now();
    tcp.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 512];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => return started.elapsed(),
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                assert!(
                    started.elapsed() < within,
                    "{what} still open after {within:?}"
                );
            }
            // Reset by the server: closed too.
            Err(_) => return started.elapsed(),
        }
    }
}

/// Slow connections that trickle a request header forever, one byte per connection per round.
struct Trickle {
    open: Vec<(TcpStream, Instant)>,
    closed_after: Vec<Duration>,
}

impl Trickle {
    fn start(addr: &str, count: usize) -> Self {
        let mut open = Vec::new();
        for _ in 0..count {
            // Bounded: a server that stops accepting leaves connects hanging in SYN retries.
            let to = addr.parse().unwrap();
            let mut tcp = TcpStream::connect_timeout(&to, Duration::from_secs(10))
                .expect("connect a slow client");
            tcp.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
            let _ = tcp.write_all(b"POST /faye HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");
            open.push((tcp, Instant::now()));
        }
        Trickle {
            open,
            closed_after: Vec::new(),
        }
    }

    /// One byte to each connection still open; moves those the server closed to `closed_after`.
    fn round(&mut self) {
        let mut still = Vec::new();
        for (mut tcp, since) in self.open.drain(..) {
            let wrote = tcp.write_all(b"a").is_ok();
            if !wrote || closed(&mut tcp) {
                self.closed_after.push(since.elapsed());
            } else {
                still.push((tcp, since));
            }
        }
        self.open = still;
    }
}

#[test]
fn slow_headers_cannot_keep_a_client_out_and_are_closed_within_the_timeout() {
    let redis = RedisServer::start();
    // 128 descriptors: about 110 for connections once the process, Redis and logs have theirs, so
    // 250 slow connections are more than the server can hold.
    let flags = [
        "--idle-timeout",
        "2",
        "--header-timeout",
        "2",
        "--timeout",
        "5",
    ];
    let server = Limited::start(&redis, Some(128), &flags);
    let started = Instant::now();
    let mut slow = Trickle::start(&server.addr, 250);
    slow.round();

    // A real Faye client, while the slow ones hold (or wait for) every descriptor.
    let channel = unique_channel("slow");
    let mut d = Driver::start();
    d.client("alice", &server.url(), Transport::LongPolling);
    let joining = d.send(
        "subscribe",
        vec![
            ("name", "alice".into()),
            ("channel", channel.as_str().into()),
            ("presence", Json::obj(vec![("id", "alice".into())])),
        ],
    );
    // Keep trickling (a byte every 200 ms per connection) until every slow connection is closed.
    let bound = Duration::from_secs(30);
    while !slow.open.is_empty() {
        assert!(
            started.elapsed() < bound,
            "{} slow connections still open after {bound:?}; log:\n{}",
            slow.open.len(),
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
        slow.round();
    }
    let answer = d.answer(joining);
    assert_eq!(answer.get("ok").as_bool(), Some(true), "{answer}");
    // Each was closed within the idle timeout of being served (those the kernel held in the backlog
    // waited for a descriptor first, which the bound above covers).
    let quickest = slow.closed_after.iter().min().unwrap();
    assert!(*quickest <= Duration::from_secs(3), "{quickest:?}");

    // The client's connection outlived the idle timeout with connects held on it, and works.
    d.client("bob", &server.url(), Transport::WebSocket);
    d.join("bob", &channel, "bob", Json::Null);
    let got = d.wait_messages("alice", &channel, 1);
    assert!(
        got[0].get("data").get("subscribe").get("bob") == &Json::Null,
        "{got:?}"
    );
    // Out of descriptors, the accept loop backs off and says so at most once a second.
    let log = server.log();
    let warnings = log.matches("backing off").count() as u64;
    assert!(
        warnings <= started.elapsed().as_secs() + 2,
        "{warnings} warnings in {:?}:\n{log}",
        started.elapsed()
    );
    assert!(d.faults().is_empty(), "{:?}", d.faults());
}

#[test]
fn slow_bodies_silent_websockets_and_idle_keep_alives_are_closed() {
    let redis = RedisServer::start();
    let flags = [
        "--idle-timeout",
        "2",
        "--header-timeout",
        "2",
        "--timeout",
        "4",
    ];
    let server = Limited::start(&redis, None, &flags);
    let addr = server.addr.as_str();
    let limit = Duration::from_secs(6);

    // Whole headers, then the body a byte at a time: on a new connection, and on one that has
    // already made a Bayeux request.
    for proven in [false, true] {
        let mut tcp = TcpStream::connect(addr).unwrap();
        if proven {
            let body = r#"[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}]"#;
            let request = format!(
                "POST /faye HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            tcp.write_all(request.as_bytes()).unwrap();
            let mut buf = [0u8; 4096];
            tcp.set_read_timeout(Some(limit)).unwrap();
            let n = tcp.read(&mut buf).unwrap();
            assert!(
                buf[..n].starts_with(b"HTTP/1.1 200"),
                "{:?}",
                String::from_utf8_lossy(&buf[..n])
            );
        }
        tcp.write_all(b"POST /faye HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n[")
            .unwrap();
        let started = Instant::now();
        while !closed(&mut tcp) {
            assert!(
                started.elapsed() < limit,
                "a trickled body (proven: {proven}) held its connection for {limit:?}"
            );
            let _ = tcp.write_all(b" ");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    // A WebSocket that upgrades and then says nothing.
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.write_all(
        b"GET /faye HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    tcp.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 1024];
    let n = tcp.read(&mut buf).unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 101"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    wait_closed(&mut tcp, limit, "a silent WebSocket");

    // A kept-alive connection that goes idle after its request, and one that never sends a byte.
    let client = handshake(addr);
    let mut idle = TcpStream::connect(addr).unwrap();
    let body = format!(
        r#"[{{"channel":"/meta/connect","clientId":"{client}","connectionType":"long-polling","advice":{{"timeout":0}}}}]"#
    );
    let request = format!(
        "POST /faye HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    idle.write_all(request.as_bytes()).unwrap();
    idle.set_read_timeout(Some(limit)).unwrap();
    let n = idle.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    wait_closed(&mut idle, limit, "an idle kept-alive connection");
    let mut mute = TcpStream::connect(addr).unwrap();
    wait_closed(&mut mute, limit, "a connection that sends nothing");

    // A connect held for 4 s, longer than both timeouts, on a connection that made its request: answered,
    // not cut.
    let started = Instant::now();
    let replies = bayeux_post(
        addr,
        &format!(
            r#"[{{"channel":"/meta/connect","clientId":"{client}","connectionType":"long-polling"}}]"#
        ),
    );
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "the connect was not held"
    );
    assert_eq!(
        replies[0].get("successful").as_bool(),
        Some(true),
        "{replies:?}"
    );
}

#[test]
fn max_connections_refuses_clearly_and_makes_room_from_unproven_ones() {
    let redis = RedisServer::start();
    let server = Limited::start(&redis, None, &["--max-connections", "3"]);
    let addr = server.addr.as_str();
    let body = r#"[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}]"#;
    let request = format!(
        "POST /faye HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let proven = |tcp: &mut TcpStream| {
        tcp.write_all(request.as_bytes()).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 4096];
        let n = tcp.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    // Two kept-alive connections that made a request, and one that has sent nothing yet.
    let mut a = TcpStream::connect(addr).unwrap();
    let mut b = TcpStream::connect(addr).unwrap();
    assert!(proven(&mut a).starts_with("HTTP/1.1 200"));
    assert!(proven(&mut b).starts_with("HTTP/1.1 200"));
    // Accepted in order, so the server holds it before the fourth comes.
    let mut mute = TcpStream::connect(addr).unwrap();
    // A fourth makes room by closing the one that has proven nothing.
    let mut c = TcpStream::connect(addr).unwrap();
    assert!(proven(&mut c).starts_with("HTTP/1.1 200"));
    wait_closed(&mut mute, Duration::from_secs(5), "the unproven connection");
    // Now three have proven themselves: a fifth is refused with a 503 that says why.
    let refused = bayeux_post_fails_with_503(addr).expect("a connection over the cap was served");
    assert!(refused.contains("too many connections"), "{refused}");
    assert!(refused.contains("at most 3"), "{refused}");
    // One leaves: room again.
    drop(a);
    wait_until("a free place", Duration::from_secs(5), || {
        bayeux_post_fails_with_503(addr).is_none()
    });
    drop((b, c));
}

/// Sends a handshake on a new connection; the response text if it was a 503, `None` if served.
fn bayeux_post_fails_with_503(addr: &str) -> Option<String> {
    let mut tcp = TcpStream::connect(addr).unwrap();
    let body = r#"[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}]"#;
    let request = format!(
        "POST /faye HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tcp.write_all(request.as_bytes());
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut response = String::new();
    let _ = tcp.read_to_string(&mut response);
    if response.starts_with("HTTP/1.1 503") {
        Some(response)
    } else {
        assert!(response.starts_with("HTTP/1.1 200"), "{response:?}");
        None
    }
}
