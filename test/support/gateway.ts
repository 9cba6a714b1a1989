/** Starts a real gateway (the app's composition root) on free loopback ports for a test. */
import { pino } from 'pino';
import { createApp, type App } from '../../src/app.js';
import { configSchema, type Config } from '../../src/config/index.js';
import type { Authenticator } from '../../src/proxy/pipeline.js';

export interface TestGateway {
  readonly app: App;
  readonly port: number;
  readonly url: string;
  readonly adminUrl: string;
  stop(graceMs?: number): Promise<void>;
}

/** Validates `input` with the real schema (listeners forced to free ports) and starts the app. */
export async function startGateway(input: Record<string, unknown>, opts: { authenticator?: Authenticator; configFile?: string; now?: () => number } = {}): Promise<TestGateway> {
  const server = { ...(input.server as Record<string, unknown> | undefined), listen: '127.0.0.1:0', admin_listen: '127.0.0.1:0' };
  const config: Config = configSchema.parse({ ...input, server });
  const app = createApp({
    config,
    logger: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }),
    defaultMetrics: false,
    ...(opts.authenticator === undefined ? {} : { authenticator: opts.authenticator }),
    ...(opts.configFile === undefined ? {} : { configFile: opts.configFile }),
    ...(opts.now === undefined ? {} : { now: opts.now }),
  });
  const addrs = await app.start();
  return {
    app,
    port: addrs.public.port,
    url: `http://127.0.0.1:${addrs.public.port}`,
    adminUrl: `http://127.0.0.1:${addrs.admin.port}`,
    stop: (graceMs = 1000) => app.stop(graceMs),
  };
}
