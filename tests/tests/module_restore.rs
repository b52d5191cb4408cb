//! Damaged `RESTORE` payloads: truncations at every byte, enlarged length and count fields, forged
//! revisions and deadlines, and bit flips (in the plain and in the LZF-compressed form), each with its
//! CRC64 recomputed so Redis hands it to the module. Redis must answer every one and stay up; a payload it
//! accepts must be a usable roster whose `rev` only moves forward.

use presence_roster::snapshot::{MAX_DEADLINE, MAX_REV};
use presence_tests::commands::{count, join, leave, roster};
use std::process::Stdio;
use std::time::Duration;

use presence_tests::server::free_port;
use presence_tests::{module_path, wait_until, RedisServer, ServerOptions};
use redis::Value;

/// CRC-64/Jones as Redis computes it for `DUMP` (reflected, polynomial 0xad93d23594c935a9, no final xor).
/// Bitwise rather than table-driven: a few thousand payloads of a few hundred bytes are nothing.
fn crc64(bytes: &[u8]) -> u64 {
    const REFLECTED_POLY: u64 = 0x95ac_9329_ac4b_c9b5;
    let mut crc = 0u64;
    for &byte in bytes {
        crc ^= u64::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ REFLECTED_POLY
            } else {
                crc >> 1
            };
        }
    }
    crc
}

#[test]
fn crc64_is_redis_crc64() {
    // The check value Redis' own crc64 test uses.
    assert_eq!(crc64(b"123456789"), 0xe9c6_d914_c4b8_d9ca);
}

/// A `DUMP` payload split into what the module and Redis wrote (`body`) and the RDB version that
/// precedes the CRC.
struct Dump {
    body: Vec<u8>,
    version: [u8; 2],
}

impl Dump {
    fn parse(payload: &[u8]) -> Self {
        let (rest, crc) = payload.split_at(payload.len() - 8);
        assert_eq!(
            crc64(rest).to_le_bytes(),
            crc,
            "our CRC64 must match Redis' or every mutant would be refused before the module sees it"
        );
        let (body, version) = rest.split_at(rest.len() - 2);
        Dump {
            body: body.to_vec(),
            version: version.try_into().unwrap(),
        }
    }

    /// A payload with `body` in place of the real one and a CRC that matches it.
    fn payload(&self, body: &[u8]) -> Vec<u8> {
        let mut out = body.to_vec();
        out.extend_from_slice(&self.version);
        out.extend_from_slice(&crc64(&out).to_le_bytes());
        out
    }
}

/// Redis' RDB length encoding: 6, 14, 32 or 64 bits.
fn rdb_len(len: u64) -> Vec<u8> {
    match len {
        0..=63 => vec![len as u8],
        64..=16383 => vec![0x40 | (len >> 8) as u8, len as u8],
        16384..=0xffff_ffff => {
            let mut out = vec![0x80];
            out.extend_from_slice(&(len as u32).to_be_bytes());
            out
        }
        _ => {
            let mut out = vec![0x81];
            out.extend_from_slice(&len.to_be_bytes());
            out
        }
    }
}

/// Reads an RDB length at `at`; returns it and the bytes it took.
fn read_rdb_len(bytes: &[u8], at: usize) -> (u64, usize) {
    match bytes[at] >> 6 {
        0 => (u64::from(bytes[at] & 0x3f), 1),
        1 => (
            u64::from(bytes[at] & 0x3f) << 8 | u64::from(bytes[at + 1]),
            2,
        ),
        _ if bytes[at] == 0x80 => (
            u64::from(u32::from_be_bytes(
                bytes[at + 1..at + 5].try_into().unwrap(),
            )),
            5,
        ),
        _ if bytes[at] == 0x81 => (
            u64::from_be_bytes(bytes[at + 1..at + 9].try_into().unwrap()),
            9,
        ),
        _ => panic!("not a plain length at {at}: {:#x}", bytes[at]),
    }
}

/// The module value inside an uncompressed dump: `[type 7][module id: 0x81 + 8 bytes][opcode 5: string]
/// [length][snapshot][opcode 0: EOF]`. Returns the header up to the opcode and the snapshot.
fn split_plain(body: &[u8]) -> (Vec<u8>, Vec<u8>) {
    assert_eq!(body[0], 7, "RDB_TYPE_MODULE_2");
    assert_eq!(body[1], 0x81, "64-bit module id");
    assert_eq!(body[10], 5, "RDB_MODULE_OPCODE_STRING");
    let (len, taken) = read_rdb_len(body, 11);
    let start = 11 + taken;
    let snapshot = body[start..start + len as usize].to_vec();
    assert_eq!(&body[start + len as usize..], &[0], "RDB_MODULE_OPCODE_EOF");
    assert_eq!(&snapshot[..4], b"PRS\x01", "the module's snapshot");
    (body[..11].to_vec(), snapshot)
}

