/**
 * The Dockerfile and .dockerignore as shipped. No Docker engine runs here, so the image is checked by
 * construction and then reproduced:
 *
 * - static: multi-stage, the runtime stage from a Node image, a numeric non-root USER, HEALTHCHECK on
 *   the admin listener, STOPSIGNAL SIGTERM, exec-form ENTRYPOINT, /app/data as the only volume, no
 *   secret copied or baked in, and .dockerignore (with Docker's matching rules) keeping data/, keys,
 *   users and node_modules out of the build context while leaving in what the COPYs need;
 * - run: the runtime stage's files laid out as the image has them (its COPY lines replayed from the
 *   repository's build: dist/, node_modules, bin/, assets/, …), the Kubernetes layout around them (the
 *   ConfigMap's portcullis.yaml in /etc/portcullis/config, the Secrets' files, the init container's
 *   0400 key copies, a data volume), and the image's command line with the StatefulSet's args and
 *   environment, as the image's user 10001 (when the test runs as root) so that everything but the
 *   volumes is read-only to it. Redis is the real thing: deploy/redis/redis.conf with the ACL users,
 *   behind a Sentinel. The gateway starts, /healthz and /readyz answer, the HEALTHCHECK command
 *   passes, the browser scripts are served, a request is audited in the pod's own log, nothing is
 *   written outside the volumes, and SIGTERM ends it with exit 0 and a final checkpoint.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, chownSync, cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { Redis } from 'ioredis';
import { parse as parseYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { send } from '../support/http-client.js';
import { eventually, freePorts, REPO_ROOT } from '../support/process.js';
import { at, copyParts, dockerignoreExcludes, envPairs, execForm, list, parseDockerfile, type Stage } from './deploy-kit.js';

const dockerfile = parseDockerfile(readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8'));
const runtime = dockerfile.stages.at(-1) as Stage;
const build = dockerfile.stages[0] as Stage;
const of = (stage: Stage, keyword: string) => stage.instructions.filter((i) => i.keyword === keyword);
const last = (stage: Stage, keyword: string) => of(stage, keyword).at(-1)?.args ?? '';
const ignored = dockerignoreExcludes(readFileSync(join(REPO_ROOT, '.dockerignore'), 'utf8'));

describe('Dockerfile', () => {
  it('is multi-stage: the build stage compiles, the runtime stage copies only its output', () => {
    expect(dockerfile.stages.length).toBeGreaterThanOrEqual(2);
    expect(of(build, 'RUN').map((r) => r.args).join('\n')).toMatch(/npm ci[\s\S]*npm run build[\s\S]*npm prune --omit=dev/);
    // The runtime stage builds nothing: no npm, no compiler.
    expect(of(runtime, 'RUN').map((r) => r.args).join('\n')).not.toMatch(/\bnpm\b|\btsc\b/);
    const fromBuild = of(runtime, 'COPY').map((c) => copyParts(c.args)).filter((c) => c.from !== undefined);
    expect(fromBuild.map((c) => c.from)).toEqual(fromBuild.map(() => build.name));
    expect(fromBuild.flatMap((c) => c.sources).sort()).toEqual(['/app/dist', '/app/node_modules']);
  });

  it('npm ci --ignore-scripts loses nothing at run time: no production dependency has an install script', () => {
    expect(of(build, 'RUN').map((r) => r.args).join('\n')).toContain('npm ci --ignore-scripts');
    const lock = JSON.parse(readFileSync(join(REPO_ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean; hasInstallScript?: boolean }> };
    const scripted = Object.entries(lock.packages).filter(([key, meta]) => key !== '' && meta.hasInstallScript === true && meta.dev !== true);
    expect(scripted.map(([key]) => key)).toEqual([]);
  });

  it('the runtime stage is a Node LTS slim (or distroless) image, pinnable by a build argument', () => {
    const arg = dockerfile.globalArgs.map((a) => a.args).find((a) => a.startsWith('NODE_IMAGE='));
    expect(arg).toMatch(/^NODE_IMAGE=node:(20|22|24|26)-(bookworm|trixie)-slim$/);
    expect(runtime.from).toBe('${NODE_IMAGE}');
    expect(build.from).toBe('${NODE_IMAGE}');
  });

  it('runs as a numeric non-root user, stops on SIGTERM, checks /healthz, declares /app/data as its one volume', () => {
    const user = last(runtime, 'USER');
    expect(user).toMatch(/^[1-9]\d*:[1-9]\d*$/);
    expect(Number(user.split(':')[0])).toBeGreaterThanOrEqual(1000);
    expect(last(runtime, 'STOPSIGNAL')).toBe('SIGTERM');
    const health = last(runtime, 'HEALTHCHECK');
    const cmd = execForm(health.replace(/^(--\S+\s+)*CMD\s+/, ''));
    expect(cmd?.[0]).toBe('node');
    expect(cmd?.join(' ')).toContain('http://127.0.0.1:9090/healthz');
    expect(execForm(last(runtime, 'ENTRYPOINT'))).toEqual(['node', `${last(runtime, 'WORKDIR')}/bin/portcullis.js`]);
    expect(execForm(last(runtime, 'CMD'))).toEqual(['serve']);
    expect(of(runtime, 'VOLUME').map((v) => execForm(v.args))).toEqual([['/app/data']]);
    expect(last(runtime, 'EXPOSE').split(' ').sort()).toEqual(['8080', '9090']);
    // The volume's directory belongs to the runtime user, so a fresh volume is writable by it.
    expect(of(runtime, 'RUN').map((r) => r.args).join(' ')).toContain(`chown ${user} /app/data`);
  });

  it('copies no secret, key, user file or data into any stage, and bakes no credential into ENV or ARG', () => {
    for (const stage of dockerfile.stages) {
      for (const c of of(stage, 'COPY').map((i) => copyParts(i.args))) {
        if (c.from !== undefined) continue;
        for (const src of c.sources) {
          expect(src, `COPY ${src}`).not.toMatch(/(^|\/)(data|\.env|users\.yaml)|\.(key|pem|crt|p12)$|secret|assertion-keys/);
          expect(src === '.' || src === './', 'COPY . would send the whole context').toBe(false);
        }
      }
      for (const i of [...of(stage, 'ENV'), ...of(stage, 'ARG')]) expect(i.args, i.args).not.toMatch(/PASSWORD|SECRET|TOKEN|PRIVATE/i);
    }
    expect(dockerfile.globalArgs.map((a) => a.args).join(' ')).not.toMatch(/PASSWORD|SECRET|TOKEN/i);
  });

  it('.dockerignore keeps data, keys, users, builds and node_modules out, and every COPY source in', () => {
    for (const p of ['data', 'data/seal.key', 'data/spool/gw-0/wal.log', 'config/users.yaml', 'node_modules/yaml/package.json', 'dist/main.js', '.git/HEAD',
      'seal.key', 'deploy/k8s/secret.key', 'some/dir/tls.pem', '.env', 'config/.env.local', 'x/assertion-keys.json', 'npm-debug.log', 'test/deploy/manifests.test.ts']) {
      expect(ignored(p), `${p} is excluded`).toBe(true);
    }
    const sources = dockerfile.stages.flatMap((s) => of(s, 'COPY').map((c) => copyParts(c.args)).filter((c) => c.from === undefined).flatMap((c) => c.sources));
    expect(sources.length).toBeGreaterThan(5);
    for (const src of sources) {
      expect(existsSync(join(REPO_ROOT, src)), `${src} exists`).toBe(true);
      expect(ignored(src), `${src} is in the build context`).toBe(false);
    }
    for (const p of ['src/app.ts', 'src/audit/sealer.ts', 'assets/mfa.js', 'bin/portcullis.js', 'config/portcullis.schema.json']) expect(ignored(p), p).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------
// The runtime stage, run
// ---------------------------------------------------------------------------------------------

const k8s = (file: string): unknown => parseYaml(readFileSync(join(REPO_ROOT, 'deploy', 'k8s', file), 'utf8'), { version: '1.1' });
const sts = k8s('statefulset.yaml');
const podSpec = at(sts, 'spec', 'template', 'spec');
const gatewayContainer = list(podSpec, 'containers').find((c) => at(c, 'name') === 'portcullis');
const initContainer = list(podSpec, 'initContainers').find((c) => at(c, 'name') === 'keys');
const [uid = 0, gid = 0] = last(runtime, 'USER').split(':').map(Number);
const asImageUser = process.getuid?.() === 0;

const children = new Set<ChildProcess>();
function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** Output of a child, and a way to wait for a line. */
function capture(child: ChildProcess) {
  let out = '';
  child.stdout?.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr?.setEncoding('utf8').on('data', (c: string) => (out += c));
  return { output: () => out };
}

