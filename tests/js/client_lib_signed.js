// The presence client library's signed identities against faye-presence --secret, run by
// presence_grace.rs:
//   node client_lib_signed.js URL CHANNEL SECRET
// `auth` is what an app's backend would hand the page: here a function of (clientId, channel) that
// signs {id, data} as the README says, returning a Promise, as a fetch to the backend would. A member
// with a wrong token is refused: onError is called and `ready` rejects.
'use strict';
const crypto = require('crypto');
const path = require('path');
const faye = require('faye');
const FayePresence = require(path.join(__dirname, '..', '..', 'clients', 'faye-presence.js'));
const { run, assert, within, Waiters } = require('./lib');

const [url, channel, secret] = process.argv.slice(2);

function signer(identity, key) {
  return (clientId, ch) => {
    const channelData = JSON.stringify(identity);
    const auth = crypto.createHmac('sha256', key).update(`${clientId}:${ch}:${channelData}`).digest('hex');
    return new Promise((resolve) => setTimeout(() => resolve({ channel_data: channelData, auth }), 5));
  };
}

run(async () => {
  const waiters = new Waiters();
  const errors = [];
  const join = (id, key) => {
    const client = new faye.Client(url, { timeout: 10, retry: 1 });
    const room = FayePresence.join(client, channel, null, null, {
      auth: signer({ id, data: { name: id.toUpperCase() } }, key),
      onJoin: () => waiters.poke(),
      onError: (e) => { errors.push(`${id}: ${e && e.message}`); waiters.poke(); },
    });
    return { client, room };
  };
  const alice = join('alice', secret);
  await within('alice to join', alice.room.ready);
  assert(JSON.stringify(alice.room.roster()) === JSON.stringify({ alice: { name: 'ALICE' } }),
    `alice's roster ${JSON.stringify(alice.room.roster())}`);
  const mallory = join('mallory', 'not the secret');
  const refused = await within('mallory to be refused', mallory.room.ready.then(() => null, (e) => e));
  assert(refused && /403/.test(String(refused.code || refused.message)), `mallory: ${refused && refused.message}`);
  assert(errors.length === 1 && errors[0].startsWith('mallory'), `errors ${errors}`);
  const bob = join('bob', secret);
  await within('bob to join', bob.room.ready);
  await waiters.until('alice to see bob', () => 'bob' in alice.room.roster());
  assert(!('mallory' in alice.room.roster()), 'mallory is not in the roster');
  for (const m of [alice, bob, mallory]) m.client.disconnect();
  return { roster: alice.room.roster(), refused: refused.message };
});
