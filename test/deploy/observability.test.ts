/**
 * deploy/prometheus and deploy/grafana as shipped: the alert rules and the scrape config pass
 * `promtool check`, the rules' unit tests (alerts.test.yml: a series that fires and one that does not,
 * per alert) pass `promtool test rules` — and fail when a rule is broken; every metric the rules and
 * the dashboard query is one the gateway really registers (src/metrics/metrics.ts, plus prom-client's
 * process metrics); the dashboard is importable JSON with a templated data source and a panel for
 * every SPEC §6 metric family; every alert's runbook link lands on a heading of docs/operations.md.
 *
 * promtool comes from PATH, or from where scripts/ensure-deps.sh puts it (Debian's prometheus
 * package, the binary only); without it this file fails, it never skips.
 */
import { execFile } from 'node:child_process';
import { accessSync, constants, copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { createMetrics } from '../../src/metrics/metrics.js';
import { REPO_ROOT } from '../support/process.js';
import { at, list, obj } from './deploy-kit.js';

const run = promisify(execFile);
const PROM_DIR = join(REPO_ROOT, 'deploy', 'prometheus');

function findPromtool(): string {
  const candidates = [...(process.env.PATH ?? '').split(delimiter).map((d) => join(d, 'promtool')), join(REPO_ROOT, 'node_modules', '.cache', 'portcullis-tools', 'promtool')];
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // next
    }
  }
  throw new Error('promtool not found: run scripts/ensure-deps.sh (it fetches it from Debian\'s prometheus package), or put promtool on PATH');
}
const promtool = findPromtool();

async function promtoolRun(args: string[], cwd: string): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await run(promtool, args, { cwd, timeout: 60_000 });
    return { code: 0, output: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, output: (e.stdout ?? '') + (e.stderr ?? '') };
  }
}

