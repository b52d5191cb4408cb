/*!
 * faye-presence.js: presence channels for the Faye client, in the browser and in Node.
 * One file, no build step, no dependencies (UMD: a <script> tag gives window.FayePresence,
 * require('./faye-presence') gives the same object, AMD works too).
 *
 *   var room = FayePresence.join(client, '/presence/lobby', 'alice', {name: 'Alice'}, {
 *     onJoin:   function (id, value) {},          // a member arrived
 *     onLeave:  function (id, value) {},          // a member's last connection left
 *     onUpdate: function (id, value, before) {},  // a member's data changed
 *     onChange: function (roster) {},             // after any of those: {id: value, ...}
 *     onError:  function (error) {}               // the subscribe was refused
 *   });
 *   room.roster(); room.count(); room.ready.then(...); room.leave();
 *
 * What it does for you, over the faye-presence protocol (see the server's README):
 * - puts ext.presence = {id, data} on the channel's /meta/subscribe, or, with callbacks.auth, the
 *   signed form {channel_data, auth} the app's backend gives (auth is that object, or a function
 *   (clientId, channel) returning it or a Promise of it; the member is then who channel_data says);
 * - keeps the roster: the subscribe reply's snapshot, then every {subscribe, unsubscribe} message,
 *   one id or many (batched messages);
 * - uses ext.presence.rev to drop what it already has (a message whose rev is not newer), and
 *   ext.presence.from to see a gap (from > rev + 1: something was missed); on a gap it subscribes
 *   again, and tells you the difference between what it had and the fresh snapshot;
 * - every later subscribe reply (Faye re-subscribes by itself after a new handshake) is a snapshot
 *   too, so the roster is right again after the server forgot the client;
 * - works with faye-presence 0.0.3 servers, which send no rev: then there is no duplicate or gap
 *   detection, every message is applied.
 */
