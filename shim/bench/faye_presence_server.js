// The server the presence benchmark compares against: Node Faye 1.4.3 with faye-presence 0.0.3 attached
// as its README says, mounted like ours (/faye, same timeout), its rosters in the given plain Redis.
//   npm ci --prefix shim/bench
//   node shim/bench/faye_presence_server.js REDIS_PORT [TIMEOUT_SECS]   (prints `listening on ADDR`)
const http = require('http');
const faye = require('faye');
const presence = require('faye-presence');

const bayeux = new faye.NodeAdapter({ mount: '/faye', timeout: Number(process.argv[3] || 30) });
// faye-presence shards over `servers`, a list of `host:port` strings (one here, as ours gets one Redis).
presence.setup(bayeux, bayeux.getClient(), { servers: [`127.0.0.1:${process.argv[2]}`] });
const server = http.createServer();
bayeux.attach(server);
server.listen(0, '127.0.0.1', () => console.log(`listening on 127.0.0.1:${server.address().port}`));