const exitOf = (child: ChildProcess) =>
  new Promise<number | null>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode);
    else child.once('exit', (code) => resolve(code));
  });

/** Redis as deploy/redis configures it (ACL users with fresh passwords), and one Sentinel watching it. */
async function startRedisWithSentinel(dir: string) {
  const passwords = { store: randomBytes(12).toString('hex'), audit: randomBytes(12).toString('hex'), ops: randomBytes(12).toString('hex') };
  const sha = (s: string) => createHash('sha256').update(s).digest('hex');
  const acl = readFileSync(join(REPO_ROOT, 'deploy', 'redis', 'users.acl'), 'utf8')
    .replace('STORE_PASSWORD_SHA256', sha(passwords.store))
    .replace('AUDIT_PASSWORD_SHA256', sha(passwords.audit))
    .replace('OPS_PASSWORD_SHA256', sha(passwords.ops));
  writeFileSync(join(dir, 'users.acl'), acl, { mode: 0o600 });
  const [port = 0, sentinelPort = 0] = await freePorts(2);
  const redis = track(
    spawn('redis-server', [join(REPO_ROOT, 'deploy', 'redis', 'redis.conf'), '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--aclfile', join(dir, 'users.acl'), '--save', ''], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] }),
  );
  const redisOut = capture(redis);
  writeFileSync(
    join(dir, 'sentinel.conf'),
    [
      `port ${sentinelPort}`,
      'bind 127.0.0.1',
      `dir ${dir}`,
      `sentinel monitor portcullis 127.0.0.1 ${port} 1`,
      'sentinel auth-user portcullis ops',
      `sentinel auth-pass portcullis ${passwords.ops}`,
      'sentinel down-after-milliseconds portcullis 5000',
      '',
    ].join('\n'),
  );
  const sentinel = track(spawn('redis-server', [join(dir, 'sentinel.conf'), '--sentinel'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] }));
  const sentinelOut = capture(sentinel);
  const ops = new Redis({ port, host: '127.0.0.1', username: 'ops', password: passwords.ops, lazyConnect: true, maxRetriesPerRequest: 1 });
  ops.on('error', () => undefined);
  await eventually(async () => {
    if (ops.status !== 'ready') await ops.connect().catch(() => undefined);
    return ops.status === 'ready';
  }, 15_000).catch((err: unknown) => {
    throw new Error(`redis did not start: ${String(err)}\n${redisOut.output()}`);
  });
  const probe = new Redis({ port: sentinelPort, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 1 });
  probe.on('error', () => undefined);
  await eventually(async () => {
    if (probe.status !== 'ready') await probe.connect().catch(() => undefined);
    const addr = (await probe.call('SENTINEL', 'get-master-addr-by-name', 'portcullis')) as string[] | null;
    return addr?.[1] === String(port);
  }, 15_000).catch((err: unknown) => {
    throw new Error(`sentinel did not start: ${String(err)}\n${sentinelOut.output()}`);
  });
  probe.disconnect();
  return { port, sentinelPort, passwords, ops };
}

