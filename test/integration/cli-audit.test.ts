/**
 * `portcullis audit query` and `audit tail` as an operator runs them: `node bin/portcullis.js …` from
 * the compiled build (`npm run build` first), against a file sink in a temp dir filled with records
 * chained as the writer chains them.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { canonicalBytes, GENESIS_PREV, leafHash } from '../../src/audit/canonical.js';
import { createFileSink } from '../../src/audit/file-sink.js';
import type { AuditSink, StoredRecord } from '../../src/audit/sink.js';
import { killAllCli, runCli, startCli } from '../support/process.js';

const T0 = Date.parse('2026-11-26T10:00:00.000Z');

function chain(log: string) {
  let prev = GENESIS_PREV;
  let seq = 0;
  return (route: string, decision: string, user: string): StoredRecord => {
    const bytes = canonicalBytes({
      v: 1,
      log: `it.portcullis/audit/${log}`,
      seq,
      prev,
      id: `${log}-${seq}`,
      ts: new Date(T0 + seq * 1000).toISOString(),
      kind: 'http',
      route,
      decision,
      identity: { user, email: `${user}@example.com`, groups: ['eng'], provider: 'local', auth: 'cookie' },
      request: { method: 'GET', host: `${route}.localhost`, path: '/ünïcode?', query: 'token=REDACTED' },
      response: { status: decision === 'allow' ? 200 : 403 },
    });
    prev = leafHash(bytes).toString('hex');
    return { seq: seq++, bytes };
  };
}

const text = (records: readonly StoredRecord[]): string => records.map((r) => `${r.bytes.toString('utf8')}\n`).join('');

let dir = '';
let config = '';
let writer: AuditSink;
const next = chain('gw-0');
const stored: StoredRecord[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-cli-audit-'));
  config = join(dir, 'portcullis.yaml');
  await writeFile(
    config,
    [
      'server: {instance_id: gw-0}',
      'audit:',
      `  sink: {type: file, dir: "${join(dir, 'audit')}"}`,
      'routes:',
      '  - {id: x, host: x.localhost, upstream: "http://127.0.0.1:3000", public: true}',
      '  - {id: y, host: y.localhost, upstream: "http://127.0.0.1:3000", public: true}',
      '',
    ].join('\n'),
  );
  writer = createFileSink({ dir: join(dir, 'audit') });
  stored.push(next('x', 'allow', 'alice'), next('y', 'allow', 'alice'), next('x', 'deny', 'bob'), next('y', 'deny', 'bob'), next('x', 'allow', 'carol'));
  await writer.append('gw-0', stored);
});
afterEach(async () => {
  await killAllCli();
});
afterAll(async () => {
  await writer.close();
  await rm(dir, { recursive: true, force: true });
});

describe('portcullis audit query', () => {
  it('prints the matching records as their stored bytes and exits 0', async () => {
    const r = await runCli(['audit', 'query', '--config', config, '--route', 'x']);
    expect(r).toEqual({ code: 0, stdout: text([stored[0], stored[2], stored[4]].filter((s) => s !== undefined)), stderr: '' });
  });

  it('combines filters and --limit', async () => {
    const r = await runCli(['audit', 'query', '--config', config, '--user', 'ALICE@example.com', '--limit', '1']);
    expect(r).toEqual({ code: 0, stdout: text(stored.slice(0, 1)), stderr: '' });
  });

  it('exits 1 with FILE:LINE:COL for a bad config and 2 for a bad filter', async () => {
    const bad = join(dir, 'bad.yaml');
    await writeFile(bad, 'audit:\n  sink: {type: tape}\n');
    const r = await runCli(['audit', 'query', '--config', bad]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:2:\\d+: `));
    const usage = await runCli(['audit', 'query', '--config', config, '--decision', 'perhaps']);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/--decision must be one of/);
  });

  it('is listed in the top-level usage and answers --help', async () => {
    const top = await runCli(['--help']);
    expect(top.stdout).toMatch(/audit query \[filters\]/);
    expect(top.stdout).toMatch(/audit tail \[filters\]/);
    const help = await runCli(['audit', 'query', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: portcullis audit query/);
  });
});

describe('portcullis audit tail', () => {
  it.each(['SIGINT', 'SIGTERM'] as const)('prints the last records, follows new ones, and exits 0 on %s', async (sig) => {
    const log = `tail-${sig.toLowerCase()}`;
    const add = chain(log);
    const earlier = [add('x', 'deny', 'bob'), add('x', 'allow', 'bob'), add('y', 'deny', 'bob'), add('x', 'deny', 'eve')];
    await writer.append(log, earlier);
    const p = startCli(['audit', 'tail', '--config', config, '--instance', log, '-n', '2', '--decision', 'deny']);
    await p.waitFor(/"seq":3,/);
    expect(p.stdout()).toBe(text(earlier.slice(2)));
    const added = [add('z', 'allow', 'mallory'), add('z', 'deny', 'mallory')];
    await writer.append(log, added);
    await p.waitFor(/"route":"z"/);
    p.signal(sig);
    const exit = await p.exited;
    expect(exit.code).toBe(0);
    expect(p.stdout()).toBe(text([...earlier.slice(2), ...added.slice(1)]));
    expect(p.stderr()).toBe('');
  });
});
