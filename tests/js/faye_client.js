// Two real Faye Node clients, A and B, each on a forced transport, against the server at URL:
//   node faye_client.js URL TRANSPORT_A TRANSPORT_B PREFIX
// TRANSPORT is `long-polling` (websocket disabled) or `websocket` (Faye's default; it handshakes over
// HTTP, then moves to the socket). Covers handshake, subscribe, wildcard subscribe, publish and receive
// both ways, unsubscribe, a subscribe the server's extension rejects (any channel under /rejected), and
// disconnect. Prints the client ids and the connection types each client used.
'use strict';
const faye = require('faye');
const { Waiters, run, assert, within } = require('./lib');

// A fifth argument `no-reject` skips the rejected-subscribe step (for servers without the test extension).
const [url, transportA, transportB, prefix, mode] = process.argv.slice(2);

function makeClient(transport, waiters) {
  const client = new faye.Client(url, { timeout: 10, retry: 1 });
  if (transport === 'long-polling') client.disable('websocket');
  // In order, repeats collapsed: Faye may send its first connect over HTTP while it is still
  // checking that the WebSocket works, then move to the socket.
  client.connectionTypes = [];
  client.replies = [];
  client.received = [];
  client.addExtension({
    outgoing(message, callback) {
      if (message.channel === '/meta/connect' && client.connectionTypes.at(-1) !== message.connectionType) {
        client.connectionTypes.push(message.connectionType);
      }
      callback(message);
    },
    incoming(message, callback) {
      if (message.channel === '/meta/handshake' && message.successful) client.id = message.clientId;
      if (message.channel.startsWith('/meta/')) client.replies.push(message);
      callback(message);
      waiters.poke();
    },
  });
  return client;
}

run(async () => {
  const waiters = new Waiters();
  const a = makeClient(transportA, waiters);
  const b = makeClient(transportB, waiters);
  const got = (client, channel, data) => () =>
    client.received.some((m) => m.channel === channel && m.data.n === data);
  const record = (client, channel) => (data) => {
    client.received.push({ channel, data });
    waiters.poke();
  };

  // Handshake happens on the first subscribe; wait for the server to confirm each subscription.
  await within('A subscribe exact', a.subscribe(`${prefix}/exact`, record(a, `${prefix}/exact`)));
  const wild = a.subscribe(`${prefix}/wild/*`, record(a, `${prefix}/wild/*`));
  const deep = a.subscribe(`${prefix}/deep/**`, record(a, `${prefix}/deep/**`));
  await within('A wildcard subscribes', Promise.all([wild, deep]));
  await within('B subscribe', b.subscribe(`${prefix}/back`, record(b, `${prefix}/back`)));

  // B -> A on an exact channel and through both wildcards; A -> B back.
  await within('B publishes', Promise.all([
    b.publish(`${prefix}/exact`, { n: 1 }),
    b.publish(`${prefix}/wild/one`, { n: 2 }),
    b.publish(`${prefix}/deep/x/y`, { n: 3 }),
  ]));
  await waiters.until('A receives exact', got(a, `${prefix}/exact`, 1));
  await waiters.until('A receives /wild/one via /wild/*', got(a, `${prefix}/wild/*`, 2));
  await waiters.until('A receives /deep/x/y via /deep/**', got(a, `${prefix}/deep/**`, 3));
  await within('A publishes', a.publish(`${prefix}/back`, { n: 4 }));
  await waiters.until('B receives from A', got(b, `${prefix}/back`, 4));

  // Unsubscribe, confirmed by the server's reply before anything else happens.
  a.unsubscribe(`${prefix}/exact`);
  await waiters.until('unsubscribe reply', () =>
    a.replies.some((m) => m.channel === '/meta/unsubscribe' && m.successful));

  // The server's test extension rejects subscriptions under /rejected.
  let rejected = null;
  if (mode !== 'no-reject') await within('rejected subscribe', a.subscribe(`/rejected${prefix}`, () => {}).then(
    () => { throw new Error('subscribe under /rejected was accepted'); },
    (error) => { rejected = error.message; },
  ));
  if (mode !== 'no-reject') {
    assert(rejected === 'Rejected by test extension', `rejection message, got ${rejected}`);
  }

  await within('A disconnect', a.disconnect());
  await within('B disconnect', b.disconnect());
  return {
    a: a.id,
    b: b.id,
    aTypes: a.connectionTypes,
    bTypes: b.connectionTypes,
    rejected,
  };
});