fn envelope(header: &[u8], length: &[u8], snapshot: &[u8]) -> Vec<u8> {
    let mut body = header.to_vec();
    body.extend_from_slice(length);
    body.extend_from_slice(snapshot);
    body.push(0);
    body
}

/// Where the snapshot keeps its numbers: `u32` counts and lengths, the `u64` rev at 4, `u64` deadlines.
struct Fields {
    u32s: Vec<usize>,
    deadlines: Vec<usize>,
}

fn fields(snapshot: &[u8]) -> Fields {
    let u32_at = |at: usize| u32::from_le_bytes(snapshot[at..at + 4].try_into().unwrap()) as usize;
    let mut fields = Fields {
        u32s: Vec::new(),
        deadlines: Vec::new(),
    };
    let mut at = 12;
    for per_item in [2, 3] {
        fields.u32s.push(at);
        let items = u32_at(at);
        at += 4;
        for _ in 0..items {
            for _ in 0..2 {
                fields.u32s.push(at);
                at += 4 + u32_at(at);
            }
            if per_item == 3 {
                fields.deadlines.push(at);
                at += 8;
            }
        }
    }
    assert_eq!(at, snapshot.len(), "walked the whole snapshot");
    fields
}

fn with_u32(snapshot: &[u8], at: usize, value: u32) -> Vec<u8> {
    let mut out = snapshot.to_vec();
    out[at..at + 4].copy_from_slice(&value.to_le_bytes());
    out
}

fn with_u64(snapshot: &[u8], at: usize, value: u64) -> Vec<u8> {
    let mut out = snapshot.to_vec();
    out[at..at + 8].copy_from_slice(&value.to_le_bytes());
    out
}

/// A mutant and what it must do: `Some(true)` be accepted, `Some(false)` be refused, `None` either.
struct Mutant {
    what: String,
    body: Vec<u8>,
    expect: Option<bool>,
}

fn mutant(what: impl Into<String>, body: Vec<u8>, expect: Option<bool>) -> Mutant {
    Mutant {
        what: what.into(),
        body,
        expect,
    }
}

/// Every truncation and every single-bit flip of `body`, and garbage after it.
fn blind_mutants(label: &str, body: &[u8], out: &mut Vec<Mutant>) {
    for len in 0..body.len() {
        out.push(mutant(
            format!("{label}: truncated to {len}"),
            body[..len].to_vec(),
            Some(false),
        ));
    }
    for at in 0..body.len() {
        for bit in 0..8 {
            let mut flipped = body.to_vec();
            flipped[at] ^= 1 << bit;
            out.push(mutant(
                format!("{label}: bit {bit} of byte {at} flipped"),
                flipped,
                None,
            ));
        }
    }
    for tail in [&b"\0"[..], b"\x05\x01x\x00", &[0xff; 64]] {
        let mut longer = body.to_vec();
        longer.extend_from_slice(tail);
        out.push(mutant(
            format!("{label}: {} bytes appended", tail.len()),
            longer,
            None,
        ));
    }
}

