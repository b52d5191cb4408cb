//! Hostile arguments: thousands of seeded random argument vectors against a real `redis-server` with the
//! module, as an attacker would send them. Whatever a client sends, the worst it may get is an error
//! reply, and Redis must be alive at the end.
//!
//! The calls go over a raw socket with a small RESP reader of our own, not through redis-rs: an error
//! reply with bytes that are not printable ASCII must be seen as exactly those bytes (and fail the test),
//! and a Redis that crashed must show up as a closed connection, not as a client-side parse error.
//!
//! Set `PRESENCE_FUZZ_SEED=<n>` to replay a run; every run prints its seed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use presence_tests::commands::{count, roster};
use presence_tests::RedisServer;

/// Calls per run, as many as the campaign: one to two seconds on a debug build, and the rare
/// shapes (it saw one crash per ~740 random vectors) come up many times over.
const CALLS: usize = 20_000;
/// The longest error text we accept: the module bounds what it echoes, so a reply near Redis' own
/// limits means it did not.
const MAX_ERROR_LEN: usize = 300;

/// splitmix64: tiny, seedable, and good enough to pick arguments.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = self.below(max + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn seed() -> u64 {
    match std::env::var("PRESENCE_FUZZ_SEED") {
        Ok(seed) => seed.parse().expect("PRESENCE_FUZZ_SEED is a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    }
}

/// A reply, as read off the socket.
#[derive(Debug)]
enum Reply {
    Error(Vec<u8>),
    Other,
}

/// A connection speaking raw RESP (2, or 3 after `HELLO 3`).
struct RawConnection {
    reader: BufReader<TcpStream>,
}

impl RawConnection {
    fn open(server: &RedisServer) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", server.port())).expect("connect");
        // A module stuck in a loop must fail the test, not hang it.
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        RawConnection {
            reader: BufReader::new(stream),
        }
    }

    /// Sends one command and reads its reply; `Err` when the connection broke (Redis died) or timed out.
    fn call(&mut self, args: &[Vec<u8>]) -> std::io::Result<Reply> {
        let mut packet = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            packet.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            packet.extend_from_slice(arg);
            packet.extend_from_slice(b"\r\n");
        }
        self.reader.get_mut().write_all(&packet)?;
        self.read_reply()
    }

    fn line(&mut self) -> std::io::Result<Vec<u8>> {
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line)?;
        if !line.ends_with(b"\r\n") {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "connection closed mid-reply: {:?}",
                    String::from_utf8_lossy(&line)
                ),
            ));
        }
        line.truncate(line.len() - 2);
        Ok(line)
    }

    fn read_reply(&mut self) -> std::io::Result<Reply> {
        let line = self.line()?;
        let (kind, rest) = line.split_first().ok_or_else(|| bad("empty reply line"))?;
        let number = || -> std::io::Result<i64> {
            std::str::from_utf8(rest)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad("bad length"))
        };
        match kind {
            b'-' | b'!' => Ok(Reply::Error(if *kind == b'!' {
                let mut blob = vec![0; number()? as usize + 2];
                self.reader.read_exact(&mut blob)?;
                blob.truncate(blob.len() - 2);
                blob
            } else {
                rest.to_vec()
            })),
            b'+' | b':' | b'_' | b',' | b'#' | b'(' => Ok(Reply::Other),
            b'$' | b'=' => {
                let len = number()?;
                if len >= 0 {
                    let mut blob = vec![0; len as usize + 2];
                    self.reader.read_exact(&mut blob)?;
                }
                Ok(Reply::Other)
            }
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                let len = number()?;
                let items = if matches!(kind, b'%' | b'|') {
                    2 * len
                } else {
                    len
                };
                for _ in 0..items.max(0) {
                    if let Reply::Error(e) = self.read_reply()? {
                        return Err(bad(&format!(
                            "an error inside an aggregate: {:?}",
                            String::from_utf8_lossy(&e)
                        )));
                    }
                }
                if *kind == b'|' {
                    // An attribute precedes the actual reply.
                    return self.read_reply();
                }
                Ok(Reply::Other)
            }
            _ => Err(bad(&format!("unknown reply type {:?}", *kind as char))),
        }
    }
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

const COMMANDS: &[&str] = &[
    "PRESENCE.JOIN",
    "PRESENCE.LEAVE",
    "PRESENCE.TOUCH",
    "PRESENCE.ROSTER",
    "PRESENCE.COUNT",
    "PRESENCE.APPLY",
    "presence.join",
    "Presence.Touch",
];

