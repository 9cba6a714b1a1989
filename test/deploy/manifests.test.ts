/**
 * deploy/k8s as shipped: every manifest is valid against the Kubernetes / Prometheus Operator schemas
 * (kubernetes-models' validate()) and strictly typed (no unknown field, no wrong type: what
 * `kubeconform -strict` checks), and the pieces agree with each other and with the gateway: the
 * ConfigMap's portcullis.yaml passes the real config loader with exactly the environment the
 * StatefulSet gives it, probes hit the admin listener's /healthz and /readyz, ports and port names
 * line up between the config, the pods, the Services, the ServiceMonitor, the Ingress and the
 * NetworkPolicy, every path the config names is on a volume of the right kind, the shutdown fits in
 * the grace period, and the PrometheusRule carries exactly deploy/prometheus/alerts.yml.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadConfigText, formatIssues, type Config } from '../../src/config/index.js';
import { REPO_ROOT } from '../support/process.js';
import { at, K8S_DIR, kindOf, list, obj, parseDockerfile, readK8s, schemaErrors, strictTypeErrors, type Manifest } from './deploy-kit.js';

const kustomization = parseYaml(readFileSync(join(K8S_DIR, 'kustomization.yaml'), 'utf8')) as Record<string, unknown>;
const resources = list(kustomization, 'resources').map(String);
const manifests: Manifest[] = resources.flatMap((f) => readK8s(f));

function one(kind: string, name?: string): Manifest {
  const found = manifests.filter((m) => m.doc.kind === kind && (name === undefined || m.doc.metadata.name === name));
  if (found.length !== 1) throw new Error(`expected one ${kind}${name === undefined ? '' : ` ${name}`}, found ${found.length}`);
  const m = found[0];
  if (m === undefined) throw new Error('unreachable');
  return m;
}

const sts = one('StatefulSet').doc;
const podSpec = obj(sts, 'spec', 'template', 'spec');
const podLabels = obj(sts, 'spec', 'template', 'metadata', 'labels');
const containers = list(podSpec, 'containers');
const gateway = containers.find((c) => at(c, 'name') === 'portcullis');
const initContainers = list(podSpec, 'initContainers');
const containerPorts = new Map(list(gateway, 'ports').map((p) => [String(at(p, 'name')), Number(at(p, 'containerPort'))]));
const gatewayEnv = list(gateway, 'env');
const mounts = list(gateway, 'volumeMounts').map((v) => ({ name: String(at(v, 'name')), path: String(at(v, 'mountPath')), readOnly: at(v, 'readOnly') === true }));
const volumes = new Map(list(podSpec, 'volumes').map((v) => [String(at(v, 'name')), obj(v)]));
const claimNames = new Set(list(sts, 'spec', 'volumeClaimTemplates').map((c) => String(at(c, 'metadata', 'name'))));

/** What the StatefulSet puts in the gateway's environment (secrets as placeholders, the pod name as the first pod's). */
function containerEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of gatewayEnv) {
    const name = String(at(e, 'name'));
    if (typeof at(e, 'value') === 'string') env[name] = String(at(e, 'value'));
    else if (at(e, 'valueFrom', 'fieldRef', 'fieldPath') === 'metadata.name') env[name] = `${sts.metadata.name}-0`;
    else if (at(e, 'valueFrom', 'secretKeyRef') !== undefined) env[name] = `secret-${name.toLowerCase()}`;
    else throw new Error(`env ${name}: unexpected source`);
  }
  return env;
}

/** Matches a selector's matchLabels (or a Service's plain selector) against labels. */
function selects(selector: Record<string, unknown>, labels: Record<string, unknown>): boolean {
  const wanted = (selector.matchLabels ?? selector) as Record<string, unknown>;
  return Object.keys(wanted).length > 0 && Object.entries(wanted).every(([k, v]) => labels[k] === v);
}

const portOf = (address: string): number => Number(/:(\d+)$/.exec(address)?.[1]);
const mountFor = (path: string) =>
  mounts.filter((m) => path === m.path || path.startsWith(`${m.path}/`)).sort((a, b) => b.path.length - a.path.length)[0];

let config: Readonly<Config>;
const configMap = one('ConfigMap', 'portcullis-config').doc;
const configArg = list(gateway, 'args').map(String);
const configPath = configArg[configArg.indexOf('--config') + 1] ?? '';

