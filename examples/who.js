#!/usr/bin/env node
// Who is here? A terminal member of a presence channel, with the real Faye client.
//
//   node examples/who.js [--url http://127.0.0.1:8000/faye] CHANNEL ID [JSON-DATA]
//
// Prints the roster when it joins, then every member that arrives or leaves. Ctrl-C leaves the channel.
// Uses the faye package installed for the tests (scripts/prerequisites.sh, or npm ci --prefix tests/js).
'use strict';
const path = require('path');
module.paths.push(path.join(__dirname, '..', 'tests', 'js', 'node_modules'));
const faye = require('faye');

const args = process.argv.slice(2);
let url = 'http://127.0.0.1:8000/faye';
if (args[0] === '--url') { url = args[1]; args.splice(0, 2); }
const [channel, id, data] = args;
if (!channel || !id) {
  console.error('usage: node examples/who.js [--url URL] CHANNEL ID [JSON-DATA]');
  process.exit(2);
}

const roster = new Map();
const show = () => console.log(`  here now: ${[...roster.keys()].join(', ') || '(nobody)'}`);
const client = new faye.Client(url);
client.addExtension({
  outgoing(message, callback) {
    // faye-presence's protocol: who we are travels in the subscribe's ext.
    if (message.channel === '/meta/subscribe' && message.subscription === channel) {
      message.ext = { presence: { id, data: data === undefined ? null : JSON.parse(data) } };
    }
    callback(message);
  },
  incoming(message, callback) {
    if (message.channel === '/meta/subscribe' && message.successful && message.ext && message.ext.presence) {
      for (const [member, value] of Object.entries(message.ext.presence.subscribe)) roster.set(member, value);
      console.log(`joined ${channel} as ${id} (rev ${message.ext.presence.rev})`);
      show();
    }
    callback(message);
  },
});

client.subscribe(channel, (message) => {
  for (const [member, value] of Object.entries(message.subscribe || {})) {
    console.log(`+ ${member} ${JSON.stringify(value)}`);
    roster.set(member, value);
  }
  for (const member of Object.keys(message.unsubscribe || {})) {
    console.log(`- ${member}`);
    roster.delete(member);
  }
  show();
}).then(undefined, (error) => {
  console.error(`subscribe failed: ${error.message}`);
  process.exit(1);
});

process.on('SIGINT', () => client.disconnect().then(() => process.exit(0), () => process.exit(0)));
