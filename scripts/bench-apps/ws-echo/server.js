// A WebSocket echo server (the `ws` package from npm) on $PORT; plain HTTP GET answers
// "ok" for berth's readiness check. On SIGTERM it does what a well-behaved app does:
// closes each client with 1001 "going away" (a close frame, so a client can tell a planned
// end from a crash and reconnect at once) and exits when they are gone.
const http = require('http');
const { WebSocketServer } = require('ws');

const server = http.createServer((req, res) => res.end('ok\n'));
const wss = new WebSocketServer({ server });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
server.listen(process.env.PORT);

process.on('SIGTERM', () => {
  for (const ws of wss.clients) ws.close(1001, 'going away');
  server.close();
  setTimeout(() => process.exit(0), 3000).unref();
});