beforeAll(() => {
  const text = String(at(configMap, 'data', 'portcullis.yaml'));
  const loaded = loadConfigText(text, 'deploy/k8s/configmap.yaml#portcullis.yaml', containerEnv());
  if (!loaded.ok) throw new Error(`the ConfigMap's portcullis.yaml does not load:\n${formatIssues(loaded.issues)}`);
  config = loaded.config;
});

describe('deploy/k8s: schemas', () => {
  it('kustomization.yaml lists every manifest in the directory, and nothing else', () => {
    const files = readdirSync(K8S_DIR).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').sort();
    expect([...resources].sort()).toEqual(files);
    expect(kustomization.namespace).toBe('portcullis');
  });

  it('every manifest passes the Kubernetes / Prometheus Operator schema and the strict type check', async () => {
    expect(manifests.length).toBeGreaterThanOrEqual(10);
    const problems: string[] = [];
    for (const m of manifests) {
      const err = await schemaErrors(m);
      if (err !== undefined) problems.push(`${m.file}#${m.index} ${kindOf(m)}: ${err}`);
    }
    strictTypeErrors(manifests).forEach((errs, i) => {
      const m = manifests[i];
      for (const e of errs) problems.push(`${m?.file ?? '?'}#${m?.index ?? '?'}: ${e}`);
    });
    expect(problems).toEqual([]);
  });

  it('a broken copy fails: a typo in a field name, a string where a number belongs, a missing required field', async () => {
    const base = one('StatefulSet');
    const typo = structuredClone(base.doc) as Record<string, unknown>;
    const probe = obj(typo, 'spec', 'template', 'spec', 'containers', 0, 'readinessProbe');
    probe.periodSecond = probe.periodSeconds; // the typo
    delete probe.periodSeconds;
    const wrongType = structuredClone(base.doc) as Record<string, unknown>;
    obj(wrongType, 'spec', 'template', 'spec', 'containers', 0, 'ports', 0).containerPort = '8080';
    const missing = structuredClone(base.doc) as Record<string, unknown>;
    delete obj(missing, 'spec').selector;
    const monitorTypo = structuredClone(one('ServiceMonitor').doc) as Record<string, unknown>;
    obj(monitorTypo, 'spec', 'endpoints', 0).intervall = '15s';

    const broken: Manifest[] = [typo, wrongType, missing, monitorTypo].map((doc, index) => ({ file: 'broken.yaml', index, doc: doc as Manifest['doc'] }));
    const strict = strictTypeErrors(broken);
    expect(strict[0]?.join('\n')).toMatch(/'"?periodSecond"?' does not exist in type 'IProbe'/);
    expect(strict[1]?.join('\n')).toMatch(/Type 'string' is not assignable to type 'number'/);
    expect(strict[2]?.join('\n')).toMatch(/Property '"?selector"?' is missing/);
    expect(strict[3]?.join('\n')).toMatch(/'"?intervall"?' does not exist/);
    // The schema check (what the API server would refuse) catches the wrong type and the missing field.
    expect(await schemaErrors(broken[1] as Manifest)).toMatch(/containerPort|must be (integer|number)/);
    expect(await schemaErrors(broken[2] as Manifest)).toMatch(/selector/);
  });
});