/// Field-aware mutants of the uncompressed form: counts, lengths, rev, deadlines, and the RDB string
/// length around the snapshot.
fn field_mutants(body: &[u8], out: &mut Vec<Mutant>) {
    let (header, snapshot) = split_plain(body);
    let plain = |s: &[u8]| envelope(&header, &rdb_len(s.len() as u64), s);
    assert_eq!(
        plain(&snapshot),
        body,
        "the envelope rebuilds the real dump"
    );
    out.push(mutant("unchanged", body.to_vec(), Some(true)));

    let layout = fields(&snapshot);
    for &at in &layout.u32s {
        let value = u32::from_le_bytes(snapshot[at..at + 4].try_into().unwrap());
        let mut values = vec![
            value.wrapping_add(1),
            value.wrapping_add(7),
            value.saturating_mul(2).saturating_add(1000),
            0x7fff_ffff,
            u32::MAX,
        ];
        if value > 0 {
            values.extend([0, value - 1]);
        }
        for v in values {
            out.push(mutant(
                format!("u32 at {at}: {value} -> {v}"),
                plain(&with_u32(&snapshot, at, v)),
                Some(false),
            ));
        }
    }
    // The decision documented in the README: a rev the roster could not grow from is refused.
    for (rev, accepted) in [
        (0, true),
        (MAX_REV - 1, true),
        (MAX_REV, true),
        (MAX_REV + 1, false),
        (i64::MAX as u64, false),
        (1 << 63, false),
        (u64::MAX - 1, false),
        (u64::MAX, false),
    ] {
        out.push(mutant(
            format!("rev {rev}"),
            plain(&with_u64(&snapshot, 4, rev)),
            Some(accepted),
        ));
    }
    for &at in &layout.deadlines {
        for (deadline, accepted) in [
            (0, true),
            (1, true),
            (MAX_DEADLINE, true),
            (MAX_DEADLINE + 1, false),
            (i64::MAX as u64, false),
            (u64::MAX, false),
        ] {
            out.push(mutant(
                format!("deadline at {at}: {deadline}"),
                plain(&with_u64(&snapshot, at, deadline)),
                Some(accepted),
            ));
        }
    }
    // The RDB string length: longer than the payload (a short read), shorter, and absurd, in every width.
    let len = snapshot.len() as u64;
    for claimed in [
        len + 1,
        len + 100,
        len - 1,
        0,
        0xffff_ffff,
        1 << 40,
        u64::MAX,
    ] {
        out.push(mutant(
            format!("RDB string length {len} -> {claimed}"),
            envelope(&header, &rdb_len(claimed), &snapshot),
            Some(false),
        ));
    }
    for width in [vec![0x80, 0, 0, 0, len as u8], {
        let mut wide = vec![0x81];
        wide.extend_from_slice(&len.to_be_bytes());
        wide
    }] {
        // The same length in a wider encoding is still a valid RDB string.
        out.push(mutant(
            format!("RDB string length in {} bytes", width.len()),
            envelope(&header, &width, &snapshot),
            Some(true),
        ));
    }
    // The integer and LZF string encodings where a plain string was written.
    for special in [0xc0u8, 0xc1, 0xc2, 0xc3] {
        out.push(mutant(
            format!("RDB string encoding {special:#x}"),
            envelope(&header, &[special, 0x7f, 0x7f, 0x7f, 0x7f], &snapshot),
            Some(false),
        ));
    }
}

/// LZF-specific mutants of the compressed form: its compressed and original lengths enlarged and shrunk.
fn lzf_mutants(body: &[u8], out: &mut Vec<Mutant>) {
    assert_eq!(body[11], 0xc3, "the compressed dump is LZF: {body:?}");
    let (clen, clen_size) = read_rdb_len(body, 12);
    let (ulen, ulen_size) = read_rdb_len(body, 12 + clen_size);
    let data = &body[12 + clen_size + ulen_size..];
    for (c, u) in [
        (clen + 1, ulen),
        (clen - 1, ulen),
        (clen + 1000, ulen),
        (u64::MAX, ulen),
        (clen, ulen + 1),
        (clen, ulen - 1),
        (clen, ulen * 100),
        (clen, 0xffff_ffff),
        (clen, u64::MAX),
        (clen, 0),
    ] {
        let mut mutated = body[..12].to_vec();
        mutated.extend(rdb_len(c));
        mutated.extend(rdb_len(u));
        mutated.extend_from_slice(data);
        out.push(mutant(
            format!("LZF lengths {clen}/{ulen} -> {c}/{u}"),
            mutated,
            Some(false),
        ));
    }
}

/// Checks that the restored roster at `key` is usable and that its rev only moves forward.
fn check_usable(con: &mut redis::Connection, key: &str, what: &str) {
    let (rev, members) = roster(con, key).unwrap_or_else(|e| panic!("{what}: ROSTER: {e}"));
    assert!(rev <= MAX_REV, "{what}: rev {rev} over the ceiling");
    let (count_rev, member_count, connections) = count(con, key).unwrap();
    assert_eq!(
        (count_rev, member_count),
        (rev, members.len() as u64),
        "{what}"
    );
    assert!(connections >= member_count, "{what}");
    // A command purges what expired, then joins: every event moves rev strictly forward. At the ceiling
    // it saturates (only a forged roster gets there): never backwards, never a wrap.
    let grew = |before: u64, after: u64| after > before || (before == MAX_REV && after == MAX_REV);
    let joined = join(con, key, "fresh-client", "fresh-id", "", &["TTL", "60000"])
        .unwrap_or_else(|e| panic!("{what}: JOIN on the restored roster: {e}"));
    assert!(joined.joined, "{what}");
    assert!(
        grew(rev, joined.rev),
        "{what}: rev went from {rev} to {}",
        joined.rev
    );
    let left = leave(con, key, "fresh-client").unwrap();
    assert!(
        grew(joined.rev, left.rev),
        "{what}: {} after {}",
        left.rev,
        joined.rev
    );
    // What was accepted also survives its own round trip.
    if redis::cmd("EXISTS").arg(key).query::<bool>(con).unwrap() {
        let dumped: Vec<u8> = redis::cmd("DUMP").arg(key).query(con).unwrap();
        redis::cmd("RESTORE")
            .arg(format!("{key}/again"))
            .arg(0)
            .arg(dumped)
            .arg("REPLACE")
            .query::<()>(con)
            .unwrap_or_else(|e| panic!("{what}: re-RESTORE of its own DUMP: {e}"));
        assert_eq!(
            roster(con, &format!("{key}/again")).unwrap(),
            roster(con, key).unwrap()
        );
    }
}

