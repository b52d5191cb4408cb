// A long-running driver of real Faye clients for the presence end-to-end tests, steered by the Rust
// tests through JSON lines:
//   node presence_driver.js
// stdin, one command a line: {"req": N, "op": ..., ...}. Every command is answered on stdout, once, with
// {"ev": "done", "req": N, "ok": true, ...} or {"ev": "done", "req": N, "ok": false, "error": "..."}.
// Besides the answers, stdout carries, in the order the clients saw them:
//   {"ev": "msg", "client": NAME, "channel": C, "data": D, "rev": R, "from": F}  every non-meta message a
//                                  client receives (R, F: the message's ext.presence.rev and .from)
//   {"ev": "fault", "client": NAME, "error": "..."}                  anything unexpected inside a client
// Ops:
//   create      {name, url, transport: "long-polling"|"websocket"}  a client (no traffic yet)
//   connect     {name}                       handshake; answers {clientId}
//   subscribe   {name, channel, presence?, signed?}  presence: the ext.presence object to send (omit for
//               none); signed: {secret, channel_data, client_id?, channel?, tamper?} computes
//               ext.presence = {channel_data, auth} with HMAC-SHA256 over `clientId:channel:channel_data`
//               (client_id/channel override what is signed; tamper replaces channel_data after signing).
//               Answers {ext} (the reply's ext) or ok=false with error (Faye's message) and raw (the
//               reply's error text).
//   unsubscribe {name, channel}              answers once the server confirmed it
//   publish     {name, channel, data}        answers once the server accepted it, or ok=false
//   disconnect  {name}                       answers once the server confirmed it
//   freeze      {name}                       stops the client dead: it sends nothing more and drops its
//                                            transport, like a client whose machine went away
//   exit        {}                           exits the process
'use strict';
const crypto = require('crypto');
const readline = require('readline');
const faye = require('faye');

