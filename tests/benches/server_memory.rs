//! What an idle presence client costs `faye-presence` in memory, and whether it comes back.
//!
//! ```sh
//! cargo bench -p presence-tests --bench server_memory -- [CLIENTS] [ROOM]
//! ```
//!
//! Starts a `redis-server` with the module and a release `faye-presence --timeout 120` on free loopback
//! ports, then two waves of CLIENTS (default 5,000) WebSocket clients. Each handshakes over its socket,
//! subscribes to a presence channel shared by ROOM (default 10) clients and sends a `/meta/connect`,
//! which the server holds: the client is then idle, as a browser tab is between events. The server's
//! VmRSS (from `/proc`) is read before the wave, once every client is idle, and after every client sent
//! `/meta/disconnect` and closed its socket. Everything runs on 127.0.0.1 and stops by itself.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use presence_tests::presence_server::binary_path;
use presence_tests::RedisServer;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `faye-presence`, killed on drop.
struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(redis: &RedisServer) -> Server {
        // MEMORY_BENCH_WRAPPER runs the server under a profiler, e.g. `heaptrack -o /tmp/ht` (the RSS
        // figures are then the profiler's).
        let wrapper = std::env::var("MEMORY_BENCH_WRAPPER").unwrap_or_default();
        let mut words = wrapper.split_whitespace();
        let mut command = match words.next() {
            Some(program) => {
                let mut c = Command::new(program);
                c.args(words).arg(binary_path());
                c
            }
            None => Command::new(binary_path()),
        };
        let mut child = command
            .args(["--listen", "127.0.0.1:0", "--redis", &redis.url()])
            .args(["--timeout", "120", "--max-connections", "100000"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start faye-presence");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let addr = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|l| l.strip_prefix("listening on ").map(str::to_owned))
            .expect("faye-presence says where it listens");
        std::thread::spawn(move || for _ in lines {});
        Server { child, addr }
    }

    /// VmRSS in KiB.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }
}

/// A bare WebSocket client: masked text frames out, whole unmasked frames in.
struct Ws {
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl Ws {
    async fn open(addr: &str) -> Ws {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).unwrap();
        let request = format!(
            "GET /faye HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut ws = Ws {
            tcp,
            buf: Vec::new(),
        };
        loop {
            if let Some(end) = ws.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                assert!(ws.buf.starts_with(b"HTTP/1.1 101"), "no upgrade");
                ws.buf.drain(..end + 4);
                return ws;
            }
            ws.fill().await;
        }
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 4096];
        let n = self.tcp.read(&mut chunk).await.expect("read");
        assert!(n > 0, "the server closed the socket");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    async fn send(&mut self, message: &Value) {
        let payload = message.to_string().into_bytes();
        let mut frame = vec![0x81];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        let mask = [1u8, 2, 3, 4];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.tcp.write_all(&frame).await.unwrap();
    }

    /// The next text frame, as JSON.
    async fn recv(&mut self) -> Value {
        loop {
            if self.buf.len() >= 2 {
                let (len, start) = match self.buf[1] & 0x7f {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(&self.buf[2..10]);
                        (u64::from_be_bytes(b) as usize, 10)
                    }
                    n if n < 126 => (n as usize, 2),
                    _ => (usize::MAX, 0),
                };
                if len != usize::MAX && self.buf.len() >= start + len {
                    let payload: Vec<u8> = self.buf.drain(..start + len).skip(start).collect();
                    return serde_json::from_slice(&payload).expect("a JSON frame");
                }
            }
            self.fill().await;
        }
    }

    /// Sends `message` and returns the reply on its channel (skipping roster deliveries).
    async fn call(&mut self, message: Value) -> Value {
        let channel = message["channel"].clone();
        self.send(&json!([message])).await;
        loop {
            let frame = self.recv().await;
            if let Some(reply) = frame
                .as_array()
                .and_then(|a| a.iter().find(|m| m["channel"] == channel))
            {
                return reply.clone();
            }
        }
    }
}

/// Handshake, presence subscribe, and a connect left held: an idle member.
async fn member(addr: Arc<String>, i: usize, room: usize) -> (Ws, String) {
    let mut ws = Ws::open(&addr).await;
    let reply = ws
        .call(json!({"channel": "/meta/handshake", "version": "1.0",
                     "supportedConnectionTypes": ["websocket"]}))
        .await;
    let client = reply["clientId"].as_str().expect("clientId").to_owned();
    let channel = format!("/presence/memory/{}", i / room);
    let reply = ws
        .call(
            json!({"channel": "/meta/subscribe", "clientId": client, "subscription": channel,
                     "ext": {"presence": {"id": format!("member-{i}"), "data": {"n": i}}}}),
        )
        .await;
    assert_eq!(reply["successful"], true, "{reply}");
    ws.send(&json!([{"channel": "/meta/connect", "clientId": client,
                     "connectionType": "websocket"}]))
        .await;
    (ws, client)
}

async fn wave(server: &Server, clients: usize, room: usize, label: &str) {
    let addr = Arc::new(server.addr.clone());
    let before = server.rss_kib();
    let started = Instant::now();
    // 200 at a time: the point is the idle cost, not the connect rate.
    let mut members = Vec::with_capacity(clients);
    for chunk in (0..clients).collect::<Vec<_>>().chunks(200) {
        let joins: Vec<_> = chunk
            .iter()
            .map(|&i| tokio::spawn(member(addr.clone(), i, room)))
            .collect();
        for join in joins {
            members.push(join.await.unwrap());
        }
    }
    // Let the held connects settle (each is taken in by the server within a few ms).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = server.rss_kib();
    let took = started.elapsed();
    for (mut ws, client) in members {
        ws.send(&json!([{"channel": "/meta/disconnect", "clientId": client}]))
            .await;
        let _ = ws.tcp.shutdown().await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = server.rss_kib();
    let per = (idle.saturating_sub(before)) as f64 / clients as f64;
    println!(
        "{label}: {clients} clients (rooms of {room}) in {:.1} s; RSS before {before} KiB, idle {idle} KiB, after leaving {after} KiB; {per:.1} KiB per idle client",
        took.as_secs_f64()
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let clients: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(5000);
    let room: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let redis = RedisServer::start();
    let server = Server::start(&redis);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        println!("faye-presence idle: RSS {} KiB", server.rss_kib());
        wave(&server, clients, room, "wave 1").await;
        wave(&server, clients, room, "wave 2").await;
    });
}
