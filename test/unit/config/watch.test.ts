import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { watchConfigFile, type ConfigWatcher } from '../../../src/config/index.js';

const DEBOUNCE_MS = 40;
/** Long enough for fs events and the debounce to settle on a loaded CI machine. */
const SETTLE_MS = 400;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function eventually(predicate: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(20);
  }
}

describe('watchConfigFile', () => {
  const watchers: ConfigWatcher[] = [];
  afterEach(() => {
    for (const w of watchers.splice(0)) w.close();
  });

  function setup(initial = 'routes: []\n') {
    const dir = mkdtempSync(join(tmpdir(), 'portcullis-watch-'));
    const file = join(dir, 'portcullis.yaml');
    writeFileSync(file, initial);
    let calls = 0;
    const watcher = watchConfigFile(file, () => (calls += 1), { debounceMs: DEBOUNCE_MS, retryMs: 50 });
    watchers.push(watcher);
    return { dir, file, watcher, calls: () => calls };
  }

  it('fires once when the content changes in place', async () => {
    const { file, calls } = setup();
    writeFileSync(file, 'routes: []\n# edited\n');
    await eventually(() => calls() === 1);
    await sleep(SETTLE_MS);
    expect(calls()).toBe(1);
  });

  it('coalesces a burst of writes into one call', async () => {
    const { file, calls } = setup();
    for (let i = 0; i < 5; i++) writeFileSync(file, `# ${i}\n`);
    await eventually(() => calls() >= 1);
    await sleep(SETTLE_MS);
    expect(calls()).toBe(1);
  });

  it('fires when an editor renames a new file over the old one', async () => {
    const { dir, file, calls } = setup();
    const tmp = join(dir, '.portcullis.yaml.swp');
    writeFileSync(tmp, 'routes: []\n# saved by an editor\n');
    renameSync(tmp, file);
    await eventually(() => calls() === 1);
  });

  it('fires when a Kubernetes ConfigMap swaps its ..data symlink', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'portcullis-watch-k8s-'));
    mkdirSync(join(dir, '..v1'));
    writeFileSync(join(dir, '..v1', 'portcullis.yaml'), 'routes: []\n');
    symlinkSync('..v1', join(dir, '..data'));
    symlinkSync(join('..data', 'portcullis.yaml'), join(dir, 'portcullis.yaml'));
    let calls = 0;
    watchers.push(watchConfigFile(join(dir, 'portcullis.yaml'), () => (calls += 1), { debounceMs: DEBOUNCE_MS }));

    mkdirSync(join(dir, '..v2'));
    writeFileSync(join(dir, '..v2', 'portcullis.yaml'), 'routes: []\n# v2\n');
    symlinkSync('..v2', join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
    rmSync(join(dir, '..v1'), { recursive: true });
    await eventually(() => calls === 1);
  });

  it.each([
    { what: 'the same bytes are written again', act: (file: string) => { writeFileSync(file, 'routes: []\n'); } },
    { what: 'the file is only touched', act: (file: string) => { utimesSync(file, new Date(), new Date()); } },
    { what: 'another file in the directory changes', act: (file: string) => { writeFileSync(`${file}.bak`, 'x'); } },
  ])('does not fire when $what', async ({ act }) => {
    const { file, calls } = setup();
    act(file);
    await sleep(SETTLE_MS);
    expect(calls()).toBe(0);
    writeFileSync(file, 'routes: []\n# a real change\n');
    await eventually(() => calls() === 1);
  });

  it('does not fire while the file is missing, then fires when it comes back changed', async () => {
    const { file, calls } = setup();
    rmSync(file);
    await sleep(SETTLE_MS);
    expect(calls()).toBe(0);
    writeFileSync(file, 'routes: []\n# restored\n');
    await eventually(() => calls() === 1);
  });

  it('survives its directory disappearing and resumes when it returns', async () => {
    const { dir, file, calls } = setup();
    rmSync(dir, { recursive: true });
    await sleep(SETTLE_MS);
    expect(calls()).toBe(0);
    mkdirSync(dir);
    writeFileSync(file, 'routes: []\n# recreated\n');
    await eventually(() => calls() === 1);
  });

  it('starts without error when the directory does not exist yet', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'portcullis-watch-')), 'later');
    let calls = 0;
    watchers.push(watchConfigFile(join(dir, 'portcullis.yaml'), () => (calls += 1), { debounceMs: DEBOUNCE_MS, retryMs: 50 }));
    await sleep(100);
    mkdirSync(dir);
    writeFileSync(join(dir, 'portcullis.yaml'), 'routes: []\n');
    await eventually(() => calls === 1);
  });

  it('stops firing after close', async () => {
    const { file, watcher, calls } = setup();
    watcher.close();
    watcher.close();
    writeFileSync(file, '# changed after close\n');
    await sleep(SETTLE_MS);
    expect(calls()).toBe(0);
  });
});