const LIMIT_MS = 20000;
const clients = new Map();

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function within(what, promise, ms = LIMIT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function makeClient(name, url, transport) {
  const client = new faye.Client(url, { timeout: 10, retry: 1 });
  if (transport === 'long-polling') client.disable('websocket');
  const state = {
    client,
    clientId: null,
    frozen: false,
    // channel -> ext.presence to put on the next /meta/subscribe for it
    pendingExt: new Map(),
    // waiters for meta replies: [{channel, subscription, resolve}]
    waiters: [],
    handshakeWaiters: [],
    // message id -> subscription of the meta message sent with it (a reply may leave `subscription` out)
    sentFor: new Map(),
  };
  client.addExtension({
    outgoing(message, callback) {
      if (state.frozen) return; // dropped: the server never hears from this client again
      if (message.id && message.subscription) state.sentFor.set(message.id, message.subscription);
      if (message.channel === '/meta/subscribe' && state.pendingExt.has(message.subscription)) {
        message.ext = Object.assign({}, message.ext || {}, { presence: state.pendingExt.get(message.subscription) });
      }
      callback(message);
    },
    incoming(message, callback) {
      if (state.frozen) return;
      if (message.channel === '/meta/handshake' && message.successful) {
        state.clientId = message.clientId;
        const ws = state.handshakeWaiters;
        state.handshakeWaiters = [];
        ws.forEach((resolve) => resolve(message.clientId));
      }
      if (message.channel.startsWith('/meta/')) {
        const subscription = message.subscription !== undefined ? message.subscription : state.sentFor.get(message.id);
        state.waiters = state.waiters.filter((w) => {
          if (w.channel === message.channel && (w.subscription === undefined || w.subscription === subscription)) {
            w.resolve(message);
            return false;
          }
          return true;
        });
      } else if ('data' in message) { // not a publish acknowledgement
        const presence = message.ext && message.ext.presence ? message.ext.presence : {};
        const or = (v) => (v === undefined ? null : v);
        emit({ ev: 'msg', client: name, channel: message.channel, data: message.data, rev: or(presence.rev), from: or(presence.from) });
      }
      callback(message);
    },
  });
  return state;
}

function metaReply(state, channel, subscription) {
  return new Promise((resolve) => state.waiters.push({ channel, subscription, resolve }));
}

function get(name) {
  const state = clients.get(name);
  if (!state) throw new Error(`no client named ${name}`);
  return state;
}

async function connect(state) {
  if (state.clientId) return state.clientId;
  const got = new Promise((resolve) => state.handshakeWaiters.push(resolve));
  state.client.connect();
  return within('handshake', got);
}

const ops = {
  async create(cmd) {
    if (clients.has(cmd.name)) throw new Error(`client ${cmd.name} exists`);
    clients.set(cmd.name, makeClient(cmd.name, cmd.url, cmd.transport));
    return {};
  },
  async connect(cmd) {
    return { clientId: await connect(get(cmd.name)) };
  },
  async subscribe(cmd) {
    const state = get(cmd.name);
    const channel = cmd.channel;
    if (cmd.signed) {
      const s = cmd.signed;
      const clientId = await connect(state);
      const auth = crypto.createHmac('sha256', s.secret)
        .update(`${s.client_id || clientId}:${s.channel || channel}:${s.channel_data}`)
        .digest('hex');
      state.pendingExt.set(channel, { channel_data: s.tamper === undefined ? s.channel_data : s.tamper, auth });
    } else if (cmd.presence !== undefined) {
      state.pendingExt.set(channel, cmd.presence);
    } else {
      state.pendingExt.delete(channel);
    }
    const reply = metaReply(state, '/meta/subscribe', channel);
    const subscription = state.client.subscribe(channel, () => {});
    let error = null;
    await within(`subscribe to ${channel}`, subscription.then(() => {}, (e) => { error = e; }));
    const message = await within(`subscribe reply for ${channel}`, reply);
    if (error) return { ok: false, error: error.message, raw: message.error || null };
    return { ext: message.ext === undefined ? null : message.ext };
  },
  async unsubscribe(cmd) {
    const state = get(cmd.name);
    const reply = metaReply(state, '/meta/unsubscribe', cmd.channel);
    state.client.unsubscribe(cmd.channel);
    const message = await within(`unsubscribe reply for ${cmd.channel}`, reply);
    if (!message.successful) return { ok: false, error: message.error || 'unsuccessful' };
    return {};
  },
  async publish(cmd) {
    const state = get(cmd.name);
    let error = null;
    await within(`publish to ${cmd.channel}`, state.client.publish(cmd.channel, cmd.data).then(() => {}, (e) => { error = e; }));
    if (error) return { ok: false, error: error.message };
    return {};
  },
  // `count` publishes of {seq: 0..count-1} sent back to back (the client queues them in order), then
  // every acknowledgement awaited: a burst, as a chat client sends when it reconnects.
  async burst(cmd) {
    const state = get(cmd.name);
    const sent = [];
    for (let seq = 0; seq < cmd.count; seq++) {
      sent.push(state.client.publish(cmd.channel, { seq, from: cmd.name }));
    }
    const errors = [];
    await within(`burst to ${cmd.channel}`, Promise.all(sent.map((p) => p.then(() => {}, (e) => { errors.push(e.message); }))));
    if (errors.length) return { ok: false, error: errors.join('; ') };
    return {};
  },
  async disconnect(cmd) {
    const state = get(cmd.name);
    const done = state.client.disconnect();
    if (done) await within('disconnect', done);
    return {};
  },
  async freeze(cmd) {
    const state = get(cmd.name);
    state.frozen = true;
    try { state.client._dispatcher.close(); } catch (e) { /* already closed */ }
    return {};
  },
  async exit() {
    process.exit(0);
  },
};

process.on('unhandledRejection', (e) => emit({ ev: 'fault', client: null, error: String(e && e.stack || e) }));
process.on('uncaughtException', (e) => emit({ ev: 'fault', client: null, error: String(e && e.stack || e) }));

const lines = readline.createInterface({ input: process.stdin });
lines.on('line', (line) => {
  if (!line.trim()) return;
  let cmd;
  try { cmd = JSON.parse(line); } catch (e) {
    emit({ ev: 'fault', client: null, error: `bad command ${line}: ${e.message}` });
    return;
  }
  const op = ops[cmd.op];
  if (!op) { emit({ ev: 'done', req: cmd.req, ok: false, error: `unknown op ${cmd.op}` }); return; }
  op(cmd).then(
    (result) => emit(Object.assign({ ev: 'done', req: cmd.req, ok: true }, result)),
    (e) => emit({ ev: 'done', req: cmd.req, ok: false, error: String(e && e.message || e) }),
  );
});
// The test's end (or its crash) closes stdin: leave without saying goodbye to the server.
lines.on('close', () => process.exit(0));
