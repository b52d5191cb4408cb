// The "who is online" page (examples/web/, served by faye-presence --static with the scripts at
// /faye/client.js and /faye/presence.js) in two headless Chromium tabs, run by presence_grace.rs:
//   node grace_browser.js BASE_URL GRACE_SECS REDIS_PORT [SCREENSHOT.png]
// 1. Two tabs join the same room with a name; each sees the other's avatar and a count of 2.
// 2. One reloads: its Faye client disconnects as the page unloads, the new page rejoins as the same
//    member (its id is in sessionStorage). Once Redis has dropped the old connection (its grace is over),
//    the other tab must never have seen it leave.
// 3. That tab closes: the other sees it leave, no sooner than the grace.
// Prints `RESULT {...}` (lib.js) with what it measured; with SCREENSHOT, writes the two tabs side by side.
'use strict';
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');
const { run, assert, within } = require('./lib');

const [base, graceSecs, redisPort, screenshot] = process.argv.slice(2);
const graceMs = Number(graceSecs) * 1000;
// Each run has a Redis of its own (the Rust test starts one), so the room needs no unique name.
const room = 'lobby';

/// `PRESENCE.COUNT` of the room's key, straight from Redis (RESP2: rev, n, members, n, connections, n).
function connections() {
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(redisPort), '127.0.0.1');
    let reply = '';
    const key = `presence:/presence/${room}`;
    socket.on('data', (chunk) => {
      reply += chunk;
      const lines = reply.split('\r\n');
      const at = lines.indexOf('connections');
      if (at >= 0 && lines.length > at + 1 && lines[at + 1].startsWith(':')) {
        socket.end();
        resolve(Number(lines[at + 1].slice(1)));
      } else if (reply.startsWith('-')) {
        socket.end();
        reject(new Error(reply));
      }
    });
    socket.on('error', reject);
    socket.write(`*2\r\n$14\r\nPRESENCE.COUNT\r\n$${Buffer.byteLength(key)}\r\n${key}\r\n`);
  });
}

async function eventually(what, cond, ms) {
  const started = Date.now();
  for (;;) {
    if (await cond()) return Date.now() - started;
    if (Date.now() - started > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const members = (tab) => tab.$$eval('#members li', (lis) => lis.map((li) => li.dataset.id));
const count = (tab) => tab.textContent('#count');
const log = (tab) => tab.evaluate(() => window.presenceLog.slice());

async function open(context, name, logs) {
  const tab = await context.newPage();
  tab.on('console', (m) => logs.push(`${name}: ${m.text()}`));
  tab.on('pageerror', (e) => logs.push(`${name}: pageerror: ${e.message}`));
  await tab.goto(`${base}/?room=${room}`);
  await tab.fill('#name', name);
  await tab.click('button');
  await tab.waitForFunction(() => window.presenceJoined === true, null, { timeout: 15000 });
  return tab;
}

run(async () => {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'presence-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    viewport: { width: 520, height: 360 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const logs = [];
  try {
    const ada = await open(context, 'Ada Lovelace', logs);
    const grace = await open(context, 'Grace Hopper', logs);
    const adaId = await ada.evaluate(() => window.presenceId);
    const graceId = await grace.evaluate(() => window.presenceId);
    assert(adaId !== graceId, 'two tabs are two members');
    await eventually('each tab to show both', async () =>
      (await members(ada)).length === 2 && (await members(grace)).length === 2, 15000);
    assert((await count(ada)) === '2 online', `count ${await count(ada)}`);
    assert((await members(ada)).includes(graceId), 'ada sees grace');
    assert((await members(grace)).includes(adaId), 'grace sees ada');
    if (screenshot) {
      // The two tabs side by side, as one picture for the README.
      const shots = [];
      for (const tab of [ada, grace]) {
        // A background tab does not run animations: bring it forward and let the avatars arrive.
        await tab.bringToFront();
        await tab.waitForFunction(() => document.getAnimations().every((a) => a.playState === 'finished'),
          null, { timeout: 5000 });
        shots.push((await tab.screenshot()).toString('base64'));
      }
      const board = await context.newPage();
      await board.setViewportSize({ width: 1060, height: 380 });
      await board.setContent(`<body style="margin:0;background:#dde1e8;display:flex;gap:20px;padding:10px">
        ${shots.map((s) => `<img style="box-shadow:0 2px 8px #0003" src="data:image/png;base64,${s}">`).join('')}</body>`);
      await board.screenshot({ path: screenshot });
      await board.close();
    }

    // 2. Grace's tab reloads within the grace window.
    const before = await connections();
    assert(before === 2, `connections before the reload: ${before}`);
    await grace.reload();
    await grace.waitForFunction(() => window.presenceJoined === true, null, { timeout: 15000 });
    assert((await grace.evaluate(() => window.presenceId)) === graceId, 'the reload kept the member id');
    await eventually('the reloaded tab to show both', async () => (await members(grace)).length === 2, 15000);
    // The old page's connection lingers for the grace, then Redis drops it (the module's timer).
    const lingered = await eventually('the old connection to go', async () => (await connections()) === 2,
      graceMs + 15000);
    const adaLog = await log(ada);
    assert(!adaLog.includes('-' + graceId), `ada saw grace leave on a reload: ${adaLog}`);
    assert((await members(ada)).includes(graceId), 'ada still shows grace');

    // 3. Grace's tab closes for good.
    const closed = Date.now();
    await grace.close({ runBeforeUnload: true });
    await eventually('ada to see grace leave', async () => !(await members(ada)).includes(graceId), graceMs + 20000);
    const leftAfter = Date.now() - closed;
    assert(leftAfter >= graceMs, `the leave came ${leftAfter} ms after the close, within the ${graceMs} ms grace`);
    assert((await count(ada)) === '1 online', `count ${await count(ada)}`);
    const finalLog = await log(ada);
    assert(finalLog.filter((e) => e === '-' + graceId).length === 1, `ada's log ${finalLog}`);
    return { lingeredMs: lingered, leaveAfterCloseMs: leftAfter, adaLog: finalLog };
  } catch (e) {
    throw new Error(`${e.message}\npage console:\n${logs.join('\n')}`);
  } finally {
    await context.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
});
