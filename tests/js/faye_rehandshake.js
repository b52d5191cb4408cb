// A real Faye client whose server-side session is removed must handshake again, resubscribe, and keep
// receiving. Prints `READY <clientId>` once subscribed; the test then removes that client on the server
// and publishes `after` once the client has resubscribed.
//   node faye_rehandshake.js URL TRANSPORT CHANNEL
'use strict';
const faye = require('faye');
const { run, within } = require('./lib');

const [url, transport, channel] = process.argv.slice(2);

run(async () => {
  const client = new faye.Client(url, { timeout: 10, retry: 1 });
  if (transport === 'long-polling') client.disable('websocket');
  const ids = [];
  client.addExtension({
    incoming(message, callback) {
      if (message.channel === '/meta/handshake' && message.successful) ids.push(message.clientId);
      callback(message);
    },
  });
  let gotAfter;
  const after = new Promise((resolve) => { gotAfter = resolve; });
  await within('subscribe', client.subscribe(channel, (data) => { if (data === 'after') gotAfter(); }));
  console.log('READY ' + ids[0]);
  await within('message after the new handshake', after, 30000);
  await within('disconnect', client.disconnect());
  return { ids };
});
