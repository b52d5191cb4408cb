// The Faye browser bundle in Debian's Chromium (driven by playwright-core), on a page served from
// another origin than the Bayeux server, so Faye handshakes over JSONP and then uses MODE:
//   node browser.js URL MODE PREFIX     MODE: websocket | cross-origin-long-polling | callback-polling
// A Faye Node client (long-polling) in this process talks to the page across transports.
'use strict';
const fs = require('fs');
const http = require('http');
const os = require('os');
const path = require('path');
const faye = require('faye');
const { chromium } = require('playwright-core');
const { Waiters, run, assert, within } = require('./lib');

const [url, mode, prefix] = process.argv.slice(2);
const bundle = fs.readFileSync(require.resolve('faye/client/faye-browser.js'));
const page = `<!doctype html><meta charset="utf-8"><title>bayeux e2e</title>
<script src="/faye-browser.js"></script>
<script>
window.runTest = async (url, mode, prefix) => {
  const client = new Faye.Client(url, { timeout: 10, retry: 1 });
  if (mode !== 'websocket') client.disable('websocket');
  if (mode === 'callback-polling') client.disable('cross-origin-long-polling');
  const types = [];
  let id = null;
  const received = [];
  const waiters = [];
  const poke = () => { for (const w of waiters.splice(0)) w(); };
  const until = (what, pred) => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('timed out waiting for ' + what)), 15000);
    const check = () => (pred() ? (clearTimeout(timer), resolve()) : waiters.push(check));
    check();
  });
  client.addExtension({
    outgoing(m, cb) {
      if (m.channel === '/meta/connect' && types[types.length - 1] !== m.connectionType) types.push(m.connectionType);
      cb(m);
    },
    incoming(m, cb) { if (m.channel === '/meta/handshake' && m.successful) id = m.clientId; cb(m); poke(); },
  });
  await client.subscribe(prefix + '/from-node', (d) => { received.push(d); poke(); });
  await client.subscribe(prefix + '/wild/*', (d) => { received.push(d); poke(); });
  window.ready = true;
  await until('message from node', () => received.some((d) => d.from === 'node'));
  await client.publish(prefix + '/wild/x', { from: 'self' });
  await until('own wildcard message', () => received.some((d) => d.from === 'self'));
  await client.publish(prefix + '/from-browser', { from: 'browser' });
  let rejected = null;
  await client.subscribe('/rejected' + prefix, () => {}).then(() => {}, (e) => { rejected = e.message; });
  client.unsubscribe(prefix + '/wild/*');
  await client.disconnect();
  return { id, types, rejected };
};
</script>`;

run(async () => {
  // The page's own origin: another port than the Bayeux server.
  const pageServer = http.createServer((req, res) => {
    if (req.url === '/faye-browser.js') {
      res.writeHead(200, { 'Content-Type': 'text/javascript' });
      return res.end(bundle);
    }
    res.writeHead(200, { 'Content-Type': 'text/html' });
    res.end(page);
  });
  await new Promise((resolve) => pageServer.listen(0, '127.0.0.1', resolve));
  const pageUrl = `http://127.0.0.1:${pageServer.address().port}/`;
  assert(new URL(pageUrl).origin !== new URL(url).origin, 'page is cross-origin');

  const waiters = new Waiters();
  const node = new faye.Client(url, { timeout: 10, retry: 1 });
  node.disable('websocket');
  const fromBrowser = [];
  await within('node subscribe', node.subscribe(`${prefix}/from-browser`, (d) => { fromBrowser.push(d); waiters.poke(); }));

  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bayeux-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const tab = await context.newPage();
    const logs = [];
    tab.on('console', (m) => logs.push(m.text()));
    tab.on('pageerror', (e) => logs.push('pageerror: ' + e.message));
    await tab.goto(pageUrl);
    const result = tab.evaluate(([u, m, p]) => window.runTest(u, m, p), [url, mode, prefix]);
    result.catch(() => {});
    await within('page ready', tab.waitForFunction(() => window.ready === true, null, { timeout: 20000 }), 25000);
    await within('node publish', node.publish(`${prefix}/from-node`, { from: 'node' }));
    const out = await within('page test', result, 40000).catch((e) => {
      throw new Error(`${e.message}\npage console:\n${logs.join('\n')}`);
    });
    await waiters.until('node receives from browser', () => fromBrowser.some((d) => d.from === 'browser'));
    assert(out.rejected === 'Rejected by test extension', `rejection: ${out.rejected}`);
    await within('node disconnect', node.disconnect());
    return out;
  } finally {
    await context.close();
    pageServer.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
});