(function (root, factory) {
  'use strict';
  if (typeof define === 'function' && define.amd) define([], factory);
  else if (typeof module === 'object' && module.exports) module.exports = factory();
  else root.FayePresence = factory();
}(typeof self !== 'undefined' ? self : this, function () {
  'use strict';

  var has = Object.prototype.hasOwnProperty;

  function same(a, b) {
    return JSON.stringify(a) === JSON.stringify(b);
  }

  function copy(roster) {
    var out = {};
    for (var id in roster) if (has.call(roster, id)) out[id] = roster[id];
    return out;
  }

  function presenceOf(message) {
    return (message.ext && message.ext.presence) || {};
  }

  function call(callbacks, name, args) {
    var fn = callbacks[name];
    if (typeof fn !== 'function') return;
    try {
      fn.apply(null, args);
    } catch (error) {
      // A throwing callback must not stop the roster from being kept (nor Faye's pipeline).
      if (typeof console !== 'undefined' && console.error) console.error('faye-presence: ' + name + ' threw', error);
    }
  }

  /**
   * Joins `channel` as `id` with `data` on the Faye `client`. Returns the membership:
   * {roster(), count(), rev(), ready, leave(), resyncs()}.
   */
  function join(client, channel, id, data, callbacks) {
    callbacks = callbacks || {};
    var roster = {};
    var rev = null;        // the last revision applied; null until a reply with rev (or never, on 0.0.3)
    var ready = false;     // a snapshot has been applied since the last (re)subscribe
    var pending = [];      // messages that came before the snapshot (only an old server sends those)
    var resyncs = 0;
    var left = false;
    var subscription = null;
    var sent = {};         // ids of our /meta/subscribe messages: a reply may leave `subscription` out
    var resolveReady, rejectReady;
    var readyPromise = new Promise(function (resolve, reject) { resolveReady = resolve; rejectReady = reject; });
    readyPromise.catch(function () {}); // the caller may not listen; onError is told anyway

    function set(next) {
      // Tell the difference between `roster` and `next`, then take `next`.
      var changed = false;
      var before = roster;
      roster = next;
      for (var gone in before) {
        if (has.call(before, gone) && !has.call(next, gone)) {
          changed = true;
          call(callbacks, 'onLeave', [gone, before[gone]]);
        }
      }
      for (var member in next) {
        if (!has.call(next, member)) continue;
        if (!has.call(before, member)) {
          changed = true;
          call(callbacks, 'onJoin', [member, next[member]]);
        } else if (!same(before[member], next[member])) {
          changed = true;
          call(callbacks, 'onUpdate', [member, next[member], before[member]]);
        }
      }
      if (changed) call(callbacks, 'onChange', [copy(roster)]);
    }

    function snapshot(presence) {
      var next = copy(presence.subscribe || {});
      if (typeof presence.rev === 'number') rev = presence.rev;
      ready = true;
      set(next);
      var queued = pending;
      pending = [];
      for (var i = 0; i < queued.length; i++) receive(queued[i]);
    }

    function receive(message) {
      var presence = presenceOf(message);
      var mrev = presence.rev;
      if (typeof mrev === 'number' && rev !== null) {
        if (mrev <= rev) return; // already in the roster (a duplicate, or in the snapshot)
        if (typeof presence.from === 'number' && presence.from > rev + 1) {
          resync();
          return;
        }
      }
      var next = copy(roster);
      var body = message.data || {};
      for (var gone in body.unsubscribe || {}) if (has.call(body.unsubscribe, gone)) delete next[gone];
      for (var member in body.subscribe || {}) if (has.call(body.subscribe, member)) next[member] = body.subscribe[member];
      if (typeof mrev === 'number') rev = mrev;
      set(next);
    }

    function resync() {
      // Missed something: the protocol has no "read the roster" message, so subscribe again; the
      // fresh reply is a snapshot, and `set` tells the difference.
      resyncs += 1;
      ready = false;
      pending = [];
      if (subscription) subscription.cancel();
      subscribe();
    }

    var extension = {
      outgoing: function (message, callback) {
        if (left || message.channel !== '/meta/subscribe' || message.subscription !== channel) return callback(message);
        if (message.id) sent[message.id] = true;
        var put = function (presence) {
          message.ext = message.ext || {};
          message.ext.presence = presence;
          callback(message);
        };
        if (!callbacks.auth) return put({ id: id, data: data === undefined ? null : data });
        var signed = typeof callbacks.auth === 'function' ? callbacks.auth(message.clientId, channel) : callbacks.auth;
        Promise.resolve(signed).then(put, function (error) {
          call(callbacks, 'onError', [error]);
          put(undefined); // the server refuses a presence subscribe without identity, clearly
        });
      },
      incoming: function (message, callback) {
        if (left) return callback(message);
        var ours = message.subscription === channel || (message.subscription === undefined && sent[message.id]);
        if (message.channel === '/meta/subscribe' && ours) {
          delete sent[message.id];
          if (message.successful) snapshot(presenceOf(message));
        } else if (message.channel === channel && message.data && typeof message.data === 'object') {
          if (ready) receive(message);
          else pending.push(message);
        }
        callback(message);
      },
    };
    client.addExtension(extension);

    function subscribe() {
      subscription = client.subscribe(channel, function () {});
      subscription.then(function () {
        resolveReady(membership);
      }, function (error) {
        call(callbacks, 'onError', [error]);
        rejectReady(error);
      });
    }

    var membership = {
      /** The members now, {id: value}; a copy. */
      roster: function () { return copy(roster); },
      /** How many members. */
      count: function () { return Object.keys(roster).length; },
      /** The last revision applied (null before the first reply, or with an old server). */
      rev: function () { return rev; },
      /** How many times a gap made it subscribe again. */
      resyncs: function () { return resyncs; },
      /** Resolves with this membership once the first subscribe succeeded; rejects if refused. */
      ready: readyPromise,
      /** Leaves the channel (the server publishes the leave, after its grace window if it has one). */
      leave: function () {
        left = true;
        client.removeExtension(extension);
        return subscription ? Promise.resolve(subscription.cancel()) : Promise.resolve();
      },
    };
    subscribe();
    return membership;
  }

  return { join: join, version: '0.1.0' };
}));
