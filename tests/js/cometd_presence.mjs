// A real CometD 9 client (through cometd-nodejs-client) joins a presence channel and disconnects at
// once, as a page does when it closes right after joining:
//   node cometd_presence.mjs URL TRANSPORT CHANNEL ID ROUNDS     TRANSPORT: long-polling | websocket
// ROUNDS times, one after the other, a client joins as ID-<round> and disconnects. Checks that each
// subscribe reply carries the roster with the client, and that each disconnect succeeds (CometD aborts a
// pending disconnect when its held /meta/connect is answered with `reconnect: handshake`).
import { adapt } from 'cometd-nodejs-client';
import lib from './lib.js';

adapt();
const { CometD } = await import('cometd');
const { run, assert, within } = lib;

const [url, transport, channel, prefix, rounds] = process.argv.slice(2);

function call(what, start) {
  return within(what, new Promise((resolve) => start(resolve)));
}

async function joinAndLeave(id) {
  const cometd = new CometD();
  cometd.configure({ url, logLevel: 'warn', maxNetworkDelay: 5000 });
  for (const type of cometd.getTransportTypes()) {
    if (type !== transport) cometd.unregisterTransport(type);
  }
  const handshake = await call('handshake', (cb) => cometd.handshake(cb));
  assert(handshake.successful, `handshake: ${JSON.stringify(handshake)}`);
  const subscribed = await call('presence subscribe', (cb) =>
    cometd.subscribe(channel, () => {}, { ext: { presence: { id, data: { via: 'cometd' } } } }, cb));
  assert(subscribed.successful, `subscribe: ${JSON.stringify(subscribed)}`);
  const roster = subscribed.ext && subscribed.ext.presence && subscribed.ext.presence.subscribe;
  assert(roster && roster[id] && roster[id].via === 'cometd', `roster in the reply: ${JSON.stringify(subscribed.ext)}`);
  const disconnected = await call('disconnect', (cb) => cometd.disconnect(cb));
  assert(disconnected.successful, `${id}: disconnect succeeds: ${JSON.stringify(disconnected)}`);
}

run(async () => {
  for (let round = 0; round < Number(rounds); round++) await joinAndLeave(`${prefix}-${round}`);
  return { rounds: Number(rounds), transport };
});