#[test]
fn damaged_payloads_are_refused_and_redis_lives() {
    let server = RedisServer::start();
    let mut con = server.connect();
    let source = "/presence/restore/source";
    // Repetitive data so that LZF compresses the dump; odd bytes in ids and data.
    join(
        &mut con,
        source,
        "c1",
        "alice",
        "a".repeat(60),
        &["TTL", "600000"],
    )
    .unwrap();
    join(
        &mut con,
        source,
        "c2",
        "alice",
        "a".repeat(60),
        &["TTL", "600000"],
    )
    .unwrap();
    join(
        &mut con,
        source,
        "c3",
        "b\r\n\0",
        "{\"x\":[1,2,3]}",
        &["TTL", "600000"],
    )
    .unwrap();
    config_set(&mut con, "rdbcompression", "no");
    let plain = Dump::parse(
        &redis::cmd("DUMP")
            .arg(source)
            .query::<Vec<u8>>(&mut con)
            .unwrap(),
    );
    // Fixed rev and deadlines instead of the clock's, so every run mutates exactly the same bytes.
    let plain = Dump {
        body: normalized(&plain.body),
        ..plain
    };
    let normal = "/presence/restore/normalized";
    redis::cmd("RESTORE")
        .arg(normal)
        .arg(0)
        .arg(plain.payload(&plain.body))
        .query::<()>(&mut con)
        .expect("the normalized dump loads");
    config_set(&mut con, "rdbcompression", "yes");
    let compressed = Dump::parse(
        &redis::cmd("DUMP")
            .arg(normal)
            .query::<Vec<u8>>(&mut con)
            .unwrap(),
    );

    let mut mutants = Vec::new();
    field_mutants(&plain.body, &mut mutants);
    blind_mutants("plain", &plain.body, &mut mutants);
    let plain_count = mutants.len();
    lzf_mutants(&compressed.body, &mut mutants);
    blind_mutants("lzf", &compressed.body, &mut mutants);

    let key = "/presence/restore/target";
    let (mut accepted, mut refused) = (0, 0);
    for (n, m) in mutants.iter().enumerate() {
        let dump = if n < plain_count { &plain } else { &compressed };
        let reply = redis::cmd("RESTORE")
            .arg(key)
            .arg(0)
            .arg(dump.payload(&m.body))
            .arg("REPLACE")
            .query::<Value>(&mut con);
        let ok = match reply {
            Ok(_) => true,
            Err(e) if e.code().is_some() => false,
            Err(e) => panic!(
                "mutant {n} ({}): no reply from Redis: {e}\nRedis log:\n{}",
                m.what,
                crash_lines(&server.log())
            ),
        };
        if let Some(expected) = m.expect {
            assert_eq!(ok, expected, "mutant {n} ({}): accepted = {ok}", m.what);
        }
        if ok {
            accepted += 1;
            check_usable(&mut con, key, &m.what);
        } else {
            refused += 1;
            let exists: bool = redis::cmd("EXISTS").arg(key).query(&mut con).unwrap();
            assert!(!exists, "{}: a refused RESTORE leaves no key", m.what);
        }
        let _: () = redis::cmd("DEL").arg(key).query(&mut con).unwrap();
    }
    println!(
        "module_restore: {} mutants, {accepted} accepted (each a usable roster), {refused} refused",
        mutants.len()
    );
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
    let info: String = redis::cmd("INFO").arg("presence").query(&mut con).unwrap();
    assert!(info.contains("presence_panics:0"), "{info}");
}

