// The presence client library (clients/faye-presence.js) with real Faye clients against real
// faye-presence servers, run by tests/tests/presence_grace.rs:
//   node client_lib.js URL_ONE URL_TWO REDIS_PORT CHANNEL
// The two servers share the Redis and run with batching (--batch-ms > 0, so messages carry `from`) and
// a leave grace. Exits 0 after every check passed, printing one line per phase; any failure (or
// anything taking over LIMIT_MS) exits 1 with the reason.
//
// Phases:
//   basics    two members on two processes see each other through the callbacks;
//   gap       a roster message to alice is held back (a test extension ahead of the library's), the next
//             one shows a gap (`from` past alice's rev + 1): the library subscribes again, tells the
//             difference, and drops the held message when it finally arrives (its rev is not newer);
//             meanwhile bob never sees alice leave, since her resubscribe falls within the grace;
//   stream    the servers' pub/sub connections to Redis are cut (CLIENT KILL TYPE pubsub) and a member
//             joins straight through Redis while they are down: the roster is right afterwards.
'use strict';
const net = require('net');
const path = require('path');
const faye = require('faye');
const FayePresence = require(path.join(__dirname, '..', '..', 'clients', 'faye-presence.js'));

const LIMIT_MS = 20000;
const [urlOne, urlTwo, redisPort, channel] = process.argv.slice(2);
const fail = (why) => {
  console.error(`client_lib: ${why}`);
  process.exit(1);
};
setTimeout(() => fail('took too long'), 3 * LIMIT_MS).unref();

function eventually(what, cond, ms = LIMIT_MS) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const poll = () => {
      let got;
      try {
        got = cond();
      } catch (e) {
        return reject(e);
      }
      if (got) return resolve(got);
      if (Date.now() - started > ms) return reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
      setTimeout(poll, 10);
    };
    poll();
  });
}

function equal(a, b, what) {
  const sa = JSON.stringify(sorted(a));
  const sb = JSON.stringify(sorted(b));
  if (sa !== sb) throw new Error(`${what}: ${sa} != ${sb}`);
}

function sorted(obj) {
  if (Array.isArray(obj)) return obj;
  const out = {};
  for (const k of Object.keys(obj).sort()) out[k] = obj[k];
  return out;
}

/// A member through the library, recording every callback.
function member(url, id, data, extensions = []) {
  const client = new faye.Client(url, { timeout: 10, retry: 1 });
  for (const e of extensions) client.addExtension(e);
  const log = [];
  const room = FayePresence.join(client, channel, id, data, {
    onJoin: (who, value) => log.push(`+${who}`),
    onLeave: (who) => log.push(`-${who}`),
    onUpdate: (who) => log.push(`~${who}`),
    onChange: () => log.push('change'),
    onError: (e) => fail(`${id}: ${e && e.message}`),
  });
  return { client, room, log, id };
}

/// A test extension, ahead of the library's, that can hold back the next roster message on the
/// channel and release it later.
function holder() {
  const h = { armed: false, held: null, release: null };
  h.extension = {
    incoming(message, callback) {
      if (h.armed && message.channel === channel && message.data) {
        h.armed = false;
        h.held = message;
        h.release = () => callback(message);
        return;
      }
      callback(message);
    },
  };
  return h;
}

/// One command to the test's Redis in RESP, answered by its first reply line.
function redis(...args) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(redisPort), '127.0.0.1');
    let reply = '';
    socket.on('data', (chunk) => {
      reply += chunk;
      if (reply.includes('\r\n')) {
        socket.end();
        if (reply.startsWith('-')) reject(new Error(`redis ${args[0]}: ${reply.trim()}`));
        else resolve(reply.split('\r\n')[0]);
      }
    });
    socket.on('error', reject);
    socket.write(`*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join(''));
  });
}

const count = (log, entry) => log.filter((e) => e === entry).length;

async function main() {
  // basics
  const h = holder();
  const alice = member(urlOne, 'alice', { name: 'Alice' }, [h.extension]);
  await alice.room.ready;
  equal(alice.room.roster(), { alice: { name: 'Alice' } }, 'alice alone');
  const bob = member(urlTwo, 'bob', { name: 'Bob' });
  await bob.room.ready;
  equal(bob.room.roster(), { alice: { name: 'Alice' }, bob: { name: 'Bob' } }, "bob's snapshot");
  await eventually('alice to see bob', () => alice.room.roster().bob);
  if (count(alice.log, '+bob') !== 1) throw new Error(`alice's log ${alice.log}`);
  if (typeof alice.room.rev() !== 'number') throw new Error('no rev kept');
  console.log('basics: ok');

  // gap: hold "+carol" back from alice, then carol leaves: that message's `from` is past alice's rev.
  h.armed = true;
  const carol = member(urlTwo, 'carol', null);
  await carol.room.ready;
  await eventually('bob to see carol', () => 'carol' in bob.room.roster());
  await eventually('the +carol message to be held', () => h.held);
  const heldRev = h.held.ext.presence.rev;
  await carol.room.leave();
  await eventually('bob to see carol leave (after the grace)', () => !('carol' in bob.room.roster()), LIMIT_MS);
  await eventually('alice to resync', () => alice.room.resyncs() === 1 && alice.room.rev() > heldRev);
  equal(alice.room.roster(), bob.room.roster(), "alice's roster after the resync");
  h.release(); // arrives after the fresh snapshot: not newer, dropped
  await new Promise((resolve) => setImmediate(resolve));
  equal(alice.room.roster(), bob.room.roster(), "alice's roster after the late message");
  if (alice.room.resyncs() !== 1) throw new Error(`resyncs ${alice.room.resyncs()}`);
  // She never saw carol: the snapshot told her nothing about her, and the late "+carol" was dropped.
  if (count(alice.log, '+carol') !== 0) throw new Error(`alice's log ${alice.log}`);
  // Her resubscribe fell within the grace window: bob never saw her leave.
  if (count(bob.log, '-alice') !== 0) throw new Error(`bob saw alice leave: ${bob.log}`);
  console.log(`gap: ok (held rev ${heldRev}, alice now at ${alice.room.rev()}, bob's log ${bob.log.join(' ')})`);

  // stream: cut the servers' pub/sub connections, then dave joins straight through Redis.
  const killed = Number((await redis('CLIENT', 'KILL', 'TYPE', 'pubsub')).slice(1));
  if (killed < 2) throw new Error(`only ${killed} pub/sub connections cut`);
  await redis('PRESENCE.JOIN', `presence:${channel}`, 'elsewhere', 'dave', '{"d":1}', 'TTL', '60000');
  await eventually('alice and bob to see dave', () => alice.room.roster().dave && bob.room.roster().dave);
  const zed = member(urlOne, 'zed', null);
  await zed.room.ready;
  await eventually('alice and bob to see zed', () => 'zed' in alice.room.roster() && 'zed' in bob.room.roster());
  equal(alice.room.roster(), zed.room.roster(), "alice's roster against a fresh snapshot");
  equal(bob.room.roster(), zed.room.roster(), "bob's roster against a fresh snapshot");
  console.log(`stream: ok (${killed} connections cut; roster ${Object.keys(zed.room.roster()).sort().join(',')})`);
  for (const m of [alice, bob, zed]) m.client.disconnect();
  process.exit(0);
}

main().catch((e) => fail(e.stack || e.message));
