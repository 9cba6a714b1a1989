/** Starts a real gateway (the app's composition root) on free loopback ports for a test. */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { createApp, type App } from '../../src/app.js';
import { configSchema, type Config } from '../../src/config/index.js';
import type { Authenticator } from '../../src/proxy/pipeline.js';
import type { Store } from '../../src/store/index.js';

export interface TestGateway {
  readonly app: App;
  readonly port: number;
  readonly url: string;
  readonly adminUrl: string;
  /** The test's own directory for keys, users and audit data. */
  readonly dir: string;
  stop(graceMs?: number): Promise<void>;
}

/** Validates `input` with the real schema (listeners forced to free ports) and starts the app. */
export async function startGateway(
  input: Record<string, unknown>,
  opts: { authenticator?: Authenticator; configFile?: string; now?: () => number; store?: Store; allowInsecureOidc?: boolean; listen?: string; logger?: Logger } = {},
): Promise<TestGateway> {
  const server = { ...(input.server as Record<string, unknown> | undefined), listen: opts.listen ?? '127.0.0.1:0', admin_listen: '127.0.0.1:0' };
  // Keys, users and audit data live in a temp dir of the test's own unless the test says otherwise.
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-gw-'));
  const inputIdentity = (input.identity ?? {}) as Record<string, unknown>;
  const identity = {
    providers: [{ id: 'local', type: 'local', users_file: join(dir, 'users.yaml') }],
    ...inputIdentity,
    assertion: { key_file: join(dir, 'assertion-keys.json'), ...(inputIdentity.assertion as Record<string, unknown> | undefined) },
  };
  const audit = { sink: { type: 'file', dir: join(dir, 'audit') }, spool_dir: join(dir, 'spool'), seal: { key_file: join(dir, 'seal.key'), witness_dir: join(dir, 'checkpoints') }, ...(input.audit as Record<string, unknown> | undefined) };
  const mfa = { credentials_file: join(dir, 'mfa', 'credentials.json'), secret_key_file: join(dir, 'mfa', 'secret.key'), ...(input.mfa as Record<string, unknown> | undefined) };
  const config: Config = configSchema.parse({ ...input, server, identity, audit, mfa });
  const app = await createApp({
    config,
    logger: opts.logger ?? pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }),
    defaultMetrics: false,
    ...(opts.authenticator === undefined ? {} : { authenticator: opts.authenticator }),
    ...(opts.configFile === undefined ? {} : { configFile: opts.configFile }),
    ...(opts.now === undefined ? {} : { now: opts.now }),
    ...(opts.store === undefined ? {} : { store: opts.store }),
    ...(opts.allowInsecureOidc === true ? { allowInsecureOidc: true } : {}),
  });
  const addrs = await app.start();
  return {
    app,
    port: addrs.public.port,
    url: `http://127.0.0.1:${addrs.public.port}`,
    adminUrl: `http://127.0.0.1:${addrs.admin.port}`,
    dir,
    stop: (graceMs = 1000) => app.stop(graceMs),
  };
}
