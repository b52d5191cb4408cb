// A real Faye client that subscribes, says READY <clientId>, and then waits to be killed: the test kills
// it to simulate a client that stops polling without disconnecting.
//   node faye_idle.js URL TRANSPORT CHANNEL
'use strict';
const faye = require('faye');

const [url, transport, channel] = process.argv.slice(2);
const client = new faye.Client(url, { timeout: 10, retry: 1 });
if (transport === 'long-polling') client.disable('websocket');
let id = null;
client.addExtension({
  incoming(message, callback) {
    if (message.channel === '/meta/handshake' && message.successful) id = message.clientId;
    callback(message);
  },
});
client.subscribe(channel, () => {}).then(
  () => console.log('READY ' + id),
  (err) => { console.error('FAIL: ' + err.message); process.exit(1); },
);
setTimeout(() => { console.error('FAIL: never killed'); process.exit(1); }, 60000);
