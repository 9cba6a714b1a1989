/**
 * The gateway's own sign-in upstream, against a private PostgreSQL cluster whose pg_hba.conf demands
 * SCRAM-SHA-256 for one service role and md5 for another (the machine's server trusts everyone, so
 * it would never ask); and TLS between client and gateway, with `psql sslmode=require`.
 */
import net from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditRecord } from '../../src/audit/record.js';
import { addUser } from '../../src/identity/local-users.js';
import { readFileSinkRecords } from '../support/audit-records.js';
import { signIn, type GatewayAgent } from '../support/gateway-agent.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { freePorts } from '../support/process.js';
import { LOCAL_PG, psql, selfSignedCertificate, startPrivateCluster, type PrivateCluster } from '../support/postgres.js';

const INSTANCE = 'gw-database-upstream';
const PASSWORD = 'upstream test password 1';
const SCRAM = { name: 'portcullis_scram', password: 'scram secret ñ 1', auth: 'scram-sha-256' } as const;
const MD5 = { name: 'portcullis_md5', password: 'md5 secret 2', auth: 'md5' } as const;

let cluster: PrivateCluster;
let gw: TestGateway;
let agent: GatewayAgent;
let ports: number[];

beforeAll(async () => {
  cluster = await startPrivateCluster([SCRAM, MD5]);
  ports = await freePorts(6);
  const [http = 0, scram = 0, md5 = 0, wrong = 0, tlsPort = 0] = ports;
  const upstream = (user: string, password: string) => ({ host: '127.0.0.1', port: cluster.port, database: 'postgres', user, password });
  const cert = selfSignedCertificate();
  gw = await startGateway(
    {
      server: { public_url: `http://localhost:${http}`, instance_id: INSTANCE },
      databases: [
        { id: 'scram', type: 'postgres', listen: `127.0.0.1:${scram}`, upstream: upstream(SCRAM.name, SCRAM.password), allow: { groups: ['eng'] } },
        { id: 'md5', type: 'postgres', listen: `127.0.0.1:${md5}`, upstream: upstream(MD5.name, MD5.password), allow: { groups: ['eng'] } },
        { id: 'wrong', type: 'postgres', listen: `127.0.0.1:${wrong}`, upstream: upstream(SCRAM.name, 'not the password'), allow: { groups: ['eng'] } },
        { id: 'tls', type: 'postgres', listen: `127.0.0.1:${tlsPort}`, tls: cert, upstream: { ...LOCAL_PG, password: '' }, allow: { groups: ['eng'] } },
      ],
    },
    { listen: `127.0.0.1:${http}` },
  );
  await addUser(join(gw.dir, 'users.yaml'), { name: 'dana', groups: ['eng'], password: PASSWORD });
  agent = await signIn(http, 'dana', PASSWORD);
}, 60_000);

afterAll(async () => {
  await gw.stop();
  await cluster.stop();
});

async function connectUri(database: string): Promise<string> {
  const res = await agent.get(`/.portcullis/connect/${database}`, 'application/json');
  expect(res.status, res.text()).toBe(200);
  const c = res.json() as { psql: string };
  return /'(postgresql:\/\/[^']+)'/.exec(c.psql)?.[1] ?? '';
}

async function records(): Promise<AuditRecord[]> {
  expect(await gw.app.audit.flush(5000)).toBe(true);
  return readFileSinkRecords(join(gw.dir, 'audit'), INSTANCE).map((r) => r.record);
}

describe('upstream sign-in with the service credentials', () => {
  it.each([
    ['SCRAM-SHA-256', 'scram', SCRAM.name],
    ['md5', 'md5', MD5.name],
  ])('signs in with %s: the database sees the service role, the audit log the person', async (_method, database, role) => {
    const r = await psql(await connectUri(database), ['-A', '-t', '-c', 'SELECT current_user']);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe(role);
    const statement = (await records()).find((x) => x.kind === 'postgres' && x.route === database && x.postgres?.sql === 'SELECT current_user');
    expect(statement?.identity?.user).toBe('dana');
  });

  it('refuses the client with 08001 when the service password is wrong, and records why', async () => {
    const r = await psql(await connectUri('wrong'), ['-c', 'SELECT 1']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('the gateway could not connect to the database (auth)');
    const refused = (await records()).find((x) => x.kind === 'postgres' && x.route === 'wrong' && x.postgres?.event === 'connect');
    expect(refused).toMatchObject({ decision: 'error', reason: 'upstream-auth' });
  });
});

describe('TLS between client and gateway', () => {
  it('serves sslmode=require with the configured certificate and records the connection as TLS', async () => {
    const uri = await connectUri('tls');
    expect(uri).toMatch(/\?sslmode=require$/);
    const r = await psql(uri, ['-A', '-t', '-c', 'SELECT 40 + 2']);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('42');
    const connect = (await records()).filter((x) => x.kind === 'postgres' && x.route === 'tls' && x.postgres?.event === 'connect');
    expect(connect.at(-1)?.postgres).toMatchObject({ tls: true });
  });

  it('answers N to an SSLRequest where no certificate is configured, and goes on in the clear', async () => {
    const r = await psql(`${await connectUri('scram')}?sslmode=prefer`, ['-A', '-t', '-c', 'SELECT 1']);
    expect(r.stdout.trim()).toBe('1');
    const refused = await psql(`${await connectUri('scram')}?sslmode=require`, ['-c', 'SELECT 1']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('server does not support SSL');
  });

  it('answers N to a GSSENCRequest and to an SSLRequest without a certificate, then refuses protocol 2 with 0A000', async () => {
    const packet = (code: number) => {
      const b = Buffer.alloc(8);
      b.writeInt32BE(8, 0);
      b.writeInt32BE(code, 4);
      return b;
    };
    const socket = net.connect(ports[1] ?? 0, '127.0.0.1');
    const received: Buffer[] = [];
    socket.on('data', (c: Buffer) => received.push(c));
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    const next = async (n: number) => {
      for (let i = 0; i < 100 && Buffer.concat(received).length < n; i++) await new Promise((r) => setTimeout(r, 20));
      return Buffer.concat(received);
    };
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    socket.write(packet(80877104));
    expect((await next(1)).toString('latin1')).toBe('N');
    socket.write(packet(80877103));
    expect((await next(2)).toString('latin1')).toBe('NN');
    socket.write(packet(2 << 16));
    await closed;
    const error = Buffer.concat(received).subarray(2);
    expect(String.fromCharCode(error[0] ?? 0)).toBe('E');
    expect(error.toString('latin1')).toContain('C0A000');
  });
});