describe('deploy/k8s: the workload', () => {
  it('runs at least 2 replicas as a StatefulSet whose governing Service is headless', () => {
    expect(at(sts, 'spec', 'replicas')).toBeGreaterThanOrEqual(2);
    const headless = one('Service', String(at(sts, 'spec', 'serviceName'))).doc;
    expect(at(headless, 'spec', 'clusterIP')).toBe('None');
    expect(selects(obj(sts, 'spec', 'selector'), podLabels)).toBe(true);
  });

  it('names each audit log by the pod (downward API), so logs stay stable across restarts', () => {
    const podName = gatewayEnv.find((e) => at(e, 'valueFrom', 'fieldRef', 'fieldPath') === 'metadata.name');
    expect(podName).toBeDefined();
    expect(config.server.instance_id).toBe(`${sts.metadata.name}-0.${containerEnv().AUDIT_LOG_EPOCH ?? ''}`);
  });

  it('the ConfigMap config is the production shape: Redis store and audit sink via Sentinel, spool on', () => {
    expect(config.store.type).toBe('redis');
    expect(at(config.store, 'redis', 'sentinel', 'name')).toBe('portcullis');
    expect(config.audit.sink.type).toBe('redis');
    expect(at(config.audit.sink, 'sentinel', 'name')).toBe('portcullis');
    expect(config.audit.on_failure).toBe('spool');
    expect(config.server.listen).toMatch(/^0\.0\.0\.0:/);
    expect(config.server.admin_listen).toMatch(/^0\.0\.0\.0:/);
    // The config file the gateway is started with is the ConfigMap's key, on the ConfigMap's mount.
    const mount = mountFor(configPath);
    expect(mount?.readOnly).toBe(true);
    expect(at(volumes.get(mount?.name ?? ''), 'configMap', 'name')).toBe('portcullis-config');
    expect(configPath).toBe(`${mount?.path ?? ''}/portcullis.yaml`);
  });

  it('probes: liveness and startup on /healthz, readiness on /readyz, all on the admin listener', () => {
    const adminPort = portOf(config.server.admin_listen);
    expect(containerPorts.get('admin')).toBe(adminPort);
    expect(containerPorts.get('http')).toBe(portOf(config.server.listen));
    for (const [probe, path] of [['livenessProbe', '/healthz'], ['startupProbe', '/healthz'], ['readinessProbe', '/readyz']] as const) {
      expect(at(gateway, probe, 'httpGet', 'path'), probe).toBe(path);
      const port = at(gateway, probe, 'httpGet', 'port');
      expect(typeof port === 'number' ? port : containerPorts.get(String(port)), probe).toBe(adminPort);
    }
  });

  it('security: non-root numeric user (the Dockerfile USER), read-only root, no capabilities, RuntimeDefault seccomp, no API token', () => {
    const { stages } = parseDockerfile(readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8'));
    const user = stages.at(-1)?.instructions.filter((i) => i.keyword === 'USER').at(-1)?.args ?? '';
    const [uid, gid] = user.split(':').map(Number);
    expect(at(podSpec, 'securityContext', 'runAsNonRoot')).toBe(true);
    expect(at(podSpec, 'securityContext', 'runAsUser')).toBe(uid);
    expect(at(podSpec, 'securityContext', 'runAsGroup')).toBe(gid);
    expect(at(podSpec, 'securityContext', 'fsGroup')).toBe(gid);
    expect(at(podSpec, 'securityContext', 'seccompProfile', 'type')).toBe('RuntimeDefault');
    expect(at(podSpec, 'automountServiceAccountToken')).toBe(false);
    for (const c of [...containers, ...initContainers]) {
      const name = String(at(c, 'name'));
      expect(at(c, 'securityContext', 'readOnlyRootFilesystem'), name).toBe(true);
      expect(at(c, 'securityContext', 'allowPrivilegeEscalation'), name).toBe(false);
      expect(at(c, 'securityContext', 'capabilities', 'drop'), name).toEqual(['ALL']);
      expect(at(c, 'securityContext', 'capabilities', 'add'), name).toBeUndefined();
      for (const r of ['requests', 'limits']) {
        expect(at(c, 'resources', r, 'cpu'), `${name} ${r}.cpu`).toBeDefined();
        expect(at(c, 'resources', r, 'memory'), `${name} ${r}.memory`).toBeDefined();
      }
      expect(at(c, 'image'), name).toBe(`${String(at(kustomization, 'images', 0, 'name'))}:${String(at(kustomization, 'images', 0, 'newTag'))}`);
    }
    // The namespace enforces the restricted Pod Security Standard that all of the above satisfies.
    expect(one('Namespace').doc.metadata.labels?.['pod-security.kubernetes.io/enforce']).toBe('restricted');
  });

  it('every file and directory the config names is on a volume of the right kind', () => {
    const writable = [config.audit.spool_dir, config.audit.seal.witness_dir];
    for (const dir of writable) {
      const m = mountFor(dir);
      expect(m, dir).toBeDefined();
      expect(m?.readOnly, dir).toBe(false);
      expect(claimNames.has(m?.name ?? ''), `${dir} on the pod's PersistentVolume`).toBe(true);
    }
    const users = config.identity.providers.find((p) => p.type === 'local');
    const readOnly = [config.mfa.secret_key_file, config.audit.seal.key_file, config.identity.assertion.key_file, users?.users_file ?? ''];
    for (const file of readOnly) {
      const m = mountFor(file);
      expect(m, file).toBeDefined();
      expect(m?.readOnly, file).toBe(true);
      const v = volumes.get(m?.name ?? '');
      expect(at(v, 'secret') ?? at(v, 'emptyDir', 'medium'), file).toBeDefined();
    }
    // The key files the gateway reads with mode 0400 are the init container's copies, from the Secret.
    const runtimeKeys = mountFor(config.mfa.secret_key_file);
    expect(at(volumes.get(runtimeKeys?.name ?? ''), 'emptyDir', 'medium')).toBe('Memory');
    expect(mountFor(config.audit.seal.key_file)?.name).toBe(runtimeKeys?.name);
    const init = initContainers.find((c) => at(c, 'name') === 'keys');
    const initMounts = list(init, 'volumeMounts');
    expect(initMounts.some((v) => at(v, 'name') === runtimeKeys?.name && at(v, 'mountPath') === runtimeKeys?.path && at(v, 'readOnly') !== true)).toBe(true);
    const keysMount = mountFor(config.identity.assertion.key_file);
    expect(initMounts.some((v) => at(v, 'name') === keysMount?.name && at(v, 'mountPath') === keysMount?.path)).toBe(true);
    expect(list(init, 'command').join(' ')).toContain(`install -m 0400 "$f" ${runtimeKeys?.path ?? ''}/`);
    expect(at(volumes.get(keysMount?.name ?? ''), 'secret', 'defaultMode')).toBe(0o440);
    // A read-only root filesystem: /tmp is a volume.
    expect(mountFor('/tmp/x')?.readOnly).toBe(false);
  });

  it('every ${VAR} the config uses comes from the StatefulSet, secrets by reference only', () => {
    const text = String(at(configMap, 'data', 'portcullis.yaml'));
    const used = new Set([...text.matchAll(/\$\{([A-Z0-9_]+)(?::-[^}]*)?\}/g)].map((m) => m[1] ?? ''));
    const env = containerEnv();
    for (const name of used) expect(Object.keys(env), name).toContain(name);
    for (const e of gatewayEnv) {
      const name = String(at(e, 'name'));
      if (/PASSWORD|SECRET|TOKEN|KEY/.test(name)) expect(at(e, 'valueFrom', 'secretKeyRef', 'name'), name).toBeDefined();
    }
    // No Secret objects are shipped: they are created by hand (docs/operations.md).
    expect(manifests.filter((m) => m.doc.kind === 'Secret')).toEqual([]);
  });

  it('shutdown: preStop wait + shutdown_grace + room for the final checkpoint fit in terminationGracePeriodSeconds', () => {
    const preStop = list(gateway, 'lifecycle', 'preStop', 'exec', 'command').join(' ');
    const waitMs = Number(/setTimeout\(\(\) => \{\}, (\d+)\)/.exec(preStop)?.[1]);
    expect(waitMs).toBeGreaterThanOrEqual(5000);
    const graceS = Number(at(podSpec, 'terminationGracePeriodSeconds'));
    expect(graceS * 1000).toBeGreaterThanOrEqual(waitMs + config.server.timeouts.shutdown_grace + 10_000);
  });
});