/// Keys of every type Redis has, and ours (filled by `setup`), and one nobody created.
const KEYS: &[&str] = &[
    "/presence/fuzz/a",
    "/presence/fuzz/b",
    "/presence/fuzz/none",
    "fuzz:string",
    "fuzz:list",
    "fuzz:hash",
    "fuzz:set",
    "fuzz:zset",
    "fuzz:stream",
];

const WORDS: &[&str] = &[
    "TTL",
    "ttl",
    "tTl",
    "TTL\0",
    "WITHROSTER",
    "withroster",
    "WithRoster",
    "WITHROSTERS",
    "SNAPSHOT",
    "snapshot",
    "NX",
    "",
    " ",
];

/// Numbers around every edge a TTL or revision parser has: zero, signs, spaces, the TTL limit, the
/// i64 and u64 limits and past them, floats and hex.
const NUMBERS: &[&str] = &[
    "0",
    "1",
    "-1",
    "-0",
    "+5",
    " 5",
    "5 ",
    "1.5",
    "1e3",
    "0x10",
    "2592000000",
    "2592000001",
    "4611686018427387904",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999999",
];

/// Strings that reach error messages: NUL bytes, CR LF (which would split a RESP line), invalid UTF-8,
/// and characters whose code point is a multiple of 256, which a naive char-to-byte cast turns into NUL.
const NASTY: &[&[u8]] = &[
    b"\0",
    b"a\0b",
    b"\r\n",
    b"-ERR fake\r\n",
    b"\xff\xfe",
    b"\xc4\x80",     // U+0100
    b"\xe4\xb8\x80", // U+4E00
    b"%s%n%x",
    b"J 1:c 1:i 1:d 5\n",
    b"L 99999999999999999999:x\n",
];

fn argument(rng: &mut Rng) -> Vec<u8> {
    match rng.below(9) {
        0 => Vec::new(),
        1 => rng.bytes(24),
        2 => rng.pick(WORDS).as_bytes().to_vec(),
        3 => rng.pick(NUMBERS).as_bytes().to_vec(),
        4 => rng.pick(NASTY).to_vec(),
        5 => {
            // A word with a nasty byte somewhere inside.
            let mut word = rng.pick(WORDS).as_bytes().to_vec();
            let at = rng.below(word.len() + 1);
            let nasty = rng.pick(NASTY);
            word.splice(at..at, nasty.iter().copied());
            word
        }
        6 => vec![b'x'; *rng.pick(&[300usize, 5_000, 70_000])],
        7 => rng.pick(KEYS).as_bytes().to_vec(),
        _ => format!("c{}", rng.below(6)).into_bytes(),
    }
}

/// One call: mostly shapes close to valid (so the parsers get past arity and the store runs), the rest
/// arbitrary.
fn call_args(rng: &mut Rng) -> Vec<Vec<u8>> {
    let mut args = vec![rng.pick(COMMANDS).as_bytes().to_vec()];
    if rng.chance(50) {
        // Ours, so that the calls that parse also reach the roster.
        args.push(rng.pick(&KEYS[..2]).as_bytes().to_vec());
    } else if rng.chance(85) {
        args.push(rng.pick(KEYS).as_bytes().to_vec());
    } else if rng.chance(50) {
        args.push(argument(rng));
    }
    if rng.chance(40) {
        // A plausible JOIN / TOUCH: client, id, data, then options, some of them hostile.
        args.push(format!("c{}", rng.below(6)).into_bytes());
        args.push(format!("id{}", rng.below(4)).into_bytes());
        args.push(if rng.chance(80) {
            rng.bytes(16)
        } else {
            argument(rng)
        });
        for _ in 0..rng.below(4) {
            if rng.chance(50) {
                args.push(b"TTL".to_vec());
                args.push(if rng.chance(60) {
                    (1 + rng.below(40)).to_string().into_bytes()
                } else {
                    argument(rng)
                });
            } else {
                args.push(argument(rng));
            }
        }
    } else {
        let extra = if rng.chance(3) { 200 } else { rng.below(9) };
        for _ in 0..extra {
            args.push(argument(rng));
        }
    }
    args
}