const scratch = mkdtempSync(join(tmpdir(), 'portcullis-promtool-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** Metric names the gateway exposes, with the series names histograms add. */
async function registeredNames(): Promise<{ all: Set<string>; families: string[] }> {
  const metrics = createMetrics();
  const json = await metrics.registry.getMetricsAsJSON();
  const all = new Set<string>();
  for (const m of json) {
    all.add(m.name);
    if (String(m.type) === 'histogram') for (const s of ['_bucket', '_sum', '_count']) all.add(m.name + s);
  }
  const families = json.map((m) => m.name).filter((n) => n.startsWith('portcullis_'));
  return { all, families };
}

/** Metric names in a PromQL expression: identifiers followed by a label selector. */
const metricsIn = (expr: string): string[] => [...expr.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\{/g)].map((m) => m[1] ?? '');

const rules = parseYaml(readFileSync(join(PROM_DIR, 'alerts.yml'), 'utf8')) as unknown;
const allRules = list(rules, 'groups').flatMap((g) => list(g, 'rules'));
const dashboard = JSON.parse(readFileSync(join(REPO_ROOT, 'deploy', 'grafana', 'portcullis.json'), 'utf8')) as Record<string, unknown>;
const panels = list(dashboard, 'panels');
const dataPanels = panels.filter((p) => at(p, 'type') !== 'row');
const dashboardExprs = dataPanels.flatMap((p) => list(p, 'targets').map((t) => String(at(t, 'expr'))));

describe('deploy/prometheus', () => {
  it('promtool: the rule file and the scrape config check', async () => {
    const rulesCheck = await promtoolRun(['check', 'rules', 'alerts.yml'], PROM_DIR);
    expect(rulesCheck.output).toMatch(/SUCCESS: 7 rules found/);
    expect(rulesCheck.code).toBe(0);
    const configCheck = await promtoolRun(['check', 'config', 'prometheus.yml'], PROM_DIR);
    expect(configCheck.output).toMatch(/prometheus\.yml is valid/);
    expect(configCheck.code).toBe(0);
  });

  it('promtool test rules: every alert fires on its failing series and stays quiet on the healthy one', async () => {
    const result = await promtoolRun(['test', 'rules', 'alerts.test.yml'], PROM_DIR);
    expect(result.output).toMatch(/SUCCESS/);
    expect(result.code).toBe(0);
    // Every alert has a test that expects it to fire, and one that expects it not to.
    const tests = list(parseYaml(readFileSync(join(PROM_DIR, 'alerts.test.yml'), 'utf8')), 'tests').flatMap((t) => list(t, 'alert_rule_test'));
    for (const r of allRules) {
      const name = String(at(r, 'alert'));
      const mine = tests.filter((t) => at(t, 'alertname') === name);
      expect(mine.some((t) => list(t, 'exp_alerts').length > 0), `${name} fires somewhere`).toBe(true);
      expect(mine.some((t) => list(t, 'exp_alerts').length === 0), `${name} stays quiet somewhere`).toBe(true);
    }
  });

  it('the unit tests catch a broken rule (a threshold moved, a label renamed)', async () => {
    const text = readFileSync(join(PROM_DIR, 'alerts.yml'), 'utf8');
    const broken = text
      .replace('portcullis_audit_last_checkpoint_timestamp_seconds{job="portcullis"} > 120', 'portcullis_audit_last_checkpoint_timestamp_seconds{job="portcullis"} > 1200')
      .replace('portcullis_config_reloads_total{job="portcullis",result="failure"}', 'portcullis_config_reloads_total{job="portcullis",result="failed"}');
    expect(broken).not.toBe(text);
    writeFileSync(join(scratch, 'alerts.yml'), broken);
    copyFileSync(join(PROM_DIR, 'alerts.test.yml'), join(scratch, 'alerts.test.yml'));
    const result = await promtoolRun(['test', 'rules', 'alerts.test.yml'], scratch);
    expect(result.code).not.toBe(0);
    expect(result.output).toMatch(/PortcullisAuditCheckpointStale/);
    expect(result.output).toMatch(/PortcullisConfigReloadFailed/);
  });

  it('the Kubernetes scrape job keeps exactly the pods the manifests label, on the admin port', () => {
    const job = obj(parseYaml(readFileSync(join(PROM_DIR, 'scrape-kubernetes.yml'), 'utf8')), 'scrape_configs', 0);
    expect(job.job_name).toBe('portcullis');
    const keep = list(job, 'relabel_configs').find((r) => at(r, 'action') === 'keep');
    expect(at(keep, 'regex')).toBe('portcullis;admin');
    const sts = parseYaml(readFileSync(join(REPO_ROOT, 'deploy', 'k8s', 'statefulset.yaml'), 'utf8')) as unknown;
    expect(at(sts, 'spec', 'template', 'metadata', 'labels', 'app.kubernetes.io/name')).toBe('portcullis');
    expect(list(sts, 'spec', 'template', 'spec', 'containers', 0, 'ports').map((p) => at(p, 'name'))).toContain('admin');
    expect(list(job, 'kubernetes_sd_configs', 0, 'namespaces', 'names')).toEqual(['portcullis']);
  });

  it('every metric an alert uses is registered by the gateway', async () => {
    const { all } = await registeredNames();
    all.add('up'); // Prometheus' own per-target series
    const used = allRules.flatMap((r) => metricsIn(String(at(r, 'expr'))));
    expect(used.length).toBeGreaterThan(0);
    expect(used.filter((n) => !all.has(n))).toEqual([]);
  });

  it('every alert links to its runbook entry in docs/operations.md', () => {
    const doc = readFileSync(join(REPO_ROOT, 'docs', 'operations.md'), 'utf8');
    const anchors = new Set(
      [...doc.matchAll(/^#{1,6} (.+)$/gm)].map((m) =>
        (m[1] ?? '')
          .trim()
          .toLowerCase()
          .replace(/[^\p{L}\p{N}\s_-]/gu, '')
          .replace(/\s/g, '-'),
      ),
    );
    for (const r of allRules) {
      const url = String(at(r, 'annotations', 'runbook_url'));
      const anchor = url.split('#')[1] ?? '';
      expect(anchor, String(at(r, 'alert'))).toBe(String(at(r, 'alert')).toLowerCase());
      expect(anchors.has(anchor), `docs/operations.md has a heading for #${anchor}`).toBe(true);
    }
  });
});

describe('deploy/grafana', () => {
  it('is an importable dashboard: schemaVersion, a data source variable every panel uses, unique ids, a 24-column grid', () => {
    expect(typeof dashboard.schemaVersion).toBe('number');
    expect(dashboard.uid).toBe('portcullis');
    const vars = list(dashboard, 'templating', 'list');
    const dsVar = vars.find((v) => at(v, 'type') === 'datasource');
    expect(at(dsVar, 'query')).toBe('prometheus');
    const ref = `\${${String(at(dsVar, 'name'))}}`;
    const ids = panels.map((p) => at(p, 'id'));
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of dataPanels) {
      expect(at(p, 'datasource', 'uid'), String(at(p, 'title'))).toBe(ref);
      for (const t of list(p, 'targets')) expect(at(t, 'datasource', 'uid')).toBe(ref);
      const x = Number(at(p, 'gridPos', 'x'));
      const w = Number(at(p, 'gridPos', 'w'));
      expect(x + w, String(at(p, 'title'))).toBeLessThanOrEqual(24);
    }
    // Every query is scoped to the selected instances.
    for (const e of dashboardExprs) expect(e).toContain('instance=~"$instance"');
  });

  it('has a panel for every SPEC §6 metric family, and queries no metric the gateway does not register', async () => {
    const { all, families } = await registeredNames();
    expect(families.length).toBeGreaterThanOrEqual(15);
    const used = new Set(dashboardExprs.flatMap(metricsIn).map((n) => n.replace(/_(bucket|sum|count)$/, '')));
    expect(families.filter((f) => !used.has(f))).toEqual([]);
    expect(dashboardExprs.flatMap(metricsIn).filter((n) => !all.has(n))).toEqual([]);
  });
});
