/**
 * The database gateway end to end: a real gateway (the app's composition root), the machine's
 * PostgreSQL behind a counting relay, and real clients — `psql` as a child process and the `pg`
 * driver. Passwords come from `/.portcullis/connect/<id>` after a real sign-in (and a real passkey
 * step-up for the database that demands one). The gateway's clock is injected so that tokens and
 * second factors can expire without waiting.
 */
import { join } from 'node:path';
import net from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditRecord } from '../../src/audit/record.js';
import { addUser } from '../../src/identity/local-users.js';
import { readFileSinkRecords } from '../support/audit-records.js';
import { GatewayAgent, signIn } from '../support/gateway-agent.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { launchChromium } from '../support/chromium.js';
import { eventually, freePorts, REPO_ROOT } from '../support/process.js';
import { adminQuery, LOCAL_PG, psql, startCountingRelay, startPsql, type CountingRelay } from '../support/postgres.js';

/** PORTCULLIS_SCREENSHOTS=1 rewrites docs/images/connect-page.png (headless chromium). */
const SCREENSHOTS = process.env.PORTCULLIS_SCREENSHOTS === '1' ? join(REPO_ROOT, 'docs', 'images') : undefined;
const INSTANCE = 'gw-database';
const PASSWORD = 'database test password 1';
const TABLE = `dbgw_${process.pid}`;

let offsetMs = 0;
const clock = (): number => Date.now() + offsetMs;

let gw: TestGateway;
let relay: CountingRelay;
let ports: { http: number; app: number; secure: number; other: number };

interface ConnectAnswer {
  readonly database: string;
  readonly user: string;
  readonly password: string;
  readonly expires_at: string;
  readonly psql: string;
  readonly host: string;
  readonly port: number;
}

beforeAll(async () => {
  relay = await startCountingRelay(LOCAL_PG);
  const [http = 0, app = 0, secure = 0, other = 0] = await freePorts(4);
  ports = { http, app, secure, other };
  const upstream = { host: '127.0.0.1', port: relay.port, database: LOCAL_PG.database, user: LOCAL_PG.user };
  gw = await startGateway(
    {
      server: { public_url: `http://localhost:${http}`, instance_id: INSTANCE },
      identity: { session: { idle_timeout: '12h', max_lifetime: '24h' } },
      databases: [
        { id: 'appdb', type: 'postgres', listen: `127.0.0.1:${app}`, upstream, allow: { groups: ['eng'] }, recheck_every: '200ms', token_ttl: '30m' },
        { id: 'secure', type: 'postgres', listen: `127.0.0.1:${secure}`, upstream, allow: { users: ['alice'] }, mfa: { factors: ['webauthn'], max_age: '10m' }, recheck_every: '200ms' },
        { id: 'other', type: 'postgres', listen: `127.0.0.1:${other}`, upstream, allow: { groups: ['eng'] } },
      ],
    },
    { listen: `127.0.0.1:${http}`, now: clock },
  );
  const users = join(gw.dir, 'users.yaml');
  await Promise.all([
    addUser(users, { name: 'alice', groups: ['eng'], password: PASSWORD }),
    addUser(users, { name: 'bob', groups: ['eng'], password: PASSWORD }),
    addUser(users, { name: 'carol', groups: ['ops'], password: PASSWORD }),
  ]);
  await adminQuery(`DROP TABLE IF EXISTS ${TABLE}; CREATE TABLE ${TABLE} (id int primary key, v text)`);
}, 30_000);

afterAll(async () => {
  await gw.stop();
  await relay.close();
  await adminQuery(`DROP TABLE IF EXISTS ${TABLE}`);
});

async function connectInfo(agent: GatewayAgent, database = 'appdb'): Promise<ConnectAnswer> {
  const res = await agent.get(`/.portcullis/connect/${database}`, 'application/json');
  expect(res.status, res.text()).toBe(200);
  return res.json() as ConnectAnswer;
}

function uri(c: ConnectAnswer): string {
  return `postgresql://${c.user}:${c.password}@127.0.0.1:${c.port}/${c.database}`;
}

function pgClient(c: ConnectAnswer, extra: Partial<pg.ClientConfig> = {}): pg.Client {
  return new pg.Client({ host: '127.0.0.1', port: c.port, user: c.user, password: c.password, database: c.database, ...extra });
}