#[test]
fn a_forged_rev_does_not_lift_the_start_of_every_new_channel() {
    let server = RedisServer::start();
    let mut con = server.connect();
    let source = "/presence/forged/source";
    join(&mut con, source, "c1", "alice", "", &["TTL", "600000"]).unwrap();
    config_set(&mut con, "rdbcompression", "no");
    let dump = Dump::parse(
        &redis::cmd("DUMP")
            .arg(source)
            .query::<Vec<u8>>(&mut con)
            .unwrap(),
    );
    let (header, snapshot) = split_plain(&dump.body);
    // Accepted (it is at the ceiling, not over it), then dropped: a dropped roster's rev lifts the floor
    // that new rosters start from, so that a channel deleted and created again never goes back.
    let forged = envelope(
        &header,
        &rdb_len(snapshot.len() as u64),
        &with_u64(&snapshot, 4, MAX_REV),
    );
    redis::cmd("RESTORE")
        .arg("/presence/forged/high")
        .arg(0)
        .arg(dump.payload(&forged))
        .query::<()>(&mut con)
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg("/presence/forged/high")
        .query(&mut con)
        .unwrap();
    // But one forged key must not make every new channel start at the ceiling, where rev saturates and
    // listeners drop every diff as not newer.
    let clock_like = join(&mut con, "/presence/forged/new", "c", "id", "", &[])
        .unwrap()
        .rev;
    assert!(
        clock_like < MAX_REV / 2,
        "a new channel starts near the clock, not at {clock_like}"
    );
    let next = join(&mut con, "/presence/forged/new", "c2", "id2", "", &[]).unwrap();
    assert_eq!(next.rev, clock_like + 1);
}

#[test]
fn a_damaged_rdb_file_is_refused_at_startup_cleanly() {
    let mut server = RedisServer::start_with(ServerOptions {
        // Plain strings, and no file checksum, so that an edited roster reaches the module.
        server_args: ["--rdbcompression", "no", "--rdbchecksum", "no"]
            .map(String::from)
            .to_vec(),
        ..Default::default()
    });
    let mut con = server.connect();
    join(
        &mut con,
        "/presence/rdb",
        "c1",
        "alice",
        "",
        &["TTL", "600000"],
    )
    .unwrap();
    redis::cmd("SAVE").query::<()>(&mut con).unwrap();
    let path = server.dir().join("dump.rdb");
    let mut rdb = std::fs::read(&path).unwrap();
    let at = rdb
        .windows(4)
        .position(|w| w == b"PRS\x01")
        .expect("the roster snapshot in the RDB");
    rdb[at + 4..at + 12].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&path, rdb).unwrap();

    // Redis refuses a file it cannot load, as it does for its own types: it exits at startup. What
    // matters is how: the module refused the value and said why, nothing crashed.
    server.kill9();
    let log_file = server.dir().join("reload.log");
    let port = free_port();
    let child = std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .arg("--dir")
        .arg(server.dir())
        .arg("--logfile")
        .arg(&log_file)
        .arg("--loadmodule")
        .arg(module_path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server");
    let mut child = KillOnDrop(child);
    let url = format!("redis://127.0.0.1:{port}");
    let mut status = None;
    wait_until(
        "redis-server to exit, or to serve",
        Duration::from_secs(20),
        || {
            status = child.0.try_wait().unwrap();
            status.is_some() || ping(&url)
        },
    );
    let log = std::fs::read_to_string(&log_file).unwrap_or_default();
    // (Its exit status is whatever the redis-check-rdb run it does on the way out says, often 0.)
    assert!(
        status.is_some(),
        "Redis loaded a roster with rev 2^64-1 and serves it:\n{log}"
    );
    assert!(
        log.contains(
            "presence: refused a roster that does not load: malformed input: revision out of range"
        ),
        "{log}"
    );
    assert!(
        !log.contains("Guru Meditation") && !log.contains("crashed by signal"),
        "{log}"
    );
}

fn ping(url: &str) -> bool {
    redis::Client::open(url)
        .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
        .is_ok()
}

/// Kills a process this test started if it is still running when the test ends (also on failure).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn config_set(con: &mut redis::Connection, name: &str, value: &str) {
    redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query::<()>(con)
        .unwrap();
}

/// The plain dump with rev 1,000,000 and every deadline in 2096.
fn normalized(body: &[u8]) -> Vec<u8> {
    let (header, snapshot) = split_plain(body);
    let mut snapshot = with_u64(&snapshot, 4, 1_000_000);
    for at in fields(&snapshot).deadlines {
        snapshot = with_u64(&snapshot, at, 4_000_000_000_000_000);
    }
    envelope(&header, &rdb_len(snapshot.len() as u64), &snapshot)
}

fn crash_lines(log: &str) -> String {
    log.lines()
        .filter(|l| {
            ["Guru", "panic", "crashed by signal", "ASSERT"]
                .iter()
                .any(|w| l.contains(w))
        })
        .take(20)
        .collect::<Vec<_>>()
        .join("\n")
}
