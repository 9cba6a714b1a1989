/**
 * A private Redis Cluster for tests: three masters and three replicas of Debian's `redis-server` on
 * loopback, each in its own temporary directory, joined with `redis-cli --cluster create`. Ports are
 * picked so that the cluster bus port (port + 10000) is free too. Persistence is off; failure
 * detection is fast (`cluster-node-timeout`, 1 s by default). Nothing touches the shared Redis on 6379.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** One node of the cluster. */
export interface ClusterNode {
  readonly port: number;
  readonly process: ChildProcess;
}

/** A running test cluster. */
export interface TestRedisCluster {
  /** `127.0.0.1:<port>` of every node, for `store.redis.cluster.nodes`. */
  readonly seeds: string[];
  readonly nodes: ClusterNode[];
  /** `redis-cli -p <port> …`, trimmed stdout. */
  cli(port: number, ...args: string[]): Promise<string>;
  /** The port of the master that now serves `key`'s slot. */
  masterOf(key: string): Promise<number>;
  /** The ports of the replicas of the master on `port`. */
  replicasOf(port: number): Promise<number[]>;
  /** Ports of the current masters. */
  masters(): Promise<number[]>;
  /** Resolves once every live node reports cluster_state:ok, agrees on three masters, and every replica is in sync. */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /** SIGKILLs one node (a crash). */
  kill(port: number): Promise<void>;
  stop(): Promise<void>;
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** `n` ports in 20000–29999 whose bus ports (+10000) are free as well. */
async function clusterPorts(n: number): Promise<number[]> {
  const ports: number[] = [];
  for (let tries = 0; ports.length < n && tries < 500; tries++) {
    const port = 20000 + Math.floor(Math.random() * 10000);
    if (ports.includes(port) || ports.includes(port + 10000) || ports.includes(port - 10000)) continue;
    if ((await isFree(port)) && (await isFree(port + 10000))) ports.push(port);
  }
  if (ports.length < n) throw new Error('no free ports for a test redis cluster');
  return ports;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Starts six nodes and creates the cluster (3 masters, 1 replica each). Resolves once it is healthy. */
export async function startRedisCluster(opts: { nodeTimeoutMs?: number } = {}): Promise<TestRedisCluster> {
  const ports = await clusterPorts(6);
  const dirs: string[] = [];
  const nodes: ClusterNode[] = [];
  const cli = async (port: number, ...args: string[]): Promise<string> => (await run('redis-cli', ['-p', String(port), ...args], { timeout: 10_000 })).stdout.trim();
  const alive = (n: ClusterNode) => n.process.exitCode === null && n.process.signalCode === null;
  const stop = async (): Promise<void> => {
    await Promise.all(
      nodes.filter(alive).map(
        (n) =>
          new Promise<void>((resolve) => {
            n.process.once('exit', () => resolve());
            n.process.kill('SIGKILL');
          }),
      ),
    );
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  };
  const exitHook = () => {
    for (const n of nodes) n.process.kill('SIGKILL');
  };
  process.once('exit', exitHook);

  try {
    for (const port of ports) {
      const dir = await mkdtemp(join(tmpdir(), 'portcullis-redis-cluster-'));
      dirs.push(dir);
      const child = spawn(
        'redis-server',
        [
          ...['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--loglevel', 'warning'],
          ...['--cluster-enabled', 'yes', '--cluster-config-file', join(dir, 'nodes.conf'), '--cluster-node-timeout', String(opts.nodeTimeoutMs ?? 1000)],
          // A replica may be promoted however long it was cut off (tests kill masters on purpose).
          ...['--cluster-replica-validity-factor', '0'],
        ],
        { cwd: dir, stdio: 'ignore' },
      );
      nodes.push({ port, process: child });
    }
    for (const port of ports) {
      for (let i = 0; ; i++) {
        try {
          if ((await cli(port, 'PING')) === 'PONG') break;
        } catch {
          // not yet
        }
        if (i > 200) throw new Error(`redis-server on ${port} did not start`);
        await sleep(50);
      }
    }
    await run('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '1', '--cluster-yes'], { timeout: 60_000 });
  } catch (err) {
    await stop();
    throw err;
  }

  const shards = async (port: number): Promise<{ master: number; replicas: number[]; slots: [number, number][] }[]> => {
    // CLUSTER NODES: `<id> <ip:port@bus> <flags> <master id|-> <ping> <pong> <epoch> <link> <slot ranges…>`.
    const out = await cli(port, 'CLUSTER', 'NODES');
    const lines = out.split('\n').filter((l) => l.trim() !== '');
    const byId = new Map<string, { port: number; flags: string; masterId: string; slots: [number, number][] }>();
    for (const line of lines) {
      const [id = '', addr = '', flags = '', masterId = '', , , , , ...slotSpecs] = line.split(' ');
      const nodePort = Number(addr.split('@')[0]?.split(':')[1]);
      const slots = slotSpecs
        .filter((s) => /^\d+(-\d+)?$/.test(s))
        .map((s): [number, number] => {
          const [a = '0', b] = s.split('-');
          return [Number(a), Number(b ?? a)];
        });
      byId.set(id, { port: nodePort, flags, masterId, slots });
    }
    const result: { master: number; replicas: number[]; slots: [number, number][] }[] = [];
    for (const [id, n] of byId) {
      if (!n.flags.includes('master') || n.flags.includes('fail')) continue;
      const replicas = [...byId.values()].filter((r) => r.masterId === id && !r.flags.includes('fail')).map((r) => r.port);
      result.push({ master: n.port, replicas, slots: n.slots });
    }
    return result;
  };
  const livePort = () => nodes.find(alive)?.port ?? 0;

  const cluster: TestRedisCluster = {
    seeds: ports.map((p) => `127.0.0.1:${p}`),
    nodes,
    cli,
    async masterOf(key) {
      const slot = Number(await cli(livePort(), 'CLUSTER', 'KEYSLOT', key));
      const owner = (await shards(livePort())).find((s) => s.slots.some(([a, b]) => slot >= a && slot <= b));
      if (owner === undefined) throw new Error(`no master serves slot ${slot}`);
      return owner.master;
    },
    async replicasOf(port) {
      return (await shards(livePort())).find((s) => s.master === port)?.replicas ?? [];
    },
    async masters() {
      return (await shards(livePort())).filter((s) => s.slots.length > 0).map((s) => s.master);
    },
    async waitHealthy(timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        let ok = true;
        try {
          for (const n of nodes.filter(alive)) {
            const info = await cli(n.port, 'CLUSTER', 'INFO');
            if (!info.includes('cluster_state:ok')) ok = false;
            const masters = (await shards(n.port)).filter((s) => s.slots.length > 0);
            if (masters.length !== 3) ok = false;
            // A replica counts once it is in sync (a manual failover needs that).
            const replication = await cli(n.port, 'INFO', 'replication');
            if (replication.includes('role:slave') && !replication.includes('master_link_status:up')) ok = false;
          }
        } catch {
          ok = false;
        }
        if (ok) return;
        if (Date.now() > deadline) throw new Error('the test redis cluster did not become healthy in time');
        await sleep(100);
      }
    },
    async kill(port) {
      const node = nodes.find((n) => n.port === port);
      if (node === undefined || !alive(node)) return;
      await new Promise<void>((resolve) => {
        node.process.once('exit', () => resolve());
        node.process.kill('SIGKILL');
      });
    },
    async stop() {
      process.off('exit', exitHook);
      await stop();
    },
  };
  try {
    await cluster.waitHealthy(30_000);
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}
