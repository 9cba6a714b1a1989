// Benchmark upstream: a plain node:http server with keep-alive.
//   GET  /            -> 200 'hello world\n' (fixed small body, a couple of headers)
//   POST /upload      -> consumes the body, answers its byte count
//   POST /__echo      -> answers JSON {rawHeaders, len, sha256} of what it received, and sends
//                        response hop-by-hop headers (Connection: keep-alive, X-Up-Secret) to
//                        check that forwarders strip them on the way back too
//   GET  /__slow?id=X -> never answers within 3 s; counts whether the proxy closed it (client abort)
//   GET  /__stats     -> JSON {slow: {id: {started, aborted}}}
//   GET  …/__headers  -> JSON of the request headers it received (identity headers behind a gateway)
//   anything else     -> 200 'hello world\n' (so /full, /mfa … behind gateway routes answer alike)
// Prints one line `{"port":N}` on stdout once listening. Usage: node upstream.js [port]
import http from 'node:http';
import { createHash } from 'node:crypto';

const BODY = Buffer.from('hello world\n');
const HEADERS = { 'content-type': 'text/plain; charset=utf-8', 'content-length': BODY.length, 'x-upstream': 'bench' };
const slow = Object.create(null);

const server = http.createServer((req, res) => {
  const url = req.url;
  if (url === '/' && (req.method === 'GET' || req.method === 'HEAD')) {
    res.writeHead(200, HEADERS);
    res.end(BODY);
    return;
  }
  if (url === '/upload') {
    let n = 0;
    req.on('data', (c) => { n += c.length; });
    req.on('end', () => {
      const b = String(n);
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': b.length });
      res.end(b);
    });
    return;
  }
  if (url === '/__echo') {
    const h = createHash('sha256');
    let n = 0;
    req.on('data', (c) => { n += c.length; h.update(c); });
    req.on('end', () => {
      const b = JSON.stringify({ rawHeaders: req.rawHeaders, len: n, sha256: h.digest('hex') });
      res.writeHead(200, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(b),
        connection: 'keep-alive, X-Up-Secret',
        'x-up-secret': '1',
      });
      res.end(b);
    });
    return;
  }
  if (url.startsWith('/__slow')) {
    const id = new URL(url, 'http://x').searchParams.get('id') ?? 'default';
    const s = (slow[id] ??= { started: 0, aborted: 0 });
    s.started++;
    const t = setTimeout(() => { res.writeHead(200, { 'content-length': 4 }); res.end('late'); }, 3000);
    res.on('close', () => {
      clearTimeout(t);
      if (!res.writableFinished) s.aborted++;
    });
    return;
  }
  if (url.endsWith('/__headers')) {
    const b = JSON.stringify(req.headers);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(b) });
    res.end(b);
    return;
  }
  if (url === '/__stats') {
    const b = JSON.stringify({ slow });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(b) });
    res.end(b);
    return;
  }
  // anything else: drain and answer the fixed body
  req.resume();
  req.on('end', () => { res.writeHead(200, HEADERS); res.end(BODY); });
});
server.keepAliveTimeout = 65_000; // longer than any forwarder's idle timeout: no close races
server.headersTimeout = 66_000;
server.maxRequestsPerSocket = 0;
server.requestTimeout = 0;
server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
});
process.on('SIGTERM', () => process.exit(0));