describe('deploy/k8s: Services, monitoring, disruption and network policy', () => {
  it('the public Service exposes only the gateway listener; the headless one the admin port; both select the pods', () => {
    const pub = one('Service', 'portcullis').doc;
    expect(selects(obj(pub, 'spec', 'selector'), podLabels)).toBe(true);
    const pubPorts = list(pub, 'spec', 'ports');
    expect(pubPorts.map((p) => at(p, 'targetPort'))).toEqual(['http']);
    const headless = one('Service', 'portcullis-headless').doc;
    expect(selects(obj(headless, 'spec', 'selector'), podLabels)).toBe(true);
    for (const p of [...pubPorts, ...list(headless, 'spec', 'ports')]) expect(containerPorts.has(String(at(p, 'targetPort')))).toBe(true);
  });

  it('the ServiceMonitor scrapes the admin port by name on a Service it selects, as job="portcullis"', () => {
    const sm = one('ServiceMonitor').doc;
    const services = manifests.filter((m) => m.doc.kind === 'Service' && selects(obj(sm, 'spec', 'selector'), m.doc.metadata.labels ?? {}));
    expect(services.map((s) => s.doc.metadata.name)).toEqual(['portcullis-headless']);
    const svc = services[0]?.doc;
    const endpoints = list(sm, 'spec', 'endpoints');
    for (const ep of endpoints) {
      const svcPort = list(svc, 'spec', 'ports').find((p) => at(p, 'name') === at(ep, 'port'));
      expect(svcPort, String(at(ep, 'port'))).toBeDefined();
      expect(containerPorts.get(String(at(svcPort, 'targetPort')))).toBe(portOf(config.server.admin_listen));
      expect(at(ep, 'path')).toBe('/metrics');
    }
    const jobLabel = String(at(sm, 'spec', 'jobLabel'));
    expect(svc?.metadata.labels?.[jobLabel]).toBe('portcullis');
    expect(list(sm, 'spec', 'namespaceSelector', 'matchNames')).toEqual([kustomization.namespace]);
  });

  it('the PodDisruptionBudget keeps one pod and selects the gateway', () => {
    const pdb = one('PodDisruptionBudget').doc;
    expect(at(pdb, 'spec', 'minAvailable')).toBe(1);
    expect(selects(obj(pdb, 'spec', 'selector'), podLabels)).toBe(true);
  });

  it('the Ingress sends the public URL and every route host to the public Service', () => {
    const ing = one('Ingress').doc;
    const hosts = list(ing, 'spec', 'rules').map((r) => String(at(r, 'host')));
    const wanted = [new URL(config.server.public_url).hostname, ...config.routes.map((r) => r.host)];
    expect([...hosts].sort()).toEqual([...new Set(wanted)].sort());
    for (const r of list(ing, 'spec', 'rules')) {
      for (const p of list(r, 'http', 'paths')) {
        expect(at(p, 'backend', 'service', 'name')).toBe('portcullis');
        expect(list(one('Service', 'portcullis').doc, 'spec', 'ports').some((sp) => at(sp, 'name') === at(p, 'backend', 'service', 'port', 'name'))).toBe(true);
      }
    }
  });

  it('the NetworkPolicy admits the listeners only from the ingress controller and Prometheus, and lets out exactly what the config needs', () => {
    const np = one('NetworkPolicy').doc;
    expect(selects(obj(np, 'spec', 'podSelector'), podLabels)).toBe(true);
    expect(list(np, 'spec', 'policyTypes')).toEqual(['Ingress', 'Egress']);
    const ingress = list(np, 'spec', 'ingress');
    const fromNs = (rule: unknown) => list(rule, 'from').map((f) => at(f, 'namespaceSelector', 'matchLabels', 'kubernetes.io/metadata.name'));
    const ports = (rule: unknown) => list(rule, 'ports').map((p) => Number(at(p, 'port')));
    expect(ingress.map((r) => [fromNs(r), ports(r)])).toEqual([
      [['ingress-nginx'], [portOf(config.server.listen)]],
      [['monitoring'], [portOf(config.server.admin_listen)]],
    ]);
    const egress = list(np, 'spec', 'egress');
    const allows = (ns: string, port: number) => egress.some((r) => fromNsTo(r).includes(ns) && ports(r).includes(port));
    const fromNsTo = (rule: unknown) => list(rule, 'to').map((t) => at(t, 'namespaceSelector', 'matchLabels', 'kubernetes.io/metadata.name'));
    expect(allows('kube-system', 53)).toBe(true);
    // Every route's upstream <service>.<namespace>.svc:<port>.
    for (const r of config.routes) {
      const u = new URL(r.upstream);
      const ns = /^[^.]+\.([^.]+)\.svc(\.cluster\.local)?$/.exec(u.hostname)?.[1] ?? '';
      expect(allows(ns, Number(u.port)), `${r.id} → ${r.upstream}`).toBe(true);
    }
    // The sentinels and the data nodes.
    const sentinels = [...list(config.store, 'redis', 'sentinel', 'nodes'), ...list(config.audit.sink, 'sentinel', 'nodes')].map(String);
    for (const node of sentinels) {
      const ns = /^[^.]+\.[^.]+\.([^.]+)\.svc:/.exec(node)?.[1] ?? '';
      expect(allows(ns, portOf(node)), node).toBe(true);
      expect(allows(ns, 6379), `${ns} data nodes`).toBe(true);
    }
    // The IdP (https).
    expect(egress.some((r) => list(r, 'to').some((t) => at(t, 'ipBlock', 'cidr') === '0.0.0.0/0') && ports(r).includes(443))).toBe(true);
  });

  it('the PrometheusRule carries exactly the groups of deploy/prometheus/alerts.yml', () => {
    const file = parseYaml(readFileSync(join(REPO_ROOT, 'deploy', 'prometheus', 'alerts.yml'), 'utf8')) as Record<string, unknown>;
    expect(at(one('PrometheusRule').doc, 'spec', 'groups')).toEqual(file.groups);
  });
});
