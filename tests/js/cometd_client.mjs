// Two real CometD 9 clients (through cometd-nodejs-client) on a forced transport:
//   node cometd_client.mjs URL TRANSPORT PREFIX [URL_B]   TRANSPORT: long-polling | websocket
// Covers handshake (over the socket itself for websocket), subscribe, wildcard, publish and receive,
// unsubscribe, a subscribe the server's extension rejects, and disconnect. Client B talks to URL_B when
// given (another faye-presence process sharing the Redis engine); the rejected subscribe is then one to
// a presence channel without a presence id, else one under /rejected (the bayeux tests' extension).
import { adapt } from 'cometd-nodejs-client';
import lib from './lib.js';

adapt();
const { CometD } = await import('cometd');
const { Waiters, run, assert, within } = lib;

const [url, transport, prefix, urlB] = process.argv.slice(2);
const [rejectedChannel, rejectedText] = urlB
  ? [`/presence${prefix}`, 'No presence id']
  : [`/rejected${prefix}`, 'Rejected by test extension'];

function makeClient(waiters, url) {
  const cometd = new CometD();
  cometd.configure({ url, logLevel: 'warn', maxNetworkDelay: 5000 });
  for (const type of cometd.getTransportTypes()) {
    if (type !== transport) cometd.unregisterTransport(type);
  }
  assert(cometd.getTransportTypes().join() === transport, `only ${transport} left`);
  cometd.connectionTypes = new Set();
  cometd.received = [];
  cometd.registerExtension('record', {
    outgoing(message) {
      if (message.channel === '/meta/connect') cometd.connectionTypes.add(message.connectionType);
      return message;
    },
    incoming(message) {
      waiters.poke();
      return message;
    },
  });
  return cometd;
}

// Turns CometD's reply callback into a promise that rejects on `successful: false`.
function call(what, start) {
  return within(what, new Promise((resolve, reject) => {
    start((reply) => (reply.successful ? resolve(reply) : reject(new Error(`${what}: ${reply.error}`))));
  }));
}

run(async () => {
  const waiters = new Waiters();
  const a = makeClient(waiters, url);
  const b = makeClient(waiters, urlB || url);
  const ha = await call('A handshake', (cb) => a.handshake(cb));
  const hb = await call('B handshake', (cb) => b.handshake(cb));
  const record = (client) => (message) => { client.received.push(message); waiters.poke(); };

  let exact;
  await call('A subscribe', (cb) => { exact = a.subscribe(`${prefix}/exact`, record(a), cb); });
  await call('A subscribe wildcard', (cb) => a.subscribe(`${prefix}/wild/*`, record(a), cb));
  await call('B subscribe', (cb) => b.subscribe(`${prefix}/back`, record(b), cb));

  await call('B publish', (cb) => b.publish(`${prefix}/exact`, { n: 1 }, cb));
  await call('B publish wild', (cb) => b.publish(`${prefix}/wild/x`, { n: 2 }, cb));
  await call('A publish', (cb) => a.publish(`${prefix}/back`, { n: 3 }, cb));
  const got = (client, channel, n) => () =>
    client.received.some((m) => m.channel === channel && m.data && m.data.n === n);
  await waiters.until('A gets exact', got(a, `${prefix}/exact`, 1));
  await waiters.until('A gets wildcard', got(a, `${prefix}/wild/x`, 2));
  await waiters.until('B gets back', got(b, `${prefix}/back`, 3));

  await call('A unsubscribe', (cb) => a.unsubscribe(exact, cb));

  const rejected = await within('rejected subscribe', new Promise((resolve) => {
    a.subscribe(rejectedChannel, () => {}, (reply) => resolve(reply));
  }));
  assert(rejected.successful === false, `subscribe to ${rejectedChannel} fails`);
  assert(String(rejected.error).includes(rejectedText), `error text: ${rejected.error}`);

  await call('A disconnect', (cb) => a.disconnect(cb));
  await call('B disconnect', (cb) => b.disconnect(cb));
  return {
    a: ha.clientId,
    b: hb.clientId,
    aTypes: [...a.connectionTypes],
    bTypes: [...b.connectionTypes],
    transport: transport,
  };
});
