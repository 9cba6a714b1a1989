import { describe, expect, it } from 'vitest';
import { buildClientResponseHeaders, buildUpstreamHeaders, stripSessionCookies, type ForwardingFacts } from '../../../src/proxy/headers.js';

const facts: ForwardingFacts = {
  remoteAddress: '127.0.0.1',
  peerTrusted: false,
  proto: 'http',
  host: 'app.localhost:8080',
  upstreamHost: '127.0.0.1:3000',
  requestId: 'req-1',
};

function pairs(flat: readonly string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) out.push([flat[i] ?? '', flat[i + 1] ?? '']);
  return out;
}
function values(flat: readonly string[], name: string): string[] {
  return pairs(flat).filter(([n]) => n.toLowerCase() === name).map(([, v]) => v);
}

describe('buildUpstreamHeaders', () => {
  const dropped: [string, string][] = [
    ['X-Portcullis-User', 'mallory'],
    ['x-portcullis-assertion', 'forged'],
    ['X_Portcullis_Email', 'a@b'],
    ['X-Forwarded-For', '1.1.1.1'],
    ['x_forwarded_host', 'evil'],
    ['Forwarded', 'for=1.1.1.1'],
    ['X-Real-IP', '1.1.1.1'],
    ['True-Client-IP', '1.1.1.1'],
    ['X-Original-URL', '/admin'],
    ['X-Rewrite-URL', '/admin'],
    ['X-HTTP-Method-Override', 'DELETE'],
    ['X-Method-Override', 'DELETE'],
    ['X-HTTP-Method', 'DELETE'],
    ['Keep-Alive', 'timeout=1'],
    ['Transfer-Encoding', 'chunked'],
    ['TE', 'trailers'],
    ['Trailer', 'x'],
    ['Upgrade', 'h2c'],
    ['HTTP2-Settings', 'AAA'],
    ['Proxy-Connection', 'keep-alive'],
    ['Proxy-Authorization', 'Basic x'],
    ['Expect', '100-continue'],
    ['Host', 'spoof'],
  ];
  it.each(dropped)('removes %s whatever the client sends', (name, value) => {
    const out = buildUpstreamHeaders(['Host', 'app.localhost', name, value, 'X-Keep', '1'], facts);
    const names = pairs(out).map(([n]) => n);
    expect(names).not.toContain(name);
    expect(values(out, 'x-keep')).toEqual(['1']);
    expect(values(out, 'host')).toEqual(['127.0.0.1:3000']);
  });

  it.each([['X.Portcullis.User'], ['X~Portcullis~Groups'], ['x-portcullis_user'], ['X.Forwarded.For'], ['X-Original.URL'], ['Content_Length']])('removes the look-alike %s', (name) => {
    const out = buildUpstreamHeaders(['Host', 'app.localhost', name, 'spoof', 'X-Keep', '1'], facts);
    expect(pairs(out).map(([n]) => n)).not.toContain(name);
    expect(values(out, 'x-keep')).toEqual(['1']);
  });

  it('puts the gateway’s own headers before the client’s', () => {
    const client = Array.from({ length: 50 }, (_, i) => [`X-${i}`, 'v']).flat();
    const out = buildUpstreamHeaders(['Host', 'app.localhost', ...client], { ...facts, identityHeaders: [['x-portcullis-user', 'alice']] });
    const names = pairs(out).map(([n]) => n);
    for (const own of ['host', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-portcullis-request-id', 'x-portcullis-user']) {
      expect(names.indexOf(own), own).toBeLessThan(names.indexOf('X-0'));
    }
  });

  it('removes headers named in Connection, in any case and with underscores', () => {
    const out = buildUpstreamHeaders(['Connection', 'close, X-Secret', 'connection', 'X_Other', 'X-Secret', 'a', 'X-Other', 'b', 'X-Keep', 'c'], facts);
    expect(pairs(out).map(([n]) => n.toLowerCase())).not.toContain('x-secret');
    expect(pairs(out).map(([n]) => n.toLowerCase())).not.toContain('x-other');
    expect(values(out, 'connection')).toEqual([]);
  });

  it('sets X-Forwarded-* from the connection when the peer is not trusted', () => {
    const out = buildUpstreamHeaders(['X-Forwarded-For', '9.9.9.9', 'X-Forwarded-Proto', 'https'], facts);
    expect(values(out, 'x-forwarded-for')).toEqual(['127.0.0.1']);
    expect(values(out, 'x-forwarded-proto')).toEqual(['http']);
    expect(values(out, 'x-forwarded-host')).toEqual(['app.localhost:8080']);
  });

  it('extends X-Forwarded-* from a trusted peer', () => {
    const out = buildUpstreamHeaders(['X-Forwarded-For', '9.9.9.9', 'X-Forwarded-For', '8.8.8.8', 'X-Forwarded-Proto', 'https', 'X-Forwarded-Host', 'public.example'], {
      ...facts,
      peerTrusted: true,
      remoteAddress: '10.0.0.2',
    });
    expect(values(out, 'x-forwarded-for')).toEqual(['9.9.9.9, 8.8.8.8, 10.0.0.2']);
    expect(values(out, 'x-forwarded-proto')).toEqual(['https']);
    expect(values(out, 'x-forwarded-host')).toEqual(['public.example']);
  });

  it('ignores underscore variants of X-Forwarded-* even from a trusted peer', () => {
    const out = buildUpstreamHeaders(['X_Forwarded_For', '6.6.6.6'], { ...facts, peerTrusted: true, remoteAddress: '10.0.0.2' });
    expect(values(out, 'x-forwarded-for')).toEqual(['10.0.0.2']);
  });

  it('adds the identity headers after stripping and re-emits Content-Length once', () => {
    const out = buildUpstreamHeaders(['Content-Length', '5', 'X-Portcullis-User', 'mallory'], {
      ...facts,
      contentLength: '5',
      identityHeaders: [['x-portcullis-user', 'alice']],
    });
    expect(values(out, 'x-portcullis-user')).toEqual(['alice']);
    expect(values(out, 'content-length')).toEqual(['5']);
  });

  it('keeps the WebSocket upgrade headers only when asked', () => {
    const raw = ['Connection', 'Upgrade', 'Upgrade', 'websocket', 'Sec-WebSocket-Key', 'k'];
    expect(values(buildUpstreamHeaders(raw, facts), 'upgrade')).toEqual([]);
    const ws = buildUpstreamHeaders(raw, { ...facts, keepUpgrade: true });
    expect(values(ws, 'upgrade')).toEqual(['websocket']);
    expect(values(ws, 'connection')).toEqual(['upgrade']);
    expect(values(ws, 'sec-websocket-key')).toEqual(['k']);
  });
});

describe('stripSessionCookies', () => {
  it.each([
    ['__Host-portcullis=abc', undefined],
    ['a=1; __Host-portcullis=abc; b=2', 'a=1; b=2'],
    ['portcullis_session=x;theme=dark', 'theme=dark'],
    ['__Host-portcullis-oidc=b; x=y', 'x=y'],
    ['portcullis_csrf=t; __Host-portcullisx=keep', '__Host-portcullisx=keep'],
    ['Portcullis_session=keep', 'Portcullis_session=keep'],
    ['  ;  ', undefined],
  ])('turns %j into %j', (input, expected) => {
    expect(stripSessionCookies(input)).toBe(expected);
  });
});

describe('buildClientResponseHeaders', () => {
  it('drops hop-by-hop and Connection-named headers and stamps the request id', () => {
    const out = buildClientResponseHeaders({ connection: 'x-hop', 'x-hop': 's', 'keep-alive': 'timeout=5', 'transfer-encoding': 'chunked', 'set-cookie': ['a=1', 'b=2'], 'x-portcullis-request-id': 'upstream-made-up' }, 'rid');
    expect(pairs(out)).toEqual([
      ['set-cookie', 'a=1'],
      ['set-cookie', 'b=2'],
      ['x-portcullis-request-id', 'rid'],
    ]);
  });
});
