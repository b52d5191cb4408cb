// The presence client library (clients/faye-presence.js) against Node Faye with faye-presence 0.0.3
// (shim/bench/faye_presence_server.js), run by presence_grace.rs:
//   node client_lib_legacy.js URL CHANNEL
// That server sends no ext.presence.rev and its member values are the whole {id, data} object: the
// library must apply every message, keep no rev, and still tell joins and leaves.
'use strict';
const path = require('path');
const faye = require('faye');
const FayePresence = require(path.join(__dirname, '..', '..', 'clients', 'faye-presence.js'));
const { run, assert, Waiters } = require('./lib');

const [url, channel] = process.argv.slice(2);

function member(id, data, waiters) {
  const client = new faye.Client(url, { timeout: 10, retry: 1 });
  const log = [];
  const room = FayePresence.join(client, channel, id, data, {
    onJoin: (who) => { log.push(`+${who}`); waiters.poke(); },
    onLeave: (who) => { log.push(`-${who}`); waiters.poke(); },
    onUpdate: (who) => { log.push(`~${who}`); waiters.poke(); },
    onError: (e) => log.push(`error ${e && e.message}`),
  });
  return { client, room, log };
}

run(async () => {
  const waiters = new Waiters();
  const alice = member('alice', { name: 'Alice' }, waiters);
  await alice.room.ready;
  assert(alice.room.rev() === null, `a rev from an old server: ${alice.room.rev()}`);
  assert(JSON.stringify(alice.room.roster()) === JSON.stringify({ alice: { id: 'alice', data: { name: 'Alice' } } }),
    `alice's snapshot ${JSON.stringify(alice.room.roster())}`);
  const bob = member('bob', { name: 'Bob' }, waiters);
  await bob.room.ready;
  await waiters.until('alice to see bob', () => alice.log.includes('+bob'));
  assert(alice.room.roster().bob.data.name === 'Bob', JSON.stringify(alice.room.roster()));
  await bob.room.leave();
  await waiters.until('alice to see bob leave', () => alice.log.includes('-bob'));
  assert(alice.room.count() === 1, `count ${alice.room.count()}`);
  assert(alice.room.rev() === null, 'still no rev');
  assert(JSON.stringify(alice.log) === JSON.stringify(['+alice', '+bob', '-bob']), `alice's log ${alice.log}`);
  alice.client.disconnect();
  bob.client.disconnect();
  return { log: alice.log };
});