/** What `npm prune --omit=dev` leaves of the repository's node_modules, copied to `to`. */
function copyProductionModules(to: string): void {
  const lock = JSON.parse(readFileSync(join(REPO_ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean; devOptional?: boolean }> };
  let copied = 0;
  for (const [key, meta] of Object.entries(lock.packages)) {
    if (!/^node_modules\/(@[^/]+\/)?[^/]+$/.test(key) || meta.dev === true || meta.devOptional === true) continue;
    const src = join(REPO_ROOT, key);
    if (!existsSync(src)) continue; // an optional dependency not installed on this platform
    cpSync(src, join(to, key.slice('node_modules/'.length)), { recursive: true });
    copied++;
  }
  if (copied < 10) throw new Error(`only ${String(copied)} production packages found in package-lock.json`);
}

/** Every path under `dir` (relative), for the "nothing written outside the volumes" check. */
function tree(dir: string, base = dir, out = new Set<string>()): Set<string> {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    out.add(relative(base, p));
    const st = lstatSync(p);
    if (st.isDirectory() && !st.isSymbolicLink()) tree(p, base, out);
  }
  return out;
}

describe('the runtime stage, run as the image and the StatefulSet run it', () => {
  const root = mkdtempSync(join(tmpdir(), 'portcullis-image-'));
  const inRoot = (containerPath: string) => join(root, containerPath);
  let redis: Awaited<ReturnType<typeof startRedisWithSentinel>>;
  let gateway: ChildProcess;
  let gatewayOut: { output: () => string };
  let ports: { http: number; admin: number };
  let before: Set<string>;
  const gatewayEnvironment: Record<string, string> = {};
  const podName = `${String(at(sts, 'metadata', 'name'))}-0`;
  const workdir = last(runtime, 'WORKDIR');

  beforeAll(async () => {
    chmodSync(root, 0o755);
    // 1. The image's files: replay the runtime stage's COPY lines. The build stage's /app is the
    //    repository after `npm run build`, and its node_modules after `npm prune --omit=dev`: only the
    //    packages package-lock.json does not mark dev (so a runtime import of a dev dependency fails
    //    here as it would in the image).
    const app = inRoot(workdir);
    mkdirSync(app, { recursive: true });
    for (const c of of(runtime, 'COPY').map((i) => copyParts(i.args))) {
      const dest = c.dest.startsWith('/') ? inRoot(c.dest) : join(app, c.dest);
      for (const src of c.sources) {
        const from = c.from === undefined ? join(REPO_ROOT, src) : join(REPO_ROOT, relative(workdir, src));
        const target = c.dest.endsWith('/') && !statSync(from).isDirectory() ? join(dest, src.split('/').at(-1) ?? '') : dest;
        mkdirSync(dirname(target), { recursive: true });
        if (src.endsWith('node_modules')) copyProductionModules(target);
        else cpSync(from, target, { recursive: true });
      }
    }
    // The RUN of the runtime stage: the data volume's directory, owned by the image user.
    mkdirSync(inRoot('/app/data'), { recursive: true, mode: 0o700 });
    mkdirSync(inRoot('/etc/portcullis/config'), { recursive: true });
    if (asImageUser) chownSync(inRoot('/app/data'), uid, gid);

    // 2. Redis with Sentinel, as the ConfigMap expects (ACL users from deploy/redis).
    const redisDir = join(root, 'redis');
    mkdirSync(redisDir);
    redis = await startRedisWithSentinel(redisDir);

    // 3. The ConfigMap, mounted: container paths under the root, free ports, our sentinel.
    const [http = 0, admin = 0] = await freePorts(2);
    ports = { http, admin };
    const configText = String(at(k8s('configmap.yaml'), 'data', 'portcullis.yaml'))
      .replaceAll(/(?<=[\s"[{,])\/(etc\/portcullis|run\/portcullis|app\/data)\//g, `${root}/$1/`)
      .replace('0.0.0.0:8080', `0.0.0.0:${http}`)
      .replace('0.0.0.0:9090', `0.0.0.0:${admin}`)
      .replaceAll(/nodes: \[[^\]]+\]/g, `nodes: [127.0.0.1:${redis.sentinelPort}]`);
    writeFileSync(inRoot('/etc/portcullis/config/portcullis.yaml'), configText);

    // 4. The Secrets, as the kubelet writes them: root-owned, mode 0440, group = fsGroup. Made with
    //    the commands docs/operations.md gives.
    const keysDir = inRoot('/etc/portcullis/secrets/keys');
    const usersDir = inRoot('/etc/portcullis/secrets/users');
    mkdirSync(keysDir, { recursive: true });
    mkdirSync(usersDir, { recursive: true });
    const cli = (args: string[], input?: string) => {
      const r = spawnSync(process.execPath, [join(app, 'bin', 'portcullis.js'), ...args], { cwd: app, input, encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } });
      if (r.status !== 0) throw new Error(`portcullis ${args.join(' ')}: ${r.stdout}${r.stderr}`);
      return r.stdout;
    };
    // keys generate prints the public key: what verifiers get (seal.pub in docs/operations.md).
    writeFileSync(join(root, 'seal.pub'), cli(['keys', 'generate', '--out', join(keysDir, 'seal.key'), '--name', 'access.example.com/audit']));
    writeFileSync(join(keysDir, 'mfa-secret.key'), `${randomBytes(32).toString('base64')}\n`);
    const ring = spawnSync(process.execPath, ['--input-type=module', '-e', ASSERTION_RING_SCRIPT.replace("'/app/dist/", `'${app}/dist/`)], { cwd: keysDir, encoding: 'utf8' });
    if (ring.status !== 0) throw new Error(`assertion key ring: ${ring.stdout}${ring.stderr}`);
    cli(['users', 'add', 'alice', '--groups', 'sre', '--users-file', join(usersDir, 'users.yaml')], 'correct horse battery staple\n');
    for (const dir of [keysDir, usersDir]) {
      for (const f of readdirSync(dir)) {
        chmodSync(join(dir, f), 0o440);
        if (asImageUser) chownSync(join(dir, f), 0, gid);
      }
    }

    // 5. The init container's command, with its mounts under the root, as the image user.
    const runtimeKeys = inRoot('/run/portcullis/keys');
    mkdirSync(runtimeKeys, { recursive: true, mode: 0o777 }); // an emptyDir is world-writable
    chmodSync(runtimeKeys, 0o777);
    const initCmd = list(initContainer, 'command').map(String);
    const init = spawnSync(initCmd[0] ?? 'sh', initCmd.slice(1).map((a) => a.replaceAll('/etc/portcullis/', `${root}/etc/portcullis/`).replaceAll('/run/portcullis/', `${root}/run/portcullis/`)), {
      encoding: 'utf8',
      ...(asImageUser ? { uid, gid } : {}),
    });
    if (init.status !== 0) throw new Error(`init container: ${init.stdout}${init.stderr}`);
    expect(readdirSync(runtimeKeys).sort()).toEqual(['mfa-secret.key', 'seal.key']);
    for (const f of readdirSync(runtimeKeys)) expect(statSync(join(runtimeKeys, f)).mode & 0o777).toBe(0o400);

    before = tree(root);

    // 6. The image's command: ENTRYPOINT + the StatefulSet's args, the image's ENV + the pod's env.
    const env = gatewayEnvironment;
    Object.assign(env, { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/nonexistent', HOSTNAME: podName });
    for (const e of of(runtime, 'ENV').flatMap((i) => envPairs(i.args))) env[e[0]] = e[1];
    for (const e of list(gatewayContainer, 'env')) {
      const name = String(at(e, 'name'));
      if (typeof at(e, 'value') === 'string') env[name] = String(at(e, 'value'));
      else if (at(e, 'valueFrom', 'fieldRef', 'fieldPath') === 'metadata.name') env[name] = podName;
      else if (at(e, 'valueFrom', 'secretKeyRef', 'key') === 'store-password') env[name] = redis.passwords.store;
      else if (at(e, 'valueFrom', 'secretKeyRef', 'key') === 'audit-password') env[name] = redis.passwords.audit;
      else env[name] = 'not-used-here';
    }
    const entrypoint = execForm(last(runtime, 'ENTRYPOINT')) ?? [];
    const args = list(gatewayContainer, 'args').map((a) => String(a).replace(/^\/etc\/portcullis\//, `${root}/etc/portcullis/`));
    expect(entrypoint[0]).toBe('node');
    gateway = track(
      spawn(process.execPath, [...entrypoint.slice(1).map((a) => (a.startsWith('/') ? inRoot(a) : a)), ...args], { cwd: app, env, stdio: ['ignore', 'pipe', 'pipe'], ...(asImageUser ? { uid, gid } : {}) }),
    );
    gatewayOut = capture(gateway);
    await eventually(async () => (await send(ports.admin, { path: '/readyz' })).status === 200, 30_000).catch((err: unknown) => {
      throw new Error(`the gateway did not become ready: ${String(err)}\n${gatewayOut.output()}`);
    });
  }, 90_000);

  afterAll(async () => {
    redis.ops.disconnect();
    for (const c of children) c.kill('SIGKILL');
    await Promise.all([...children].map(exitOf));
    rmSync(root, { recursive: true, force: true });
  });

  it(`starts as uid ${String(uid)} from the mounted config; /healthz and /readyz answer; the HEALTHCHECK command passes`, async () => {
    if (asImageUser) expect(gateway.pid !== undefined && readFileSync(`/proc/${String(gateway.pid)}/status`, 'utf8')).toMatch(new RegExp(`\\nUid:\\s+${String(uid)}\\s`));
    expect((await send(ports.admin, { path: '/healthz' })).status).toBe(200);
    const ready = await send(ports.admin, { path: '/readyz' });
    expect(ready.text()).toMatch(/store \(redis\): ok/);
    expect(ready.text()).toMatch(/audit \(redis\): ok/);
    const health = execForm(last(runtime, 'HEALTHCHECK').replace(/^(--\S+\s+)*CMD\s+/, '')) ?? [];
    const check = spawnSync(process.execPath, health.slice(1).map((a) => a.replace('127.0.0.1:9090', `127.0.0.1:${String(ports.admin)}`)), { encoding: 'utf8', timeout: 10_000 });
    expect(check.status).toBe(0);
  });

  it('serves the browser scripts the image carries, and the public listener applies the policy', async () => {
    for (const asset of ['mfa.js', 'audit-viewer.js', 'simplewebauthn.js']) {
      const res = await send(ports.http, { path: `/.portcullis/assets/${asset}`, headers: ['Host', 'access.example.com'] });
      expect(res.status, asset).toBe(200);
      expect(res.body.length, asset).toBeGreaterThan(100);
    }
    const denied = await send(ports.http, { path: '/api/dashboards', headers: ['Host', 'grafana.example.com', 'Accept', 'application/json'] });
    expect(denied.status).toBe(401);
  });

  it("records the requests in the pod's own audit log in Redis (instance id = pod name + epoch)", async () => {
    const log = `portcullis:audit:{${podName}.e1}:records`;
    const read = async () => ((await redis.ops.xrange(log, '-', '+')) as [string, string[]][]).map(([, fields]) => JSON.parse(fields[1] ?? '{}') as Record<string, unknown>);
    const denied = (r: Record<string, unknown>) => at(r, 'request', 'host') === 'grafana.example.com' && at(r, 'response', 'status') === 401;
    await eventually(async () => (await read()).some(denied), 10_000);
    const records = await read();
    expect(records.length).toBeGreaterThanOrEqual(4);
    expect(records.every((r) => String(r.log) === `access.example.com/audit/${podName}.e1`)).toBe(true);
    const metrics = (await send(ports.admin, { path: '/metrics' })).text();
    expect(metrics).toMatch(/^portcullis_audit_tree_size [1-9]/m);
  });

  it('exports its log onto the data volume from inside the pod, and the export verifies offline with seal.pub', async () => {
    // As docs/operations.md runs it: `kubectl exec <pod> -- node bin/portcullis.js audit export …`.
    await eventually(async () => /^portcullis_audit_last_checkpoint_timestamp_seconds [1-9]/m.test((await send(ports.admin, { path: '/metrics' })).text()), 15_000);
    const out = `${root}/app/data/export-${podName}.e1.jsonl`;
    const execEnv = { ...gatewayEnvironment, PORTCULLIS_CONFIG: `${root}/etc/portcullis/config/portcullis.yaml` };
    const exported = spawnSync(process.execPath, ['bin/portcullis.js', 'audit', 'export', '--instance', `${podName}.e1`, '--out', out], {
      cwd: inRoot(workdir), env: execEnv, encoding: 'utf8', timeout: 15_000, ...(asImageUser ? { uid, gid } : {}),
    });
    expect(exported.status, exported.stdout + exported.stderr).toBe(0);
    const verified = spawnSync(process.execPath, ['bin/portcullis.js', 'audit', 'verify', '--from-export', out, '--public-key', join(root, 'seal.pub')], { cwd: inRoot(workdir), encoding: 'utf8', timeout: 30_000 });
    expect(verified.status, verified.stdout + verified.stderr).toBe(0);
    expect(verified.stdout).toMatch(/verified 1 log: \d+\/\d+ records/);
    rmSync(out);
  });

  it('docs/operations.md gives the same assertion key ring script this test used', () => {
    expect(readFileSync(join(REPO_ROOT, 'docs', 'operations.md'), 'utf8')).toContain(ASSERTION_RING_SCRIPT);
  });

  it('writes nothing outside its volumes; SIGTERM drains, seals and exits 0; the HEALTHCHECK then fails', async () => {
    gateway.kill('SIGTERM');
    // No request is in flight, so the drain is immediate; the process must then end by itself (in
    // Kubernetes, one that does not is killed at terminationGracePeriodSeconds with exit 137).
    const exited = await Promise.race([exitOf(gateway), new Promise<'running'>((resolve) => setTimeout(() => resolve('running'), 15_000))]);
    if (exited === 'running') gateway.kill('SIGKILL');
    expect(exited, `exit after SIGTERM (still running 15 s later?)\n${gatewayOut.output()}`).toBe(0);
    const checkpoints = inRoot(`/app/data/checkpoints/${podName}.e1`);
    expect(readdirSync(checkpoints).filter((f) => f.endsWith('.note')).length).toBeGreaterThan(0);
    const written = [...tree(root)].filter((p) => !before.has(p));
    const outside = written.filter((p) => !p.startsWith('app/data/') && !p.startsWith('redis/'));
    expect(outside).toEqual([]);
    expect(written.some((p) => p.startsWith(`app/data/spool/${podName}.e1/`))).toBe(true);
    // …and did not try to (a refused write would only be logged).
    expect(gatewayOut.output()).not.toMatch(/EACCES|EROFS|EPERM|permission denied|cannot update/i);
    const health = execForm(last(runtime, 'HEALTHCHECK').replace(/^(--\S+\s+)*CMD\s+/, '')) ?? [];
    const check = spawnSync(process.execPath, health.slice(1).map((a) => a.replace('127.0.0.1:9090', `127.0.0.1:${String(ports.admin)}`)), { encoding: 'utf8', timeout: 10_000 });
    expect(check.status).toBe(1);
  }, 30_000);
});

/**
 * Creates (or, with `rotate` as an argument, rotates) the assertion key ring `assertion-keys.json` in
 * the current directory with the image's own code; docs/operations.md gives the same script.
 */
const ASSERTION_RING_SCRIPT = `const { createAssertionSigner } = await import('/app/dist/identity/assertion-signer.js');
const signer = await createAssertionSigner({ keyFile: 'assertion-keys.json', algorithm: 'ES256', rotateAfterMs: 3650 * 864e5, issuer: 'https://access.example.com' });
if (process.argv.includes('rotate')) await signer.rotate();`;
