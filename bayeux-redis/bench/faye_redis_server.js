// The server the Redis engine benchmark compares against: Node Faye 1.4.3 with the faye-redis 0.2.0
// engine, mounted like ours (/faye, same timeout). Several of these on one Redis and namespace serve one
// Bayeux service, as several of ours do with `--engine redis://...`.
//   npm ci --prefix bayeux-redis/bench
//   node bayeux-redis/bench/faye_redis_server.js REDIS_PORT [TIMEOUT_SECS] [NAMESPACE]
// Prints `listening on 127.0.0.1:PORT` once bound (on a free port).
const http = require('http');
const faye = require('faye');

const bayeux = new faye.NodeAdapter({
  mount: '/faye',
  timeout: Number(process.argv[3] || 30),
  engine: {
    type: require('faye-redis'),
    host: '127.0.0.1',
    port: Number(process.argv[2] || 6379),
    namespace: process.argv[4] || 'bench',
  },
});
const server = http.createServer();
bayeux.attach(server);
server.listen(0, '127.0.0.1', () => console.log(`listening on 127.0.0.1:${server.address().port}`));
