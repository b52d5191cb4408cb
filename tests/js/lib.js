// Helpers shared by the end-to-end scripts. Each script prints `RESULT <json>` on success and exits 0,
// or prints the failure and exits 1. Every wait is bounded so a broken server fails the test, never hangs it.
'use strict';

const LIMIT_MS = 15000;

// Resolves with the promise's value, or rejects after `ms` naming what we were waiting for.
function within(what, promise, ms = LIMIT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// A promise that resolves the first time `predicate()` is true, checked whenever `poke()` is called.
class Waiters {
  constructor() { this.list = []; }
  until(what, predicate) {
    if (predicate()) return Promise.resolve();
    return within(what, new Promise((resolve) => this.list.push({ predicate, resolve })));
  }
  poke() {
    this.list = this.list.filter((w) => (w.predicate() ? (w.resolve(), false) : true));
  }
}

// Runs `main`, prints its result, and exits with the right code.
function run(main) {
  const guard = setTimeout(() => { console.error('FAIL: script took too long'); process.exit(1); }, 60000);
  main().then((result) => {
    clearTimeout(guard);
    console.log('RESULT ' + JSON.stringify(result));
    process.exit(0);
  }, (err) => {
    console.error('FAIL: ' + (err && err.stack ? err.stack : err));
    process.exit(1);
  });
}

function assert(cond, what) {
  if (!cond) throw new Error('assertion failed: ' + what);
}

module.exports = { within, Waiters, run, assert };