async function records(filter: (r: AuditRecord) => boolean, atLeast = 0): Promise<AuditRecord[]> {
  // A session's last record is written when the gateway sees the client's socket close, which may
  // be a moment after psql has exited: wait (bounded) until `atLeast` records match.
  const deadline = Date.now() + 5000;
  for (;;) {
    expect(await gw.app.audit.flush(5000)).toBe(true);
    const found = readFileSinkRecords(join(gw.dir, 'audit'), INSTANCE)
      .map((r) => r.record)
      .filter(filter);
    if (found.length >= atLeast || Date.now() > deadline) return found;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The SQLSTATE and severity a connection attempt ends with (`ok` when it succeeds). */
async function connectOutcome(c: { port: number; user: string; password: string; database: string }): Promise<string> {
  const client = new pg.Client({ host: '127.0.0.1', ...c });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.end();
    return 'ok';
  } catch (err) {
    const e = err as { code?: string; severity?: string };
    return `${e.severity ?? '?'} ${e.code ?? String(err)}`;
  }
}

/** Renders a page the gateway served (no scripts, inline style) and saves a screenshot. */
async function screenshot(html: string, file: string): Promise<void> {
  const browser = await launchChromium();
  try {
    const page = await browser.newPage({ viewport: { width: 900, height: 700 } });
    await page.setContent(html);
    await page.screenshot({ path: file, fullPage: true });
  } finally {
    await browser.close();
  }
}

async function metricsText(): Promise<string> {
  return (await fetch(`${gw.adminUrl}/metrics`)).text();
}

describe('/.portcullis/connect/<id>', () => {
  it('sends a browser that is not signed in to the login page, and an API client a 401', async () => {
    const res = await new GatewayAgent(ports.http, 'nobody').get('/.portcullis/connect/appdb');
    expect(res.status).toBe(302);
    expect(res.headers.location).toBe('/.portcullis/login?rd=%2F.portcullis%2Fconnect%2Fappdb');
    const api = await new GatewayAgent(ports.http, 'nobody').get('/.portcullis/connect/appdb', 'application/json');
    expect(api.status).toBe(401);
    expect(api.headers['www-authenticate']).toBe('Bearer realm="portcullis"');
  });

  it('issues a password bound to user and database, with a ready-to-run psql command', async () => {
    const alice = await signIn(ports.http, 'alice', PASSWORD);
    const c = await connectInfo(alice);
    expect(c).toMatchObject({ database: 'appdb', user: 'alice', host: '127.0.0.1', port: ports.app });
    expect(c.password).toMatch(/^pcdb_[A-Za-z0-9_-]{43}$/);
    expect(Date.parse(c.expires_at) - clock()).toBeGreaterThan(29 * 60_000);
    expect(Date.parse(c.expires_at) - clock()).toBeLessThanOrEqual(30 * 60_000);
    expect(c.psql).toBe(`psql 'postgresql://alice:${c.password}@127.0.0.1:${ports.app}/appdb'`);
    const page = await alice.get('/.portcullis/connect/appdb');
    expect(page.status).toBe(200);
    expect(page.headers['content-security-policy']).toContain("default-src 'none'");
    expect(page.text()).toMatch(/<pre id="psql">psql &#39;postgresql:\/\/alice:pcdb_[A-Za-z0-9_-]{43}@127\.0\.0\.1:\d+\/appdb&#39;<\/pre>/);
    if (SCREENSHOTS !== undefined) await screenshot(page.text(), join(SCREENSHOTS, 'connect-page.png'));
    const issued = await records((r) => r.kind === 'auth' && r.event?.action === 'db_token_issue' && r.identity?.user === 'alice');
    expect(issued.length).toBeGreaterThanOrEqual(2);
    expect(issued[0]?.event).toMatchObject({ database: 'appdb' });
  });

  it('refuses a user outside the allow list (403) and an unknown database (404)', async () => {
    const carol = await signIn(ports.http, 'carol', PASSWORD);
    const denied = await carol.get('/.portcullis/connect/appdb', 'application/json');
    expect(denied.status).toBe(403);
    expect((denied.json() as { error: string }).error).toBe('GW_ERR_DATABASE_DENIED');
    const missing = await carol.get('/.portcullis/connect/nope', 'application/json');
    expect(missing.status).toBe(404);
    expect((missing.json() as { error: string }).error).toBe('GW_ERR_DATABASE_NOT_FOUND');
  });
});

describe('sessions through the gateway', () => {
  let bob: GatewayAgent;
  beforeAll(async () => {
    bob = await signIn(ports.http, 'bob', PASSWORD);
  });

  it('runs psql: simple queries, a transaction, COPY in and COPY out, and records each statement', async () => {
    const c = await connectInfo(bob);
    const before = relay.connections();
    const script = [
      `BEGIN;`,
      `INSERT INTO ${TABLE} VALUES (1, 'one'), (2, 'two');`,
      `COMMIT;`,
      `\\copy ${TABLE} from stdin`,
      `3\tthree`,
      `4\tfour`,
      `\\.`,
      `\\copy (select * from ${TABLE} order by id) to stdout`,
      `SELECT count(*) AS n FROM ${TABLE};`,
    ].join('\n');
    const r = await psql(uri(c), ['-q', '-A', '-t', '-f', '-'], `${script}\n`);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('1\tone\n2\ttwo\n3\tthree\n4\tfour\n4\n');
    expect(relay.connections()).toBe(before + 1);
    const statements = await records((r) => r.kind === 'postgres' && r.postgres?.event === 'statement' && r.identity?.user === 'bob');
    const seen = statements.map((s) => [s.postgres?.command, s.postgres?.rows ?? null, s.reason]);
    expect(seen).toEqual(
      expect.arrayContaining([
        ['BEGIN', null, 'statement-ok'],
        ['INSERT', 2, 'statement-ok'],
        ['COMMIT', null, 'statement-ok'],
        ['COPY', 2, 'statement-ok'],
        ['COPY', 4, 'statement-ok'],
        ['SELECT', 1, 'statement-ok'],
      ]),
    );
    const insert = statements.find((s) => s.postgres?.command === 'INSERT');
    expect(insert).toMatchObject({
      kind: 'postgres',
      route: 'appdb',
      decision: 'allow',
      identity: { user: 'bob', groups: ['eng'], provider: 'local', auth: 'token' },
      client: { ip: '127.0.0.1' },
      postgres: { database: 'appdb', event: 'statement', sql: `INSERT INTO ${TABLE} VALUES (1, 'one'), (2, 'two');`, protocol: 'simple', command: 'INSERT', rows: 2 },
    });
    expect(insert?.identity?.session).toMatch(/^[0-9a-f]{16}$/);
    expect(insert?.duration_us).toBeGreaterThan(0);
    const connection = insert?.postgres?.connection;
    const lifecycle = await records((r) => r.kind === 'postgres' && r.postgres !== undefined && r.postgres.connection === connection && r.postgres.event !== 'statement', 2);
    expect(lifecycle.map((l) => [l.postgres?.event, l.decision, l.reason])).toEqual([
      ['connect', 'allow', 'token-ok'],
      ['disconnect', 'allow', 'client-terminated'],
    ]);
    expect(lifecycle[1]?.postgres).toMatchObject({ statements: 6 });
  });

  it('runs the pg driver: extended queries with parameters, prepared statements, errors, notices and notifications', async () => {
    const c = await connectInfo(bob);
    const client = pgClient(c);
    const notices: string[] = [];
    const notifications: string[] = [];
    client.on('notice', (n) => notices.push(n.message ?? ''));
    client.on('notification', (n) => notifications.push(`${n.channel}:${n.payload ?? ''}`));
    await client.connect();
    try {
      expect((await client.query<{ s: number }>('SELECT $1::int + $2::int AS s', [20, 22])).rows).toEqual([{ s: 42 }]);
      const named = { name: 'by-id', text: `SELECT v FROM ${TABLE} WHERE id = $1`, values: [3] };
      expect((await client.query<{ v: string }>(named)).rows).toEqual([{ v: 'three' }]);
      expect((await client.query<{ v: string }>({ ...named, values: [4] })).rows).toEqual([{ v: 'four' }]);
      await expect(client.query('SELECT 1 / $1::int', [0])).rejects.toMatchObject({ code: '22012' });
      await client.query('BEGIN');
      await client.query(`UPDATE ${TABLE} SET v = $1 WHERE id = $2`, ['uno', 1]);
      await client.query('ROLLBACK');
      expect((await client.query<{ v: string }>(`SELECT v FROM ${TABLE} WHERE id = 1`)).rows).toEqual([{ v: 'one' }]);
      await client.query(`DO $$ BEGIN RAISE NOTICE 'hello from plpgsql'; END $$`);
      await client.query('LISTEN dbgw_channel');
      await client.query(`NOTIFY dbgw_channel, 'ping'`);
      await eventually(() => Promise.resolve(notifications.length === 1), 3000);
    } finally {
      await client.end();
    }
    expect(notices).toEqual(['hello from plpgsql']);
    expect(notifications).toEqual(['dbgw_channel:ping']);
    const statements = await records((r) => r.kind === 'postgres' && r.postgres?.event === 'statement' && r.postgres.protocol === 'extended');
    expect(statements.find((s) => s.postgres?.sql === 'SELECT $1::int + $2::int AS s')?.postgres).toMatchObject({ params: 2, command: 'SELECT', rows: 1 });
    expect(statements.filter((s) => s.postgres?.sql === `SELECT v FROM ${TABLE} WHERE id = $1`).length).toBe(2);
    expect(statements.find((s) => s.postgres?.sql === 'SELECT 1 / $1::int')?.postgres).toMatchObject({ error: '22012', params: 1 });
    expect(statements.find((s) => s.postgres?.sql === `UPDATE ${TABLE} SET v = $1 WHERE id = $2`)?.postgres).toMatchObject({ command: 'UPDATE', rows: 1 });
    const text = await metricsText();
    expect(text).toMatch(/portcullis_db_statements_total\{database="appdb",command="SELECT"\} \d+/);
    expect(text).toMatch(/portcullis_db_statements_total\{database="appdb",command="ERROR"\} \d+/);
  });

  it('cancels a running query with psql’s cancel (SIGINT) and never on a foreign key', async () => {
    const c = await connectInfo(bob);
    // A CancelRequest with a key nobody was given does nothing.
    const client = pgClient(c);
    await client.connect();
    const slow = client.query('SELECT pg_sleep(0.6) AS done');
    await new Promise((r) => setTimeout(r, 100));
    await new Promise<void>((resolve) => {
      const s = net.connect(ports.app, '127.0.0.1', () => {
        const b = Buffer.alloc(16);
        b.writeInt32BE(16, 0);
        b.writeInt32BE(80877102, 4);
        b.writeInt32BE(12345, 8);
        b.writeInt32BE(67890, 12);
        s.end(b);
      });
      s.on('close', () => resolve());
    });
    await expect(slow).resolves.toMatchObject({ rowCount: 1 });
    await client.end();
    // psql sends a CancelRequest with the key it was given; the gateway maps it to the upstream's.
    const started = performance.now();
    const run = startPsql(uri(c), ['-c', 'SELECT pg_sleep(30)']);
    await eventually(async () => (await adminQuery<{ n: string }>(`SELECT count(*) AS n FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'`))[0]?.n === '1', 5000);
    run.child.kill('SIGINT');
    const r = await run.done;
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('canceling statement due to user request');
    expect(performance.now() - started).toBeLessThan(10_000);
    const cancelled = await records((x) => x.kind === 'postgres' && x.postgres?.sql === 'SELECT pg_sleep(30)');
    expect(cancelled[0]?.postgres).toMatchObject({ error: '57014' });
  });

  it('counts open sessions in portcullis_db_sessions_active', async () => {
    const c = await connectInfo(bob);
    const client = pgClient(c);
    await client.connect();
    expect(await metricsText()).toMatch(/portcullis_db_sessions_active\{database="appdb"\} 1\n/);
    await client.end();
    await eventually(async () => /portcullis_db_sessions_active\{database="appdb"\} 0\n/.test(await metricsText()), 3000);
  });
});

describe('refused passwords', () => {
  let alice: GatewayAgent;
  beforeAll(async () => {
    alice = await signIn(ports.http, 'alice', PASSWORD);
  });

  it('answers 28P01 to a bad, unknown, expired, revoked or wrong-database password, and opens no upstream connection', async () => {
    const valid = await connectInfo(alice);
    const revoked = await connectInfo(alice, 'other');
    const revoke = await alice.form('/.portcullis/connect/other/revoke', { csrf: alice.csrf }, 'application/json');
    expect(revoke.status).toBe(200);
    expect(revoke.json()).toMatchObject({ database: 'other', revoked: 1 });
    const forOther = await connectInfo(alice, 'other');
    const before = relay.connections();
    const base = { port: ports.app, user: 'alice', database: 'appdb' };
    expect(await connectOutcome({ ...base, password: 'not-a-token' })).toBe('FATAL 28P01');
    expect(await connectOutcome({ ...base, password: `pcdb_${'A'.repeat(43)}` })).toBe('FATAL 28P01');
    expect(await connectOutcome({ ...base, password: forOther.password })).toBe('FATAL 28P01');
    expect(await connectOutcome({ port: ports.other, user: 'alice', database: 'other', password: revoked.password })).toBe('FATAL 28P01');
    expect(await connectOutcome({ ...base, user: 'bob', password: valid.password })).toBe('FATAL 28P01');
    offsetMs += 31 * 60_000;
    try {
      expect(await connectOutcome({ ...base, password: valid.password })).toBe('FATAL 28P01');
    } finally {
      offsetMs -= 31 * 60_000;
    }
    expect(relay.connections()).toBe(before);
    // The same password still works for its own user and database (the refusals were about them).
    expect(await connectOutcome({ ...base, password: valid.password })).toBe('ok');
    expect(relay.connections()).toBe(before + 1);
    const refusals = await records((r) => r.kind === 'postgres' && r.postgres?.event === 'connect' && r.decision === 'unauthenticated');
    expect(refusals.map((r) => r.reason)).toEqual(expect.arrayContaining(['token-malformed', 'token-unknown', 'token-wrong-database', 'token-wrong-user', 'token-expired']));
  });
});

describe('revocation closes open connections with FATAL', () => {
  /** Connects and resolves with the error the connection later ends with. */
  async function connectAndWatch(c: ConnectAnswer): Promise<{ client: pg.Client; ended: Promise<{ code: string | undefined; severity: string | undefined; message: string }> }> {
    const client = pgClient(c);
    const ended = new Promise<{ code: string | undefined; severity: string | undefined; message: string }>((resolve) => {
      client.on('error', (err: Error & { code?: string; severity?: string }) => resolve({ code: err.code, severity: err.severity, message: err.message }));
    });
    await client.connect();
    expect((await client.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    return { client, ended };
  }

  it('when the user revokes the token', async () => {
    const bob = await signIn(ports.http, 'bob', PASSWORD);
    const { ended } = await connectAndWatch(await connectInfo(bob));
    const res = await bob.form('/.portcullis/connect/appdb/revoke', { csrf: bob.csrf });
    expect(res.status).toBe(200);
    expect(res.text()).toContain('revoked');
    const e = await ended;
    expect(e).toMatchObject({ severity: 'FATAL', code: '28000' });
    expect(e.message).toContain('revoked');
    // The disconnect record follows once both sockets have closed.
    await eventually(async () => (await records((r) => r.kind === 'postgres' && r.postgres?.event === 'disconnect' && r.reason === 'token-revoked')).length === 1, 3000);
  });

  it('refuses a revocation without the session’s CSRF token', async () => {
    const bob = await signIn(ports.http, 'bob', PASSWORD);
    const res = await bob.form('/.portcullis/connect/appdb/revoke', { csrf: 'forged' }, 'application/json');
    expect(res.status).toBe(403);
  });

  it('when the web session that issued the token signs out', async () => {
    const bob = await signIn(ports.http, 'bob', PASSWORD);
    const { ended } = await connectAndWatch(await connectInfo(bob));
    const out = await bob.form('/.portcullis/logout', { csrf: bob.csrf });
    expect(out.status).toBe(200);
    const e = await ended;
    expect(e).toMatchObject({ severity: 'FATAL', code: '28000' });
    expect(e.message).toContain('web session');
  });

  it('when the token expires', async () => {
    const bob = await signIn(ports.http, 'bob', PASSWORD);
    const { ended } = await connectAndWatch(await connectInfo(bob));
    offsetMs += 31 * 60_000;
    try {
      const e = await ended;
      expect(e).toMatchObject({ severity: 'FATAL', code: '28000' });
      expect(e.message).toContain('expired');
    } finally {
      offsetMs -= 31 * 60_000;
    }
  });
});

describe('a database with a second-factor requirement', () => {
  it('issues no password without a fresh passkey check, then one that works', async () => {
    const alice = await signIn(ports.http, 'alice', PASSWORD);
    const browser = await alice.get('/.portcullis/connect/secure');
    expect(browser.status).toBe(302);
    expect(browser.headers.location).toBe('/.portcullis/mfa?rd=%2F.portcullis%2Fconnect%2Fsecure&factors=webauthn');
    const api = await alice.get('/.portcullis/connect/secure', 'application/json');
    expect(api.status).toBe(401);
    expect(api.headers['www-authenticate']).toBe('Bearer error="insufficient_user_authentication", error_description="A webauthn check within 600s is required", max_age=600, acr_values="webauthn"');
    await alice.enrolPasskey();
    await alice.stepUp();
    const c = await connectInfo(alice, 'secure');
    const client = pgClient(c);
    await client.connect();
    await client.query('SELECT 1');
    await client.end();
    const [statement] = await records((r) => r.kind === 'postgres' && r.route === 'secure' && r.postgres?.event === 'statement');
    expect(statement?.identity?.mfa).toMatchObject({ factor: 'webauthn' });
    // Eleven minutes later the step-up is stale: no new password.
    offsetMs += 11 * 60_000;
    try {
      expect((await alice.get('/.portcullis/connect/secure', 'application/json')).status).toBe(401);
    } finally {
      offsetMs -= 11 * 60_000;
    }
  });
});
