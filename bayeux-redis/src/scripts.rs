//! The Lua scripts: each one atomic step on one client's keys (one cluster slot). The caller passes
//! every value, including times, so a script reads no clock and replicates as it ran.

use redis::Script;
use std::sync::LazyLock;

/// Marks the client as served by a process and moves its `gen` on.
///
/// KEYS: client. ARGV: process id.
/// Returns `false` for an unknown client, else `{previous owner, new gen}`.
const ATTACH_LUA: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local previous = redis.call('HGET', KEYS[1], 'owner') or ''
local gen = redis.call('HINCRBY', KEYS[1], 'gen', 1)
redis.call('HSET', KEYS[1], 'owner', ARGV[1])
return {previous, gen}
";
pub(crate) static ATTACH: LazyLock<Script> = LazyLock::new(|| Script::new(ATTACH_LUA));

/// Adds a subscription to a live client.
///
/// KEYS: client, subs. ARGV: channel.
/// Returns -1 for an unknown client, else 1 if the subscription is new, 0 if it existed.
const SUBSCRIBE_LUA: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return redis.call('SADD', KEYS[2], ARGV[1])
";
pub(crate) static SUBSCRIBE: LazyLock<Script> = LazyLock::new(|| Script::new(SUBSCRIBE_LUA));

/// Appends a message to a live client's queue, keeping at most `max` messages (the oldest go).
///
/// KEYS: client, queue. ARGV: message JSON, max.
/// Returns -1 for an unknown client (its subscriptions are stale), else the owner's process id.
const DELIVER_LUA: &str = r"
local owner = redis.call('HGET', KEYS[1], 'owner')
if not owner then return -1 end
local length = redis.call('RPUSH', KEYS[2], ARGV[1])
local max = tonumber(ARGV[2])
if length > max then redis.call('LTRIM', KEYS[2], -max, -1) end
return owner
";
pub(crate) static DELIVER: LazyLock<Script> = LazyLock::new(|| Script::new(DELIVER_LUA));

/// A whole delivery on one Redis server, in one step and one round trip: the message to every target's
/// queue, each once, and one notification per serving process. The targets are the subscribers in the
/// sets given as KEYS (a publish: the channel's and its patterns') and the ids given after the
/// arguments (addressed delivery). It names the queue keys it builds, not in KEYS: fine on one server,
/// the only place it runs; a cluster uses DELIVER per client.
///
/// KEYS: subscriber sets. ARGV: message JSON, max, namespace, the caller's process id, then client
/// ids.
/// Returns the ids the caller serves (it wakes them itself). Subscribers without a client are dropped
/// from the sets; unknown addressed ids are skipped.
const QUEUE_LUA: &str = r"
local json, max, ns, me = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local seen, gone, owners, by_owner = {}, {}, {}, {}
local function queue(id, from_set)
  if seen[id] then return end
  seen[id] = true
  local owner = redis.call('HGET', ns .. ':client:{' .. id .. '}', 'owner')
  if not owner then
    if from_set then table.insert(gone, id) end
  else
    local key = ns .. ':queue:{' .. id .. '}'
    if redis.call('RPUSH', key, json) > max then redis.call('LTRIM', key, -max, -1) end
    if not by_owner[owner] then
      by_owner[owner] = {}
      table.insert(owners, owner)
    end
    table.insert(by_owner[owner], id)
  end
end
for _, set in ipairs(KEYS) do
  for _, id in ipairs(redis.call('SMEMBERS', set)) do queue(id, true) end
end
for i = 5, #ARGV do queue(ARGV[i], false) end
for _, id in ipairs(gone) do
  for _, set in ipairs(KEYS) do redis.call('SREM', set, id) end
end
local mine = {}
for _, owner in ipairs(owners) do
  if owner == me then
    mine = by_owner[owner]
  else
    redis.call('PUBLISH', ns .. ':notify:{' .. owner .. '}', 'm ' .. table.concat(by_owner[owner], ' '))
  end
end
return mine
";
pub(crate) static QUEUE: LazyLock<Script> = LazyLock::new(|| Script::new(QUEUE_LUA));

/// Removes a client with its subscriptions and queue.
///
/// KEYS: client, subs, queue.
/// Returns `false` if the client was already gone (so exactly one caller reports the removal), else
/// `{owner, channel, channel, ...}`.
const DESTROY_LUA: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local owner = redis.call('HGET', KEYS[1], 'owner') or ''
local reply = redis.call('SMEMBERS', KEYS[2])
table.insert(reply, 1, owner)
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return reply
";
pub(crate) static DESTROY: LazyLock<Script> = LazyLock::new(|| Script::new(DESTROY_LUA));

/// Every script's source, for loading them after a Redis restart emptied the script cache.
pub(crate) fn sources() -> [&'static str; 5] {
    [
        ATTACH_LUA,
        SUBSCRIBE_LUA,
        DELIVER_LUA,
        QUEUE_LUA,
        DESTROY_LUA,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_is_reloaded_after_a_restart() {
        let loaded: Vec<String> = sources()
            .iter()
            .map(|source| Script::new(source).get_hash().to_owned())
            .collect();
        for script in [&ATTACH, &SUBSCRIBE, &DELIVER, &QUEUE, &DESTROY] {
            assert!(loaded.contains(&script.get_hash().to_owned()));
        }
    }
}
