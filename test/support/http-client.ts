/** A small node:http client for tests: sends exactly the headers given (duplicates and odd names too). */
import http from 'node:http';
import type { Readable } from 'node:stream';

export interface ClientResponse {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
  text(): string;
  json(): unknown;
}

export interface ClientRequest {
  method?: string;
  path?: string;
  /** Flat [name, value, …] list, sent as given. */
  headers?: string[];
  body?: Buffer | string | Readable;
  agent?: http.Agent | false;
}

/** Sends one request to 127.0.0.1:`port` and buffers the answer. */
export function send(port: number, req: ClientRequest = {}): Promise<ClientResponse> {
  return new Promise((resolve, reject) => {
    const headers = req.headers ?? ['Host', 'localhost'];
    const r = http.request({ host: '127.0.0.1', port, method: req.method ?? 'GET', path: req.path ?? '/', headers, agent: req.agent ?? false, setHost: false });
    r.on('error', reject);
    r.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, text: () => body.toString('utf8'), json: () => JSON.parse(body.toString('utf8')) as unknown });
      });
    });
    const body = req.body;
    if (body === undefined) r.end();
    else if (typeof body === 'string' || Buffer.isBuffer(body)) r.end(body);
    else body.pipe(r);
  });
}
