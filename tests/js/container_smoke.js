// The container setup's smoke test, with the real Faye Node client (run by scripts/container-test.sh):
//   node container_smoke.js URL_1 URL_2 CHANNEL
// Two processes sharing one Redis as presence store and engine: alice joins the presence CHANNEL
// through the first, bob through the second (long-polling); each sees the other in the roster; bob
// publishes on a plain channel and alice, on the other process, receives it; bob leaves and alice is
// told. Prints "container smoke ok" at the end.
'use strict';
const faye = require('faye');
const { Waiters, run, assert, within } = require('./lib');

const [url1, url2, channel] = process.argv.slice(2);

function member(url, id, transport) {
  const client = new faye.Client(url, { timeout: 10, retry: 1 });
  if (transport === 'long-polling') client.disable('websocket');
  client.roster = null;
  client.addExtension({
    outgoing(message, callback) {
      if (message.channel === '/meta/subscribe' && message.subscription === channel) {
        message.ext = { presence: { id, data: { name: id } } };
      }
      callback(message);
    },
    incoming(message, callback) {
      if (message.channel === '/meta/subscribe' && message.subscription === channel && message.successful) {
        client.roster = Object.keys(message.ext.presence.subscribe).sort();
      }
      callback(message);
    },
  });
  return client;
}

run(async () => {
  const waiters = new Waiters();
  const alice = member(url1, 'alice', 'websocket');
  const bob = member(url2, 'bob', 'long-polling');
  const seen = [];
  const received = [];
  await within('alice joins', alice.subscribe(channel, (data) => { seen.push(data); waiters.poke(); }));
  assert(JSON.stringify(alice.roster) === '["alice"]', `alice's roster ${alice.roster}`);
  await within('bob joins', bob.subscribe(channel, () => {}));
  assert(JSON.stringify(bob.roster) === '["alice","bob"]', `bob's roster ${bob.roster}`);
  await waiters.until('alice sees bob join', () => seen.some((d) => d.subscribe && 'bob' in d.subscribe));

  const plain = `/plain${channel}`;
  await within('alice subscribes to the plain channel', alice.subscribe(plain, (d) => { received.push(d); waiters.poke(); }));
  await within('bob publishes', bob.publish(plain, { from: 'bob' }));
  await waiters.until('alice receives across processes', () => received.some((d) => d.from === 'bob'));

  await within('bob disconnects', bob.disconnect() || Promise.resolve());
  await waiters.until('alice sees bob leave', () => seen.some((d) => d.unsubscribe && 'bob' in d.unsubscribe));
  alice.disconnect();
  console.log('container smoke ok');
  return { seen: seen.length };
});