fn setup(server: &RedisServer) {
    let mut con = server.connect();
    for (command, args) in [
        ("SET", vec!["fuzz:string", "v"]),
        ("RPUSH", vec!["fuzz:list", "v"]),
        ("HSET", vec!["fuzz:hash", "f", "v"]),
        ("SADD", vec!["fuzz:set", "v"]),
        ("ZADD", vec!["fuzz:zset", "1", "v"]),
        ("XADD", vec!["fuzz:stream", "*", "f", "v"]),
        (
            "PRESENCE.JOIN",
            vec!["/presence/fuzz/a", "c0", "id0", "d", "TTL", "600000"],
        ),
        (
            "PRESENCE.JOIN",
            vec!["/presence/fuzz/b", "c1", "id1", "d", "TTL", "600000"],
        ),
    ] {
        redis::cmd(command)
            .arg(&args)
            .query::<redis::Value>(&mut con)
            .unwrap_or_else(|e| panic!("{command} {args:?}: {e}"));
    }
}

fn show(args: &[Vec<u8>]) -> String {
    args.iter()
        .map(|a| {
            let shown: String = a
                .iter()
                .take(40)
                .flat_map(|&b| b.escape_ascii())
                .map(char::from)
                .collect();
            if a.len() > 40 {
                format!("\"{shown}...\"({} bytes)", a.len())
            } else {
                format!("\"{shown}\"")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn random_argument_vectors_get_replies_and_redis_lives() {
    let seed = seed();
    println!("module_hostile seed: {seed} (replay with PRESENCE_FUZZ_SEED={seed})");
    let mut rng = Rng(seed);
    let server = RedisServer::start();
    setup(&server);
    let mut resp2 = RawConnection::open(&server);
    let mut resp3 = RawConnection::open(&server);
    resp3
        .call(&[b"HELLO".to_vec(), b"3".to_vec()])
        .expect("HELLO 3");

    let started = Instant::now();
    let (mut ok, mut errors) = (0, 0);
    for n in 0..CALLS {
        let args = call_args(&mut rng);
        let con = if rng.chance(50) {
            &mut resp2
        } else {
            &mut resp3
        };
        let reply = con.call(&args).unwrap_or_else(|e| {
            panic!(
                "call {n} (seed {seed}) got no reply: {e}\nargs: {}\nRedis log tail:\n{}",
                show(&args),
                tail(&server.log())
            )
        });
        match reply {
            Reply::Other => ok += 1,
            Reply::Error(text) => {
                errors += 1;
                let printable = text.iter().all(|b| (0x20..0x7f).contains(b));
                assert!(
                    printable && text.len() <= MAX_ERROR_LEN,
                    "call {n} (seed {seed}): error text must be printable and bounded, got {} bytes {:?}\nargs: {}",
                    text.len(),
                    String::from_utf8_lossy(&text[..text.len().min(MAX_ERROR_LEN)]),
                    show(&args)
                );
            }
        }
    }
    println!(
        "module_hostile: {CALLS} calls in {:?}: {ok} replies, {errors} error replies",
        started.elapsed()
    );
    // Not vacuous: both outcomes happened many times.
    assert!(
        ok > CALLS / 20 && errors > CALLS / 20,
        "{ok} ok, {errors} errors"
    );

    let mut con = server.connect();
    let pong: String = redis::cmd("PING").query(&mut con).expect("Redis is alive");
    assert_eq!(pong, "PONG");
    // The rosters the calls changed are still consistent.
    for key in &KEYS[..2] {
        let (rev, members) = roster(&mut con, key).unwrap();
        let (count_rev, member_count, connections) = count(&mut con, key).unwrap();
        assert_eq!(
            (count_rev, member_count),
            (rev, members.len() as u64),
            "{key}"
        );
        assert!(connections >= member_count, "{key}");
    }
    let info: String = redis::cmd("INFO").arg("presence").query(&mut con).unwrap();
    // A caught panic is still a bug: hostile input must be refused by the parsers, not by the guard.
    assert!(info.contains("presence_panics:0"), "{info}");
}

/// The lines of a Redis log that say why it died (a crash report is hundreds of lines of registers and
/// memory tests), and the last few.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let why = lines.iter().filter(|l| {
        ["panic", "Guru", "ASSERT", "crashed by signal"]
            .iter()
            .any(|w| l.contains(w))
    });
    let last = &lines[lines.len().saturating_sub(5)..];
    why.chain(last)
        .take(40)
        .copied()
        .collect::<Vec<_>>()
        .join("\n")
}
