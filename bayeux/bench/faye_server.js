// The Node Faye 1.4.3 server the benchmark compares against (same mount and timeout as ours):
//   node bayeux/bench/faye_server.js [TIMEOUT_SECS]     (faye comes from tests/js/node_modules)
const http = require('http');
const faye = require('../../tests/js/node_modules/faye');

const bayeux = new faye.NodeAdapter({ mount: '/faye', timeout: Number(process.argv[2] || 30) });
const server = http.createServer();
bayeux.attach(server);
server.listen(0, '127.0.0.1', () => console.log(`listening on 127.0.0.1:${server.address().port}`));
