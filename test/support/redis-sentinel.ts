/**
 * A private Redis Sentinel group for tests: one master, two replicas and three sentinels
 * (`redis-server --sentinel`), all Debian's `redis-server` on free loopback ports, each in its own
 * temporary directory, persistence off, fast failure detection (`down-after-milliseconds` 1000).
 * Nothing touches the shared Redis on 6379.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePorts } from './process.js';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The master group name the sentinels monitor. */
export const SENTINEL_MASTER_NAME = 'portcullis-test';

/** A running test Sentinel group. */
export interface TestSentinelGroup {
  /** `127.0.0.1:<port>` of every sentinel, for `store.redis.sentinel.nodes`. */
  readonly sentinels: string[];
  /** Ports of the data nodes (master first, as started). */
  readonly dataPorts: number[];
  /** `redis-cli -p <port> …`, trimmed stdout. */
  cli(port: number, ...args: string[]): Promise<string>;
  /** The master's port as the sentinels report it (asks the first live sentinel). */
  master(): Promise<number>;
  /** Resolves once the sentinels agree on a master with two in-sync replicas and know each other. */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /** Waits until every replica has applied everything the master has. */
  waitReplicated(timeoutMs?: number): Promise<void>;
  /** SIGKILLs the data node on `port` (a crash). */
  kill(port: number): Promise<void>;
  stop(): Promise<void>;
}

/** Starts the group and resolves once it is healthy. */
export async function startSentinelGroup(): Promise<TestSentinelGroup> {
  const ports = await freePorts(6);
  const dataPorts = ports.slice(0, 3);
  const sentinelPorts = ports.slice(3);
  const masterPort = dataPorts[0] ?? 0;
  const dirs: string[] = [];
  const children = new Map<number, ChildProcess>();
  const cli = async (port: number, ...args: string[]): Promise<string> => (await run('redis-cli', ['-p', String(port), ...args], { timeout: 10_000 })).stdout.trim();
  const alive = (c: ChildProcess) => c.exitCode === null && c.signalCode === null;
  const exitHook = () => {
    for (const c of children.values()) c.kill('SIGKILL');
  };
  process.once('exit', exitHook);
  const stop = async (): Promise<void> => {
    process.off('exit', exitHook);
    await Promise.all(
      [...children.values()].filter(alive).map(
        (c) =>
          new Promise<void>((resolve) => {
            c.once('exit', () => resolve());
            c.kill('SIGKILL');
          }),
      ),
    );
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  };
  const waitPing = async (port: number): Promise<void> => {
    for (let i = 0; ; i++) {
      try {
        if ((await cli(port, 'PING')) === 'PONG') return;
      } catch {
        // not yet
      }
      if (i > 200) throw new Error(`redis on ${port} did not start`);
      await sleep(50);
    }
  };

  try {
    for (const port of dataPorts) {
      const dir = await mkdtemp(join(tmpdir(), 'portcullis-redis-sentinel-data-'));
      dirs.push(dir);
      const replica = port === masterPort ? [] : ['--replicaof', '127.0.0.1', String(masterPort)];
      children.set(port, spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--loglevel', 'warning', ...replica], { cwd: dir, stdio: 'ignore' }));
    }
    for (const port of dataPorts) await waitPing(port);
    for (const port of sentinelPorts) {
      const dir = await mkdtemp(join(tmpdir(), 'portcullis-redis-sentinel-'));
      dirs.push(dir);
      const conf = join(dir, 'sentinel.conf');
      await writeFile(
        conf,
        [
          `port ${port}`,
          'bind 127.0.0.1',
          `dir ${dir}`,
          'loglevel warning',
          `sentinel monitor ${SENTINEL_MASTER_NAME} 127.0.0.1 ${masterPort} 2`,
          `sentinel down-after-milliseconds ${SENTINEL_MASTER_NAME} 1000`,
          `sentinel failover-timeout ${SENTINEL_MASTER_NAME} 10000`,
          `sentinel parallel-syncs ${SENTINEL_MASTER_NAME} 2`,
          '',
        ].join('\n'),
      );
      children.set(port, spawn('redis-server', [conf, '--sentinel'], { cwd: dir, stdio: 'ignore' }));
    }
    for (const port of sentinelPorts) await waitPing(port);
  } catch (err) {
    await stop();
    throw err;
  }

  const liveSentinel = (): number => sentinelPorts.find((p) => alive(children.get(p) as ChildProcess)) ?? 0;
  const master = async (): Promise<number> => {
    const out = await cli(liveSentinel(), 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', SENTINEL_MASTER_NAME);
    return Number(out.split('\n')[1]);
  };
  const offsets = async (): Promise<{ master: number; replicas: number[]; links: boolean }> => {
    const m = await master();
    const info = await cli(m, 'INFO', 'replication');
    const masterOffset = Number(/master_repl_offset:(\d+)/.exec(info)?.[1] ?? -1);
    const replicas: number[] = [];
    let links = info.includes('role:master');
    for (const port of dataPorts) {
      if (port === m || !alive(children.get(port) as ChildProcess)) continue;
      const r = await cli(port, 'INFO', 'replication');
      if (!r.includes(`master_port:${m}`) || !r.includes('master_link_status:up')) links = false;
      replicas.push(Number(/slave_repl_offset:(\d+)/.exec(r)?.[1] ?? -1));
    }
    return { master: masterOffset, replicas, links };
  };

  const group: TestSentinelGroup = {
    sentinels: sentinelPorts.map((p) => `127.0.0.1:${p}`),
    dataPorts,
    cli,
    master,
    async waitHealthy(timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        try {
          const m = await master();
          let ok = true;
          for (const s of sentinelPorts.filter((p) => alive(children.get(p) as ChildProcess))) {
            const info = await cli(s, 'SENTINEL', 'MASTER', SENTINEL_MASTER_NAME);
            const field = (name: string) => new RegExp(`(?:^|\\n)${name}\\n([^\\n]*)`).exec(info)?.[1];
            const liveReplicas = dataPorts.filter((p) => p !== m && alive(children.get(p) as ChildProcess)).length;
            if (Number(field('port')) !== m || (field('flags') ?? '') !== 'master') ok = false;
            if (Number(field('num-slaves')) < liveReplicas) ok = false;
            if (Number(field('num-other-sentinels')) < 2) ok = false;
          }
          if (ok && (await offsets()).links) return;
        } catch {
          // not yet
        }
        if (Date.now() > deadline) throw new Error('the test sentinel group did not become healthy in time');
        await sleep(100);
      }
    },
    async waitReplicated(timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const o = await offsets().catch(() => undefined);
        if (o?.links === true && o.replicas.every((r) => r === o.master)) return;
        if (Date.now() > deadline) throw new Error('the replicas did not catch up in time');
        await sleep(50);
      }
    },
    async kill(port) {
      const c = children.get(port);
      if (c === undefined || !alive(c)) return;
      await new Promise<void>((resolve) => {
        c.once('exit', () => resolve());
        c.kill('SIGKILL');
      });
    },
    stop,
  };
  try {
    await group.waitHealthy();
  } catch (err) {
    await stop();
    throw err;
  }
  return group;
}
