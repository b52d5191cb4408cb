// A mass join with real Faye clients, checked the way a faye-presence front end keeps its roster:
//   node mass_join.js '{"urls": [...], "channel": C, "clients": N, "inflight": K, "transport": T, "limit_ms": L}'
// N clients (client i on urls[i % urls.length]) each handshake and make one round trip on a plain
// channel (so Faye has settled on its transport), then subscribe to the presence channel C with
// ext.presence = {id: "m<i>"}, at most K subscribes in flight. Each one keeps its roster as a front
// end does: it starts from ext.presence.subscribe in its own subscribe reply, then applies the roster
// messages that arrive after it, dropping any whose ext.presence.rev is not newer than what it has. A
// roster message that arrives before the client's own reply is counted as `early` (a front end has no
// roster to apply it to, and Faye drops it: the subscription is not active yet). A roster message whose
// ext.presence.from is past the client's rev + 1 is counted as a `gap`.
// When every client has subscribed, it waits (at most L ms) until every roster holds exactly the N ids,
// then prints one JSON line and exits:
//   {"clients": N, "subscribed": n, "failed": [...], "complete": n, "early": n, "stale": n, "gaps": n,
//    "wrong": [{"client": "m7", "size": 998, "missing": [...], "extra": [...]}, ...], "join_ms": t, "total_ms": t}
'use strict';
const faye = require('faye');

const opts = JSON.parse(process.argv[2]);
const ids = Array.from({ length: opts.clients }, (_, i) => `m${i}`);
const started = Date.now();
const members = [];
let early = 0;
let stale = 0;
let gaps = 0;
const failed = [];

function member(i) {
  const id = ids[i];
  const client = new faye.Client(opts.urls[i % opts.urls.length], { timeout: 10, retry: 1 });
  if (opts.transport === 'long-polling') client.disable('websocket');
  const state = { id, client, roster: null, rev: 0 };
  client.addExtension({
    outgoing(message, callback) {
      if (message.channel === '/meta/subscribe' && message.subscription === opts.channel) {
        message.ext = Object.assign({}, message.ext || {}, { presence: { id } });
      }
      callback(message);
    },
    incoming(message, callback) {
      if (message.channel === '/meta/subscribe' && message.successful && message.ext && message.ext.presence) {
        state.roster = new Map(Object.entries(message.ext.presence.subscribe));
        state.rev = message.ext.presence.rev;
      } else if (message.channel === opts.channel && message.data) {
        const rev = message.ext && message.ext.presence ? message.ext.presence.rev : 0;
        if (state.roster === null) {
          early += 1;
        } else if (rev <= state.rev) {
          stale += 1;
        } else {
          const from = message.ext.presence.from;
          if (from !== undefined && from > state.rev + 1) gaps += 1;
          state.rev = rev;
          for (const [who, value] of Object.entries(message.data.subscribe || {})) state.roster.set(who, value);
          for (const who of Object.keys(message.data.unsubscribe || {})) state.roster.delete(who);
        }
      }
      callback(message);
    },
  });
  members.push(state);
  // Faye sends a client's first messages over HTTP while it tries the WebSocket: a round trip on a plain
  // channel first, so the presence subscribe goes over the transport the client settled on.
  return new Promise((resolve) => {
    client.subscribe(`/warm-up/${id}`, () => {}).then(resolve, (e) => {
      failed.push({ client: id, error: `warm-up: ${e.message}` });
      resolve();
    });
  });
}

function join(state) {
  return new Promise((resolve) => {
    const subscription = state.client.subscribe(opts.channel, () => {});
    subscription.then(resolve, (e) => { failed.push({ client: state.id, error: e.message }); resolve(); });
  });
}

function isComplete(state) {
  return state.roster !== null && state.roster.size === ids.length && ids.every((id) => state.roster.has(id));
}

// Runs step(0..N-1) with at most K in flight.
async function inLanes(step) {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(opts.inflight, ids.length) }, async () => {
    while (next < ids.length) await step(next++);
  }));
}

async function main() {
  await inLanes((i) => member(i));
  const joinStarted = Date.now();
  await inLanes((i) => join(members[i]));
  const joinMs = Date.now() - joinStarted;
  const deadline = Date.now() + opts.limit_ms;
  while (Date.now() < deadline && !members.every(isComplete)) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const wrong = members.filter((s) => !isComplete(s)).map((s) => {
    const roster = s.roster || new Map();
    return {
      client: s.id,
      size: roster.size,
      missing: ids.filter((id) => !roster.has(id)).slice(0, 5),
      extra: [...roster.keys()].filter((id) => !ids.includes(id)).slice(0, 5),
    };
  });
  process.stdout.write(JSON.stringify({
    clients: ids.length,
    subscribed: ids.length - failed.length,
    failed: failed.slice(0, 5),
    complete: members.filter(isComplete).length,
    early,
    stale,
    gaps,
    wrong: wrong.slice(0, 5),
    join_ms: joinMs,
    total_ms: Date.now() - started,
  }) + '\n');
  process.exit(0);
}

main().catch((e) => { process.stderr.write(String(e && e.stack || e) + '\n'); process.exit(1); });
