// Correctness checks for one proxy listening on 127.0.0.1:port in front of bench/lib/upstream.js.
import http from 'node:http';
import net from 'node:net';
import { randomBytes, createHash } from 'node:crypto';
import { sleep } from './common.js';

function getJson(port, path) {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let b = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { b += d; });
      res.on('end', () => { try { resolve(JSON.parse(b)); } catch (e) { reject(e); } });
    }).on('error', reject);
  });
}

/**
 * Sends `Connection: X-Secret`, `X-Secret: 1`, `Keep-Alive: timeout=30` and a chunked body in three
 * chunks; the upstream echoes what it got. Also checks that the upstream's own response hop-by-hop
 * headers (`Connection: keep-alive, X-Up-Secret` + `X-Up-Secret`) do not reach the client.
 */
export function checkHopByHop(port, host = `127.0.0.1:${port}`) {
  const chunks = [randomBytes(65_536), randomBytes(1), randomBytes(200_000)];
  const sha = createHash('sha256');
  for (const c of chunks) sha.update(c);
  const want = { len: chunks.reduce((n, c) => n + c.length, 0), sha256: sha.digest('hex') };
  return new Promise((resolve) => {
    const req = http.request({
      host: '127.0.0.1', port, method: 'POST', path: '/__echo', agent: false,
      headers: {
        Host: host,
        Connection: 'X-Secret', 'X-Secret': '1', 'Keep-Alive': 'timeout=30',
        'Transfer-Encoding': 'chunked', 'Content-Type': 'application/octet-stream',
      },
    }, (res) => {
      let b = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { b += d; });
      res.on('end', () => {
        let got;
        try { got = JSON.parse(b); } catch {
          return resolve({ reqHop: false, body: false, respHop: false, detail: `status ${res.statusCode}: ${b.slice(0, 200)}` });
        }
        const h = {};
        for (let i = 0; i < got.rawHeaders.length; i += 2) {
          const k = got.rawHeaders[i].toLowerCase();
          h[k] = h[k] === undefined ? got.rawHeaders[i + 1] : `${h[k]}, ${got.rawHeaders[i + 1]}`;
        }
        const leaked = ['x-secret', 'keep-alive', 'proxy-connection'].filter((k) => h[k] !== undefined);
        if (h.connection && /x-secret/i.test(h.connection)) leaked.push(`connection: ${h.connection}`);
        const respLeaked = res.headers['x-up-secret'] !== undefined;
        resolve({
          reqHop: leaked.length === 0,
          body: got.len === want.len && got.sha256 === want.sha256,
          respHop: !respLeaked,
          detail: [
            leaked.length ? `upstream got ${leaked.join(', ')}` : '',
            got.len !== want.len ? `body ${got.len}/${want.len} bytes` : got.sha256 !== want.sha256 ? 'body differs' : '',
            respLeaked ? 'client got x-up-secret' : '',
          ].filter(Boolean).join('; '),
        });
      });
    });
    req.on('error', (e) => resolve({ reqHop: false, body: false, respHop: false, detail: e.message }));
    (async () => {
      for (const c of chunks) { req.write(c); await sleep(5); }
      req.end();
    })();
  });
}

/**
 * Starts a request the upstream holds for 3 s, closes the client socket after 300 ms, and asks
 * the upstream 1 s later whether the proxy closed its side (i.e. did not leak the upstream
 * request/socket until the upstream answered).
 */
export async function checkAbort(port, upstreamPort, id, host = `127.0.0.1:${port}`) {
  const s = net.connect(port, '127.0.0.1');
  s.on('error', () => {});
  s.write(`GET /__slow?id=${id} HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
  await sleep(300);
  s.destroy();
  await sleep(1000);
  const stats = await getJson(upstreamPort, '/__stats');
  const st = stats.slow[id] ?? { started: 0, aborted: 0 };
  return { abort: st.started === 1 && st.aborted === 1, detail: st.started !== 1 ? `upstream saw ${st.started} requests` : st.aborted ? '' : 'upstream request still open after client left' };
}
